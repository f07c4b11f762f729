//! [`AdminServer`]: the zone proxies' admin HTTP endpoints.
//!
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 once a config has arrived from the zone control plane,
//!   503 before (the proxy refuses every connection until then).
//! - `GET /metrics`: the process's Prometheus metrics (the recorder of
//!   [`meridian_api::telemetry::prometheus`], installed on first use).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use meridian_api::{ApiServer, BindError};
use meridian_proxy_api::ProxyConfig;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

#[derive(Clone)]
struct AdminState {
    config: watch::Receiver<Option<Arc<ProxyConfig>>>,
    metrics: PrometheusHandle,
}

/// A running admin server.
pub struct AdminServer {
    server: ApiServer,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("local_addr", &self.server.local_addr())
            .finish()
    }
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port) and serves the admin endpoints,
    /// ready once `config` holds a config.
    ///
    /// # Errors
    /// [`BindError`] when `addr` cannot be bound.
    pub async fn start(
        addr: SocketAddr,
        config: watch::Receiver<Option<Arc<ProxyConfig>>>,
    ) -> Result<AdminServer, BindError> {
        let server = meridian_api::serve(addr, router(config)).await?;
        tracing::info!(admin_addr = %server.local_addr(), "zone proxy admin server listening");
        Ok(AdminServer { server })
    }

    /// The address the admin server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops accepting requests and lets in-flight ones finish.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.server.shutdown().await
    }
}

/// The admin routes, ready once `config` holds a config.
pub fn router(config: watch::Receiver<Option<Arc<ProxyConfig>>>) -> Router {
    let state = AdminState {
        config,
        metrics: meridian_api::telemetry::prometheus(),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.config.borrow().is_some() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first config from the zone control plane\n",
        )
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
