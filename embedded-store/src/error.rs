//! Errors of the embedded store that are not [`meridian_store::StoreError`]s: opening
//! the store, and failures inside the redb-backed Raft storage.
//!
//! Once open, the [`meridian_store::Store`] methods speak `StoreError` like every
//! backend; [`EmbeddedStoreError`] converts into it (as `Unavailable` when Raft is not
//! serving, `Backend` otherwise).

use std::path::PathBuf;

use meridian_store::StoreError;

/// A failure opening or running the embedded store.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedStoreError {
    /// The data directory could not be created or used.
    #[error("data directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// A redb database file could not be opened or created.
    #[error("opening {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        source: redb::DatabaseError,
    },
    /// A redb operation failed.
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    /// Stored bytes could not be encoded or decoded.
    #[error("encoding {what}: {source}")]
    Codec {
        /// What was being encoded or decoded.
        what: String,
        /// The serde_json error.
        source: serde_json::Error,
    },
    /// A stored resource's spec does not validate as its kind.
    #[error("the stored spec of {key} is unreadable: {reason}")]
    Unreadable {
        /// The resource.
        key: meridian_store::ResourceKey,
        /// What is wrong with it.
        reason: String,
    },
    /// Stored data violates an invariant of the store (e.g. an unknown kind).
    #[error("corrupt embedded store: {0}")]
    Corrupt(String),
    /// The Raft configuration was refused by openraft.
    #[error("invalid Raft configuration: {0}")]
    Config(String),
    /// The Raft node failed or stopped.
    #[error("raft: {0}")]
    Raft(String),
    /// The Raft address could not be bound.
    #[error("binding the Raft address {addr}: {source}")]
    RaftBind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The multi-replica configuration is unusable.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterConfigError),
    /// A storage write on the blocking pool panicked or was cancelled (the
    /// runtime is shutting down).
    #[error("storage task: {0}")]
    Blocking(#[from] tokio::task::JoinError),
    /// The node did not become leader (or learn of one) in time.
    #[error("the Raft node did not become leader within {0:?}")]
    LeaderTimeout(std::time::Duration),
}

impl EmbeddedStoreError {
    /// A codec failure on `what`.
    pub(crate) fn codec(what: impl Into<String>, source: serde_json::Error) -> Self {
        EmbeddedStoreError::Codec {
            what: what.into(),
            source,
        }
    }
}

/// Every typed redb error converts through the umbrella [`redb::Error`].
macro_rules! from_redb {
    ($($t:ty),*) => {
        $(impl From<$t> for EmbeddedStoreError {
            fn from(error: $t) -> Self {
                EmbeddedStoreError::Redb(error.into())
            }
        })*
    };
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<EmbeddedStoreError> for StoreError {
    fn from(error: EmbeddedStoreError) -> Self {
        match error {
            EmbeddedStoreError::Raft(_) | EmbeddedStoreError::LeaderTimeout(_) => {
                StoreError::Unavailable(format!("embedded store: {error}"))
            }
            EmbeddedStoreError::Unreadable { key, reason } => {
                StoreError::Unreadable { key, reason }
            }
            other => StoreError::Backend(format!("embedded store: {other}")),
        }
    }
}

/// Converts an embedded-store failure into openraft's storage error, so openraft
/// stops the node rather than continuing on storage it cannot trust.
pub(crate) fn storage_error(
    error: EmbeddedStoreError,
    verb: openraft::ErrorVerb,
    subject: openraft::ErrorSubject<crate::types::NodeId>,
) -> openraft::StorageError<crate::types::NodeId> {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::new(&error)).into()
}
