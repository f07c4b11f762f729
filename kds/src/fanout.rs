//! One change-log reader per process, fanned out to every session.
//!
//! ```text
//!  Store::watch() ──wake──▶ reader task: changes_since(through, PAGE) … once per commit,
//!                           each change converted to its KDS message once
//!                           ──▶ Arc<Batch{from, through, entries}> ──broadcast──▶ session 1
//!                                                                          ├──▶ session 2 …
//!  each session: scope filter + chunking of the shared entries (Outbound::from_batch)
//! ```
//!
//! Invariants:
//! - Batches chain: each batch's `from` is the previous one's `through`, unless the
//!   reader had to skip ahead (its own read was compacted away): a session then sees
//!   a gap (`from` > its position) and reads the store itself.
//! - An entry is the latest state after `from` of one key (as `changes_since` gives
//!   it), with its revision, so a session at any `since` in `[from, through)` takes
//!   exactly the entries with `revision > since`.
//! - Correctness never depends on the fan-out: a session that lags the broadcast
//!   (`RecvError::Lagged`, the channel keeps [`RETAINED`] batches) or sees a gap
//!   falls back to `Outbound::stream(since)` from the store, the reconnect path.
//! - The reader holds no per-session state; the retained batches are its only
//!   memory, and a batch is freed once every session received it.

use std::sync::Arc;
use std::time::Duration;

use meridian_proto::kds;
use meridian_store::{Change, ResourceKey, Revision, Store, StoreError};
use prost::Message;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::convert::{key_to_proto, to_proto};
use crate::outbound::PAGE;

/// Batches the broadcast keeps for sessions that have not received them yet; a
/// session further behind falls back to reading the store.
pub const RETAINED: usize = 64;

/// One key's latest change in a batch, already in its wire form.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The key, as stored.
    pub key: ResourceKey,
    /// The owning zone (zone-owned kinds), for scopes.
    pub owner: Option<String>,
    /// The revision of this change.
    pub revision: Revision,
    /// What to send.
    pub item: Item,
}

/// An upsert or a removal, as sent.
#[derive(Debug, Clone)]
pub enum Item {
    /// The resource's KDS form and its encoded size.
    Upsert {
        /// The resource as sent.
        resource: kds::Resource,
        /// `resource.encoded_len()`, computed once.
        encoded_len: usize,
    },
    /// The removed key.
    Removal(kds::ResourceKey),
}

/// Every key changed in `(from, through]`, at its latest state.
#[derive(Debug, Default)]
pub struct Batch {
    /// The revision the batch starts after.
    pub from: Revision,
    /// The revision a receiver is at once it applied the batch.
    pub through: Revision,
    /// The changes, in revision order.
    pub entries: Vec<Entry>,
}

impl Batch {
    /// Whether the batch changes `key` (in or out of any scope).
    pub fn touches(&self, key: &ResourceKey) -> bool {
        self.entries.iter().any(|e| &e.key == key)
    }

    fn from_changes(from: Revision, through: Revision, changes: Vec<Change>) -> Self {
        let entries = changes
            .into_iter()
            .map(|change| match change {
                Change::Upsert(resource) => {
                    let message = to_proto(&resource);
                    Entry {
                        revision: resource.revision,
                        owner: resource.zone,
                        key: resource.key,
                        item: Item::Upsert {
                            encoded_len: message.encoded_len(),
                            resource: message,
                        },
                    }
                }
                Change::Delete {
                    key,
                    zone,
                    revision,
                } => Entry {
                    item: Item::Removal(key_to_proto(&key)),
                    key,
                    owner: zone,
                    revision,
                },
            })
            .collect();
        Batch {
            from,
            through,
            entries,
        }
    }
}

/// The process's change-log reader; sessions [`Fanout::subscribe`]. Dropping it
/// stops the reader, which closes every subscription.
pub struct Fanout {
    tx: broadcast::Sender<Arc<Batch>>,
    reader: JoinHandle<()>,
}

impl Drop for Fanout {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Fanout {
    /// Starts the reader on `store` (from its current revision). Needs a tokio
    /// runtime.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, _) = broadcast::channel(RETAINED);
        let reader = tokio::spawn(read(store, tx.clone()));
        Fanout { tx, reader }
    }

    /// Every batch published from now on. Subscribe before reading the store for a
    /// catch-up, so no batch after it is missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.tx.subscribe()
    }
}

/// The reader loop: one `changes_since` per commit (in pages), published to every
/// subscriber.
async fn read(store: Arc<dyn Store>, tx: broadcast::Sender<Arc<Batch>>) {
    let mut commits = store.watch();
    let mut retry = Duration::from_millis(100);
    let mut since = loop {
        match store.current_revision().await {
            Ok(revision) => break revision,
            Err(error) => {
                tracing::warn!(%error, "KDS fan-out: could not read the store's revision; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(5));
            }
        }
    };
    loop {
        commits.borrow_and_update();
        // Read until caught up; commits that land meanwhile come in the next pages.
        loop {
            match store.changes_since(since, PAGE).await {
                Ok(batch) => {
                    retry = Duration::from_millis(100);
                    let full = batch.changes.len() >= PAGE;
                    let through = batch.through.max(since);
                    if through > since || !batch.changes.is_empty() {
                        let published = Batch::from_changes(since, through, batch.changes);
                        metrics::counter!("meridian_kds_fanout_batches_total").increment(1);
                        // No subscriber is not an error: sessions come and go.
                        let _ = tx.send(Arc::new(published));
                    }
                    since = through;
                    if !full {
                        break;
                    }
                }
                Err(StoreError::Compacted { horizon, .. }) => {
                    // Sessions behind this see the gap and read the store.
                    tracing::warn!(
                        since,
                        horizon,
                        "KDS fan-out: compacted past its position; skipping ahead"
                    );
                    since = store
                        .current_revision()
                        .await
                        .unwrap_or(horizon)
                        .max(horizon);
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "KDS fan-out: could not read changes; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(5));
                }
            }
        }
        if commits.changed().await.is_err() {
            return;
        }
    }
}
