//! The sidecar's admin server (`--admin-addr`): `GET /healthz`, `GET /readyz`
//! and `GET /metrics`.
//!
//! - `/healthz`: 200 while the process serves HTTP at all.
//! - `/readyz`: 200 once a sidecar config is applied and, with mTLS on, a
//!   workload certificate is present; 503 with the reason otherwise (see
//!   [`Readiness`]).
//! - `/metrics`: Prometheus text from the process-wide recorder that
//!   [`meridian_telemetry::prometheus`] installs on first use, shared
//!   with every other server in the process.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use meridian_telemetry::HttpServer;

use crate::error::DataplaneError;
use crate::sidecar::Readiness;

/// A running admin server.
pub struct AdminServer {
    server: HttpServer,
}

fn check(readiness: Readiness) -> meridian_telemetry::admin::ReadinessCheck {
    Arc::new(move || readiness.check().map_err(str::to_owned))
}

impl AdminServer {
    /// Binds `addr` (port 0 picks one) and serves the admin routes, answering
    /// `/readyz` from `readiness`.
    ///
    /// # Errors
    /// [`DataplaneError::AdminBind`] when `addr` cannot be bound.
    pub async fn start(addr: SocketAddr, readiness: Readiness) -> Result<Self, DataplaneError> {
        let server = meridian_telemetry::admin::start(addr, check(readiness))
            .await
            .map_err(|e| DataplaneError::AdminBind {
                addr: e.addr,
                source: e.source,
            })?;
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
    meridian_telemetry::admin::router(check(readiness))
}
