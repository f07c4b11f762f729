//! Data path: Meridian's zone-ingress SNI router against HAProxy and nginx, and
//! against no proxy at all, with one load generator and one upstream.
//!
//! ```text
//!  load generator ──TLS (SNI echo.bench.meridian)──▶ [proxy] ──▶ TLS echo upstream
//!  (tokio-rustls, own runtime)      passthrough, no termination   (tokio-rustls, own runtime)
//! ```
//!
//! Paths:
//! - `direct`: the clients dial the upstream.
//! - `meridian`: `SniProxy`, in a child process (`meridian-bench serve-ingress`).
//! - `haproxy`: `mode tcp`, `req_ssl_hello_type 1`, `use_backend` by `req.ssl_sni`.
//! - `nginx`: `stream`, `ssl_preread on`, `map $ssl_preread_server_name`.
//!
//! Each proxy runs as a child process with `--threads` threads (`nbthread`,
//! `worker_processes`, tokio worker threads; 1 is a current-thread runtime), so
//! all three are measured the same way from `/proc`. HAProxy and nginx are skipped
//! when not installed. Per path, in order, each for `--duration`:
//! 1. connections per second: clients each opening connections back to back,
//!    every one a full TLS 1.3 handshake (no resumption), one small
//!    request/response and a clean close;
//! 2. latency of a small message's round trip on persistent connections, closed
//!    loop (the first tenth is a warm-up);
//! 3. bulk throughput: a few connections writing large buffers and reading the
//!    echo back; Gbit/s counts the echoed bytes (each crossed the path twice).
//!
//! The proxy's CPU seconds are the user + system time it used during the three
//! measurements; its RSS is the peak (`VmHWM`), summed over its processes.

pub mod ingress;
mod load;
mod proxies;
mod tls;

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use load::Target;
use proxies::{ProxyProcess, Usage};
use tokio::runtime::Runtime;

/// Arguments of `meridian-bench datapath`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Length of each measurement, per path (humantime: `5s`, `500ms`).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// CI smoke run: 0.5 s per measurement and small sizes (4 handshake
    /// clients, 4 latency connections, 1 bulk connection of 64 KiB writes).
    #[arg(long)]
    smoke: bool,
    /// Proxy threads: `1`, `all` (one per core), or a number.
    #[arg(long, default_value = "1", value_parser = parse_threads)]
    threads: usize,
    /// Paths to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "direct,meridian,haproxy,nginx"
    )]
    paths: Vec<PathKind>,
    /// Concurrent clients of the connection-rate measurement.
    #[arg(long, default_value_t = 32)]
    handshake_clients: usize,
    /// Persistent connections of the latency measurement.
    #[arg(long, default_value_t = 16)]
    latency_connections: usize,
    /// Bytes per request (connection rate and latency).
    #[arg(long, default_value_t = 64)]
    message_size: usize,
    /// Connections of the bulk measurement.
    #[arg(long, default_value_t = 4)]
    bulk_connections: usize,
    /// Bytes per write of the bulk measurement.
    #[arg(long, default_value_t = 256 * 1024)]
    bulk_write: usize,
    /// Worker threads of the load generator's runtime and of the upstream's (each);
    /// default: one per core.
    #[arg(long)]
    client_threads: Option<usize>,
}

/// One way from the load generator to the upstream.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum PathKind {
    /// No proxy.
    Direct,
    /// Meridian's zone-ingress SNI router.
    Meridian,
    /// HAProxy, TCP mode with SNI inspection.
    Haproxy,
    /// nginx, stream with ssl_preread.
    Nginx,
}

impl PathKind {
    fn label(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Meridian => "meridian",
            PathKind::Haproxy => "haproxy",
            PathKind::Nginx => "nginx",
        }
    }
}

