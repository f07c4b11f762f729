//! In-process global and zone control planes for the `reconnect` and `scale`
//! benchmarks, and what they read from them: applied revisions, zone insights,
//! process RSS.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use meridian_api::zone_token::ZoneTokens;
use meridian_embedded_store::EmbeddedStore;
use meridian_global_cp::kds::tls;
use meridian_global_cp::{GlobalCp, GlobalCpConfig, KdsSettings};
use meridian_store::postgres::PostgresStore;
use meridian_store::{NewResource, Precondition, Revision, Store, WriteOp};
use meridian_zone_cp::kds::KdsClientConfig;
use meridian_zone_cp::{ZoneCp, ZoneCpConfig};

/// The admin token of every in-process CP.
pub(crate) const ADMIN: &str = "bench-admin-token";

/// The zone store setting where a zone's KDS client records the last global revision
/// it applied, in the same transaction as the changes (`meridian_zone_cp::kds`'s
/// `GLOBAL_REVISION_SETTING`, which that crate does not export).
const GLOBAL_REVISION_APPLIED: &str = "kds.global.applied";

/// An in-process global CP serving REST and KDS (TLS) on loopback.
pub(crate) struct Global {
    cp: GlobalCp,
    /// Global's store.
    pub(crate) store: Arc<dyn Store>,
    embedded: Option<EmbeddedStore>,
    /// Issues zone tokens.
    pub(crate) tokens: ZoneTokens,
    /// The CA zones trust for KDS (PEM).
    pub(crate) ca_pem: String,
}

impl Global {
    /// Starts global on PostgreSQL at `database_url`, or on an embedded store in `dir`.
    pub(crate) async fn start(dir: &Path, database_url: Option<&str>) -> anyhow::Result<Global> {
        let embedded = match database_url {
            Some(_) => None,
            None => Some(EmbeddedStore::open(&dir.join("global")).await?),
        };
        let store: Arc<dyn Store> = match (database_url, &embedded) {
            (Some(url), _) => Arc::new(PostgresStore::connect(url).await?),
            (None, Some(embedded)) => Arc::new(embedded.clone()),
            (None, None) => bail!("no store"),
        };
        let identity = tls::load_or_generate(None, None, &dir.join("global-tls"), &[])?;
        let ca_pem =
            std::fs::read_to_string(identity.generated_ca.as_ref().context("generated CA")?)?;
        let config = GlobalCpConfig {
            api_addr: "127.0.0.1:0".parse()?,
            admin_token: Some(ADMIN.to_owned()),
            kds: Some(KdsSettings {
                addr: "127.0.0.1:0".parse()?,
                identity,
            }),
            ..GlobalCpConfig::default()
        };
        let cp = GlobalCp::start(config, store.clone()).await?;
        let tokens = ZoneTokens::init(store.as_ref()).await?;
        Ok(Global {
            cp,
            store,
            embedded,
            tokens,
            ca_pem,
        })
    }

    /// Global's KDS address.
    pub(crate) fn kds_addr(&self) -> anyhow::Result<SocketAddr> {
        self.cp.kds_addr().context("KDS address")
    }

    /// Global's REST base URL.
    pub(crate) fn api_url(&self) -> String {
        format!("http://{}", self.cp.api_addr())
    }

    /// Stops global and its store.
    pub(crate) async fn shutdown(self) {
        let _ = self.cp.shutdown().await;
        if let Some(embedded) = self.embedded {
            embedded.shutdown().await;
        }
    }
}

/// Starts a zone CP (API on a free port, no data-plane server) on `store`, syncing
/// with global at `kds_addr` over TLS.
pub(crate) async fn start_zone(
    global: &Global,
    zone: &str,
    kds_addr: SocketAddr,
    store: &EmbeddedStore,
) -> anyhow::Result<ZoneCp> {
    let mut config = ZoneCpConfig::new(zone);
    config.dp_addr = None;
    config.api_addr = "127.0.0.1:0".parse()?;
    config.admin_token = Some(ADMIN.to_owned());
    config.kds = Some(KdsClientConfig {
        zone: zone.to_owned(),
        global_urls: vec![format!("https://{kds_addr}")],
        global_ca_pem: Some(global.ca_pem.clone()),
        token: global.tokens.issue(zone, Duration::from_secs(24 * 3600)).0,
        token_file: None,
        heartbeat: Duration::from_secs(5),
        leader_term: 0,
    });
    Ok(ZoneCp::start(config, Arc::new(store.clone())).await?)
}

