//! Full path: the whole cross-zone data path against a direct connection, with
//! every component a real `meridian` process on loopback.
//!
//! ```text
//!  full path: load ─TCP─▶ client sidecar ─mTLS─▶ zone-a egress ─▶ zone-b ingress ─▶ server sidecar ─TCP─▶ echo
//!  direct:    load ─TCP──────────────────────────────────────────────────────────────────────────────▶ echo
//! ```
//!
//! Set-up ([`mesh`]): global (embedded store), zone CPs `zone-a` and `zone-b`, an
//! mTLS `default` mesh with `routing.zoneEgress: true` and an allow-all
//! MeshTrafficPermission (PUT on global's REST API); in zone-b a zone ingress and
//! `meridian demo-echo` behind a sidecar (`meridian dp --inbound PUB=APP`); in
//! zone-a a zone egress and a client sidecar with `--outbound ADDR=echo`. The run
//! starts once a connection through the outbound is answered by zone-b's echo.
//! The egress and ingress only peek at the SNI and splice; mTLS runs end to end
//! between the two sidecars.
//!
//! Per path, in order, each for `--duration`, from a plain-TCP load generator on
//! this process's tokio runtime ([`load`]):
//! 1. new connections per second: clients each opening connections back to back,
//!    every one connect, 64 B out, `<identity>: ` + 64 B back, half-close, close;
//!    through the mesh every one is a new mTLS handshake between the sidecars.
//!    Each connection's time from connect to the whole first answer is recorded
//!    too (the details table);
//! 2. latency of a 64 B round trip on 16 persistent connections, closed loop
//!    (the first tenth is a warm-up);
//! 3. bulk throughput on 4 connections writing 256 KiB buffers and reading the
//!    echo; Gbit/s counts the echoed bytes (each crossed the path twice).
//!
//! CPU seconds of each proxy process (and of the echo app) are user + system
//! time from `/proc/<pid>/stat` during each measurement; RSS is each one's peak
//! (`VmHWM`) over its life. Everything (load generator, proxies, app, control
//! planes) shares the machine's cores.

mod load;
mod mesh;
pub(crate) mod process;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use load::Target;
use mesh::{IDENTITY, Mesh};
use process::Usage;

/// Arguments of `meridian-bench fullpath`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Length of each measurement, per path (humantime: `5s`, `500ms`).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// CI smoke run: 0.3 s per measurement and small sizes (4 connecting
    /// clients, 4 latency connections, 1 bulk connection of 64 KiB writes).
    #[arg(long)]
    smoke: bool,
    /// The `meridian` binary (default: next to this executable).
    #[arg(long)]
    meridian_bin: Option<PathBuf>,
    /// Concurrent clients of the connection-rate measurement.
    #[arg(long, default_value_t = 16)]
    connect_clients: usize,
    /// Persistent connections of the latency measurement.
    #[arg(long, default_value_t = 16)]
    latency_connections: usize,
    /// Bytes per message (connection rate and latency).
    #[arg(long, default_value_t = 64)]
    message_size: usize,
    /// Connections of the bulk measurement.
    #[arg(long, default_value_t = 4)]
    bulk_connections: usize,
    /// Bytes per write of the bulk measurement.
    #[arg(long, default_value_t = 256 * 1024)]
    bulk_write: usize,
}

/// The sizes of one run (after `--smoke`).
#[derive(Debug, Clone, Copy)]
struct Plan {
    duration: Duration,
    connect_clients: usize,
    latency_connections: usize,
    message_size: usize,
    bulk_connections: usize,
    bulk_write: usize,
}

/// One path's figures, and the CPU of the processes watched during each
/// measurement (proxies in path order, then the echo app).
struct Figures {
    label: &'static str,
    connections: load::ConnectionRate,
    latency: load::Latency,
    bulk: load::Bulk,
    /// Per process: CPU seconds during connections, latency, bulk.
    cpu: Vec<[f64; 3]>,
}

