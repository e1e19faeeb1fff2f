//! Serving the API on a listener until told to stop.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::registry::Registry;

/// Serves `registry` on `listener` until `shutdown` completes; in-flight
/// requests are allowed to finish.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Arc::new(AppState { registry });
    let app = api::router(state);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
