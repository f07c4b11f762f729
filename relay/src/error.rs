//! [`RelayError`]: what went wrong with a relayed connection, on which side and with
//! which address.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::copy::{RelayStats, Side};

/// The operation that failed on one side of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Reading from the side.
    Read,
    /// Writing to the side (including flushing).
    Write,
    /// Shutting down the write half of the side after the other side ended.
    Shutdown,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOp::Read => "reading from",
            IoOp::Write => "writing to",
            IoOp::Shutdown => "shutting down the write half of",
        })
    }
}

/// One direction of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Bytes from the client to the upstream.
    ClientToUpstream,
    /// Bytes from the upstream to the client.
    UpstreamToClient,
}

impl Direction {
    /// The side bytes of this direction are read from.
    pub fn source(self) -> Side {
        match self {
            Direction::ClientToUpstream => Side::Client,
            Direction::UpstreamToClient => Side::Upstream,
        }
    }

    /// The side bytes of this direction are written to.
    pub fn destination(self) -> Side {
        match self {
            Direction::ClientToUpstream => Side::Upstream,
            Direction::UpstreamToClient => Side::Client,
        }
    }
}

/// Why connecting or relaying failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The upstream could not be connected to (refused, unreachable, ...).
    #[error("connecting to upstream {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The upstream did not complete the TCP handshake within the connection timeout.
    #[error("connecting to upstream {addr}: no connection within {timeout:?}")]
    ConnectTimeout {
        /// The address dialled.
        addr: SocketAddr,
        /// The connection timeout that elapsed.
        timeout: Duration,
    },
    /// `TCP_NODELAY` could not be set on a new upstream connection.
    #[error("setting TCP_NODELAY on the connection to {addr}: {source}")]
    Nodelay {
        /// The upstream address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Reading from, writing to or shutting down one side failed.
    #[error("{op} {side}{}: {source}", fmt_peer(.peer))]
    Io {
        /// The side that failed.
        side: Side,
        /// What was being done with it.
        op: IoOp,
        /// Its address, when known (see [`RelayError::at`]).
        peer: Option<SocketAddr>,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Moving bytes with `splice(2)` failed in one direction (the reading and the
    /// writing side are not told apart by the splice loop).
    #[error("splicing {}{} to {}{}: {source}", .direction.source(), fmt_peer(.from), .direction.destination(), fmt_peer(.to))]
    Splice {
        /// The direction that failed.
        direction: Direction,
        /// Address of the side read from, when known.
        from: Option<SocketAddr>,
        /// Address of the side written to, when known.
        to: Option<SocketAddr>,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// No byte moved in either direction for the idle timeout.
    #[error("idle for {timeout:?} (client{} ↔ upstream{}); {} bytes to upstream, {} to client",
        fmt_peer(.client), fmt_peer(.upstream), .stats.client_to_upstream, .stats.upstream_to_client)]
    Idle {
        /// The idle timeout that elapsed.
        timeout: Duration,
        /// Client address, when known.
        client: Option<SocketAddr>,
        /// Upstream address, when known.
        upstream: Option<SocketAddr>,
        /// What had moved before the connection went idle.
        stats: RelayStats,
    },
}

impl RelayError {
    /// Fills in the client and upstream addresses this error concerns, for errors from
    /// [`relay`](crate::relay), which only sees streams. Addresses already known are kept.
    #[must_use]
    pub fn at(mut self, client: Option<SocketAddr>, upstream: Option<SocketAddr>) -> Self {
        let addr_of = |side: Side| match side {
            Side::Client => client,
            Side::Upstream => upstream,
        };
        match &mut self {
            RelayError::Io { side, peer, .. } => {
                if peer.is_none() {
                    *peer = addr_of(*side);
                }
            }
            RelayError::Splice {
                direction,
                from,
                to,
                ..
            } => {
                if from.is_none() {
                    *from = addr_of(direction.source());
                }
                if to.is_none() {
                    *to = addr_of(direction.destination());
                }
            }
            RelayError::Idle {
                client: c,
                upstream: u,
                ..
            } => {
                if c.is_none() {
                    *c = client;
                }
                if u.is_none() {
                    *u = upstream;
                }
            }
            RelayError::Connect { .. }
            | RelayError::ConnectTimeout { .. }
            | RelayError::Nodelay { .. } => {}
        }
        self
    }

    /// Whether this is an idle timeout.
    pub fn is_idle(&self) -> bool {
        matches!(self, RelayError::Idle { .. })
    }
}

/// ` (addr)` when the address is known, nothing otherwise.
fn fmt_peer(peer: &Option<SocketAddr>) -> PeerSuffix {
    PeerSuffix(*peer)
}

/// Displays an optional peer address as a suffix.
struct PeerSuffix(Option<SocketAddr>);

impl fmt::Display for PeerSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, " {addr}"),
            None => Ok(()),
        }
    }
}