/// Opens an embedded store, retrying for a few seconds while a previous instance on
/// the same directory is still releasing its files.
pub(crate) async fn open_embedded(dir: &Path) -> anyhow::Result<EmbeddedStore> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match EmbeddedStore::open(dir).await {
            Ok(store) => return Ok(store),
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "store not reopenable yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The last global revision the zone applied (0 before its first sync).
pub(crate) async fn applied_revision(zone_store: &dyn Store) -> anyhow::Result<Revision> {
    Ok(zone_store
        .setting(GLOBAL_REVISION_APPLIED)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Whether the zone KDS client's `meridian_kds_connected` gauge (process-wide, so
/// meaningful with one zone in the process) says a session is subscribed.
pub(crate) fn zone_subscribed() -> bool {
    let rendered = meridian_api::telemetry::prometheus().render();
    rendered.lines().any(|line| {
        line.strip_prefix("meridian_kds_connected ")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|v| v >= 1.0)
    })
}

/// Whether global's KDS service counts a live stream of `zone`: its in-memory
/// `meridian_kds_zone_online{zone}` gauge from the process-wide recorder. The stored
/// insight is not used for this: a periodic flush that started before the session
/// ended can land after the end's flush (seen on PostgreSQL) and leave `online: true`
/// stored until `lastSeen` goes stale 30 s later.
pub(crate) fn global_sees_online(zone: &str) -> bool {
    let rendered = meridian_api::telemetry::prometheus().render();
    let prefix = format!("meridian_kds_zone_online{{zone=\"{zone}\"}} ");
    rendered.lines().any(|line| {
        line.strip_prefix(&prefix)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|v| v >= 1.0)
    })
}

/// Waits until neither global nor the zone's KDS client has a live session.
pub(crate) async fn wait_disconnected(zone: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while global_sees_online(zone) || zone_subscribed() {
        if Instant::now() > deadline {
            bail!("the session of zone {zone} did not end within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Waits until the zone has applied global revision `at_least` and, if
/// `need_session`, its KDS client reports a subscribed session. Woken by the zone
/// store's commits, with a 2 ms poll for the gauge. Returns when that was seen.
pub(crate) async fn wait_applied(
    zone_store: &dyn Store,
    at_least: Revision,
    need_session: bool,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let mut commits = zone_store.watch();
    tokio::time::timeout(timeout, async {
        loop {
            commits.borrow_and_update();
            if applied_revision(zone_store).await? >= at_least
                && (!need_session || zone_subscribed())
            {
                return anyhow::Ok(Instant::now());
            }
            tokio::select! {
                _ = commits.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(2)) => {}
            }
        }
    })
    .await
    .with_context(|| format!("the zone did not reach global revision {at_least} in {timeout:?}"))?
}

/// Writes `resources` with [`Store::apply`], `batch` per transaction.
pub(crate) async fn put_all(
    store: &dyn Store,
    resources: Vec<NewResource>,
    batch: usize,
) -> anyhow::Result<()> {
    let mut ops = Vec::with_capacity(batch);
    for resource in resources {
        ops.push(WriteOp::Put(resource, Precondition::Any));
        if ops.len() == batch {
            store.apply(std::mem::take(&mut ops)).await?;
        }
    }
    if !ops.is_empty() {
        store.apply(ops).await?;
    }
    Ok(())
}

/// A resource from a Kuma document, validated as the REST API would.
pub(crate) fn from_document(
    document: serde_json::Value,
    zone: Option<&str>,
) -> anyhow::Result<NewResource> {
    let resource = meridian_model::parse_document(document)
        .map_err(|e| anyhow::anyhow!("invalid bench resource: {e}"))?;
    let kind = resource.spec.kind();
    let key = match resource.meta.mesh {
        Some(mesh) if kind.is_mesh_scoped() => {
            meridian_store::ResourceKey::in_mesh(kind, mesh, resource.meta.name)
        }
        _ => meridian_store::ResourceKey::global(kind, resource.meta.name),
    };
    Ok(NewResource {
        key,
        labels: resource.meta.labels,
        spec: meridian_model::SpecBody::new(resource.spec),
        zone: zone.map(str::to_owned),
    })
}

/// A spec value parsed and validated for `kind`.
pub(crate) fn spec(
    kind: meridian_model::ResourceKind,
    value: serde_json::Value,
) -> anyhow::Result<meridian_model::SpecBody> {
    meridian_model::SpecBody::parse(kind, value)
        .map_err(|e| anyhow::anyhow!("invalid bench {kind} spec: {e}"))
}

/// What global's REST API reports about one zone: `GET /zones/{zone}/insight`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Insight {
    /// Whether a session is live.
    pub(crate) online: bool,
    /// The global revision the zone acknowledged.
    pub(crate) revision_applied: Revision,
    /// global→zone resources sent, all types.
    pub(crate) sent: u64,
}

/// Reads the zone's insight (absent until it first connected: all zero).
pub(crate) async fn insight(
    http: &reqwest::Client,
    api: &str,
    zone: &str,
) -> anyhow::Result<Insight> {
    let response = http
        .get(format!("{api}/zones/{zone}/insight"))
        .send()
        .await?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(Insight::default());
    }
    let body: serde_json::Value = response.error_for_status()?.json().await?;
    let sent = body
        .pointer("/globalToZone/sent")
        .and_then(|s| s.as_object())
        .map(|s| s.values().filter_map(serde_json::Value::as_u64).sum())
        .unwrap_or(0);
    Ok(Insight {
        online: body
            .get("online")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        revision_applied: body
            .get("revisionApplied")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0),
        sent,
    })
}

/// Polls the zone's insight (global flushes it to its store every second) until
/// `done` holds.
pub(crate) async fn insight_until(
    http: &reqwest::Client,
    api: &str,
    zone: &str,
    what: &str,
    done: impl Fn(&Insight) -> bool,
) -> anyhow::Result<Insight> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let current = insight(http, api, zone).await?;
        if done(&current) {
            return Ok(current);
        }
        if Instant::now() > deadline {
            bail!("zone insight never showed {what}: last {current:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// This process's resident set size (`VmRSS` of `/proc/self/status`), in bytes.
pub(crate) fn rss_bytes() -> Option<u64> {
    crate::procfs::status_kib(None, "VmRSS:").map(|kib| kib * 1024)
}

/// Bytes as MiB with one decimal, or `?` when unknown.
pub(crate) fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "?".to_owned(),
        |b| format!("{:.1}", b as f64 / 1048576.0),
    )
}

/// Milliseconds between two instants, with two decimals.
pub(crate) fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

/// A short id for names, so reruns on one PostgreSQL database never collide.
pub(crate) fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{nanos:08x}")
}
