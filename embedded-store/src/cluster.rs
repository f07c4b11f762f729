//! How a replica joins a Raft group of several zone CP replicas: its id, the address
//! it serves Raft on, its peers' addresses and the TLS material between them.
//!
//! A group is bootstrapped from the static peer list (`--raft-peers`): the replica
//! with the lowest id initialises the membership with every listed peer as a voter,
//! once, on its first start; the others wait to be contacted. Later changes go through
//! the membership API ([`crate::EmbeddedStore::add_learner`], `promote`, `remove`).
//!
//! Each replica dials a peer at the address its own peer list gives, falling back to
//! the address recorded in the membership (for replicas added later by API).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::types::NodeId;

/// Mutual TLS between replicas: every replica presents `cert_pem`, signed by the
/// group's CA (`ca_pem`), and accepts only peers presenting one too.
#[derive(Clone)]
pub struct RaftTls {
    /// This replica's certificate chain (PEM); its SANs must name the address
    /// peers dial (an IP SAN for `IP:PORT` addresses).
    pub cert_pem: String,
    /// This replica's private key (PEM).
    pub key_pem: String,
    /// The CA that signs every replica's certificate (PEM).
    pub ca_pem: String,
}

impl fmt::Debug for RaftTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is a secret: never in logs.
        f.debug_struct("RaftTls").finish_non_exhaustive()
    }
}

/// One replica's place in a multi-replica group.
#[derive(Debug, Clone)]
pub struct RaftCluster {
    /// This replica's node id (`--raft-id`), unique in the group and never reused.
    pub id: NodeId,
    /// Where this replica serves Raft (`--raft-addr`); port 0 picks a free port.
    pub listen: SocketAddr,
    /// The address peers dial to reach this replica (defaults to `listen`).
    pub advertise: Option<String>,
    /// Every voter of the initial group, this replica included, by id
    /// (`--raft-peers 1=ADDR,2=ADDR,3=ADDR`). Also this replica's address book.
    pub peers: BTreeMap<NodeId, String>,
    /// Mutual TLS between replicas; `None` speaks plain HTTP/2 (refused unless
    /// every address is a loopback address).
    pub tls: Option<RaftTls>,
    /// Raft timing; [`RaftTiming::default`] suits production.
    pub timing: RaftTiming,
}

/// Heartbeat and election timing of a group.
#[derive(Debug, Clone, Copy)]
pub struct RaftTiming {
    /// The leader's heartbeat interval.
    pub heartbeat: Duration,
    /// The lower bound of the randomised election timeout.
    pub election_min: Duration,
    /// The upper bound of the randomised election timeout.
    pub election_max: Duration,
}

impl Default for RaftTiming {
    fn default() -> Self {
        // A LAN: a leader loss is noticed within 1–2 s. openraft also uses the
        // heartbeat interval as each replication RPC's timeout, so it must exceed the
        // round trip of a batch of entries on a busy host.
        RaftTiming {
            heartbeat: Duration::from_millis(150),
            election_min: Duration::from_millis(750),
            election_max: Duration::from_millis(1500),
        }
    }
}

/// Why a cluster configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ClusterConfigError {
    /// A `--raft-peers` entry is not `ID=ADDR`.
    #[error("--raft-peers entry {entry:?} is not ID=HOST:PORT with a numeric id")]
    Peer {
        /// The entry as given.
        entry: String,
    },
    /// Two entries name the same id.
    #[error("--raft-peers names node {id} twice")]
    DuplicatePeer {
        /// The repeated id.
        id: NodeId,
    },
    /// This replica's id is not among the peers.
    #[error("--raft-peers does not list this replica's --raft-id {id}")]
    SelfMissing {
        /// This replica's id.
        id: NodeId,
    },
    /// Node id 0 is reserved.
    #[error("--raft-id must be 1 or more")]
    ZeroId,
    /// Plain Raft traffic to a non-loopback address.
    #[error(
        "Raft peer address {addr} is not a loopback address: give --raft-tls-cert, --raft-tls-key and --raft-tls-ca"
    )]
    NeedsTls {
        /// The address that would be reached in plain text.
        addr: String,
    },
}

