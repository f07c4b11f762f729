//! The sidecar's admin server (`--admin-addr`): `GET /healthz`, `GET /readyz`
//! and `GET /metrics`.
//!
//! - `/healthz`: 200 while the process serves HTTP at all.
//! - `/readyz`: 200 once a sidecar config is applied and, with mTLS on, a
//!   workload certificate is present; 503 with the reason otherwise (see
//!   [`Readiness`]).
//! - `/metrics`: Prometheus text from the process-wide recorder that
//!   [`meridian_api::telemetry::prometheus`] installs on first use, shared
//!   with every other server in the process.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use meridian_api::ApiServer;

use crate::error::DataplaneError;
use crate::sidecar::Readiness;

/// A running admin server.
pub struct AdminServer {
    server: ApiServer,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks one) and serves the admin routes, answering
    /// `/readyz` from `readiness`. Installs the Prometheus recorder if no
    /// server in the process has yet.
    ///
    /// # Errors
    /// [`DataplaneError::AdminBind`] when `addr` cannot be bound.
    pub async fn start(addr: SocketAddr, readiness: Readiness) -> Result<Self, DataplaneError> {
        // Installed before serving, so metrics recorded from now on are kept.
        let _ = meridian_api::telemetry::prometheus();
        let server = meridian_api::serve(addr, router(readiness))
            .await
            .map_err(|e| DataplaneError::AdminBind {
                addr: e.addr,
                source: e.source,
            })?;
        tracing::info!(addr = %server.local_addr(), "admin server listening");
        Ok(Self { server })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops the server after in-flight requests.
    pub async fn shutdown(self) {
        if let Err(e) = self.server.shutdown().await {
            tracing::warn!(error = %e, "the admin server ended with an error");
        }
    }
}

/// The admin routes.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, String) {
    match readiness.check() {
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
        meridian_api::telemetry::prometheus().render(),
    )
}
