//! `meridian`: every Meridian component and the operator CLI in one binary.
//!
//! Servers (`global-cp`) log to stderr via `tracing` (level from `RUST_LOG`, default
//! `info`) and print the addresses a person needs on stdout. Client commands (`apply`,
//! `get`, `delete`) print results on stdout and errors on stderr, exiting non-zero.

mod client;
mod commands;
mod paths;
mod table;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use commands::{
    apply, delete, demo_echo, dp, export, get, global_cp, probe, raft, up, zone_cp, zone_egress,
    zone_ingress,
};

/// Meridian: a multi-zone service-mesh control plane.
#[derive(Parser, Debug)]
#[command(name = "meridian", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a whole local multi-zone mesh in one process (global, zones, ingresses,
    /// egresses, demo services) on embedded stores.
    Up(up::UpArgs),
    /// Run the global control plane (REST API and KDS on the resource store).
    GlobalCp(global_cp::GlobalCpArgs),
    /// Run a zone control plane (embedded store, syncing with global over KDS).
    ZoneCp(Box<zone_cp::ZoneCpArgs>),
    /// Run a sidecar data plane in front of an app (config and certificate from the zone CP).
    Dp(dp::DpArgs),
    /// Run a zone ingress: SNI-routed passthrough of other zones' mTLS into this zone.
    ZoneIngress(zone_ingress::ZoneIngressArgs),
    /// Run a zone egress: SNI-routed passthrough of this zone's mTLS to other zones.
    ZoneEgress(zone_egress::ZoneEgressArgs),
    /// Run the demo echo service of `meridian up` on its own (for tests and demos).
    #[command(hide = true)]
    DemoEcho(demo_echo::DemoEchoArgs),
    /// Open connections to an address and tally who answered (try it on `up`'s demo).
    Probe(probe::ProbeArgs),
    /// Create or update the resources of a YAML/JSON file (several documents allowed).
    Apply {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        args: apply::ApplyArgs,
    },
    /// Show resources as a table, JSON or YAML.
    Get {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        args: get::GetArgs,
    },
    /// Write every resource `apply -f` can restore as multi-document YAML
    /// (meshes, zones, policies, MeshMultiZoneServices).
    Export {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        args: export::ExportArgs,
    },
    /// Delete a resource (a Mesh or Zone takes what it owns with it).
    Delete {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        args: delete::DeleteArgs,
    },
    /// A zone CP's replica group: members and leader, membership changes
    /// (--api is any replica's API).
    Raft {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: raft::RaftCommand,
    },
}

/// Where the REST API is and how to authenticate.
#[derive(clap::Args, Debug)]
struct ApiArgs {
    /// The REST API's URL.
    #[arg(long, env = "MERIDIAN_API", default_value = "http://127.0.0.1:5681")]
    api: String,
    /// The admin token (needed for apply and delete).
    #[arg(long, env = "MERIDIAN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl ApiArgs {
    fn client(&self) -> anyhow::Result<client::ApiClient> {
        client::ApiClient::new(&self.api, self.token.clone())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

fn init_tracing(default_level: &str) {
    // An empty RUST_LOG counts as unset, not as "errors only".
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::new(directives),
        _ => EnvFilter::new(default_level),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One crypto provider (ring) for every TLS user in the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command {
        Command::GlobalCp(args) => {
            init_tracing("info");
            global_cp::run(args).await
        }
        Command::ZoneCp(args) => {
            init_tracing("info");
            zone_cp::run(*args).await
        }
        Command::Up(args) => {
            init_tracing("warn");
            up::run(args, shutdown_signal()).await
        }
        Command::Dp(args) => {
            init_tracing("info");
            dp::run(args, shutdown_signal()).await
        }
        Command::ZoneIngress(args) => {
            init_tracing("info");
            zone_ingress::run(args, shutdown_signal()).await
        }
        Command::ZoneEgress(args) => {
            init_tracing("info");
            zone_egress::run(args, shutdown_signal()).await
        }
        Command::DemoEcho(args) => {
            init_tracing("warn");
            demo_echo::run(args, shutdown_signal()).await
        }
        Command::Probe(args) => {
            init_tracing("warn");
            probe::run(&args).await
        }
        Command::Apply { api, args } => {
            init_tracing("warn");
            match api.client() {
                Ok(client) => apply::run(&client, &args).await,
                Err(e) => Err(e),
            }
        }
        Command::Get { api, args } => {
            init_tracing("warn");
            match api.client() {
                Ok(client) => get::run(&client, &args).await,
                Err(e) => Err(e),
            }
        }
        Command::Export { api, args } => {
            init_tracing("warn");
            match api.client() {
                Ok(client) => export::run(&client, &args).await,
                Err(e) => Err(e),
            }
        }
        Command::Raft { api, command } => {
            init_tracing("warn");
            match api.client() {
                Ok(client) => raft::run(&client, &command).await,
                Err(e) => Err(e),
            }
        }
        Command::Delete { api, args } => {
            init_tracing("warn");
            match api.client() {
                Ok(client) => delete::run(&client, &args).await,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
