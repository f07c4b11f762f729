//! Propagation: how long a policy change on global takes to reach every zone, and
//! a proxy's config; and what global spends doing it.
//!
//! Setup, all on loopback:
//! - global is the real `meridian global-cp` binary as a child process (PostgreSQL
//!   or its embedded store in a temporary directory), serving REST and KDS over
//!   TLS, so its CPU time and memory are its own (read from `/proc`);
//! - N zone CPs run in this process, each with its own embedded (openraft + redb)
//!   store and a real KDS client with a token issued by `POST /tokens/zone`;
//! - the first zone also serves its data-plane config stream, and one sidecar
//!   config client (`meridian_proxy_api::ProxyClient`, in this process, no
//!   listeners) is registered there with an outbound to a service.
//!
//! One `MeshTimeout` (targeting the Mesh, `to` the Mesh) is PUT on global's REST API
//! at a steady rate, `--changes` times, each time with a new `idleTimeout`
//! (change *i* sets `i+1` seconds). Each zone store's change feed reports the
//! values it applies (no polling); the sidecar client's config watch reports the
//! merged `idleTimeout` of its outbound.
//!
//! A change counts as arrived somewhere when that place holds it **or a later
//! one**: KDS sends whatever changed since the zone's last ACK, and the zone CP
//! sends its proxies whole configs, so under load an intermediate version may be
//! overwritten before it is sent. Such skipped (observer, change) pairs are
//! counted in the `coalesced` columns.
//! - *zones*: from just before change *i*'s PUT until the last zone applied it;
//! - *proxy*: from just before the PUT until the sidecar client holds a config
//!   whose outbound reflects it (global → KDS → zone store → config computation
//!   → data-plane stream → client);
//! - *global CPU s*: user + system seconds of the global process from the first
//!   PUT until every change arrived everywhere (or the 30 s deadline); *global peak
//!   RSS*: its `VmHWM` at the end, so it covers start-up and the zones' first sync.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use meridian_embedded_store::EmbeddedStore;
use meridian_model::ResourceKind;
use meridian_proxy_api::{ClientSettings, ProxyClient, ProxyConfig, ProxyKind, Registration};
use meridian_store::{Change, ResourceKey, Store};
use meridian_zone_cp::kds::KdsClientConfig;
use meridian_zone_cp::{ZoneCp, ZoneCpConfig};
use tokio::sync::{mpsc, watch};

use crate::fullpath::process::{Process, meridian_bin};

pub(crate) const ADMIN: &str = "bench-admin-token";
/// How long the last changes may take to arrive everywhere.
const DRAIN: Duration = Duration::from_secs(30);

/// Arguments of `meridian-bench propagation`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Zone counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50,100")]
    zones: Vec<usize>,
    /// Policy changes per zone count.
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// PUTs per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Global's store: a PostgreSQL URL (a database that may be reused: the bench
    /// writes a policy named bench-<run id> and deletes it at the end), or absent
    /// for the embedded store.
    #[arg(long, env = "MERIDIAN_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// The `meridian` binary global runs from (default: next to this executable).
    #[arg(long)]
    meridian_bin: Option<PathBuf>,
}

/// Arrival times of every change at a set of observers (zones, or the proxy).
pub(crate) struct Arrivals {
    /// Per observer: the newest change index + 1 it has reached.
    reached_by: Vec<usize>,
    /// Per change: how many observers reached it (or a later one) …
    reached: Vec<usize>,
    /// … the last of them when …
    last: Vec<Option<Instant>>,
    /// … and how many saw exactly this change.
    exact: Vec<usize>,
}

impl Arrivals {
    pub(crate) fn new(observers: usize, changes: usize) -> Arrivals {
        Arrivals {
            reached_by: vec![0; observers],
            reached: vec![0; changes],
            last: vec![None; changes],
            exact: vec![0; changes],
        }
    }

    /// `observer` now holds the value of change `value - 1` (value 0: none).
    pub(crate) fn observe(&mut self, observer: usize, value: usize, at: Instant) {
        let changes = self.reached.len();
        let Some(before) = self.reached_by.get(observer).copied() else {
            return;
        };
        if value <= before || value > changes {
            return;
        }
        self.exact[value - 1] += 1;
        for change in before..value {
            self.reached[change] += 1;
            self.last[change] = Some(self.last[change].map_or(at, |last| last.max(at)));
        }
        self.reached_by[observer] = value;
    }

    pub(crate) fn complete(&self) -> bool {
        let observers = self.reached_by.len();
        self.reached.iter().all(|&n| n == observers)
    }