/// Runs the benchmark and prints markdown tables.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let plan = if args.smoke {
        Plan {
            duration: Duration::from_millis(300),
            connect_clients: 4,
            latency_connections: 4,
            message_size: args.message_size,
            bulk_connections: 1,
            bulk_write: 64 * 1024,
        }
    } else {
        Plan {
            duration: args.duration,
            connect_clients: args.connect_clients,
            latency_connections: args.latency_connections,
            message_size: args.message_size,
            bulk_connections: args.bulk_connections,
            bulk_write: args.bulk_write,
        }
    };
    let bin = process::meridian_bin(args.meridian_bin.as_deref())?;
    eprintln!(
        "fullpath: starting global, 2 zone CPs, ingress, egress, 2 sidecars and the echo app"
    );
    let set_up = std::time::Instant::now();
    let mut mesh = Mesh::start(&bin).await.context("starting the mesh")?;
    let converged = set_up.elapsed();

    let direct = Target::new(mesh.echo, IDENTITY);
    let full = Target::new(mesh.outbound, IDENTITY);
    eprintln!("fullpath: measuring direct");
    let direct = measure("direct", &direct, &plan, &mesh).await?;
    // A pause so the direct run's connections finish closing (TIME_WAIT, echo
    // tasks) before the next measurement; not a synchronisation.
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!("fullpath: measuring full path");
    let full = measure("full path", &full, &plan, &mesh).await?;
    for (proxy, _) in &mut mesh.proxies {
        proxy.check_running()?;
    }
    mesh.app.check_running()?;
    let forwarded = mesh.forwarded().await;

    print_header(&plan, &bin, converged);
    print!("{}", tables(&[direct, full], &mesh, &forwarded));
    Ok(())
}

/// The processes watched: the proxies in path order, then the echo app.
fn usages(mesh: &Mesh) -> Vec<Usage> {
    mesh.proxies
        .iter()
        .map(|(proxy, _)| proxy.usage())
        .chain(std::iter::once(mesh.app.usage()))
        .collect()
}

async fn measure(
    label: &'static str,
    target: &Target,
    plan: &Plan,
    mesh: &Mesh,
) -> anyhow::Result<Figures> {
    let before = usages(mesh);
    let connections = load::connection_rate(
        target,
        plan.connect_clients,
        plan.message_size,
        plan.duration,
    )
    .await;
    let after_connections = usages(mesh);
    let latency = load::latency(
        target,
        plan.latency_connections,
        plan.message_size,
        plan.duration,
    )
    .await
    .with_context(|| format!("{label}: latency"))?;
    let after_latency = usages(mesh);
    let bulk = load::bulk(
        target,
        plan.bulk_connections,
        plan.bulk_write,
        plan.duration,
    )
    .await
    .with_context(|| format!("{label}: bulk"))?;
    let after_bulk = usages(mesh);
    let cpu = (0..before.len())
        .map(|i| {
            [
                before[i].cpu_until(after_connections[i]),
                after_connections[i].cpu_until(after_latency[i]),
                after_latency[i].cpu_until(after_bulk[i]),
            ]
        })
        .collect();
    Ok(Figures {
        label,
        connections,
        latency,
        bulk,
        cpu,
    })
}

fn print_header(plan: &Plan, bin: &std::path::Path, converged: Duration) {
    let (processors, model) = machine();
    println!(
        "fullpath: plain-TCP load -> client sidecar -mTLS-> zone-a egress -> zone-b ingress -> server sidecar -> demo echo, against load -> demo echo; every component a `{}` process on loopback",
        bin.display()
    );
    println!(
        "machine: {processors} cores ({model}); date {}; command: {}",
        humantime::format_rfc3339_seconds(SystemTime::now()),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    println!(
        "set-up until the first answer through the mesh: {:.1} s; load generator: this process's tokio runtime ({} worker threads), sharing the cores with every process",
        converged.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!(
        "per path, {:?} each: conn/s with {} clients (connect, {} B out, prefix + echo back, half-close, close); latency on {} persistent connections, {} B, closed loop, first tenth warm-up; bulk on {} connections, {} KiB writes, echoed bytes",
        plan.duration,
        plan.connect_clients,
        plan.message_size,
        plan.latency_connections,
        plan.message_size,
        plan.bulk_connections,
        plan.bulk_write / 1024
    );
    println!();
}

/// Cores and CPU model from `/proc/cpuinfo`.
fn machine() -> (usize, String) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let processors = cpuinfo
        .lines()
        .filter(|line| line.starts_with("processor"))
        .count();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let processors = if processors == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        processors
    };
    (processors, model)
}

