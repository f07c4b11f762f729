//! [`SniProxy`]: the accept loop of a zone ingress or egress.
//!
//! One task owns the listener, the config receiver and the current route table.
//! When the config changes it builds a new table (carrying each name's balancer over); it also
//! checks for a change before handing each accepted connection its table, so a
//! connection accepted after a config was published is routed by that config.
//! Each connection runs in its own task with the table current at its accept.
//!
//! [`SniProxy::shutdown`] stops accepting and closes the connections in flight
//! (a zone proxy's connections can be idle for an hour: draining is the callers'
//! business, by stopping traffic first).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meridian_proxy_api::ProxyConfig;
use meridian_relay::{ConnectionLimiter, RelayConfig};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::connection::{self, Shared};
use crate::routes::RouteTable;
use crate::settings::SniProxySettings;
use crate::telemetry::{ACCEPTED, ROUTE_UPDATES, Rejection};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does
/// not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Why an [`SniProxy`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener's address could not be read.
    #[error("reading the local address of the zone proxy listener: {0}")]
    LocalAddr(#[source] io::Error),
}

/// A running SNI router.
#[derive(Debug)]
pub struct SniProxy {
    local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl SniProxy {
    /// Starts routing the connections of `listener` by the latest config of `config`
    /// (`None` until the first arrives: every connection is then refused with
    /// reason `no_config`).
    ///
    /// # Errors
    /// [`StartError::LocalAddr`] when the listener's address cannot be read.
    pub fn start(
        listener: TcpListener,
        config: watch::Receiver<Option<Arc<ProxyConfig>>>,
        settings: SniProxySettings,
    ) -> Result<SniProxy, StartError> {
        let local_addr = listener.local_addr().map_err(StartError::LocalAddr)?;
        let limiter = ConnectionLimiter::new(settings.max_connections);
        let shared = Arc::new(Shared {
            relay: RelayConfig::with_idle_timeout(settings.idle_timeout),
            settings,
        });
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, config, shared, limiter, stop_rx));
        tracing::info!(%local_addr, "zone proxy listening");
        Ok(SniProxy {
            local_addr,
            stop,
            task,
        })
    }

    /// The address the proxy accepts connections on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes the connections in flight and waits for all of it.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the zone proxy accept loop failed");
        }
    }
}

/// The config receiver and the table built from its latest value.
struct Routes {
    config: watch::Receiver<Option<Arc<ProxyConfig>>>,
    /// False once the sender is gone: the last table then stays in force.
    open: bool,
    table: Arc<RouteTable>,
}

impl Routes {
    fn new(config: watch::Receiver<Option<Arc<ProxyConfig>>>) -> Self {
        let mut routes = Routes {
            config,
            open: true,
            table: Arc::new(RouteTable::empty()),
        };
        routes.rebuild();
        routes
    }

    /// Rebuilds the table if the config changed since the last look.
    fn refresh(&mut self) {
        if self.open && self.config.has_changed().unwrap_or(false) {
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        let latest = self.config.borrow_and_update().clone();
        if let Some(config) = latest {
            self.table = Arc::new(RouteTable::build(&config, &self.table));
            metrics::counter!(ROUTE_UPDATES).increment(1);
            tracing::info!(routes = self.table.len(), "zone proxy routes updated");
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: watch::Receiver<Option<Arc<ProxyConfig>>>,
    shared: Arc<Shared>,
    limiter: ConnectionLimiter,
    mut stop: oneshot::Receiver<()>,
) {
    let mut routes = Routes::new(config);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            changed = routes.config.changed(), if routes.open => match changed {
                Ok(()) => routes.rebuild(),
                Err(_) => {
                    tracing::info!("config source closed; keeping the last routes");
                    routes.open = false;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(%error, "a zone proxy connection task failed");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    metrics::counter!(ACCEPTED).increment(1);
                    // Small TLS records (handshake, short requests) must not wait
                    // for Nagle and the peer's delayed ACK: ~40 ms per exchange.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
                    }
                    let Some(permit) = limiter.try_acquire() else {
                        tracing::info!(%peer, reason = "connection_limit", max = ?limiter.max(), "connection closed: connection limit reached");
                        Rejection::ConnectionLimit.count();
                        continue;
                    };
                    routes.refresh();
                    let table = Arc::clone(&routes.table);
                    connections.spawn(connection::serve(stream, peer, table, Arc::clone(&shared), permit));
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    connections.shutdown().await;
    tracing::info!("zone proxy stopped");
}