    /// Times from each change's PUT to its arrival at the last observer, changes
    /// that never arrived everywhere, and skipped (observer, change) pairs.
    pub(crate) fn summary(&self, started: &[Instant]) -> anyhow::Result<Summary> {
        let observers = self.reached_by.len();
        let mut histogram = Histogram::<u64>::new(3)?;
        let (mut lost, mut coalesced) = (0, 0);
        for (change, start) in started.iter().enumerate() {
            match self.last[change] {
                Some(last) if self.reached[change] == observers => {
                    histogram.record(
                        u64::try_from(last.duration_since(*start).as_micros()).unwrap_or(u64::MAX),
                    )?;
                    coalesced += observers - self.exact[change];
                }
                _ => lost += 1,
            }
        }
        Ok(Summary {
            histogram,
            lost,
            coalesced,
        })
    }
}

pub(crate) struct Summary {
    pub(crate) histogram: Histogram<u64>,
    pub(crate) lost: usize,
    pub(crate) coalesced: usize,
}

/// One zone count's result.
struct Row {
    zones: usize,
    changes: usize,
    zone: Summary,
    proxy: Summary,
    global_cpu_seconds: f64,
    global_peak_rss_bytes: u64,
}

/// Runs the benchmark and prints a table.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let bin = meridian_bin(args.meridian_bin.as_deref())?;
    let store_name = if args.database_url.is_some() {
        "PostgreSQL"
    } else {
        "embedded"
    };
    println!(
        "propagation: one MeshTimeout updated on global {} times at {} PUT/s -> applied in every zone, and in a sidecar's config; global: `{} global-cp` on its {store_name} store (own process); zones in this process on embedded stores; KDS over TLS on loopback",
        args.changes,
        args.rate,
        bin.display()
    );
    println!(
        "arrived = the place holds that change or a later one; zones ms: PUT -> last zone's store; proxy ms: PUT -> config of one sidecar client in the first zone; global CPU s: during the changes; peak RSS: global's VmHWM over its life"
    );
    let mut rows = Vec::new();
    for &zones in &args.zones {
        rows.push(
            measure(zones, &args, &bin)
                .await
                .with_context(|| format!("{zones} zones"))?,
        );
    }
    println!(
        "{:>6} {:>8} | {:>9} {:>9} {:>9} {:>5} {:>9} | {:>9} {:>9} {:>9} {:>5} {:>9} | {:>12} {:>14}",
        "zones",
        "changes",
        "zones p50",
        "p99 ms",
        "max ms",
        "lost",
        "coalesced",
        "proxy p50",
        "p99 ms",
        "max ms",
        "lost",
        "coalesced",
        "global CPU s",
        "global RSS MiB"
    );
    for row in rows {
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let (z, p) = (&row.zone, &row.proxy);
        println!(
            "{:>6} {:>8} | {:>9.2} {:>9.2} {:>9.2} {:>5} {:>9} | {:>9.2} {:>9.2} {:>9.2} {:>5} {:>9} | {:>12.2} {:>14.1}",
            row.zones,
            row.changes,
            ms(&z.histogram, 0.5),
            ms(&z.histogram, 0.99),
            z.histogram.max() as f64 / 1000.0,
            z.lost,
            z.coalesced,
            ms(&p.histogram, 0.5),
            ms(&p.histogram, 0.99),
            p.histogram.max() as f64 / 1000.0,
            p.lost,
            p.coalesced,
            row.global_cpu_seconds,
            row.global_peak_rss_bytes as f64 / (1024.0 * 1024.0),
        );
    }
    Ok(())
}

/// The policy PUT for change `i`: the same name every time, `idleTimeout` `i+1` s.
pub(crate) fn policy(name: &str, i: usize) -> serde_json::Value {
    serde_json::json!({
        "type": "MeshTimeout", "name": name, "mesh": "default",
        "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"},
                 "default": {"idleTimeout": format!("{}s", i + 1)}}]}
    })
}

