//! Propagation: how long a policy PUT on global takes to be applied in every zone.
//!
//! Setup, all on loopback in this process: a global CP (PostgreSQL or embedded store)
//! serving REST and KDS over TLS, and N zone CPs, each with its own embedded
//! (openraft + redb) store and a real KDS client. Policies are PUT through the REST
//! API at a steady rate; each zone's store change feed reports when the policy was
//! applied there (no polling). A change's propagation time is the time from just
//! before its PUT to its application in the last zone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use meridian_api::zone_token::ZoneTokens;
use meridian_embedded_store::EmbeddedStore;
use meridian_global_cp::kds::tls;
use meridian_global_cp::{GlobalCp, GlobalCpConfig, KdsSettings};
use meridian_model::ResourceKind;
use meridian_store::postgres::PostgresStore;
use meridian_store::{Change, ResourceKey, Store};
use meridian_zone_cp::kds::KdsClientConfig;
use meridian_zone_cp::{ZoneCp, ZoneCpConfig};
use tokio::sync::mpsc;

const ADMIN: &str = "bench-admin-token";

/// Arguments of `meridian-bench propagation`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Zone counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    zones: Vec<usize>,
    /// Policy changes per zone count.
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// PUTs per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Global's store: a PostgreSQL URL (a database that may be reused: the bench
    /// writes policies named bench-*), or absent for the embedded store.
    #[arg(long, env = "MERIDIAN_BENCH_DATABASE_URL")]
    database_url: Option<String>,
}

/// One zone count's result.
struct Row {
    zones: usize,
    changes: usize,
    histogram: Histogram<u64>,
    lost: usize,
}

/// Runs the benchmark and prints a table.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let store_name = if args.database_url.is_some() {
        "PostgreSQL"
    } else {
        "embedded"
    };
    println!(
        "propagation: policy PUT on global -> applied in every zone; global store: {store_name}; zones in-process on embedded stores; KDS over TLS on loopback; {} PUT/s",
        args.rate
    );
    let mut rows = Vec::new();
    for &zones in &args.zones {
        rows.push(
            measure(zones, &args)
                .await
                .with_context(|| format!("{zones} zones"))?,
        );
    }
    println!(
        "{:>6} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "zones", "changes", "p50 ms", "p99 ms", "max ms", "lost"
    );
    for row in rows {
        let ms = |q: f64| row.histogram.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{:>6} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8}",
            row.zones,
            row.changes,
            ms(0.5),
            ms(0.99),
            row.histogram.max() as f64 / 1000.0,
            row.lost
        );
    }
    Ok(())
}

fn policy(name: &str, i: usize) -> serde_json::Value {
    serde_json::json!({
        "type": "MeshTimeout", "name": name, "mesh": "default",
        "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"},
                 "default": {"idleTimeout": format!("{}s", i + 1)}}]}
    })
}

