//! The sending side: what a receiver at revision R needs to be up to date.
//!
//! Three sources, one message format:
//! - a **delta** read from the store (`changes_since(R)`, page by page) — a
//!   receiver that reconnects, or a session that fell behind the fan-out;
//! - a **fan-out batch** ([`crate::fanout::Batch`]), read and encoded once per commit
//!   for every session of the process; [`Outbound::from_batch`] only filters and
//!   chunks it;
//! - a **scoped full sync**, streamed ([`CatchUpStream`]) without materialising the
//!   store:
//!
//! ```text
//!  r0 = current_revision()
//!  for kind in scope.kinds():            list_after(kind, cursor, PAGE) … (in scope only)
//!  then changes_since(r0) … to the end   (in-scope upserts and removals)
//!  last message: snapshot_end, through = the revision the replay reached
//! ```
//!
//! Invariants of a full sync: pages of different kinds may be read at different
//! revisions ≥ r0; the replay of every change after r0 overwrites whatever a page
//! read early, so once the receiver applied the last chunk it holds exactly the
//! sender's in-scope state at `through` (removals inside the snapshot delete what a
//! page sent before the resource was deleted). Only the last chunk carries a
//! revision, so an interrupted full sync records no progress. Memory is one page plus
//! at most two messages, whatever the size of the store; kinds the scope never
//! carries (global's data planes, for a zone) are not read at all. If the change log
//! is compacted past r0 while the sync runs, the sync fails with `Compacted` and the
//! stream ends (the receiver reconnects and starts again).

use std::collections::VecDeque;
use std::sync::Arc;

use meridian_model::ResourceKind;
use meridian_proto::kds;
use meridian_store::{Change, Revision, Store, StoreError};
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::convert::{key_to_proto, to_proto};
use crate::fanout::{Batch, Item};
use crate::{KdsError, Scope, nonce};

/// Messages stay under this size, well below gRPC's 4 MiB default decode limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// How many changes one `changes_since` call, or resources one `list_after`
/// call, reads.
pub(crate) const PAGE: usize = 500;

/// Builds the messages that bring a receiver up to date.
pub struct Outbound<S> {
    store: Arc<dyn Store>,
    scope: S,
    max_message_bytes: usize,
    /// Shared by every session of a server: bounds how many full syncs run at once
    /// (each is held from its first page read to its last message sent).
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
    ready: VecDeque<kds::Changes>,
    current: kds::Changes,
    current_bytes: usize,
    oversized: Vec<KdsError>,
}

impl Chunker {
    fn new(limit: usize) -> Self {
        Chunker {
            limit,
            ready: VecDeque::new(),
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
        let bytes = message.encoded_len();
        self.upsert_encoded(&resource.key, message, bytes, revision);
    }

    /// Adds an already converted resource of `encoded_len` bytes.
    fn upsert_encoded(
        &mut self,
        key: &meridian_store::ResourceKey,
        message: kds::Resource,
        encoded_len: usize,
        revision: Revision,
    ) {
        // Field tag and length prefix: a few bytes beyond the encoded resource.
        let bytes = encoded_len + 8;
        if bytes > self.limit {
            self.oversized.push(KdsError::ResourceTooLarge {
                key: key.clone(),
                size: bytes,
                limit: self.limit,
            });
            return;
        }
        self.make_room(bytes);
        self.current.upserts.push(message);
        self.current.through_revision = revision;
    }

    fn removal(&mut self, key: kds::ResourceKey, revision: Revision) {
        self.make_room(key.encoded_len() + 8);
        self.current.removals.push(key);
        self.current.through_revision = revision;
    }

    fn flush(&mut self) {
        let mut message = std::mem::take(&mut self.current);
        message.nonce = nonce();
        self.ready.push_back(message);
        self.current_bytes = 0;
    }

    fn finish(&mut self) {
        if self.current_bytes > 0 {
            self.flush();
        }
    }
}

/// Where a [`CatchUpStream`] is.
enum Phase {
    /// A delta: the next `changes_since` page from `since`.
    Delta { since: Revision },
    /// A full sync reading `kinds[index]` after `after`.
    Kinds {
        index: usize,
        after: Option<(String, String)>,
    },
    /// A full sync replaying the change log from `since` (≥ its start revision).
    Replay { since: Revision },
    /// Every message is in the chunker.
    Done,
}

/// The messages of one catch-up, produced page by page as they are sent (see the
/// module docs): a full sync never holds more than a page and two messages.
pub struct CatchUpStream<'a, S> {
    outbound: &'a Outbound<S>,
    kinds: Vec<ResourceKind>,
    phase: Phase,
    chunker: Chunker,
    snapshot: bool,
    started: bool,
    through: Revision,
    /// Held while a full sync runs (see [`Outbound::with_snapshot_permits`]).
    permit: Option<OwnedSemaphorePermit>,
}

