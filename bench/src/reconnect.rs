//! Reconnect: what a zone costs global when it comes back after missing K changes,
//! compared with its first full sync. The point is that the cost follows K, not the
//! size of global's state.
//!
//! Setup, all in this process on loopback: a global CP (embedded store, or PostgreSQL
//! with `--database-url`) holding `--policies` MeshTimeouts in mesh `default`, written
//! straight into its store with `Store::apply` (500 per transaction), and one zone CP
//! on its own embedded store. The zone's KDS connection (TLS, HTTP/2) goes through a
//! TCP relay in this process that counts bytes in each direction and can be cut
//! (connections dropped, new ones closed on accept) and restored.
//!
//! Scenarios, each K in `--missed`:
//! - **cut**: cut the relay, wait until both global and the zone have seen the
//!   session end (their in-memory KDS gauges), update
//!   K existing policies on global, restore the relay;
//! - **restart**: shut the zone CP and its store down (the store directory stays),
//!   update K policies, open the same directory and start a new zone CP.
//!
//! Figures per row:
//! - *resources re-sent*: the growth of global's global→zone `sent` counters for the
//!   zone (`GET /zones/{zone}/insight`, every type);
//! - *bytes g→z / z→g*: bytes through the relay from the restore (or restart) until
//!   the zone had applied everything: TLS and HTTP/2 handshakes, gRPC framing, ACKs;
//! - *wait ms*: restore (or the start of the restart: store open, `ZoneCp::start`) to
//!   the zone's first TCP connection through the relay; for a cut this is mostly the
//!   KDS client's reconnect backoff (100 ms doubling to 10 s, full jitter);
//! - *total ms*: restore (or start) until the zone store has recorded global's
//!   revision after the K changes as applied and the zone's KDS client reports a
//!   subscribed session (for K = 0 only the latter). Seen on the zone store's
//!   commit feed plus a 2 ms poll.
//!
//! The *full sync* row is the zone's first connection (empty store, every resource).

pub(crate) mod harness;
pub(crate) mod relay;

use std::time::{Duration, Instant};

use anyhow::Context;
use meridian_model::ResourceKind;
use meridian_store::{ListQuery, NewResource, Store};

use self::harness::{Global, from_document, insight, insight_until, ms};
use self::relay::{Bytes, Relay};

const BATCH: usize = 500;
const SYNC_TIMEOUT: Duration = Duration::from_secs(300);

/// Arguments of `meridian-bench reconnect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Policies on global (MeshTimeouts in mesh `default`).
    #[arg(long, default_value_t = 10_000)]
    policies: usize,
    /// Changes missed per measurement, comma-separated; capped at --policies.
    #[arg(long, value_delimiter = ',', default_value = "0,10,100,1000,10000")]
    missed: Vec<usize>,
    /// Global's store: a PostgreSQL URL (best a fresh database: the full-sync row
    /// counts whatever is already there), or absent for the embedded store.
    #[arg(long, env = "MERIDIAN_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// A few seconds' run for CI: 200 policies, K = 0, 10, 100.
    #[arg(long)]
    smoke: bool,
}

/// One measured row.
struct Row {
    scenario: &'static str,
    missed: String,
    resent: u64,
    bytes: Bytes,
    wait_ms: Option<f64>,
    total_ms: f64,
}

