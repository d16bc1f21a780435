//! The daemon's HTTP endpoints: `/metrics`, `/-/healthy`, `/-/ready`, `POST /-/reload`
//! (Prometheus conventions). Shared by the prober daemon and the monitor.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use super::{ReloadError, ReloadSummary};

/// A reload request; the answer is a summary or why the new configuration was rejected.
pub type ReloadRequest = oneshot::Sender<Result<ReloadSummary, ReloadError>>;

/// What the endpoints serve.
#[derive(Clone)]
pub struct Endpoints {
    pub registry: Arc<Registry>,
    /// `/-/ready` answers 200 once this is set.
    pub ready: Arc<AtomicBool>,
    /// Where `POST /-/reload` sends its request; None: reload is not supported (404).
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
}

/// Serves the endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    endpoints: Endpoints,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .with_state(endpoints);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// OpenMetrics when the scraper asks for it (Prometheus does), the classic text format otherwise.
async fn metrics(State(ep): State<Endpoints>, headers: HeaderMap) -> impl IntoResponse {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    // Thousands of targets make tens of MB of text: encode off the runtime's thread (which
    // keeps probing on time meanwhile) and send it on in pieces as it is encoded.
    let content_type = if openmetrics {
        crate::metrics::OPENMETRICS_CONTENT_TYPE
    } else {
        crate::metrics::PROMETHEUS_CONTENT_TYPE
    };
    // Unbounded: the encoder holds the metric families' locks while it writes, so it must
    // never wait for the runtime's thread, which may be waiting for one of those locks.
    // Pieces go out about as fast as they come; at worst they add up to the whole text.
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let registry = ep.registry.clone();
    // On a thread of its own, not the blocking pool, where it could wait behind database
    // work. A scraper that hangs up drops the receiver, and the encoder stops.
    let encoder = std::thread::Builder::new()
        .name("metrics-encoder".into())
        .spawn(move || {
            crate::metrics::encode_in_chunks(&registry, openmetrics, |piece| tx.send(piece).is_ok())
        });
    if let Err(e) = encoder {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            axum::body::Body::from(format!("cannot start the metrics encoder: {e}\n")),
        );
    }
    let pieces = futures_util::stream::unfold(rx, |mut rx| async move {
        let piece = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(piece), rx))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        axum::body::Body::from_stream(pieces),
    )
}

async fn healthy() -> &'static str {
    "locus is Healthy.\n"
}

async fn ready(State(ep): State<Endpoints>) -> (StatusCode, &'static str) {
    if ep.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "locus is Ready.\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "locus is not ready.\n")
    }
}

async fn reload(State(ep): State<Endpoints>) -> (StatusCode, String) {
    let Some(tx) = ep.reload else {
        return (
            StatusCode::NOT_FOUND,
            "reload is not supported here\n".into(),
        );
    };
    let (answer, reply) = oneshot::channel();
    if tx.send(answer).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_string(),
        );
    }
    match reply.await {
        Ok(Ok(summary)) => (StatusCode::OK, format!("{summary}\n")),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_string(),
        ),
    }
}
