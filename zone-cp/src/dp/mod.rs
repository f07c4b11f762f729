//! The data-plane side of a zone control plane: the config stream its proxies
//! (sidecars, zone ingresses, zone egresses) connect to (`--dp-addr`).
//!
//! ```text
//!  store ──changes_since──▶ reconcile ──▶ engine: ZoneState + indexes ──▶ per-proxy config (watch)
//!                              ▲ connect / release                               │
//!                           registry ◀── claim ── service (one session per stream) ◀┘
//!  proxy ◀── Config / EndpointUpdate / Certificate ── service
//!        ── Hello / Ack / Nack / CSR ──▶ registers the proxy's resource in the store
//! ```
//!
//! - [`state`]: the zone's resources typed once per change, with indexes.
//! - [`compute`]: configs from the state (policy matching, endpoints, SNI names).
//! - [`engine`]: incremental computation: which proxies a change reaches.
//! - [`registry`]: connected proxies' names; connections go to the reconciler.
//! - [`reconcile`]: the task feeding store changes and connections to the engine.
//! - [`mesh_services`]: the MeshService generator the reconciler runs.
//! - [`service`]: the gRPC service; registration, ACK/NACK, endpoint updates,
//!   CSR signing.
//!
//! TLS with a given or generated certificate (proxies dial `https://` with
//! `--zone-cp-ca`), or plain HTTP/2 for loopback addresses. Proxies are not
//! authenticated yet (no data-plane tokens): bind `--dp-addr` to an address
//! only the zone's proxies can reach.

pub mod compute;
pub mod destinations;
pub mod engine;
#[cfg(test)]
mod equivalence;
pub mod mesh_services;
pub mod reconcile;
pub mod registry;
pub mod service;
pub mod state;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;

use meridian_identity::serving::ServingIdentity;
use meridian_model::ResourceKind;
use meridian_proto::dp::dataplane_config_server::DataplaneConfigServer;
use meridian_store::{ListQuery, Precondition, Store, StoreError, list_all};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use engine::{Engine, Reason};
pub use registry::Registry;
pub use service::{DpService, REGISTERED_BY_STREAM, REGISTERED_LABEL, registered_by};
pub use state::ZoneState;
pub use stats::{DpStats, Part};

/// A running data-plane server.
pub struct DpServer {
    local_addr: SocketAddr,
    service: DpService,
    stats: Arc<DpStats>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    reconciler: JoinHandle<()>,
}

/// Why the data-plane server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DpServerError {
    /// Binding the address failed.
    #[error("binding the data-plane address {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error("data-plane server TLS: {0}")]
    Tls(#[from] tonic::transport::Error),
    /// Purging registrations left by a previous run failed.
    #[error("removing stale proxy registrations: {0}")]
    Store(#[from] StoreError),
}

/// Deletes proxy registrations of `zone` left from before a restart: their
/// streams are gone, and live proxies re-register on reconnect.
async fn purge_stale(
    store: &dyn Store,
    zone: &str,
    registered_by: &str,
) -> Result<usize, StoreError> {
    let mut purged = 0;
    for kind in [
        ResourceKind::Dataplane,
        ResourceKind::ZoneIngress,
        ResourceKind::ZoneEgress,
    ] {
        let mut query = ListQuery::all(kind);
        query.zone = Some(zone.to_owned());
        query
            .labels
            .insert(REGISTERED_LABEL.to_owned(), registered_by.to_owned());
        for r in list_all(store, query).await? {
            match store.delete(&r.key, Precondition::Version(r.version)).await {
                Ok(_) => purged += 1,
                Err(StoreError::NotFound(_) | StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(purged)
}

impl DpServer {
    /// Binds `addr` and serves the proxies of `zone` from `store`. `replica` is this
    /// zone CP's Raft node id when it runs several replicas: registrations are
    /// labelled with it, and only its own are purged at start. A generated
    /// MeshService whose Dataplanes are gone is deleted after
    /// `mesh_service_grace`.
    pub async fn start(
        addr: SocketAddr,
        tls: Option<ServingIdentity>,
        store: Arc<dyn Store>,
        zone: String,
        replica: Option<u64>,
        mesh_service_grace: std::time::Duration,
    ) -> Result<DpServer, DpServerError> {
        let registered_by = registered_by(replica);
        let purged = purge_stale(store.as_ref(), &zone, &registered_by).await?;
        if purged > 0 {
            tracing::info!(
                purged,
                "removed proxy registrations left by the previous run"
            );
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| DpServerError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| DpServerError::Bind { addr, source })?;
        let (registry, events) = Registry::new();
        let (ca_tx, ca) = watch::channel(Arc::default());
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(DpStats::default());
        let reconciler = tokio::spawn(reconcile::run(
            store.clone(),
            zone.clone(),
            events,
            ca_tx,
            stats.clone(),
            mesh_service_grace,
            stop_rx.clone(),
        ));
        let service = DpService::new(store, zone, registry, ca, stats.clone(), registered_by);
        let grpc = DataplaneConfigServer::new(service.clone());
        let mut stop_server = stop_rx;
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            let identity = tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem);
            builder =
                builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
        }
        let server = tokio::spawn(async move {
            let result = builder
                // A proxy holds one config stream per connection.
                .max_concurrent_streams(Some(8))
                .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
                .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
                .add_service(grpc)
                .serve_with_incoming_shutdown(
                    meridian_grpc_client::nodelay_incoming(listener),
                    async move {
                        let _ = stop_server.wait_for(|s| *s).await;
                    },
                )
                .await;
            if let Err(error) = result {
                tracing::error!(%error, "data-plane server stopped");
            }
        });
        tracing::info!(dp_addr = %local_addr, tls = tls.is_some(), "data-plane config server listening");
        Ok(DpServer {
            local_addr,
            service,
            stats,
            stop,
            server,
            reconciler,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What the server has computed and pushed, and the revision it reached.
    pub fn stats(&self) -> Arc<DpStats> {
        self.stats.clone()
    }

    /// Ends every proxy session (deregistering each), then stops serving.
    pub async fn shutdown(self) {
        self.service.shutdown().await;
        let _ = self.stop.send(true);
        let _ = self.server.await;
        let _ = self.reconciler.await;
    }
}
