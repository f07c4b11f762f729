//! The admin endpoints of processes without a REST API (the proxies):
//! `GET /healthz` (200 while the process serves), `GET /readyz` (200 when the
//! given check passes, 503 with its reason otherwise) and `GET /metrics`
//! (Prometheus text from the process-wide recorder of [`prometheus`]).
//!
//! Invariant: [`router`] installs the recorder before it serves anything, so every
//! metric recorded after the admin server starts is exported.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::recorder::{metrics_response, prometheus};
use crate::server::{BindError, HttpServer, serve};

/// Whether the process is ready; `Err` carries the reason it is not.
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The admin routes, answering `/readyz` from `ready`.
pub fn router(ready: ReadinessCheck) -> Router {
    // Installed before serving, so metrics recorded from now on are kept.
    let _ = prometheus();
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
pub async fn start(addr: SocketAddr, ready: ReadinessCheck) -> Result<HttpServer, BindError> {
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
    metrics_response(&prometheus())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).expect("a request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readyz_follows_the_check_and_healthz_always_answers() {
        let ready = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ready);
        let router = router(Arc::new(move || {
            if flag.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("no config yet".to_owned())
            }
        }));
        assert_eq!(
            get(&router, "/healthz").await,
            (StatusCode::OK, "ok\n".to_owned())
        );
        assert_eq!(
            get(&router, "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: no config yet\n".to_owned()
            )
        );
        ready.store(true, Ordering::SeqCst);
        assert_eq!(
            get(&router, "/readyz").await,
            (StatusCode::OK, "ready\n".to_owned())
        );
        metrics::counter!("meridian_telemetry_admin_test_total").increment(1);
        let (status, text) = get(&router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.contains("meridian_telemetry_admin_test_total 1"),
            "{text}"
        );
    }
}
