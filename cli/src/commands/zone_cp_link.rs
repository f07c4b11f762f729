//! The flags every zone proxy command shares: how to reach the zone control
//! plane's data-plane stream, and where to serve the admin endpoints.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

/// `--zone-cp`, `--zone-cp-ca` and `--admin-addr` of `meridian zone-ingress` and
/// `meridian zone-egress`.
#[derive(clap::Args, Debug)]
pub struct ZoneCpLink {
    /// The zone control plane's data-plane URL (http:// only to loopback); several,
    /// comma-separated, for a zone CP's replicas (tried in turn).
    #[arg(
        long,
        env = "MERIDIAN_ZONE_CP",
        default_value = "http://127.0.0.1:5678"
    )]
    pub zone_cp: String,
    /// CA certificate (PEM) that signed the zone control plane's certificate.
    #[arg(long)]
    pub zone_cp_ca: Option<PathBuf>,
    /// Where to serve /healthz, /readyz and /metrics (default: nowhere).
    #[arg(long)]
    pub admin_addr: Option<SocketAddr>,
}

impl ZoneCpLink {
    /// A link to `zone_cp` without a CA file or admin server.
    pub fn to(zone_cp: String) -> Self {
        ZoneCpLink {
            zone_cp,
            zone_cp_ca: None,
            admin_addr: None,
        }
    }

    /// The `--zone-cp-ca` file's PEM, if given.
    pub fn ca_pem(&self) -> anyhow::Result<Option<String>> {
        self.zone_cp_ca
            .as_ref()
            .map(|path| {
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the zone CP CA {}", path.display()))
            })
            .transpose()
    }
}