/// Parses `1=127.0.0.1:5691,2=127.0.0.1:5692` (whitespace around entries allowed).
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, ClusterConfigError> {
    let mut peers = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || ClusterConfigError::Peer {
            entry: entry.to_owned(),
        };
        let (id, addr) = entry.split_once('=').ok_or_else(bad)?;
        let id: NodeId = id.trim().parse().map_err(|_| bad())?;
        let addr = addr.trim();
        if addr.is_empty() || !addr.contains(':') {
            return Err(bad());
        }
        if peers.insert(id, addr.to_owned()).is_some() {
            return Err(ClusterConfigError::DuplicatePeer { id });
        }
    }
    Ok(peers)
}

impl RaftCluster {
    /// Checks the configuration: a non-zero id that the peer list names, and TLS
    /// unless every address is on loopback.
    pub fn validate(&self) -> Result<(), ClusterConfigError> {
        if self.id == 0 {
            return Err(ClusterConfigError::ZeroId);
        }
        if !self.peers.contains_key(&self.id) {
            return Err(ClusterConfigError::SelfMissing { id: self.id });
        }
        if self.tls.is_none() {
            let listen = self.listen.to_string();
            let addresses = self
                .peers
                .values()
                .chain(self.advertise.iter())
                .chain(std::iter::once(&listen));
            for addr in addresses {
                if !is_loopback(addr) {
                    return Err(ClusterConfigError::NeedsTls { addr: addr.clone() });
                }
            }
        }
        Ok(())
    }

    /// The address peers dial to reach this replica.
    pub fn advertised(&self) -> String {
        self.advertise
            .clone()
            .or_else(|| self.peers.get(&self.id).cloned())
            .unwrap_or_else(|| self.listen.to_string())
    }

    /// Whether this replica bootstraps the group: the lowest id of the peer list.
    pub fn bootstraps(&self) -> bool {
        self.peers.keys().next() == Some(&self.id)
    }
}

/// Whether `addr` (`HOST:PORT`) names a loopback address.
fn is_loopback(addr: &str) -> bool {
    match addr.parse::<SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => addr
            .rsplit_once(':')
            .is_some_and(|(host, _)| host == "localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(id: NodeId, peers: &str) -> RaftCluster {
        RaftCluster {
            id,
            listen: "127.0.0.1:0".parse().expect("address"),
            advertise: None,
            peers: parse_peers(peers).expect("peers"),
            tls: None,
            timing: RaftTiming::default(),
        }
    }

    #[test]
    fn peers_parse_and_the_lowest_id_bootstraps() {
        let c = cluster(2, " 3=127.0.0.1:3, 1=127.0.0.1:1 ,2=localhost:2");
        assert_eq!(c.peers.len(), 3);
        assert!(!c.bootstraps());
        assert!(cluster(1, "1=127.0.0.1:1,2=127.0.0.1:2").bootstraps());
        assert_eq!(c.advertised(), "localhost:2");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn bad_peer_lists_say_which_entry() {
        for (text, needle) in [
            ("1:127.0.0.1:1", "1:127.0.0.1:1"),
            ("x=127.0.0.1:1", "x=127.0.0.1:1"),
            ("1=", "1="),
            ("1=a:1,1=b:2", "twice"),
        ] {
            let err = parse_peers(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn plain_text_is_only_for_loopback_and_self_must_be_listed() {
        let remote = cluster(1, "1=127.0.0.1:1,2=10.0.0.2:2");
        assert!(matches!(
            remote.validate(),
            Err(ClusterConfigError::NeedsTls { addr }) if addr == "10.0.0.2:2"
        ));
        assert!(matches!(
            cluster(4, "1=127.0.0.1:1").validate(),
            Err(ClusterConfigError::SelfMissing { id: 4 })
        ));
    }
}
