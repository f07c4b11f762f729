//! Fan-out: one global, many zones as lightweight KDS clients.
//!
//! Setup, all on loopback:
//! - global is the real `meridian global-cp` binary as a child process (its embedded
//!   store, or PostgreSQL with `--database-url`), so its CPU and memory are its own;
//! - the bench creates `--zones` Zone records (`PUT /zones/z<i>`) before any zone
//!   connects, so connecting writes nothing;
//! - each zone is a real gRPC `GlobalToZone` stream over TLS with its own HTTP/2
//!   connection and a zone token from `POST /tokens/zone`: it subscribes from
//!   revision 0 (a full sync), ACKs every message at once, and reports the
//!   `idleTimeout` of the bench's MeshTimeout whenever a message carries it. It
//!   applies nothing (no store): this measures global's side only.
//!
//! One MeshTimeout is PUT `--changes` times at `--rate` per second, as in the
//! `propagation` benchmark (change *i* sets `i+1` seconds). Figures: PUT → received
//! by every zone (p50/p99/max, with changes lost or coalesced as in `propagation`),
//! the time to connect and fully sync every zone, global's CPU seconds during the
//! changes, and global's RSS (`VmRSS` once every zone synced, and `VmHWM` at the end).
//! The zones run in this process and share its 2 cores with global: on a small
//! machine the clients' own work is part of the latency.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use meridian_proto::kds::kds_client::KdsClient;
use meridian_proto::kds::{self, ZoneToGlobalAck, zone_to_global_ack};
use meridian_proto::metadata;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::fullpath::process::meridian_bin;
use crate::procfs::status_kib;
use crate::propagation::{ADMIN, Arrivals, issue_token, policy, rand_id, start_global};

/// How long the last changes may take to arrive everywhere.
const DRAIN: Duration = Duration::from_secs(30);
/// Zones connecting at once.
const CONNECT_AT_ONCE: usize = 50;

/// Arguments of `meridian-bench fanout`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Zones (lightweight KDS clients).
    #[arg(long, default_value_t = 1_000)]
    zones: usize,
    /// Policy changes.
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// PUTs per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Global's store: a PostgreSQL URL (best a fresh database), or absent for the
    /// embedded store.
    #[arg(long, env = "MERIDIAN_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// The `meridian` binary global runs from (default: next to this executable).
    #[arg(long)]
    meridian_bin: Option<PathBuf>,
    /// A few seconds' run for CI: 20 zones, 5 changes.
    #[arg(long)]
    smoke: bool,
}

/// What a zone client reports: (zone, value it now holds, when).
type Report = (usize, usize, Instant);