/// Global as a child process: its REST base URL, KDS URL and the KDS CA (PEM).
pub(crate) async fn start_global(
    bin: &std::path::Path,
    dir: &std::path::Path,
    database_url: Option<&str>,
) -> anyhow::Result<(Process, String, String, String)> {
    let mut args: Vec<String> = [
        "global-cp",
        "--data-dir",
        &dir.join("global").to_string_lossy(),
        "--api-addr",
        "127.0.0.1:0",
        "--kds-addr",
        "127.0.0.1:0",
        "--admin-token",
        ADMIN,
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(url) = database_url {
        args.extend(["--database-url".to_owned(), url.to_owned()]);
    }
    let mut global = Process::spawn("global", bin, &args, dir.join("global.log"))?;
    let api = global
        .wait_for_line(|line| line.split("REST API on ").nth(1).map(str::to_owned))
        .await?;
    let (kds, ca) = global
        .wait_for_line(|line| {
            let rest = line.split("KDS on ").nth(1)?;
            let (url, ca) = rest.split_once(" (zones trust ")?;
            Some((url.to_owned(), ca.trim_end_matches(')').to_owned()))
        })
        .await?;
    let ca_pem = std::fs::read_to_string(&ca).with_context(|| format!("reading {ca}"))?;
    Ok((global, api, kds, ca_pem))
}

pub(crate) async fn issue_token(
    http: &reqwest::Client,
    api: &str,
    zone: &str,
) -> anyhow::Result<String> {
    let response = http
        .post(format!("{api}/tokens/zone"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"zone": zone, "validFor": "1h"}))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("POST /tokens/zone for {zone}: {}", response.status());
    }
    let issued: serde_json::Value = response.json().await?;
    Ok(issued["token"]
        .as_str()
        .context("no token in the answer")?
        .to_owned())
}

/// The sidecar whose config is watched: one inbound, one outbound to `bench-backend`.
fn sidecar_registration() -> Registration {
    let doc = serde_json::json!({"type": "Dataplane", "mesh": "default", "name": "bench-proxy",
        "networking": {"address": "127.0.0.1",
            "inbound": [{"port": 20001, "servicePort": 9000, "tags": {"kuma.io/service": "bench-proxy"}}],
            "outbound": [{"port": 15001, "tags": {"kuma.io/service": "bench-backend"}}]}});
    Registration {
        kind: ProxyKind::Sidecar,
        mesh: "default".into(),
        name: "bench-proxy".into(),
        resource: doc,
    }
}

async fn measure(zone_count: usize, args: &Args, bin: &std::path::Path) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let (mut global, api, kds_url, ca_pem) =
        start_global(bin, dir.path(), args.database_url.as_deref()).await?;
    let http = reqwest::Client::new();
    let run_id = format!("{:08x}", rand_id());
    let policy_name = format!("bench-{run_id}");

    let (zone_tx, mut zone_rx) = mpsc::unbounded_channel::<(usize, usize, Instant)>();
    let (proxy_tx, mut proxy_rx) = mpsc::unbounded_channel::<(usize, usize, Instant)>();
    let mut zones = Vec::new();
    let mut proxy = None;
    for z in 0..zone_count {
        let name = format!("bench-zone-{z}");
        let token = issue_token(&http, &api, &name).await?;
        let zone_store = EmbeddedStore::open(&dir.path().join(&name)).await?;
        let mut zone_config = ZoneCpConfig::new(&name);
        zone_config.dp_addr = if z == 0 {
            Some("127.0.0.1:0".parse()?)
        } else {
            None
        };
        zone_config.api_addr = "127.0.0.1:0".parse()?;
        zone_config.admin_token = Some(ADMIN.to_owned());
        zone_config.kds = Some(KdsClientConfig {
            zone: name.clone(),
            global_urls: vec![kds_url.clone()],
            global_ca_pem: Some(ca_pem.clone()),
            token,
            token_file: None,
            heartbeat: Duration::from_secs(5),
            leader_term: 0,
        });
        let zone = ZoneCp::start(zone_config, Arc::new(zone_store.clone())).await?;
        wait_for_mesh(&zone_store)
            .await
            .with_context(|| format!("{name} never synced"))?;
        tokio::spawn(report_zone(
            zone_store.clone(),
            z,
            policy_name.clone(),
            zone_tx.clone(),
        ));
        if z == 0 {
            let dp_addr = zone.dp_addr().context("zone 0's data-plane address")?;
            let client = ProxyClient::spawn(ClientSettings {
                zone_cp: format!("http://{dp_addr}"),
                zone_cp_ca_pem: None,
                registration: sidecar_registration(),
            })?;
            let mut config = client.config();
            tokio::time::timeout(
                Duration::from_secs(30),
                config.wait_for(|c| matches!(c.as_deref(), Some(ProxyConfig::Sidecar(_)))),
            )
            .await
            .context("the sidecar client got no config within 30 s")??;
            tokio::spawn(report_proxy(config, proxy_tx.clone()));
            proxy = Some(client);
        }
        zones.push((zone, zone_store));
    }

    let mut zone_arrivals = Arrivals::new(zone_count, args.changes);
    let mut proxy_arrivals = Arrivals::new(1, args.changes);
    let drain = |zone_rx: &mut mpsc::UnboundedReceiver<(usize, usize, Instant)>,
                 proxy_rx: &mut mpsc::UnboundedReceiver<(usize, usize, Instant)>,
                 zone_arrivals: &mut Arrivals,
                 proxy_arrivals: &mut Arrivals| {
        while let Ok((observer, value, at)) = zone_rx.try_recv() {
            zone_arrivals.observe(observer, value, at);
        }
        while let Ok((observer, value, at)) = proxy_rx.try_recv() {
            proxy_arrivals.observe(observer, value, at);
        }
    };
    let url = format!("{api}/meshes/default/meshtimeouts/{policy_name}");
    let mut started = Vec::with_capacity(args.changes);
    let usage_before = global.usage();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    for i in 0..args.changes {
        ticker.tick().await;
        started.push(Instant::now());
        let response = http
            .put(&url)
            .bearer_auth(ADMIN)
            .json(&policy(&policy_name, i))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("PUT {policy_name} (change {i}): {}", response.status());
        }
        drain(
            &mut zone_rx,
            &mut proxy_rx,
            &mut zone_arrivals,
            &mut proxy_arrivals,
        );
    }
    // Give the last changes time to land everywhere.
    let deadline = Instant::now() + DRAIN;
    while !(zone_arrivals.complete() && proxy_arrivals.complete()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        drain(
            &mut zone_rx,
            &mut proxy_rx,
            &mut zone_arrivals,
            &mut proxy_arrivals,
        );
    }
    let usage_after = global.usage();
    global.check_running()?;

    let row = Row {
        zones: zone_count,
        changes: args.changes,
        zone: zone_arrivals.summary(&started)?,
        proxy: proxy_arrivals.summary(&started)?,
        global_cpu_seconds: usage_before.cpu_until(usage_after),
        global_peak_rss_bytes: usage_after.peak_rss_bytes,
    };
    // A reused PostgreSQL database must not keep this run's policy: it would
    // merge into the next run's proxy config.
    let _ = http.delete(&url).bearer_auth(ADMIN).send().await;
    if let Some(proxy) = proxy {
        proxy.shutdown().await;
    }
    for (zone, zone_store) in zones {
        let _ = zone.shutdown().await;
        zone_store.shutdown().await;
    }
    drop(global);
    Ok(row)
}

