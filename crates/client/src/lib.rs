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
//! - [`local`]: the small traits through which a pull writes into, and a push
//!   reads from, wherever images are kept locally. This crate never sees the
//!   store's internals; the caller glues.
//!
//! Contract on digests: every byte that leaves this crate towards a
//! [`local::ImageStore`] has been verified against the digest that named it
//! (blob digest while streaming, layer diff ID by decompressing in the same
//! pass) before the store's `write_blob` returns successfully.

pub mod auth;
mod client;
pub mod compress;
pub mod credentials;
mod error;
pub mod hosts;
pub mod local;
pub mod manifests;
mod pipe;
pub mod progress;
pub mod pull;
pub mod push;
pub mod search;

pub use client::{Client, ClientOptions};
pub use error::{ClientError, RegistryError, RegistryErrorEntry};
pub use local::{ImageStore, KnownLayer};
pub use progress::{LayerEvent, NoProgress, Progress};
pub use pull::{PullOptions, PulledImage, PulledIndex};
pub use push::{PushOptions, PushedImage};
pub use search::SearchResult;