fn parse_threads(value: &str) -> Result<usize, String> {
    match value {
        "all" => Ok(cores()),
        n => match n.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{value:?}: expected 1, all or a positive number")),
        },
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The sizes of one run (after `--smoke`).
#[derive(Debug, Clone, Copy)]
struct Plan {
    duration: Duration,
    handshake_clients: usize,
    latency_connections: usize,
    message_size: usize,
    bulk_connections: usize,
    bulk_write: usize,
    threads: usize,
}

/// What one path gave.
enum Outcome {
    Measured(Box<Figures>),
    Skipped(String),
    Failed(String),
}

struct Figures {
    connections: load::ConnectionRate,
    latency: load::Latency,
    bulk: load::Bulk,
    /// The proxy's CPU seconds during each measurement, and its peak RSS; `None`
    /// for `direct`.
    proxy: Option<ProxyFigures>,
}

struct ProxyFigures {
    cpu_connections: f64,
    cpu_latency: f64,
    cpu_bulk: f64,
    peak_rss_bytes: u64,
}

/// Runs the benchmark and prints a markdown table.
pub fn run(args: Args) -> anyhow::Result<()> {
    let plan = if args.smoke {
        Plan {
            duration: Duration::from_millis(500),
            handshake_clients: 4,
            latency_connections: 4,
            message_size: args.message_size,
            bulk_connections: 1,
            bulk_write: 64 * 1024,
            threads: args.threads,
        }
    } else {
        Plan {
            duration: args.duration,
            handshake_clients: args.handshake_clients,
            latency_connections: args.latency_connections,
            message_size: args.message_size,
            bulk_connections: args.bulk_connections,
            bulk_write: args.bulk_write,
            threads: args.threads,
        }
    };
    let client_threads = args.client_threads.unwrap_or_else(cores).max(1);
    let load_runtime = runtime("load", client_threads)?;
    let upstream_runtime = runtime("upstream", client_threads)?;
    let pki = tls::Pki::new()?;

    print_header(&plan, client_threads);
    let mut results = Vec::new();
    for &path in &args.paths {
        eprintln!("datapath: measuring {}", path.label());
        let outcome = match measure(path, &plan, &pki, &load_runtime, &upstream_runtime) {
            Ok(outcome) => outcome,
            Err(error) => Outcome::Failed(format!("{error:#}")),
        };
        results.push((path, outcome));
        // Let the previous path's connections finish closing.
        std::thread::sleep(Duration::from_millis(500));
    }
    print!("{}", table(&results));
    upstream_runtime.shutdown_timeout(Duration::from_secs(1));
    load_runtime.shutdown_timeout(Duration::from_secs(1));
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, outcome)| matches!(outcome, Outcome::Failed(_)))
        .map(|(path, _)| path.label())
        .collect();
    if !failed.is_empty() {
        anyhow::bail!("datapath: failed paths: {}", failed.join(", "));
    }
    Ok(())
}

fn runtime(name: &str, threads: usize) -> anyhow::Result<Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()?)
}

