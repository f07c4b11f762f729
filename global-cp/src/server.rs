//! Starting and stopping the global control plane: bind the API, set up the admin
//! token, run the background duties while this replica is elected
//! ([`crate::duty_election`]), shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meridian_api::auth::{AdminAuth, ReadTokens, TokenOrigin};
use meridian_api::{ApiServer, AppState, BindError, Role, telemetry};
use meridian_kds::zone_token::{self, ZoneTokens};
use meridian_model::ResourceKind;
use meridian_store::{NewResource, Precondition, ResourceKey, Revision, Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::compaction;
use crate::duty_election::{self, DutyElection};
use crate::insight_expiry;
use crate::kds::{self, insight::Insights, service::KdsService, tls::KdsIdentity};
use crate::mesh_ca;

/// How the global control plane runs.
#[derive(Debug, Clone)]
pub struct GlobalCpConfig {
    /// Where the REST API listens (port 0 picks a free port).
    pub api_addr: SocketAddr,
    /// The admin token; `None` uses the one generated at first start.
    pub admin_token: Option<String>,
    /// Whether reads need a token too (by default only writes do).
    pub reads_need_token: bool,
    /// Read-only tokens (`--read-token-file`): accepted for GET and HEAD, refused
    /// with 403 on writes.
    pub read_tokens: ReadTokens,
    /// How often this replica looks for zone token revocations and key rotations
    /// made through other replicas (one settings read each time). Those made through
    /// this replica take effect at once. Default
    /// [`zone_token::DEFAULT_REFRESH_INTERVAL`] (1 s).
    pub zone_token_refresh: Duration,
    /// How many revisions the change log keeps for resuming zones.
    pub changelog_retention: Revision,
    /// How often compaction runs.
    pub compaction_interval: Duration,
    /// Create the `default` mesh at the first start of an installation, as Kuma does.
    pub create_default_mesh: bool,
    /// Serve KDS to zones; `None` runs without it (API only).
    pub kds: Option<KdsSettings>,
    /// How this replica is elected to run the background duties (compaction, mesh
    /// CAs, insight expiry). [`DutyElection::Sole`] (the default) always runs them:
    /// right for one replica. Replicas sharing a PostgreSQL database need
    /// [`DutyElection::Postgres`], so exactly one of them runs the duties.
    pub duty_election: DutyElection,
    /// A zone insight still `online` whose zone has not been heard from for this long
    /// is marked offline by the elected replica (its global replica died). Default
    /// [`insight_expiry::DEFAULT_AFTER`] (60 s); keep it well above the zones'
    /// heartbeat interval (5 s).
    pub insight_expiry: Duration,
    /// How many zones may read a full snapshot at once (admission control when every
    /// zone reconnects together); others wait their turn. Default
    /// [`kds::service::DEFAULT_FULL_SYNCS`].
    pub max_concurrent_full_syncs: usize,
}

/// Where and how KDS is served.
#[derive(Clone)]
pub struct KdsSettings {
    /// The address zones dial (port 0 picks a free port).
    pub addr: SocketAddr,
    /// The TLS certificate and key.
    pub identity: KdsIdentity,
}

impl std::fmt::Debug for KdsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("KdsSettings")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Default for GlobalCpConfig {
    fn default() -> Self {
        GlobalCpConfig {
            api_addr: SocketAddr::from(([127, 0, 0, 1], 5681)),
            admin_token: None,
            reads_need_token: false,
            read_tokens: ReadTokens::default(),
            zone_token_refresh: zone_token::DEFAULT_REFRESH_INTERVAL,
            changelog_retention: 100_000,
            compaction_interval: Duration::from_secs(60),
            create_default_mesh: true,
            kds: None,
            duty_election: DutyElection::Sole,
            insight_expiry: insight_expiry::DEFAULT_AFTER,
            max_concurrent_full_syncs: kds::service::DEFAULT_FULL_SYNCS,
        }
    }
}

/// Why the global control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The API address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The store failed while setting up the admin token or the default mesh.
    #[error("initialising the store: {0}")]
    Store(#[from] StoreError),
    /// The KDS address could not be bound.
    #[error("binding KDS to {addr}: {source}")]
    KdsBind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A running global control plane.
pub struct GlobalCp {
    token_origin: TokenOrigin,
    leadership: duty_election::Leadership,
    api: ApiServer,
    kds_addr: Option<SocketAddr>,
    kds_service: Option<KdsService>,
    kds_server: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl GlobalCp {
    /// Binds the API and starts serving on `store`.
    pub async fn start(config: GlobalCpConfig, store: Arc<dyn Store>) -> Result<Self, StartError> {
        let (auth, token_origin) = AdminAuth::init(
            store.as_ref(),
            config.admin_token.as_deref(),
            config.reads_need_token,
        )
        .await?;
        let auth = auth.with_read_tokens(config.read_tokens.clone());
        if config.create_default_mesh {
            ensure_default_mesh(store.as_ref()).await?;
        }
        let zone_tokens = ZoneTokens::init(store.as_ref()).await?;
        let state = AppState {
            store: store.clone(),
            metrics: telemetry::prometheus(),
            role: Role::Global,
            zone_tokens: Some(zone_tokens.clone()),
            raft: None,
        };
        let api = meridian_api::serve(config.api_addr, meridian_api::router(state, auth)).await?;
        let (leadership, election) = duty_election::start(config.duty_election.clone());
        let duties = {
            let store = store.clone();
            let (retention, interval, expiry) = (
                config.changelog_retention,
                config.compaction_interval,
                config.insight_expiry,
            );
            duty_election::run_while_elected(leadership.clone(), move |duties| {
                duties.spawn(compaction::run(store.clone(), retention, interval));
                duties.spawn(mesh_ca::run(store.clone()));
                duties.spawn(insight_expiry::run(store.clone(), expiry));
            })
        };
        let mut background = vec![
            tokio::spawn(election),
            tokio::spawn(duties),
            tokio::spawn(export_revision(store.watch())),
        ];
        tracing::info!(api_addr = %api.local_addr(), "global control plane REST API listening");
        let mut kds_addr = None;
        let mut kds_service = None;
        let mut kds_server = None;
        if let Some(settings) = config.kds {
            let listener =
                TcpListener::bind(settings.addr)
                    .await
                    .map_err(|source| StartError::KdsBind {
                        addr: settings.addr,
                        source,
                    })?;
            let addr = listener
                .local_addr()
                .map_err(|source| StartError::KdsBind {
                    addr: settings.addr,
                    source,
                })?;
            let insights = Insights::default();
            background.push(tokio::spawn(
                zone_tokens
                    .clone()
                    .run_refresher(store.clone(), config.zone_token_refresh),
            ));
            let service = KdsService::new(store.clone(), zone_tokens, insights.clone())
                .with_full_sync_limit(config.max_concurrent_full_syncs);
            kds_service = Some(service.clone());
            kds_server = Some(tokio::spawn(async move {
                if let Err(error) = kds::serve(
                    listener,
                    &settings.identity,
                    service,
                    std::future::pending(),
                )
                .await
                {
                    tracing::error!(%error, "KDS server stopped");
                }
            }));
            background.push(tokio::spawn(
                insights.run_flusher(store.clone(), Duration::from_secs(1)),
            ));
            tracing::info!(kds_addr = %addr, "KDS listening (TLS)");
            kds_addr = Some(addr);
        }
        Ok(GlobalCp {
            token_origin,
            leadership,
            api,
            kds_addr,
            kds_service,
            kds_server,
            background,
        })
    }

    /// The address the API is bound to.
    pub fn api_addr(&self) -> SocketAddr {
        self.api.local_addr()
    }

    /// The address KDS is bound to, when served.
    pub fn kds_addr(&self) -> Option<SocketAddr> {
        self.kds_addr
    }

    /// Whether this replica is elected to run the background duties, and a way to
    /// wait for it.
    pub fn leadership(&self) -> duty_election::Leadership {
        self.leadership.clone()
    }

    /// How the admin token was set up; `Generated` carries the token to show once.
    pub fn token_origin(&self) -> &TokenOrigin {
        &self.token_origin
    }

    /// Stops accepting requests, lets in-flight ones finish, stops background duties.
    pub async fn shutdown(self) -> std::io::Result<()> {
        // Stop accepting zones, then end their streams and let each record its last
        // insight before the store may go away.
        if let Some(server) = &self.kds_server {
            server.abort();
        }
        if let Some(kds) = &self.kds_service {
            kds.shutdown().await;
        }
        for task in &self.background {
            task.abort();
        }
        self.api.shutdown().await
    }
}

/// Creates the `default` mesh once per installation. A marker setting records that
/// it was done, so an operator who deletes the mesh does not see it come back; the
/// marker holds a random nonce so exactly one of several replicas starting together
/// creates it.
async fn ensure_default_mesh(store: &dyn Store) -> Result<(), StoreError> {
    let nonce = format!("{:016x}", rand::random::<u64>());
    if store
        .setting_or_insert("default_mesh_created", &nonce)
        .await?
        != nonce
    {
        return Ok(());
    }
    let spec = meridian_model::Spec::Mesh(meridian_model::MeshSpec::default());
    let mesh = NewResource {
        key: ResourceKey::global(ResourceKind::Mesh, "default"),
        labels: Default::default(),
        spec: meridian_model::SpecBody::new(spec),
        zone: None,
    };
    match meridian_api::resources::create_mesh(store, mesh, Precondition::Absent).await {
        Ok(_) => {
            tracing::info!("created the default mesh");
            Ok(())
        }
        Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Keeps `meridian_store_revision` equal to the latest committed revision.
async fn export_revision(mut revisions: watch::Receiver<Revision>) {
    loop {
        let revision = *revisions.borrow_and_update();
        metrics::gauge!("meridian_store_revision").set(revision as f64);
        if revisions.changed().await.is_err() {
            return;
        }
    }
}
