//! One module per command. Each has its clap `Args` and a `run` function.

pub mod build;
pub mod container;
pub mod copy;
pub mod history;
pub mod images;
pub mod import;
pub mod inspect;
pub mod load;
pub mod login;
pub mod prune;
pub mod pull;
pub mod push;
pub mod registry;
pub mod rmi;
pub mod save;
pub mod search;
pub mod system;
pub mod tag;
