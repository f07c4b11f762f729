//! Meridian's wire protocols, generated from `proto/*.proto` with tonic/prost.
//!
//! - [`kds`]: the global↔zone sync service (see `proto/kds.proto` for the protocol:
//!   two bidirectional streams per zone, delta messages with per-resource NACKs,
//!   resume from the receiver's last applied revision, chunked snapshots).
//! - [`dp`]: the zone CP → proxy config stream (registration, versioned config
//!   snapshots with ACK/NACK, CSR signing; see `proto/dp.proto`), with its codec
//!   ([`codec`]) and the fragmenting of large messages ([`fragment`]).
//! - [`raft`]: Raft RPCs between the replicas of a zone CP (`proto/raft.proto`).

/// KDS v1: the global↔zone sync protocol.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod kds {
    tonic::include_proto!("meridian.kds.v1");
}

/// The data-plane config stream between a zone CP and its proxies (see
/// `proto/dp.proto`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod dp {
    tonic::include_proto!("meridian.dp.v1");
}

pub mod codec;
pub mod fragment;

/// Raft between the replicas of a zone control plane (see `proto/raft.proto`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod raft {
    tonic::include_proto!("meridian.raft.v1");
}

/// gRPC metadata keys of the KDS handshake.
pub mod metadata {
    /// The zone's name; must match its token.
    pub const ZONE: &str = "x-meridian-zone";
    /// The zone CP's product version (informational, never used for decisions).
    pub const VERSION: &str = "x-meridian-version";
    /// Comma-separated capabilities the zone supports.
    pub const FEATURES: &str = "x-meridian-features";
    /// The Raft term of the zone CP replica that opened the stream, in decimal
    /// (absent = 0, a zone without Raft). Global ends a zone's streams of a lower
    /// term when one of a higher term opens, and refuses streams of a lower term than
    /// the highest it has seen for that zone (`FAILED_PRECONDITION`).
    pub const LEADER_TERM: &str = "x-meridian-leader-term";
}

/// Capabilities exchanged in [`metadata::FEATURES`]: behaviour is negotiated by
/// capability, never by version number.
pub mod features {
    /// Resume from a revision with deltas (the zone sends `since_revision`).
    pub const DELTA: &str = "delta";
    /// Snapshots may span several messages framed by `snapshot_start`/`snapshot_end`.
    pub const CHUNKED_SNAPSHOT: &str = "chunked-snapshot";
}
