//! [`AdminServer`]: the zone proxies' admin HTTP endpoints.
//!
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 once a config has arrived from the zone control plane,
//!   503 before (the proxy refuses every connection until then).
//! - `GET /metrics`: the process's Prometheus metrics (the recorder of
//!   [`meridian_telemetry::prometheus`], installed on first use).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use meridian_proxy_api::ProxyConfig;
use meridian_telemetry::{BindError, HttpServer};
use tokio::sync::watch;

/// A running admin server.
pub struct AdminServer {
    server: HttpServer,
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
        let server = meridian_telemetry::admin::start(addr, check(config)).await?;
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

fn check(
    config: watch::Receiver<Option<Arc<ProxyConfig>>>,
) -> meridian_telemetry::admin::ReadinessCheck {
    Arc::new(move || match config.borrow().is_some() {
        true => Ok(()),
        false => Err("waiting for the first config from the zone control plane".to_owned()),
    })
}

/// The admin routes, ready once `config` holds a config.
pub fn router(config: watch::Receiver<Option<Arc<ProxyConfig>>>) -> Router {
    meridian_telemetry::admin::router(check(config))
}
