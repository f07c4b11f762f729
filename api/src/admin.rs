//! The admin endpoints of processes without a REST API (the proxies):
//! `GET /healthz` (200 while the process serves), `GET /readyz` (200 when the
//! given check passes, 503 with its reason otherwise) and `GET /metrics`
//! (Prometheus text from the process-wide recorder of
//! [`telemetry::prometheus`](crate::telemetry::prometheus)).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::server::{ApiServer, BindError, serve};

/// Whether the process is ready; `Err` carries the reason it is not.
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The admin routes, answering `/readyz` from `ready`.
pub fn router(ready: ReadinessCheck) -> Router {
    // Installed before serving, so metrics recorded from now on are kept.
    let _ = crate::telemetry::prometheus();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ready)
}

/// Binds `addr` (port 0 picks one) and serves [`router`].
///
/// # Errors
/// [`BindError`] when `addr` cannot be bound.
pub async fn start(addr: SocketAddr, ready: ReadinessCheck) -> Result<ApiServer, BindError> {
    let server = serve(addr, router(ready)).await?;
    tracing::info!(admin_addr = %server.local_addr(), "admin server listening");
    Ok(server)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ready): State<ReadinessCheck>) -> (StatusCode, String) {
    match ready() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::prometheus().render(),
    )
}
