//! The `--raft-*` flags of `meridian zone-cp`: run the zone CP as one replica of a
//! 3- or 5-replica Raft group.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use meridian_embedded_store::{EmbeddedStoreOptions, RaftCluster, RaftTiming, RaftTls};

/// Flags that make a zone CP one replica of a group.
#[derive(clap::Args, Debug, Clone)]
pub struct RaftFlags {
    /// This replica's Raft node id (1, 2, 3, …); absent = a single replica.
    #[arg(long, requires_all = ["raft_addr", "raft_peers"])]
    pub raft_id: Option<u64>,
    /// Where this replica serves Raft to its peers.
    #[arg(long)]
    pub raft_addr: Option<SocketAddr>,
    /// The group's initial voters, this replica included: 1=HOST:PORT,2=HOST:PORT,…
    /// The lowest id creates the group on its first start.
    #[arg(long)]
    pub raft_peers: Option<String>,
    /// This replica's certificate for Raft (PEM), signed by --raft-tls-ca; needed
    /// unless every peer address is on loopback.
    #[arg(long, requires_all = ["raft_tls_key", "raft_tls_ca"])]
    pub raft_tls_cert: Option<PathBuf>,
    /// This replica's private key for Raft (PEM).
    #[arg(long, requires = "raft_tls_cert")]
    pub raft_tls_key: Option<PathBuf>,
    /// The CA that signs every replica's Raft certificate (PEM).
    #[arg(long, requires = "raft_tls_cert")]
    pub raft_tls_ca: Option<PathBuf>,
    /// Leader heartbeat interval, also the timeout of each replication RPC;
    /// elections start after 5–10 heartbeats of silence.
    #[arg(long, default_value = "150ms", value_parser = humantime::parse_duration)]
    pub raft_heartbeat: Duration,
    /// Build a Raft snapshot (and compact the log) after this many log entries.
    #[arg(long, default_value_t = 5000)]
    pub raft_snapshot_every: u64,
}

fn read(path: &PathBuf, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading the {what} {}", path.display()))
}

impl RaftFlags {
    /// The embedded store's options for these flags.
    pub fn store_options(&self) -> anyhow::Result<EmbeddedStoreOptions> {
        let mut options = EmbeddedStoreOptions {
            snapshot_logs_since_last: self.raft_snapshot_every.max(1),
            max_in_snapshot_log_to_keep: (self.raft_snapshot_every / 5).min(1000),
            ..EmbeddedStoreOptions::default()
        };
        let (Some(id), Some(listen), Some(peers)) =
            (self.raft_id, self.raft_addr, &self.raft_peers)
        else {
            return Ok(options);
        };
        let tls = match (&self.raft_tls_cert, &self.raft_tls_key, &self.raft_tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(RaftTls {
                cert_pem: read(cert, "Raft certificate")?,
                key_pem: read(key, "Raft key")?,
                ca_pem: read(ca, "Raft CA")?,
            }),
            _ => None,
        };
        let heartbeat = self.raft_heartbeat.max(Duration::from_millis(10));
        options.cluster = Some(RaftCluster {
            id,
            listen,
            advertise: None,
            peers: meridian_embedded_store::cluster::parse_peers(peers)?,
            tls,
            timing: RaftTiming {
                heartbeat,
                election_min: heartbeat * 5,
                election_max: heartbeat * 10,
            },
        });
        // Replicas may start minutes apart: wait for the group patiently.
        options.leader_timeout = Duration::from_secs(300);
        options.write_timeout = (heartbeat * 30).max(Duration::from_secs(2));
        Ok(options)
    }
}
