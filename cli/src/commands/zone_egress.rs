//! `meridian zone-egress`: runs a zone egress, which registers with the zone
//! control plane and routes the zone's outgoing mTLS connections, by SNI and
//! without terminating them, to other zones' ingresses, until shutdown.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use meridian_zone_egress::EgressSettings;

/// Arguments of `meridian zone-egress`.
#[derive(clap::Args, Debug)]
pub struct ZoneEgressArgs {
    #[command(flatten)]
    pub link: super::zone_cp_link::ZoneCpLink,
    /// The egress's name, unique in its zone.
    #[arg(long, default_value = "zone-egress")]
    pub name: String,
    /// Where the egress listens (port 0 picks a free port, which is registered).
    #[arg(long, default_value = "127.0.0.1:10002")]
    pub listen: SocketAddr,
}

/// Runs `meridian zone-egress` until `shutdown` completes.
pub async fn run(args: ZoneEgressArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let zone_cp_ca_pem = args.link.ca_pem()?;
    let settings = EgressSettings {
        zone_cp: args.link.zone_cp,
        zone_cp_ca_pem,
        name: args.name,
        listen: args.listen,
        admin_addr: args.link.admin_addr,
    };
    meridian_zone_egress::run(settings, shutdown)
        .await
        .context("running the zone egress")
}
