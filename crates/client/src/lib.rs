//! berth's registry client: the Docker Registry HTTP API v2 / OCI Distribution
//! API as a client speaks it.
//!
//! - [`hosts`]: which URL a registry name means (docker.io, mirrors, plain HTTP
//!   for loopback and registries the user marks insecure).
//! - [`credentials`]: the logins users already have (docker's `config.json`,
//!   credential helpers, podman's `auth.json`).
//! - [`auth`]: `WWW-Authenticate` challenges, Basic and the Bearer token flow.
//! - [`Client`]: one HTTP session with retries, redirects and auth; [`pull`],
//!   [`push`], [`search`] and [`login`](Client::login) are built on it.
//! - [`ImageStore`] (from `berth_oci`): the contract through which a pull
//!   writes into, and a push reads from, wherever images are kept locally
//!   (berth's store implements it). This crate never sees a store's internals.
//!
//! Contract on digests: every byte that leaves this crate towards a
//! [`ImageStore`] has been verified against the digest that named it
//! (blob digest while streaming, layer diff ID by decompressing in the same
//! pass) before the store's `write_blob` returns successfully.

pub mod auth;
mod client;
pub mod compress;
pub mod copy;
pub mod credentials;
mod error;
pub mod hosts;
pub mod manifests;
mod pipe;
pub mod progress;
pub mod pull;
pub mod push;
pub mod search;

pub use berth_oci::{ImageStore, KnownLayer};
pub use client::{Client, ClientOptions};
pub use copy::RegistryCopy;
pub use error::{ClientError, RegistryError, RegistryErrorEntry};
pub use progress::{LayerEvent, NoProgress, Progress};
pub use pull::{PullOptions, PulledImage, PulledIndex};
pub use push::{PushOptions, PushedImage};
pub use search::SearchResult;