/// Runs the benchmark and prints a table.
pub async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.smoke {
        args.policies = 200;
        args.missed = vec![0, 10, 100];
    }
    let mut missed: Vec<usize> = args.missed.iter().map(|&k| k.min(args.policies)).collect();
    missed.dedup();
    let store_name = if args.database_url.is_some() {
        "PostgreSQL"
    } else {
        "embedded"
    };
    println!(
        "reconnect: one zone re-syncing after missing K policy updates; global store: {store_name}, {} policies; zone and global in-process, KDS over TLS through a counting TCP relay",
        args.policies
    );

    let dir = tempfile::tempdir()?;
    let global = Global::start(dir.path(), args.database_url.as_deref()).await?;
    let run = harness::run_id();
    let names: Vec<String> = (0..args.policies)
        .map(|i| format!("rc-{run}-{i}"))
        .collect();
    let loading = Instant::now();
    harness::put_all(global.store.as_ref(), policies(&names, 0)?, BATCH).await?;
    println!(
        "loaded {} policies into global in {:.0} ms",
        names.len(),
        ms(loading, Instant::now())
    );

    let relay = Relay::start(global.kds_addr()?).await?;
    let http = reqwest::Client::new();
    let api = global.api_url();
    let zone = format!("rc-{run}");
    let zone_dir = dir.path().join("zone");
    let mut rows = Vec::new();

    // Full sync: the zone's first connection.
    let target = global.store.current_revision().await?;
    let before = relay.bytes();
    let started = Instant::now();
    let mut zone_store = meridian_embedded_store::EmbeddedStore::open(&zone_dir).await?;
    let mut zone_cp = harness::start_zone(&global, &zone, relay.addr(), &zone_store).await?;
    let done = harness::wait_applied(&zone_store, target, true, SYNC_TIMEOUT)
        .await
        .context("full sync")?;
    let bytes = relay.bytes() - before;
    let settled = insight_until(&http, &api, &zone, "the full sync acknowledged", |i| {
        i.online && i.revision_applied >= target
    })
    .await?;
    let synced = zone_store
        .list(&ListQuery {
            limit: 1,
            ..ListQuery::all(ResourceKind::MeshTimeout)
        })
        .await?
        .total;
    if synced < names.len() as u64 {
        anyhow::bail!(
            "the zone has {synced} MeshTimeouts after its full sync, expected {}",
            names.len()
        );
    }
    rows.push(Row {
        scenario: "full sync",
        missed: format!("all ({synced})"),
        resent: settled.sent,
        bytes,
        wait_ms: relay.first_accept().map(|t| ms(started, t)),
        total_ms: ms(started, done),
    });

    let mut round = 0;
    for &k in &missed {
        // Cut: the zone stays up, its connection to global does not.
        relay.cut();
        harness::wait_disconnected(&zone).await?;
        let baseline = insight(&http, &api, &zone).await?;
        round += 1;
        harness::put_all(global.store.as_ref(), policies(&names[..k], round)?, BATCH).await?;
        let target = global.store.current_revision().await?;
        let before = relay.bytes();
        let started = Instant::now();
        relay.restore();
        let done = harness::wait_applied(&zone_store, target, true, SYNC_TIMEOUT)
            .await
            .with_context(|| format!("cut, K = {k}"))?;
        let bytes = relay.bytes() - before;
        let settled = insight_until(&http, &api, &zone, "the catch-up acknowledged", |i| {
            i.online && i.revision_applied >= target
        })
        .await?;
        rows.push(Row {
            scenario: "cut",
            missed: k.to_string(),
            resent: settled.sent.saturating_sub(baseline.sent),
            bytes,
            wait_ms: relay.first_accept().map(|t| ms(started, t)),
            total_ms: ms(started, done),
        });

        // Restart: the zone CP stops; a new one starts on the same store directory.
        let _ = zone_cp.shutdown().await;
        zone_store.shutdown().await;
        drop(zone_store);
        // The stopped client leaves its process-wide gauge at 1; the new one must set it.
        metrics::gauge!("meridian_kds_connected").set(0.0);
        harness::wait_disconnected(&zone).await?;
        let baseline = insight(&http, &api, &zone).await?;
        round += 1;
        harness::put_all(global.store.as_ref(), policies(&names[..k], round)?, BATCH).await?;
        let target = global.store.current_revision().await?;
        let before = relay.bytes();
        relay.reset_first_accept();
        let started = Instant::now();
        zone_store = harness::open_embedded(&zone_dir).await?;
        zone_cp = harness::start_zone(&global, &zone, relay.addr(), &zone_store).await?;
        let done = harness::wait_applied(&zone_store, target, true, SYNC_TIMEOUT)
            .await
            .with_context(|| format!("restart, K = {k}"))?;
        let bytes = relay.bytes() - before;
        let settled = insight_until(&http, &api, &zone, "the catch-up acknowledged", |i| {
            i.online && i.revision_applied >= target
        })
        .await?;
        rows.push(Row {
            scenario: "restart",
            missed: k.to_string(),
            resent: settled.sent.saturating_sub(baseline.sent),
            bytes,
            wait_ms: relay.first_accept().map(|t| ms(started, t)),
            total_ms: ms(started, done),
        });
    }

    let _ = zone_cp.shutdown().await;
    zone_store.shutdown().await;
    drop(relay);
    global.shutdown().await;

    println!(
        "{:<10} {:>12} {:>10} {:>12} {:>10} {:>9} {:>10}",
        "scenario", "K missed", "re-sent", "bytes g→z", "bytes z→g", "wait ms", "total ms"
    );
    for row in rows {
        println!(
            "{:<10} {:>12} {:>10} {:>12} {:>10} {:>9} {:>10.1}",
            row.scenario,
            row.missed,
            row.resent,
            row.bytes.to_zone,
            row.bytes.to_global,
            row.wait_ms
                .map_or_else(|| "-".to_owned(), |w| format!("{w:.1}")),
            row.total_ms
        );
    }
    println!(
        "re-sent: global's global→zone sent counters (all types); bytes: through the relay from restore/start until applied (TLS, HTTP/2, gRPC framing included); wait: restore/start -> the zone's first TCP connection (reconnect backoff; for restart also store open and ZoneCp::start); total: restore/start -> all K applied in the zone store with a subscribed session"
    );
    Ok(())
}

/// MeshTimeouts named `names`; `round` makes each round's spec differ from the last,
/// so every put is a real update (an unchanged put writes nothing).
fn policies(names: &[String], round: usize) -> anyhow::Result<Vec<NewResource>> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            from_document(
                serde_json::json!({
                    "type": "MeshTimeout", "name": name, "mesh": "default",
                    "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"},
                             "default": {"idleTimeout": format!("{}s", round * 100_000 + i + 1)}}]}
                }),
                None,
            )
        })
        .collect()
}
