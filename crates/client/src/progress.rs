//! Progress events, so the CLI can draw bars on a terminal or print docker's
//! lines when piped. Layers are identified by docker's 12-hex short IDs
//! (blob digest when pulling, diff ID when pushing).

/// What happened to one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerEvent<'a> {
    /// Queued: `total` bytes to move.
    Waiting { total: u64 },
    /// `done` of `total` bytes moved.
    Advance { done: u64, total: u64 },
    /// A transient failure; the transfer goes on (resuming where possible).
    Retrying { attempt: u32, reason: &'a str },
    /// Finished, with docker's status text (`Pull complete`, `Already exists`,
    /// `Pushed`, `Layer already exists`, `Mounted from library/busybox`).
    Done(&'a str),
}

/// Receives progress events; called from several tasks at once.
pub trait Progress: Send + Sync {
    fn layer(&self, id: &str, event: LayerEvent<'_>);
}

/// Ignores every event.
pub struct NoProgress;

impl Progress for NoProgress {
    fn layer(&self, _id: &str, _event: LayerEvent<'_>) {}
}
