//! `/healthz`, `/readyz` and `/metrics` for every long-running role.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::exposition;

/// Whether a role can do its work now: `Ok` with what `/readyz` adds to
/// `ready` (the broker node in use, say), `Err` with what is missing.
pub type Readiness = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Readiness that follows a flag the role sets.
pub fn flag(ready: Arc<AtomicBool>) -> Readiness {
    Arc::new(move || if ready.load(Ordering::Relaxed) { Ok(String::new()) } else { Err(String::new()) })
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

/// `ready` or `not ready`, then the role's detail on the same line.
async fn readyz(State(probe): State<Probe>) -> impl IntoResponse {
    let line = |word: &str, detail: String| {
        if detail.is_empty() { format!("{word}\n") } else { format!("{word}: {detail}\n") }
    };
    match (probe.ready)() {
        Ok(detail) => (StatusCode::OK, line("ready", detail)),
        Err(missing) => (StatusCode::SERVICE_UNAVAILABLE, line("not ready", missing)),
    }
}

async fn metrics(State(probe): State<Probe>, headers: HeaderMap) -> impl IntoResponse {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &probe.registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    if exposition::wants_openmetrics(&headers) {
        ([(header::CONTENT_TYPE, exposition::OPENMETRICS)], text).into_response()
    } else {
        ([(header::CONTENT_TYPE, exposition::PROMETHEUS_TEXT)], exposition::to_prometheus_text(&text)).into_response()
    }
}
