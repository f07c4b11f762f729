//! The sending side: what a receiver at revision R needs to be up to date.

use std::sync::Arc;

use meridian_proto::kds;
use meridian_store::{Change, Revision, Store, StoreError};
use prost::Message;
use tokio::sync::Semaphore;

use crate::convert::{key_to_proto, to_proto};
use crate::{KdsError, Scope, nonce};

/// Messages stay under this size, well below gRPC's 4 MiB default decode limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// How many changes one `changes_since` call reads.
const PAGE: usize = 500;

/// Builds the messages that bring a receiver up to date.
pub struct Outbound<S> {
    store: Arc<dyn Store>,
    scope: S,
    max_message_bytes: usize,
    /// Shared by every session of a server: bounds how many full snapshots are read
    /// at once (each holds the whole store in memory while it is chunked).
    snapshot_permits: Option<Arc<Semaphore>>,
}

/// Messages bringing a receiver from its revision to `through`.
#[derive(Debug, Default)]
pub struct CatchUp {
    /// The messages, in order; empty when nothing in scope changed.
    pub messages: Vec<kds::Changes>,
    /// The sender revision the receiver is at after the last message.
    pub through: Revision,
    /// Whether this is a full snapshot rather than a delta.
    pub snapshot: bool,
    /// Resources left out because they do not fit in a message; each error names one.
    pub oversized: Vec<KdsError>,
}

impl CatchUp {
    /// How many resources (upserts and removals) the messages carry.
    pub fn resource_count(&self) -> usize {
        self.messages
            .iter()
            .map(|m| m.upserts.len() + m.removals.len())
            .sum()
    }
}

/// Packs resources into messages under the size limit.
struct Chunker {
    limit: usize,
    messages: Vec<kds::Changes>,
    current: kds::Changes,
    current_bytes: usize,
    oversized: Vec<KdsError>,
}

impl Chunker {
    fn new(limit: usize) -> Self {
        Chunker {
            limit,
            messages: Vec::new(),
            current: kds::Changes::default(),
            current_bytes: 0,
            oversized: Vec::new(),
        }
    }

    fn make_room(&mut self, bytes: usize) {
        if self.current_bytes > 0 && self.current_bytes + bytes > self.limit {
            self.flush();
        }
        self.current_bytes += bytes;
    }

    fn upsert(&mut self, resource: &meridian_store::StoredResource, revision: Revision) {
        let message = to_proto(resource);
        // Field tag and length prefix: a few bytes beyond the encoded resource.
        let bytes = message.encoded_len() + 8;
        if bytes > self.limit {
            self.oversized.push(KdsError::ResourceTooLarge {
                key: resource.key.clone(),
                size: bytes,
                limit: self.limit,
            });
            return;
        }
        self.make_room(bytes);
        self.current.upserts.push(message);
        self.current.through_revision = revision;
    }

    fn removal(&mut self, key: &meridian_store::ResourceKey, revision: Revision) {
        let message = key_to_proto(key);
        self.make_room(message.encoded_len() + 8);
        self.current.removals.push(message);
        self.current.through_revision = revision;
    }

    fn flush(&mut self) {
        let mut message = std::mem::take(&mut self.current);
        message.nonce = nonce();
        self.messages.push(message);
        self.current_bytes = 0;
    }

    fn finish(mut self) -> (Vec<kds::Changes>, Vec<KdsError>) {
        if self.current_bytes > 0 {
            self.flush();
        }
        (self.messages, self.oversized)
    }
}

impl<S: Scope> Outbound<S> {
    /// Sends what `scope` admits from `store`.
    pub fn new(store: Arc<dyn Store>, scope: S) -> Self {
        Outbound {
            store,
            scope,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            snapshot_permits: None,
        }
    }

    /// Reads a full snapshot only with a permit of `permits` (admission control
    /// when many receivers need one at once, e.g. every zone after a restore).
    pub fn with_snapshot_permits(mut self, permits: Arc<Semaphore>) -> Self {
        self.snapshot_permits = Some(permits);
        self
    }

