//! The zone control plane (`meridian zone-cp`).
//!
//! A zone control plane keeps the zone's copy of the mesh in its own store and serves
//! it over the same REST API as global ([`meridian_api`] in [`Role::Zone`]): reads of
//! every path, writes of the zone's own data planes, ingresses and egresses only
//! (stamped with the zone's name and `kuma.io/origin: zone`). Syncing with global
//! over KDS and serving the zone's proxies are wired around [`ZoneCp`] by the
//! `meridian zone-cp` command.
//!
//! [`ZoneCp::start`] makes sure the zone's own Zone resource exists (zone-owned
//! resources need their owner) and binds the REST API.

use std::net::SocketAddr;
use std::sync::Arc;

use meridian_api::auth::{AdminAuth, ReadTokens, TokenOrigin};
use meridian_api::{ApiServer, AppState, BindError, Role, telemetry};
use meridian_model::ResourceKind;
use meridian_store::{NewResource, Precondition, ResourceKey, Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod dp;
pub mod kds;
pub mod replicas;

/// How a zone control plane runs.
#[derive(Debug, Clone)]
pub struct ZoneCpConfig {
    /// The zone's name (a DNS label, as for meshes).
    pub zone: String,
    /// Where the REST API listens (port 0 picks a free port).
    pub api_addr: SocketAddr,
    /// The admin token; `None` uses the one generated at first start.
    pub admin_token: Option<String>,
    /// Whether reads need a token too (by default only writes do).
    pub reads_need_token: bool,
    /// Read-only tokens (`--read-token-file`): accepted for GET and HEAD, refused
    /// with 403 on writes.
    pub read_tokens: ReadTokens,
    /// How to reach global; `None` runs the zone on its own (no KDS).
    pub kds: Option<kds::KdsClientConfig>,
    /// Where proxies get their config (`--dp-addr`); `None` serves no proxies.
    pub dp_addr: Option<SocketAddr>,
    /// The data-plane server's TLS certificate; `None` serves plain HTTP/2
    /// (for loopback addresses).
    pub dp_tls: Option<meridian_identity::serving::ServingIdentity>,
    /// Running as one of several replicas: this replica's Raft node id, its
    /// leadership signal (KDS runs only while it leads) and the group's admin.
    pub replica: Option<Replica>,
    /// How long a generated MeshService outlives its last Dataplane (Kuma's
    /// deletion grace period; default 1h).
    pub mesh_service_grace: std::time::Duration,
}

/// What a replica of a multi-replica zone CP needs besides its store.
#[derive(Clone)]
pub struct Replica {
    /// Its Raft node id.
    pub id: u64,
    /// `Some(term)` while it leads with a quorum.
    pub leadership: watch::Receiver<Option<u64>>,
    /// The group, for `/raft`.
    pub admin: meridian_api::raft::SharedRaftAdmin,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// The replica backed by `store`'s Raft group.
    pub fn of(store: &meridian_embedded_store::EmbeddedStore) -> Self {
        Replica {
            id: store.node_id(),
            leadership: store.leadership(),
            admin: std::sync::Arc::new(replicas::EmbeddedRaftAdmin(store.clone())),
        }
    }
}

impl ZoneCpConfig {
    /// The defaults for `zone`: the API on 127.0.0.1:5682, a generated admin token,
    /// reads open.
    pub fn new(zone: impl Into<String>) -> Self {
        ZoneCpConfig {
            zone: zone.into(),
            api_addr: SocketAddr::from(([127, 0, 0, 1], 5682)),
            admin_token: None,
            reads_need_token: false,
            read_tokens: ReadTokens::default(),
            kds: None,
            dp_addr: Some(SocketAddr::from(([127, 0, 0, 1], 5678))),
            dp_tls: None,
            replica: None,
            mesh_service_grace: dp::mesh_services::DEFAULT_GRACE,
        }
    }
}

/// Why the zone control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The zone name is not a valid name.
    #[error("invalid zone name {zone:?}: {reason}")]
    InvalidZone {
        /// The name given.
        zone: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The API address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The data-plane server could not start.
    #[error(transparent)]
    Dp(#[from] dp::DpServerError),
    /// The store failed while setting up the admin token or the zone's Zone resource.
    #[error("initialising the store: {0}")]
    Store(#[from] StoreError),
}

/// A running zone control plane.
pub struct ZoneCp {
    zone: String,
    token_origin: TokenOrigin,
    api: ApiServer,
    stop_kds: watch::Sender<bool>,
    kds: Option<JoinHandle<()>>,
    dp: Option<dp::DpServer>,
}

impl ZoneCp {
    /// Makes sure the zone's Zone resource exists in `store`, then binds the API and
    /// starts serving the zone's copy.
    pub async fn start(config: ZoneCpConfig, store: Arc<dyn Store>) -> Result<Self, StartError> {
        meridian_model::validate_mesh_name(&config.zone).map_err(|reason| {
            StartError::InvalidZone {
                zone: config.zone.clone(),
                reason,
            }
        })?;
        ensure_own_zone(store.as_ref(), &config.zone).await?;
        let (auth, token_origin) = AdminAuth::init(
            store.as_ref(),
            config.admin_token.as_deref(),
            config.reads_need_token,
        )
        .await?;
        let auth = auth.with_read_tokens(config.read_tokens.clone());
        let state = AppState {
            store: store.clone(),
            metrics: telemetry::prometheus(),
            role: Role::Zone {
                name: config.zone.clone(),
            },
            zone_tokens: None,
            raft: config.replica.as_ref().map(|r| r.admin.clone()),
        };
        let api = meridian_api::serve(config.api_addr, meridian_api::router(state, auth)).await?;
        tracing::info!(zone = %config.zone, api_addr = %api.local_addr(), "zone control plane REST API listening");
        let dp = match config.dp_addr {
            Some(addr) => {
                let tls = config.dp_tls.clone();
                let replica = config.replica.as_ref().map(|r| r.id);
                Some(
                    dp::DpServer::start(
                        addr,
                        tls,
                        store.clone(),
                        config.zone.clone(),
                        replica,
                        config.mesh_service_grace,
                    )
                    .await?,
                )
            }
            None => None,
        };
        let (stop_kds, stop_rx) = watch::channel(false);
        // KDS runs beside the API: the zone serves from its store whether or not
        // global is reachable.
        let kds = config.kds.map(|kds_config| match &config.replica {
            Some(replica) => tokio::spawn(replicas::run_kds_while_leading(
                kds_config,
                store,
                replica.leadership.clone(),
                stop_rx,
            )),
            None => tokio::spawn(kds::run(kds_config, store, stop_rx)),
        });
        Ok(ZoneCp {
            zone: config.zone,
            token_origin,
            api,
            stop_kds,
            kds,
            dp,
        })
    }

    /// The zone's name.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The address the API is bound to.
    pub fn api_addr(&self) -> SocketAddr {
        self.api.local_addr()
    }

    /// How the admin token was set up; `Generated` carries the token to show once.
    pub fn token_origin(&self) -> &TokenOrigin {
        &self.token_origin
    }

    /// The address proxies connect to, if the data-plane server runs.
    pub fn dp_addr(&self) -> Option<SocketAddr> {
        self.dp.as_ref().map(dp::DpServer::local_addr)
    }

    /// The data-plane server's counters (computations, pushes, revision
    /// reached), if it runs.
    pub fn dp_stats(&self) -> Option<std::sync::Arc<dp::DpStats>> {
        self.dp.as_ref().map(dp::DpServer::stats)
    }

    /// Stops accepting requests and lets in-flight ones finish.
    pub async fn shutdown(self) -> std::io::Result<()> {
        if let Some(dp) = self.dp {
            dp.shutdown().await;
        }
        let _ = self.stop_kds.send(true);
        if let Some(kds) = self.kds {
            let _ = kds.await;
        }
        self.api.shutdown().await
    }
}

/// Creates the zone's own Zone resource unless it exists, so the zone's data planes,
/// ingresses and egresses have their owner.
async fn ensure_own_zone(store: &dyn Store, zone: &str) -> Result<(), StoreError> {
    let spec = meridian_model::Spec::Zone(meridian_model::ZoneSpec::default());
    let resource = NewResource {
        key: ResourceKey::global(ResourceKind::Zone, zone),
        labels: Default::default(),
        spec: meridian_model::SpecBody::new(spec),
        zone: None,
    };
    match store.put(resource, Precondition::Absent).await {
        Ok(_) => {
            tracing::info!(zone, "created the zone's own Zone resource");
            Ok(())
        }
        Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(error) => Err(error),
    }
}
