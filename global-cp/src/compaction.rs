//! Background change-log compaction: keeps the last `retention` revisions so
//! reconnecting zones can resume with a delta, and bounds the log's size.

use std::sync::Arc;
use std::time::Duration;

use meridian_store::{Revision, Store, StoreError};

/// Compacts once: drops log entries older than `retention` revisions. Returns the
/// horizon after the call.
pub async fn compact_once(store: &dyn Store, retention: Revision) -> Result<Revision, StoreError> {
    let current = store.current_revision().await?;
    let through = current - retention;
    let horizon = store.compaction_horizon().await?;
    if through <= horizon {
        return Ok(horizon);
    }
    let horizon = store.compact(through).await?;
    tracing::info!(horizon, current, "change log compacted");
    metrics::gauge!("meridian_changelog_horizon").set(horizon as f64);
    Ok(horizon)
}

/// Runs [`compact_once`] every `interval`, forever; errors are logged and retried.
pub async fn run(store: Arc<dyn Store>, retention: Revision, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(error) = compact_once(store.as_ref(), retention).await {
            tracing::warn!(%error, "change log compaction failed; will retry");
        }
    }
}