async fn measure(zone_count: usize, args: &Args) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let embedded = match &args.database_url {
        Some(_) => None,
        None => Some(EmbeddedStore::open(&dir.path().join("global")).await?),
    };
    let store: Arc<dyn Store> = match (&args.database_url, &embedded) {
        (Some(url), _) => Arc::new(PostgresStore::connect(url).await?),
        (None, Some(embedded)) => Arc::new(embedded.clone()),
        (None, None) => bail!("no store"),
    };
    let identity = tls::load_or_generate(None, None, &dir.path().join("global-tls"), &[])?;
    let ca_pem = std::fs::read_to_string(identity.generated_ca.as_ref().context("generated CA")?)?;
    let config = GlobalCpConfig {
        api_addr: "127.0.0.1:0".parse()?,
        admin_token: Some(ADMIN.to_owned()),
        kds: Some(KdsSettings {
            addr: "127.0.0.1:0".parse()?,
            identity,
        }),
        ..GlobalCpConfig::default()
    };
    let global = GlobalCp::start(config, store.clone()).await?;
    let kds_url = format!("https://{}", global.kds_addr().context("KDS address")?);
    let tokens = ZoneTokens::init(store.as_ref()).await?;
    let run_id = format!("{:08x}", rand_id());

    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel::<(String, Instant)>();
    let mut zones = Vec::new();
    for z in 0..zone_count {
        let name = format!("bench-zone-{z}");
        let zone_store = EmbeddedStore::open(&dir.path().join(&name)).await?;
        let mut zone_config = ZoneCpConfig::new(&name);
        zone_config.dp_addr = None;
        zone_config.api_addr = "127.0.0.1:0".parse()?;
        zone_config.admin_token = Some(ADMIN.to_owned());
        zone_config.kds = Some(KdsClientConfig {
            zone: name.clone(),
            global_url: kds_url.clone(),
            global_ca_pem: Some(ca_pem.clone()),
            token: tokens.issue(&name, Duration::from_secs(3600)).0,
            heartbeat: Duration::from_secs(5),
        });
        let zone = ZoneCp::start(zone_config, Arc::new(zone_store.clone())).await?;
        wait_for_mesh(&zone_store)
            .await
            .with_context(|| format!("{name} never synced"))?;
        tokio::spawn(report_arrivals(
            zone_store.clone(),
            run_id.clone(),
            arrivals_tx.clone(),
        ));
        zones.push((zone, zone_store));
    }

    let http = reqwest::Client::new();
    let base = format!("http://{}", global.api_addr());
    let mut sent_at: HashMap<String, (Instant, usize, Instant)> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    for i in 0..args.changes {
        ticker.tick().await;
        let name = format!("bench-{run_id}-{i}");
        let started = Instant::now();
        sent_at.insert(name.clone(), (started, 0, started));
        let response = http
            .put(format!("{base}/meshes/default/meshtimeouts/{name}"))
            .bearer_auth(ADMIN)
            .json(&policy(&name, i))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("PUT {name}: {}", response.status());
        }
        drain(&mut arrivals, &mut sent_at);
    }
    // Give the last changes time to land everywhere.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent_at.values().any(|(_, seen, _)| *seen < zone_count) && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), arrivals.recv()).await {
            Ok(Some(arrival)) => record(arrival, &mut sent_at),
            Ok(None) => break,
            Err(_) => {}
        }
        drain(&mut arrivals, &mut sent_at);
    }

    let mut histogram = Histogram::<u64>::new(3)?;
    let mut lost = 0;
    for (started, seen, last) in sent_at.values() {
        if *seen < zone_count {
            lost += 1;
        } else {
            histogram.record(
                u64::try_from(last.duration_since(*started).as_micros()).unwrap_or(u64::MAX),
            )?;
        }
    }
    for (zone, zone_store) in zones {
        let _ = zone.shutdown().await;
        zone_store.shutdown().await;
    }
    let _ = global.shutdown().await;
    if let Some(embedded) = embedded {
        embedded.shutdown().await;
    }
    Ok(Row {
        zones: zone_count,
        changes: args.changes,
        histogram,
        lost,
    })
}

/// A per-run id, so repeated runs on one PostgreSQL database never match old rows.
fn rand_id() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

fn record((name, at): (String, Instant), sent_at: &mut HashMap<String, (Instant, usize, Instant)>) {
    if let Some((_, seen, last)) = sent_at.get_mut(&name) {
        *seen += 1;
        *last = (*last).max(at);
    }
}

fn drain(
    arrivals: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    sent_at: &mut HashMap<String, (Instant, usize, Instant)>,
) {
    while let Ok(arrival) = arrivals.try_recv() {
        record(arrival, sent_at);
    }
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

/// Reports each bench policy's arrival in one zone, from the zone store's change feed.
async fn report_arrivals(
    store: EmbeddedStore,
    run_id: String,
    tx: mpsc::UnboundedSender<(String, Instant)>,
) {
    let prefix = format!("bench-{run_id}-");
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
                && resource.key.name.starts_with(&prefix)
                && tx.send((resource.key.name, now)).is_err()
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
