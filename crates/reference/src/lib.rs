//! Names and digests: the vocabulary every other berth crate speaks.
//!
//! Pure functions over strings: this crate does no I/O beyond hashing what a
//! caller hands it, and has no async code.

mod digest;
mod reference;

pub use digest::{Algorithm, Digest, DigestError, Hasher, HashingReader, HashingWriter};
pub use reference::{
    DEFAULT_DOMAIN, DEFAULT_TAG, InvalidRepoName, LEGACY_DEFAULT_DOMAIN, NAME_TOTAL_LENGTH_MAX,
    OFFICIAL_NAMESPACE, Reference, ReferenceError, RepoName, Repository, TAG_LENGTH_MAX,
    validate_domain, validate_path, validate_tag,
};
