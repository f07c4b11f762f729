//! `meridian-bench`: Meridian's benchmarks. They print figures; they never pass or
//! fail. `scripts/bench.sh` runs them all; CI runs a tiny smoke of each.
//!
//! - `propagation`: policy PUT on global → applied in every zone, for N zones.
//! - `fanout`: policy PUT on global → received by 1,000 lightweight KDS clients.
//! - `reconnect`, `scale`, `zone-scale`, `fullpath`, `pg-load`: see each module.
//! - `datapath`: connections/s, latency, throughput, CPU and memory of Meridian's
//!   zone-ingress SNI router, HAProxy and nginx, and of no proxy.

mod datapath;
mod fanout;
mod fullpath;
mod pg_load;
mod procfs;
mod propagation;
mod reconnect;
mod scale;
mod zone_scale;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "meridian-bench", about = "Meridian benchmarks (print figures)")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Time from a policy PUT on global until every zone has applied it.
    Propagation(propagation::Args),
    /// PUT on global -> received by N lightweight KDS clients; global's CPU and RSS.
    Fanout(fanout::Args),
    /// TLS passthrough by SNI: Meridian's zone ingress, HAProxy, nginx and no proxy.
    Datapath(datapath::Args),
    /// Resources and bytes re-sent when a zone reconnects after K changes, or restarts.
    Reconnect(reconnect::Args),
    /// Memory, full-sync time and config computation at 100 zones × 1,000 dataplanes.
    Scale(scale::Args),
    /// The whole data path (sidecar → egress → ingress → sidecar) against a direct connection.
    Fullpath(fullpath::Args),
    /// One zone CP with many proxies and policies: what a change costs it.
    ZoneScale(zone_scale::Args),
    /// The `zone-scale` benchmark's zone CP child.
    #[command(hide = true)]
    ServeZone(zone_scale::ServeArgs),
    /// Time to write 10,000 policies into PostgreSQL in batches (create, update, delete).
    PgLoad(pg_load::Args),
    /// Meridian's SNI router with fixed routes (the `datapath` benchmark's child).
    #[command(hide = true)]
    ServeIngress(datapath::ingress::Args),
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.trim().is_empty() => {
                tracing_subscriber::EnvFilter::new(directives)
            }
            // openraft logs cancelled in-flight writes at ERROR when in-process zones
            // are torn down between runs; that noise would bury the figures.
            _ => tracing_subscriber::EnvFilter::new("error,openraft=off"),
        })
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().bench {
        Bench::Propagation(args) => runtime()?.block_on(propagation::run(args)),
        Bench::Fanout(args) => runtime()?.block_on(fanout::run(args)),
        Bench::Datapath(args) => datapath::run(args),
        Bench::Reconnect(args) => runtime()?.block_on(reconnect::run(args)),
        Bench::Scale(args) => runtime()?.block_on(scale::run(args)),
        Bench::Fullpath(args) => runtime()?.block_on(fullpath::run(args)),
        Bench::PgLoad(args) => runtime()?.block_on(pg_load::run(args)),
        Bench::ServeIngress(args) => datapath::ingress::run(args),
        Bench::ZoneScale(args) => runtime()?.block_on(zone_scale::run(args)),
        Bench::ServeZone(args) => zone_scale::serve(args),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