fn print_header(plan: &Plan, client_threads: usize) {
    let (processors, model) = machine();
    println!(
        "datapath: TLS echo upstream (rustls, ECDSA P-256, TLS 1.3, no resumption) behind each path, loopback"
    );
    println!(
        "machine: {processors} cores ({model}); date {}; command: {}",
        humantime::format_rfc3339_seconds(SystemTime::now()),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    println!(
        "proxy threads: {}; load generator and upstream: {client_threads} worker threads each, separate runtimes in this process",
        plan.threads
    );
    println!(
        "per path, {:?} each: conn/s with {} clients ({} B request/response, full handshake, clean close); latency on {} persistent connections, {} B, closed loop; bulk on {} connections, {} KiB writes, echoed bytes",
        plan.duration,
        plan.handshake_clients,
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
    (if processors == 0 { cores() } else { processors }, model)
}

fn measure(
    path: PathKind,
    plan: &Plan,
    pki: &tls::Pki,
    load_runtime: &Runtime,
    upstream_runtime: &Runtime,
) -> anyhow::Result<Outcome> {
    let upstream = tls::EchoUpstream::start(upstream_runtime, pki)?;
    let mut proxy = match path {
        PathKind::Direct => None,
        PathKind::Meridian => Some(ProxyProcess::meridian(upstream.addr, plan.threads)?),
        PathKind::Haproxy => match proxies::find_binary("haproxy") {
            Some(binary) => Some(ProxyProcess::haproxy(&binary, upstream.addr, plan.threads)?),
            None => {
                return Ok(Outcome::Skipped(
                    "haproxy not found (Debian/Ubuntu: apt-get install -y haproxy)".to_owned(),
                ));
            }
        },
        PathKind::Nginx => match proxies::find_binary("nginx") {
            Some(binary) => match proxies::nginx_stream(&binary) {
                Ok(stream) => Some(ProxyProcess::nginx(
                    &binary,
                    &stream,
                    upstream.addr,
                    plan.threads,
                )?),
                Err(error) => return Ok(Outcome::Skipped(format!("{error:#}"))),
            },
            None => {
                return Ok(Outcome::Skipped(
                    "nginx not found (Debian/Ubuntu: apt-get install -y nginx libnginx-mod-stream)"
                        .to_owned(),
                ));
            }
        },
    };
    let target = Target {
        addr: proxy.as_ref().map_or(upstream.addr, |proxy| proxy.addr),
        connector: pki.connector(),
        name: tls::server_name()?,
    };
    let message = vec![b'x'; plan.message_size];
    if let Err(error) = load_runtime.block_on(target.probe(&message, Duration::from_secs(10))) {
        let log = match proxy.as_mut() {
            Some(proxy) => proxy
                .check_running()
                .err()
                .map(|exited| format!("{exited:#}"))
                .unwrap_or_else(|| proxy.log()),
            None => String::new(),
        };
        return Err(if log.trim().is_empty() {
            error
        } else {
            error.context(log)
        });
    }

    let usage = |proxy: &Option<ProxyProcess>| proxy.as_ref().map(ProxyProcess::usage);
    let before = usage(&proxy);
    let connections = load_runtime.block_on(load::connection_rate(
        &target,
        plan.handshake_clients,
        plan.message_size,
        plan.duration,
    ));
    let after_connections = usage(&proxy);
    let latency = load_runtime
        .block_on(load::latency(
            &target,
            plan.latency_connections,
            plan.message_size,
            plan.duration,
        ))
        .context("latency")?;
    let after_latency = usage(&proxy);
    let bulk = load_runtime
        .block_on(load::bulk(
            &target,
            plan.bulk_connections,
            plan.bulk_write,
            plan.duration,
        ))
        .context("bulk")?;
    let after_bulk = usage(&proxy);
    if let Some(proxy) = proxy.as_mut() {
        proxy.check_running()?;
    }
    let proxy_figures = match (before, after_connections, after_latency, after_bulk) {
        (Some(before), Some(connections), Some(latency), Some(bulk)) => Some(ProxyFigures {
            cpu_connections: cpu_between(before, connections),
            cpu_latency: cpu_between(connections, latency),
            cpu_bulk: cpu_between(latency, bulk),
            peak_rss_bytes: bulk.peak_rss_bytes,
        }),
        _ => None,
    };
    drop(proxy);
    drop(upstream);
    Ok(Outcome::Measured(Box::new(Figures {
        connections,
        latency,
        bulk,
        proxy: proxy_figures,
    })))
}

fn cpu_between(from: Usage, to: Usage) -> f64 {
    (to.cpu_seconds - from.cpu_seconds).max(0.0)
}

/// The main table, then the details: counts, errors, the proxy's CPU per
/// measurement and per unit of work (round trips counted with the warm-up's,
/// like the CPU time).
fn table(results: &[(PathKind, Outcome)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| path | conn/s | p50 µs | p99 µs | p999 µs | Gbit/s | proxy CPU s | proxy RSS MiB |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for (path, outcome) in results {
        let label = path.label();
        match outcome {
            Outcome::Measured(figures) => {
                let us = |q: f64| figures.latency.histogram.value_at_quantile(q) as f64 / 1000.0;
                let (cpu, rss) = match &figures.proxy {
                    Some(proxy) => (
                        format!(
                            "{:.2}",
                            proxy.cpu_connections + proxy.cpu_latency + proxy.cpu_bulk
                        ),
                        format!("{:.1}", proxy.peak_rss_bytes as f64 / (1024.0 * 1024.0)),
                    ),
                    None => ("–".to_owned(), "–".to_owned()),
                };
                let _ = writeln!(
                    out,
                    "| {label} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {cpu} | {rss} |",
                    figures.connections.per_second(),
                    us(0.5),
                    us(0.99),
                    us(0.999),
                    figures.bulk.gbit_per_second(),
                );
            }
            Outcome::Skipped(why) => {
                let _ = writeln!(out, "| {label} | skipped: {why} | | | | | | |");
            }
            Outcome::Failed(why) => {
                let why = why.replace('\n', " ");
                let _ = writeln!(out, "| {label} | failed: {why} | | | | | | |");
            }
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| path | connections ok | connection errors | round trips (warm-up incl.) | latency errors | bulk GiB echoed | proxy CPU s: conn | latency | bulk | proxy CPU µs/conn | µs/round trip | s/GiB echoed |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (path, outcome) in results {
        let Outcome::Measured(figures) = outcome else {
            continue;
        };
        let gib = figures.bulk.bytes as f64 / f64::from(1u32 << 30);
        let round_trips = figures.latency.round_trips;
        let cpu = |f: &dyn Fn(&ProxyFigures) -> f64, decimals: usize| {
            figures.proxy.as_ref().map_or_else(
                || "–".to_owned(),
                |proxy| format!("{:.*}", decimals, f(proxy)),
            )
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {gib:.2} | {} | {} | {} | {} | {} | {} |",
            path.label(),
            figures.connections.completed,
            figures.connections.errors,
            round_trips,
            figures.latency.errors,
            cpu(&|p| p.cpu_connections, 2),
            cpu(&|p| p.cpu_latency, 2),
            cpu(&|p| p.cpu_bulk, 2),
            cpu(
                &|p| p.cpu_connections * 1e6 / figures.connections.completed.max(1) as f64,
                1
            ),
            cpu(&|p| p.cpu_latency * 1e6 / round_trips.max(1) as f64, 1),
            cpu(&|p| p.cpu_bulk / gib.max(f64::MIN_POSITIVE), 2),
        );
    }
    out
}
