//! Errors that end a KDS stream. A bad resource is not one of them: it is NACKed and
//! the stream goes on.

use meridian_store::{ResourceKey, StoreError};

/// A failure that ends the current stream (the zone reconnects).
#[derive(Debug, thiserror::Error)]
pub enum KdsError {
    /// The local store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// One resource does not fit in a message even on its own.
    #[error("{key} is {size} bytes encoded, over the {limit}-byte KDS message limit")]
    ResourceTooLarge {
        /// The resource.
        key: ResourceKey,
        /// Its encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The peer broke the protocol (e.g. a snapshot chunk outside a snapshot).
    #[error("protocol violation: {0}")]
    Protocol(String),
}
