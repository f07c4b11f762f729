//! `meridian dp`: runs a sidecar data plane — registers its Dataplane with the
//! zone CP, carries the app's traffic with the config and certificate the CP
//! sends, until SIGTERM/SIGINT.
//!
//! Only flag parsing lives here; the work is `meridian_dataplane::run`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use meridian_dataplane::{
    DEFAULT_ZONE_CP, DataplaneFlags, DataplaneSource, DpOptions, InboundFlag, OutboundFlag, TagFlag,
};

/// Arguments of `meridian dp`.
#[derive(clap::Args, Debug)]
pub struct DpArgs {
    /// The zone CP's data-plane URL (its `--dp-addr`); `http://` only for loopback.
    /// Several, comma-separated, for a zone CP's replicas (tried in turn).
    #[arg(long, env = "MERIDIAN_ZONE_CP", default_value = DEFAULT_ZONE_CP)]
    pub zone_cp: String,
    /// CA certificate (PEM) that signed the zone CP's certificate (https).
    #[arg(long)]
    pub zone_cp_ca: Option<PathBuf>,
    /// The mesh the dataplane belongs to.
    #[arg(long, default_value = "default", conflicts_with = "dataplane_file")]
    pub mesh: String,
    /// The dataplane's name, unique in its mesh.
    #[arg(
        long,
        required_unless_present = "dataplane_file",
        conflicts_with = "dataplane_file"
    )]
    pub name: Option<String>,
    /// The service its inbounds serve (`kuma.io/service`).
    #[arg(
        long,
        required_unless_present = "dataplane_file",
        conflicts_with = "dataplane_file"
    )]
    pub service: Option<String>,
    /// An inbound: where the mesh reaches it and where the app listens (repeatable).
    #[arg(
        long = "inbound",
        value_name = "PUBLIC_ADDR=APP_ADDR",
        required_unless_present = "dataplane_file",
        conflicts_with = "dataplane_file"
    )]
    pub inbounds: Vec<InboundFlag>,
    /// An outbound: a local address the app connects to for a service (repeatable).
    #[arg(
        long = "outbound",
        value_name = "LOCAL_ADDR=SERVICE[:PORT]",
        conflicts_with = "dataplane_file"
    )]
    pub outbounds: Vec<OutboundFlag>,
    /// An extra tag on every inbound, e.g. version=v2 (repeatable).
    #[arg(
        long = "tag",
        value_name = "KEY=VALUE",
        conflicts_with = "dataplane_file"
    )]
    pub tags: Vec<TagFlag>,
    /// A Dataplane document (YAML or JSON) instead of the flags above.
    #[arg(long, value_name = "FILE")]
    pub dataplane_file: Option<PathBuf>,
    /// Where to serve /healthz, /readyz and /metrics (none if absent).
    #[arg(long)]
    pub admin_addr: Option<SocketAddr>,
}

impl DpArgs {
    /// The options the data-plane library takes.
    pub fn options(self) -> DpOptions {
        let dataplane = match self.dataplane_file {
            Some(path) => DataplaneSource::File(path),
            None => DataplaneSource::Flags(DataplaneFlags {
                mesh: self.mesh,
                name: self.name.unwrap_or_default(),
                service: self.service.unwrap_or_default(),
                inbounds: self.inbounds,
                outbounds: self.outbounds,
                tags: self.tags,
            }),
        };
        DpOptions {
            zone_cp: self.zone_cp,
            zone_cp_ca: self.zone_cp_ca,
            dataplane,
            admin_addr: self.admin_addr,
        }
    }
}

/// Runs `meridian dp` until `shutdown` resolves.
pub async fn run(args: DpArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let settings = args
        .options()
        .settings()
        .context("preparing the sidecar's registration")?;
    meridian_dataplane::run(settings, shutdown)
        .await
        .context("running the sidecar")
}