impl<S: Scope> CatchUpStream<'_, S> {
    /// Whether this is a full sync rather than a delta.
    pub fn is_snapshot(&self) -> bool {
        self.snapshot
    }

    /// The sender revision the receiver reaches with the last message; final once
    /// [`CatchUpStream::next`] returned `None`.
    pub fn through(&self) -> Revision {
        self.through
    }

    /// Resources left out because they do not fit in a message (so far).
    pub fn take_oversized(&mut self) -> Vec<KdsError> {
        std::mem::take(&mut self.chunker.oversized)
    }

    /// The next message, or `None` when the receiver is caught up. A delta may
    /// produce no message at all (nothing in scope changed); a full sync produces
    /// at least one.
    pub async fn next(&mut self) -> Result<Option<kds::Changes>, KdsError> {
        loop {
            let done = matches!(self.phase, Phase::Done);
            // Hold one message back until the one after it exists (or the end is
            // reached), so the last can be marked.
            if self.chunker.ready.len() >= 2 || (done && !self.chunker.ready.is_empty()) {
                let last = done && self.chunker.ready.len() == 1;
                let Some(mut message) = self.chunker.ready.pop_front() else {
                    continue;
                };
                if self.snapshot {
                    message.snapshot_start = !self.started;
                    message.through_revision = 0;
                    if last {
                        message.snapshot_end = true;
                        message.through_revision = self.through;
                    }
                } else if last {
                    message.through_revision = self.through;
                }
                self.started = true;
                if last {
                    self.permit = None;
                }
                return Ok(Some(message));
            }
            if done {
                self.permit = None;
                return Ok(None);
            }
            self.step().await?;
        }
    }

    /// Reads one page.
    async fn step(&mut self) -> Result<(), KdsError> {
        let outbound = self.outbound;
        match &mut self.phase {
            Phase::Delta { since } | Phase::Replay { since } => {
                let batch = outbound.store.changes_since(*since, PAGE).await?;
                for change in &batch.changes {
                    let (key, owner) = match change {
                        Change::Upsert(r) => (&r.key, r.zone.as_deref()),
                        Change::Delete { key, zone, .. } => (key, zone.as_deref()),
                    };
                    if !outbound.scope.includes(key, owner) {
                        continue;
                    }
                    match change {
                        Change::Upsert(resource) => {
                            self.chunker.upsert(resource, resource.revision)
                        }
                        Change::Delete { key, revision, .. } => {
                            self.chunker.removal(key_to_proto(key), *revision)
                        }
                    }
                }
                *since = batch.through;
                self.through = batch.through;
                if batch.changes.len() < PAGE {
                    self.finish();
                }
            }
            Phase::Kinds { index, after } => {
                let Some(kind) = self.kinds.get(*index).copied() else {
                    // Every kind read: replay what changed meanwhile.
                    self.phase = Phase::Replay {
                        since: self.through,
                    };
                    return Ok(());
                };
                let cursor = after.as_ref().map(|(m, n)| (m.as_str(), n.as_str()));
                let page = outbound.store.list_after(kind, cursor, PAGE).await?;
                for resource in &page {
                    if outbound
                        .scope
                        .includes(&resource.key, resource.zone.as_deref())
                    {
                        self.chunker.upsert(resource, 0);
                    }
                }
                match page.last() {
                    Some(last) if page.len() >= PAGE => {
                        *after = Some((last.key.mesh.clone(), last.key.name.clone()));
                    }
                    _ => {
                        *index += 1;
                        *after = None;
                    }
                }
            }
            Phase::Done => {}
        }
        Ok(())
    }

    fn finish(&mut self) {
        self.chunker.finish();
        if self.snapshot && !self.started && self.chunker.ready.is_empty() {
            // An empty full sync still tells the receiver to prune.
            self.chunker.ready.push_back(kds::Changes {
                nonce: nonce(),
                ..Default::default()
            });
        }
        self.phase = Phase::Done;
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

    /// Runs a full sync only with a permit of `permits` (admission control when
    /// many receivers need one at once, e.g. every zone after a restore). The permit
    /// is held until the sync's last message is produced.
    pub fn with_snapshot_permits(mut self, permits: Arc<Semaphore>) -> Self {
        self.snapshot_permits = Some(permits);
        self
    }

    /// Overrides the message size limit (tests use a small one to force chunking).
    pub fn with_max_message_bytes(mut self, limit: usize) -> Self {
        self.max_message_bytes = limit;
        self
    }

    /// The scope this sends.
    pub fn scope(&self) -> &S {
        &self.scope
    }

    /// The latest revision this process knows the store committed (no query).
    pub fn known_revision(&self) -> Revision {
        *self.store.watch().borrow()
    }

    /// What a receiver that applied everything through `since` needs, collected:
    /// see [`Outbound::stream`]. Sessions stream instead; this is for callers that
    /// want the whole set (tests, tools).
    pub async fn catch_up(&self, since: Revision) -> Result<CatchUp, KdsError> {
        let mut stream = self.stream(since).await?;
        let mut messages = Vec::new();
        while let Some(message) = stream.next().await? {
            messages.push(message);
        }
        Ok(CatchUp {
            through: stream.through(),
            snapshot: stream.is_snapshot(),
            oversized: stream.take_oversized(),
            messages,
        })
    }

    /// Streams what a receiver that applied everything through `since` needs: the
    /// changes since then, or a scoped full sync when it has nothing (`since <= 0`),
    /// when the log was compacted past `since`, or when `since` is ahead of this
    /// store (the store was replaced).
    pub async fn stream(&self, since: Revision) -> Result<CatchUpStream<'_, S>, KdsError> {
        // The watched revision is never ahead of the store; it saves a query per
        // catch-up. It can be behind, though: on a global replica whose LISTEN has
        // not yet caught up with commits made through another replica, to which the
        // receiver was connected before. Ask the store before calling `since` "ahead
        // of this store", so such a receiver still resumes.
        let mut known = *self.store.watch().borrow();
        if since > known {
            known = self.store.current_revision().await?;
        }
        if since > 0 && since <= known {
            let mut delta = self.stream_at(Phase::Delta { since }, false, None, since);
            // The first page says whether the log still reaches back to `since`.
            match delta.step().await {
                Ok(()) => return Ok(delta),
                Err(KdsError::Store(StoreError::Compacted { .. })) => {}
                Err(error) => return Err(error),
            }
        }
        self.full_sync().await
    }

    fn stream_at(
        &self,
        phase: Phase,
        snapshot: bool,
        permit: Option<OwnedSemaphorePermit>,
        through: Revision,
    ) -> CatchUpStream<'_, S> {
        CatchUpStream {
            outbound: self,
            kinds: self.scope.kinds(),
            phase,
            chunker: Chunker::new(self.max_message_bytes),
            snapshot,
            started: false,
            through,
            permit,
        }
    }

    async fn full_sync(&self) -> Result<CatchUpStream<'_, S>, KdsError> {
        let permit = match &self.snapshot_permits {
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
        // Read before the first page: the replay starts here (see the module docs).
        let start = self.store.current_revision().await?;
        Ok(self.stream_at(
            Phase::Kinds {
                index: 0,
                after: None,
            },
            true,
            permit,
            start,
        ))
    }

    /// The messages a fan-out batch holds for a receiver that applied everything
    /// through `since`, where `batch.from <= since < batch.through`: the batch's
    /// in-scope entries changed after `since`, chunked; the last message records
    /// `batch.through`. Empty when nothing in scope changed.
    pub fn from_batch(&self, batch: &Batch, since: Revision) -> CatchUp {
        let mut chunker = Chunker::new(self.max_message_bytes);
        for entry in &batch.entries {
            // An entry is a key's latest state after `batch.from`; one at or before
            // `since` the receiver already has (the batch overlaps its position).
            if entry.revision <= since || !self.scope.includes(&entry.key, entry.owner.as_deref()) {
                continue;
            }
            match &entry.item {
                Item::Upsert {
                    resource,
                    encoded_len,
                } => chunker.upsert_encoded(
                    &entry.key,
                    resource.clone(),
                    *encoded_len,
                    entry.revision,
                ),
                Item::Removal(key) => chunker.removal(key.clone(), entry.revision),
            }
        }
        chunker.finish();
        let mut messages: Vec<kds::Changes> = chunker.ready.drain(..).collect();
        if let Some(last) = messages.last_mut() {
            last.through_revision = batch.through;
        }
        CatchUp {
            messages,
            through: batch.through,
            snapshot: false,
            oversized: chunker.oversized,
        }
    }
}