/// Runs the benchmark and prints its figures.
pub async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.smoke {
        args.zones = 20;
        args.changes = 5;
    }
    let bin = meridian_bin(args.meridian_bin.as_deref())?;
    let store_name = if args.database_url.is_some() {
        "PostgreSQL"
    } else {
        "embedded"
    };
    println!(
        "fanout: {} zones as KDS clients (TLS, zone tokens, ACK every message, no store) in this process; one MeshTimeout PUT {} times at {} PUT/s; global: `{} global-cp` on its {store_name} store (own process)",
        args.zones,
        args.changes,
        args.rate,
        bin.display()
    );
    let dir = tempfile::tempdir()?;
    let (mut global, api, kds_url, ca_pem) =
        start_global(&bin, dir.path(), args.database_url.as_deref()).await?;
    let global_pid = global.pid();
    let http = reqwest::Client::new();
    let policy_name = format!("bench-{:08x}", rand_id());

    // Zones exist before anyone connects, so connecting writes nothing.
    let mut tokens = Vec::with_capacity(args.zones);
    for z in 0..args.zones {
        let name = format!("z{z}");
        let response = http
            .put(format!("{api}/zones/{name}"))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({"type": "Zone", "name": name}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("PUT /zones/{name}: {}", response.status());
        }
        tokens.push(issue_token(&http, &api, &name).await?);
    }
    let mesh = http
        .put(format!("{api}/meshes/default"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"type": "Mesh", "name": "default"}))
        .send()
        .await?;
    if !mesh.status().is_success() {
        bail!("PUT /meshes/default: {}", mesh.status());
    }

    // Connect every zone; each is synced once its full sync ended (`snapshot_end`).
    let rss_before = status_kib(global_pid, "VmRSS:").unwrap_or(0) * 1024;
    let (report_tx, mut report_rx) = mpsc::unbounded_channel::<Report>();
    let (synced_tx, mut synced_rx) = mpsc::unbounded_channel::<usize>();
    let connecting = Instant::now();
    let mut clients = Vec::with_capacity(args.zones);
    for (z, token) in tokens.into_iter().enumerate() {
        let zone = Zone {
            index: z,
            name: format!("z{z}"),
            token,
            policy: policy_name.clone(),
        };
        let channel = connect(&kds_url, &ca_pem).await?;
        clients.push(tokio::spawn(zone.run(
            channel,
            report_tx.clone(),
            synced_tx.clone(),
        )));
        if (z + 1) % CONNECT_AT_ONCE == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut synced = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while synced < args.zones {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, synced_rx.recv()).await {
            Ok(Some(_)) => synced += 1,
            Ok(None) => bail!("every zone client ended"),
            Err(_) => bail!("only {synced} of {} zones synced in 600 s", args.zones),
        }
    }
    let connect_ms = connecting.elapsed().as_secs_f64() * 1000.0;
    let rss_synced = status_kib(global_pid, "VmRSS:").unwrap_or(0) * 1024;

    let mut arrivals = Arrivals::new(args.zones, args.changes);
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
        while let Ok((zone, value, at)) = report_rx.try_recv() {
            arrivals.observe(zone, value, at);
        }
    }
    let deadline = Instant::now() + DRAIN;
    while !arrivals.complete() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, report_rx.recv()).await {
            Ok(Some((zone, value, at))) => arrivals.observe(zone, value, at),
            _ => break,
        }
    }
    let usage_after = global.usage();
    global.check_running()?;
    let rss_end = status_kib(global_pid, "VmRSS:").unwrap_or(0) * 1024;
    let summary = arrivals.summary(&started)?;
    for client in &clients {
        client.abort();
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let ms = |q: f64| summary.histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{:>6} {:>8} | {:>11} | {:>9} {:>9} {:>9} {:>5} {:>9} | {:>12} | {:>10} {:>10} {:>10} {:>10}",
        "zones",
        "changes",
        "sync all ms",
        "recv p50",
        "p99 ms",
        "max ms",
        "lost",
        "coalesced",
        "global CPU s",
        "RSS before",
        "RSS synced",
        "RSS end",
        "peak MiB"
    );
    println!(
        "{:>6} {:>8} | {:>11.0} | {:>9.2} {:>9.2} {:>9.2} {:>5} {:>9} | {:>12.2} | {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
        args.zones,
        args.changes,
        connect_ms,
        ms(0.5),
        ms(0.99),
        summary.histogram.max() as f64 / 1000.0,
        summary.lost,
        summary.coalesced,
        usage_before.cpu_until(usage_after),
        mib(rss_before),
        mib(rss_synced),
        mib(rss_end),
        mib(usage_after.peak_rss_bytes),
    );
    let _ = http.delete(&url).bearer_auth(ADMIN).send().await;
    drop(global);
    Ok(())
}

async fn connect(url: &str, ca_pem: &str) -> anyhow::Result<tonic::transport::Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(10))
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)))?;
    Ok(endpoint.connect().await?)
}

/// One lightweight zone.
struct Zone {
    index: usize,
    name: String,
    token: String,
    policy: String,
}

impl Zone {
    async fn run(
        self,
        channel: tonic::transport::Channel,
        reports: mpsc::UnboundedSender<Report>,
        synced: mpsc::UnboundedSender<usize>,
    ) -> anyhow::Result<()> {
        let mut client = KdsClient::new(channel).max_decoding_message_size(8 * 1024 * 1024);
        let (acks, acks_rx) = mpsc::channel(16);
        acks.send(ZoneToGlobalAck {
            kind: Some(zone_to_global_ack::Kind::Subscribe(kds::Subscribe {
                since_revision: 0,
            })),
        })
        .await?;
        let mut request = tonic::Request::new(ReceiverStream::new(acks_rx));
        let headers = request.metadata_mut();
        headers.insert("authorization", format!("Bearer {}", self.token).parse()?);
        headers.insert(metadata::ZONE, self.name.parse()?);
        let mut deltas = client.global_to_zone(request).await?.into_inner();
        let mut is_synced = false;
        while let Some(delta) = deltas.message().await? {
            let at = Instant::now();
            let changes = delta.changes.unwrap_or_default();
            for resource in &changes.upserts {
                if resource.r#type == "MeshTimeout"
                    && resource.name == self.policy
                    && let Some(value) = idle_seconds(&resource.spec)
                {
                    let _ = reports.send((self.index, value, at));
                }
            }
            if !is_synced && changes.snapshot_end {
                is_synced = true;
                let _ = synced.send(self.index);
            }
            acks.send(ZoneToGlobalAck {
                kind: Some(zone_to_global_ack::Kind::Ack(kds::Ack {
                    nonce: changes.nonce,
                    nacks: Vec::new(),
                })),
            })
            .await?;
        }
        Ok(())
    }
}

/// The `idleTimeout` seconds of the bench policy's spec (`"<n>s"`).
fn idle_seconds(spec: &[u8]) -> Option<usize> {
    let spec: serde_json::Value = serde_json::from_slice(spec).ok()?;
    spec.pointer("/to/0/default/idleTimeout")?
        .as_str()?
        .strip_suffix('s')?
        .parse()
        .ok()
}