    /// Overrides the message size limit (tests use a small one to force chunking).
    pub fn with_max_message_bytes(mut self, limit: usize) -> Self {
        self.max_message_bytes = limit;
        self
    }

    /// What a receiver that applied everything through `since` needs: the changes
    /// since then, or a full snapshot when it has nothing (`since <= 0`), when the log
    /// was compacted past `since`, or when `since` is ahead of this store (the store
    /// was replaced).
    pub async fn catch_up(&self, since: Revision) -> Result<CatchUp, KdsError> {
        // The watched revision is never ahead of the store; it saves a query per
        // wake-up per zone. It can be behind, though: on a global replica whose
        // LISTEN has not yet caught up with commits made through another replica, to
        // which the receiver was connected before. Ask the store before calling
        // `since` "ahead of this store", so such a receiver still resumes.
        let mut known = *self.store.watch().borrow();
        if since > known {
            known = self.store.current_revision().await?;
        }
        if since <= 0 || since > known {
            return self.snapshot().await;
        }
        match self.delta(since).await {
            Err(KdsError::Store(StoreError::Compacted { .. })) => self.snapshot().await,
            other => other,
        }
    }

    async fn delta(&self, since: Revision) -> Result<CatchUp, KdsError> {
        let mut chunker = Chunker::new(self.max_message_bytes);
        let mut through = since;
        // Reads the whole backlog before sending: bounded by the change-log retention.
        loop {
            let batch = self.store.changes_since(through, PAGE).await?;
            for change in &batch.changes {
                let (key, owner) = match change {
                    Change::Upsert(r) => (&r.key, r.zone.as_deref()),
                    Change::Delete { key, zone, .. } => (key, zone.as_deref()),
                };
                if !self.scope.includes(key, owner) {
                    continue;
                }
                match change {
                    Change::Upsert(resource) => chunker.upsert(resource, resource.revision),
                    Change::Delete { key, revision, .. } => chunker.removal(key, *revision),
                }
            }
            through = batch.through;
            if batch.changes.len() < PAGE {
                break;
            }
        }
        let (mut messages, oversized) = chunker.finish();
        if let Some(last) = messages.last_mut() {
            last.through_revision = through;
        }
        Ok(CatchUp {
            messages,
            through,
            snapshot: false,
            oversized,
        })
    }

    async fn snapshot(&self) -> Result<CatchUp, KdsError> {
        // Held until the store's copy is dropped, at the end of this function.
        let _permit = match &self.snapshot_permits {
            Some(permits) => {
                metrics::gauge!("meridian_kds_full_syncs_waiting").increment(1.0);
                let permit = permits.clone().acquire_owned().await;
                metrics::gauge!("meridian_kds_full_syncs_waiting").decrement(1.0);
                Some(permit.map_err(|_| {
                    KdsError::Store(StoreError::Unavailable(
                        "full syncs are closed: the server is shutting down".to_owned(),
                    ))
                })?)
            }
            None => None,
        };
        let snapshot = self.store.snapshot().await?;
        let mut chunker = Chunker::new(self.max_message_bytes);
        for resource in &snapshot.resources {
            if self.scope.includes(&resource.key, resource.zone.as_deref()) {
                chunker.upsert(resource, 0);
            }
        }
        let (mut messages, oversized) = chunker.finish();
        if messages.is_empty() {
            messages.push(kds::Changes {
                nonce: nonce(),
                ..Default::default()
            });
        }
        // Only the last chunk carries a revision: the receiver must not record
        // progress until it has the whole snapshot.
        for message in &mut messages {
            message.through_revision = 0;
        }
        if let Some(first) = messages.first_mut() {
            first.snapshot_start = true;
        }
        if let Some(last) = messages.last_mut() {
            last.snapshot_end = true;
            last.through_revision = snapshot.revision;
        }
        Ok(CatchUp {
            messages,
            through: snapshot.revision,
            snapshot: true,
            oversized,
        })
    }
}
