//! The [`Store`] trait every backend implements, and write preconditions.

use async_trait::async_trait;
use meridian_model::ResourceKind;
use tokio::sync::watch;

use crate::{
    ChangeBatch, ListQuery, NewResource, Page, PutOutcome, ResourceKey, Revision, Snapshot,
    StoreError, StoredResource, WriteOp, WriteOutcome,
};

/// A condition a write must meet, checked atomically with the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Precondition {
    /// No condition: create or overwrite.
    #[default]
    Any,
    /// The resource must not exist (create-only; HTTP `If-None-Match: *`).
    Absent,
    /// The resource must exist with exactly this version (HTTP `If-Match`).
    Version(i64),
}

/// A resource store. See the crate docs for the revision and change-log model.
///
/// All writes go through [`Store::apply`], which applies a batch atomically: either
/// every operation commits (each with its own revision, in order) or none does.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one resource.
    async fn get(&self, key: &ResourceKey) -> Result<Option<StoredResource>, StoreError>;

    /// Lists resources of one kind, ordered by mesh then name.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Applies a batch of writes in one transaction.
    async fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, StoreError>;

    /// The revision of the last committed change (0 for an empty store).
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// The latest state of every key changed after `since`, in revision order, at most
    /// `limit` entries; continue from the returned `through`. Fails with
    /// [`StoreError::Compacted`] when the log no longer reaches back to `since`.
    async fn changes_since(&self, since: Revision, limit: usize)
    -> Result<ChangeBatch, StoreError>;

    /// Every resource, consistent at one revision.
    async fn snapshot(&self) -> Result<Snapshot, StoreError>;

    /// Up to `limit` resources of `kind` whose `(mesh, name)` sorts after `after`
    /// (from the first when `None`), ordered by mesh then name: keyset paging, so a
    /// caller can walk one kind page by page without holding the rest in memory.
    /// Each call is consistent on its own, at the revision current when it ran;
    /// pages read at different revisions are made consistent by the caller (KDS
    /// replays [`Store::changes_since`] from the revision it started at).
    async fn list_after(
        &self,
        kind: ResourceKind,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<StoredResource>, StoreError>;

    /// Drops change-log entries up to and including `through` (clamped to the current
    /// revision) and returns the new horizon. Tombstones older than the horizon are
    /// forgotten, so readers behind it need a full snapshot.
    async fn compact(&self, through: Revision) -> Result<Revision, StoreError>;

    /// The revision the change log reaches back to: `changes_since(r)` works for any
    /// `r >= horizon`.
    async fn compaction_horizon(&self) -> Result<Revision, StoreError>;

    /// A channel that holds the latest committed revision known to this process and
    /// wakes on every commit, including commits by other processes sharing the backend.
    fn watch(&self) -> watch::Receiver<Revision>;

    /// Checks the backend is reachable.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores a zone's insight (status, not config: no revision, no change log).
    async fn put_zone_insight(
        &self,
        zone: &str,
        insight: serde_json::Value,
    ) -> Result<(), StoreError>;

    /// Reads a zone's insight.
    async fn get_zone_insight(&self, zone: &str) -> Result<Option<serde_json::Value>, StoreError>;

    /// Replaces a zone's insight only if it is still exactly `expected`
    /// (compare-and-set); returns whether it was replaced. Several processes writing
    /// one zone's insight (global replicas on one database) use it to change an
    /// insight they have read without overwriting a newer one.
    ///
    /// The default reads then writes, which is atomic only when one process writes
    /// the store; backends shared by several processes override it.
    async fn replace_zone_insight(
        &self,
        zone: &str,
        expected: &serde_json::Value,
        insight: serde_json::Value,
    ) -> Result<bool, StoreError> {
        if self.get_zone_insight(zone).await?.as_ref() != Some(expected) {
            return Ok(false);
        }
        self.put_zone_insight(zone, insight).await?;
        Ok(true)
    }

    /// Reads a setting.
    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Returns the setting `key`, first storing `value` if it is absent. Used for
    /// values generated once per installation, such as the admin token's hash.
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError>;

    /// Creates or updates one resource.
    async fn put(
        &self,
        resource: NewResource,
        precondition: Precondition,
    ) -> Result<(PutOutcome, StoredResource), StoreError> {
        let mut outcomes = self
            .apply(vec![WriteOp::Put(resource, precondition)])
            .await?;
        match outcomes.pop() {
            Some(WriteOutcome::Put(outcome, stored)) => Ok((outcome, stored)),
            other => Err(StoreError::Backend(format!(
                "apply returned {other:?} for a single put"
            ))),
        }
    }

    /// Deletes one resource (and what it owns); returns every key removed, target first.
    async fn delete(
        &self,
        key: &ResourceKey,
        precondition: Precondition,
    ) -> Result<Vec<ResourceKey>, StoreError> {
        let mut outcomes = self
            .apply(vec![WriteOp::Delete(key.clone(), precondition)])
            .await?;
        match outcomes.pop() {
            Some(WriteOutcome::Deleted { keys, .. }) => Ok(keys),
            other => Err(StoreError::Backend(format!(
                "apply returned {other:?} for a single delete"
            ))),
        }
    }
}
