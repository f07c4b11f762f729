//! The errors a store returns. Each says what failed and on which resource, so the
//! REST layer can map it to a status code and a readable detail without guessing.

use crate::{ResourceKey, Revision};

/// A failed store operation.
///
/// Errors compare equal when they say the same thing; with the `serde` feature they
/// serialise, so a refusal travels between the embedded store's replicas as a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum StoreError {
    /// The resource does not exist.
    #[error("{0} not found")]
    NotFound(ResourceKey),
    /// Create-only write (`Precondition::Absent`) of a resource that exists.
    #[error("{0} already exists")]
    AlreadyExists(ResourceKey),
    /// The caller's expected version does not match the stored one.
    #[error("version conflict on {key}: expected version {expected}, found {}", actual.map_or_else(|| "none (it does not exist)".to_owned(), |v| v.to_string()))]
    Conflict {
        /// The resource written.
        key: ResourceKey,
        /// The version the caller expected.
        expected: i64,
        /// The version stored, if the resource exists.
        actual: Option<i64>,
    },
    /// A mesh-scoped resource names a mesh that does not exist.
    #[error("mesh {mesh:?} does not exist (needed by {key})")]
    MeshNotFound {
        /// The resource written.
        key: ResourceKey,
        /// The missing mesh.
        mesh: String,
    },
    /// A zone-owned resource names a zone that does not exist.
    #[error("zone {zone:?} does not exist (owner of {key})")]
    ZoneNotFound {
        /// The resource written.
        key: ResourceKey,
        /// The missing zone.
        zone: String,
    },
    /// The request itself is not something a store can do (e.g. a zone-owned resource
    /// without a zone).
    #[error("invalid store request for {key}: {reason}")]
    Invalid {
        /// The resource concerned.
        key: ResourceKey,
        /// Why it is invalid.
        reason: String,
    },
    /// Changes after `since` are no longer in the change log.
    #[error(
        "changes after revision {since} were compacted (the log now starts after revision {horizon}); a full snapshot is needed"
    )]
    Compacted {
        /// The revision asked for.
        since: Revision,
        /// The log holds only changes after this revision.
        horizon: Revision,
    },
    /// A stored row's spec does not parse or validate as its kind (written by a
    /// version with other rules, or damaged). Not retryable: the row must be fixed
    /// or deleted.
    #[error("the stored spec of {key} is unreadable: {reason}")]
    Unreadable {
        /// The resource concerned.
        key: ResourceKey,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend cannot be reached (database down, connection lost). Retryable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Any other backend failure, with the backend's message.
    #[error("store backend error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}
