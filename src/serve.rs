//! `/healthz`, `/readyz` and `/metrics` for every long-running role.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// Whether a role can do its work now (e.g. its broker connection is up).
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// Readiness that follows a flag the role sets.
pub fn flag(ready: Arc<AtomicBool>) -> Readiness {
    Arc::new(move || ready.load(Ordering::Relaxed))
}

#[derive(Clone)]
struct Probe {
    registry: Arc<Registry>,
    ready: Readiness,
}

/// Binds `addr` now (so a taken port fails at start) and serves until `shutdown`.
/// `routes` are the role's own pages and APIs, served beside the probes.
pub async fn bind(
    addr: SocketAddr,
    registry: Registry,
    ready: Readiness,
    routes: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<impl Future<Output = ()> + Send> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (PICKET_LISTEN): {e}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %bound, "serving /healthz /readyz /metrics");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Probe { registry: Arc::new(registry), ready })
        .merge(routes);
    Ok(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "health endpoint failed");
        }
    })
}

async fn readyz(State(probe): State<Probe>) -> impl IntoResponse {
    if (probe.ready)() { (StatusCode::OK, "ready\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
}

async fn metrics(State(probe): State<Probe>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &probe.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
