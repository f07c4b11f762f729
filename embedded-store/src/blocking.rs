//! Runs the storage's redb writes on tokio's blocking pool.
//!
//! A durable redb commit fsyncs (twice): every log append, and every so often an
//! apply (see `state_machine`). Done on a runtime worker it holds that worker for the
//! whole flush: on a two-core machine two commits in flight stall every
//! stream, timer and request of the process, which is what the 100-zone
//! propagation benchmark showed (its zones' commits queued behind each other on
//! two workers). Reads stay on the runtime: they come from redb's cache.

use crate::error::EmbeddedStoreError;

/// Runs `write` on the blocking pool and returns what it returned.
pub(crate) async fn blocking<T, F>(write: F) -> Result<T, EmbeddedStoreError>
where
    F: FnOnce() -> Result<T, EmbeddedStoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(write).await?
}