/// The main table, per-process CPU and memory, and the details.
fn tables(results: &[Figures], mesh: &Mesh, forwarded: &[(String, Option<f64>)]) -> String {
    let proxies = mesh.proxies.len();
    let rss = usages(mesh);
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| path | conn/s | p50 µs | p99 µs | p999 µs | Gbit/s | proxies' CPU s | proxies' peak RSS MiB |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for figures in results {
        let us = |q: f64| figures.latency.histogram.value_at_quantile(q) as f64 / 1000.0;
        let (cpu, memory) = if figures.label == "direct" {
            ("–".to_owned(), "–".to_owned())
        } else {
            let cpu: f64 = figures.cpu[..proxies].iter().flatten().sum();
            let memory: u64 = rss[..proxies].iter().map(|u| u.peak_rss_bytes).sum();
            (format!("{cpu:.2}"), format!("{:.1}", mib(memory)))
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {cpu} | {memory} |",
            figures.label,
            figures.connections.per_second(),
            us(0.5),
            us(0.99),
            us(0.999),
            figures.bulk.gbit_per_second(),
        );
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| process | during | CPU s: conn | latency | bulk | CPU µs/conn | µs/round trip | s/GiB echoed | peak RSS MiB |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    let labels: Vec<String> = mesh
        .proxies
        .iter()
        .map(|(p, _)| p.label.clone())
        .chain(std::iter::once(mesh.app.label.clone()))
        .collect();
    for figures in results {
        let gib = figures.bulk.bytes as f64 / f64::from(1u32 << 30);
        for (i, label) in labels.iter().enumerate() {
            // Proxies are idle on the direct path; only the app is on it.
            if figures.label == "direct" && i < proxies {
                continue;
            }
            let [conn, latency, bulk] = figures.cpu[i];
            let _ = writeln!(
                out,
                "| {label} | {} | {conn:.2} | {latency:.2} | {bulk:.2} | {:.1} | {:.1} | {:.2} | {:.1} |",
                figures.label,
                conn * 1e6 / figures.connections.completed.max(1) as f64,
                latency * 1e6 / figures.latency.round_trips.max(1) as f64,
                bulk / gib.max(f64::MIN_POSITIVE),
                mib(rss[i].peak_rss_bytes),
            );
        }
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| path | connections ok | connection errors | connect → first answer p50 ms | p99 ms | max ms | round trips (warm-up incl.) | latency errors | bulk GiB echoed |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for figures in results {
        let first = &figures.connections.first_answer;
        let ms = |nanos: u64| nanos as f64 / 1e6;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {:.2} |",
            figures.label,
            figures.connections.completed,
            figures.connections.errors,
            ms(first.value_at_quantile(0.5)),
            ms(first.value_at_quantile(0.99)),
            ms(first.max()),
            figures.latency.round_trips,
            figures.latency.errors,
            figures.bulk.bytes as f64 / f64::from(1u32 << 30),
        );
    }
    let counters: Vec<String> = forwarded
        .iter()
        .map(|(label, count)| {
            format!(
                "{label} {}",
                count.map_or_else(|| "unknown".to_owned(), |c| format!("{c:.0}"))
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "\nconnections forwarded (zone proxies' meridian_zone_proxy_connections_forwarded_total, whole run incl. set-up): {}",
        counters.join(", ")
    );
    out
}
