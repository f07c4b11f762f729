//! `meridian zone-egress`: runs a zone egress, which registers with the zone
//! control plane and routes the zone's outgoing mTLS connections, by SNI and
//! without terminating them, to other zones' ingresses, until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use meridian_zone_egress::EgressSettings;

/// Arguments of `meridian zone-egress`.
#[derive(clap::Args, Debug)]
pub struct ZoneEgressArgs {
    /// The zone control plane's data-plane URL (http:// only to loopback).
    #[arg(
        long,
        env = "MERIDIAN_ZONE_CP",
        default_value = "http://127.0.0.1:5678"
    )]
    pub zone_cp: String,
    /// CA certificate (PEM) that signed the zone control plane's certificate.
    #[arg(long)]
    pub zone_cp_ca: Option<PathBuf>,
    /// The egress's name, unique in its zone.
    #[arg(long, default_value = "zone-egress")]
    pub name: String,
    /// Where the egress listens (port 0 picks a free port, which is registered).
    #[arg(long, default_value = "127.0.0.1:10002")]
    pub listen: SocketAddr,
    /// Where to serve /healthz, /readyz and /metrics (default: nowhere).
    #[arg(long)]
    pub admin_addr: Option<SocketAddr>,
}

/// Runs `meridian zone-egress` until `shutdown` completes.
pub async fn run(args: ZoneEgressArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let zone_cp_ca_pem = args
        .zone_cp_ca
        .as_ref()
        .map(|path| {
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the zone CP CA {}", path.display()))
        })
        .transpose()?;
    let settings = EgressSettings {
        zone_cp: args.zone_cp,
        zone_cp_ca_pem,
        name: args.name,
        listen: args.listen,
        admin_addr: args.admin_addr,
    };
    meridian_zone_egress::run(settings, shutdown)
        .await
        .context("running the zone egress")
}
