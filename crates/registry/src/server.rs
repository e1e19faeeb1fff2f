//! Serving the API on a listener until told to stop: the `/v2/` router plus
//! operations endpoints (`/healthz`, `/readyz`, `/metrics`), request logs
//! and metrics around every request.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::auth::Auth;
use crate::gc::GcOptions;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// How the HTTP application is put together.
#[derive(Default)]
pub struct Options {
    /// Docker Hub's accounts and permissions; `None`: an open registry.
    pub auth: Option<Auth>,
    /// Periodic garbage collection: options and interval.
    pub gc: Option<(GcOptions, Duration)>,
    /// Served over TLS (the token realm is then `https://`).
    pub tls: bool,
    /// The website's settings.
    pub web: crate::web::WebConfig,
}

/// The whole HTTP application for `registry`; with `auth`, Docker Hub's
/// accounts and permissions apply, without it the registry is open.
pub fn app(registry: Registry, auth: Option<Auth>) -> Router {
    build(registry, Options { auth, ..Options::default() })
}

/// The application with every option. With `gc`, it must be called inside
/// a tokio runtime (the collection runs as a background task).
pub fn build(registry: Registry, options: Options) -> Router {
    let scheme = if options.tls { "https" } else { "http" };
    let hub = crate::hub::Hub::new(registry.metadata().clone());
    let metrics = Metrics::default();
    let state = Arc::new(AppState {
        registry,
        hub,
        metrics,
        auth: options.auth,
        scheme,
        web: crate::web::WebState::new(options.web),
        images: Default::default(),
    });
    if let Some((gc, every)) = options.gc {
        let for_gc = state.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match for_gc.registry.collect_garbage(&gc).await {
                    Ok(r) => tracing::info!(
                        blobs = r.blobs_deleted.len(),
                        bytes = r.bytes_reclaimed,
                        manifests = r.manifests_deleted.len(),
                        uploads = r.uploads_expired,
                        "garbage collection"
                    ),
                    // Replicas share the schedule; one of them collects.
                    Err(crate::Error::CollectionRunning) => {
                        tracing::info!("garbage collection skipped: another replica is running it")
                    }
                    Err(e) => tracing::error!(error = %e, "garbage collection failed"),
                }
            }
        });
    }
    router(state)
}

fn router(state: Arc<AppState>) -> Router {
    let ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    api::router(state.clone())
        .merge(ops)
        .merge(crate::web::router(state.clone()))
        .layer(axum::middleware::from_fn_with_state(state, observe))
}

/// Serves `app` on `listener` until `shutdown` completes; in-flight
/// requests are allowed to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address feeds the website's login throttle.
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

fn declared_length(headers: &axum::http::HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Logs and counts every request.
async fn observe(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    // HTTP/2 carries the host in the URI (`:authority`), not a Host header;
    // the token realm is built from Host, so give every request one.
    if !req.headers().contains_key(header::HOST)
        && let Some(authority) = req.uri().authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(header::HOST, v);
    }
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let received = declared_length(req.headers());
    let res = next.run(req).await;
    let took = start.elapsed();
    let status = res.status().as_u16();
    let sent = declared_length(res.headers());
    state.metrics.observe(method.as_str(), status, received, sent, took);
    tracing::info!(
        target: "berth_registry::access",
        method = %method,
        path = %path,
        status,
        received,
        sent,
        micros = took.as_micros() as u64,
        "request"
    );
    res
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when both backends answer.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let reg = &state.registry;
    let meta_ok = reg.metadata().repository_exists("readyz/probe").await.is_ok();
    let blobs_ok = reg.blob_store().upload_list().await.is_ok();
    let (status, text) = if meta_ok && blobs_ok {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    };
    let mut res = Response::new(Body::from(text));
    *res.status_mut() = status;
    res
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut text = state.metrics.render();
    // Walking storage is not free: the figures are refreshed at most once a minute.
    let cached = state.metrics.storage_snapshot(Duration::from_secs(60));
    let storage = match cached {
        Some(s) => Some(s),
        None => match state.registry.blob_store().list().await {
            Ok(blobs) => {
                let s = (blobs.len() as u64, blobs.iter().map(|b| b.size).sum::<u64>());
                state.metrics.set_storage(s);
                Some(s)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list blobs for metrics");
                None
            }
        },
    };
    if let Some((count, bytes)) = storage {
        text.push_str(&crate::metrics::render_storage(count, bytes));
    }
    let mut res = Response::new(Body::from(text));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    res
}

/// Serves `app` over TLS on `listener` until `shutdown` completes; in-flight
/// requests are allowed to finish. HTTP/2 is offered through ALPN.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(
            app.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer))),
        );
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// Reads a PEM certificate chain and private key into a server configuration.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad =
        |what: &std::path::Path, e: String| ServeError::Tls(format!("{}: {e}", what.display()));
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(cert, "no certificate found".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Worded as Docker (Go) words it, so users recognise it.
    #[error("listen tcp {addr}: bind: {}", bind_reason(.reason))]
    Bind { addr: String, reason: std::io::Error },
    #[error("invalid listen address {0:?} (want HOST:PORT)")]
    Addr(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn bind_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => "address already in use".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::AddrNotAvailable => "cannot assign requested address".into(),
        _ => e.to_string(),
    }
}

/// Binds `addr` (`HOST:PORT`).
pub async fn bind(addr: &str) -> Result<TcpListener, ServeError> {
    let parsed: Vec<std::net::SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|_| ServeError::Addr(addr.to_owned()))?
        .collect();
    let first = parsed.first().ok_or_else(|| ServeError::Addr(addr.to_owned()))?;
    TcpListener::bind(first)
        .await
        .map_err(|reason| ServeError::Bind { addr: addr.to_owned(), reason })
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
