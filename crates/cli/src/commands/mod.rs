//! One module per command. Each has its clap `Args` and a `run` function.

pub mod history;
pub mod images;
pub mod inspect;
pub mod prune;
pub mod rmi;
pub mod system;
pub mod tag;
