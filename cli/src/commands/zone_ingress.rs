//! `meridian zone-ingress`: runs a zone ingress, which registers with the zone
//! control plane and routes other zones' mTLS connections, by SNI and without
//! terminating them, to the zone's local instances, until shutdown.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use meridian_zone_ingress::IngressSettings;

/// Arguments of `meridian zone-ingress`.
#[derive(clap::Args, Debug)]
pub struct ZoneIngressArgs {
    #[command(flatten)]
    pub link: super::zone_cp_link::ZoneCpLink,
    /// The ingress's name, unique in its zone.
    #[arg(long, default_value = "zone-ingress")]
    pub name: String,
    /// Where the ingress listens (port 0 picks a free port, which is registered).
    #[arg(long, default_value = "127.0.0.1:10001")]
    pub listen: SocketAddr,
    /// The IP:PORT other zones dial (default: the bound listen address).
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
}

/// Runs `meridian zone-ingress` until `shutdown` completes.
pub async fn run(args: ZoneIngressArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let zone_cp_ca_pem = args.link.ca_pem()?;
    let settings = IngressSettings {
        zone_cp: args.link.zone_cp,
        zone_cp_ca_pem,
        name: args.name,
        listen: args.listen,
        advertise: args.advertise,
        admin_addr: args.link.admin_addr,
    };
    meridian_zone_ingress::run(settings, shutdown)
        .await
        .context("running the zone ingress")
}