/// A per-run id, so repeated runs on one PostgreSQL database never match old rows.
pub(crate) fn rand_id() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

/// Waits (on the store's change feed) until the zone has the default mesh.
async fn wait_for_mesh(store: &EmbeddedStore) -> anyhow::Result<()> {
    let key = ResourceKey::global(ResourceKind::Mesh, "default");
    let mut watch = store.watch();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if store.get(&key).await?.is_some() {
                return anyhow::Ok(());
            }
            watch.changed().await?;
        }
    })
    .await
    .context("timed out")?
}

/// The change a bench policy's `idleTimeout` stands for, plus one (`Ns` → N).
fn change_value(idle_timeout: Option<&str>) -> Option<usize> {
    let idle = meridian_model::Duration::parse(idle_timeout?).ok()?;
    usize::try_from(idle.as_duration().as_secs()).ok()
}

/// Reports each version of the bench policy applied in zone `zone`, from the zone
/// store's change feed.
async fn report_zone(
    store: EmbeddedStore,
    zone: usize,
    name: String,
    tx: mpsc::UnboundedSender<(usize, usize, Instant)>,
) {
    let mut watch = store.watch();
    let Ok(mut since) = store.current_revision().await else {
        return;
    };
    loop {
        let Ok(batch) = store.changes_since(since, 1000).await else {
            return;
        };
        let now = Instant::now();
        for change in batch.changes {
            if let Change::Upsert(resource) = change
                && resource.key.name == name
                && let Some(value) = change_value(
                    resource.spec.to_value()["to"][0]["default"]["idleTimeout"].as_str(),
                )
                && tx.send((zone, value, now)).is_err()
            {
                return;
            }
        }
        since = batch.through;
        if watch.changed().await.is_err() {
            return;
        }
    }
}

/// Reports the outbound `idleTimeout` of each config the sidecar client accepts.
async fn report_proxy(
    mut config: watch::Receiver<Option<Arc<ProxyConfig>>>,
    tx: mpsc::UnboundedSender<(usize, usize, Instant)>,
) {
    loop {
        if config.changed().await.is_err() {
            return;
        }
        let now = Instant::now();
        let value = match config.borrow_and_update().as_deref() {
            Some(ProxyConfig::Sidecar(sidecar)) => sidecar
                .outbounds
                .first()
                .and_then(|outbound| outbound.timeout.as_ref())
                .and_then(|timeout| timeout.idle_timeout.as_ref())
                .and_then(|idle| usize::try_from(idle.as_duration().as_secs()).ok()),
            _ => None,
        };
        if let Some(value) = value
            && tx.send((0, value, now)).is_err()
        {
            return;
        }
    }
}
