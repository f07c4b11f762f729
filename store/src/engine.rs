//! The write engine: what [`crate::Store::apply`] does to a batch, once for every
//! backend.
//!
//! A backend opens its transaction, takes the revision counter, and hands the batch to
//! [`apply`] with a [`WriteTxn`]: a small trait to read a row as it was before the
//! batch, list what a Mesh or Zone owns, and write rows, tombstones and settings. The
//! engine runs every rule in memory — key/owner shape ([`crate::rules::check_write`]),
//! preconditions, unchanged detection, the referenced Mesh and Zone, cascading deletes
//! with a tombstone per owned resource, versions, creation times and revisions — and
//! only then writes, each touched key once with its final state.
//!
//! ```text
//!  ops ──▶ engine (in memory)                               ──▶ WriteTxn writes (only on success)
//!           read(key) / owned_by(owner): state before the batch   write_row   (final row per key)
//!           overlay: the batch's own writes, read back             delete_row  (keys gone at the end)
//!           revision start+1, +2, … one per change                 append_log  (one per revision)
//!                                                                   set_setting, delete_zone_insight
//! ```
//!
//! Invariants:
//! - a refused batch calls no write method, so a backend that buffers writes has
//!   nothing to undo (one that writes in place still aborts its transaction);
//! - revisions are consecutive from `start + 1`, handed out in op order; owned
//!   resources are tombstoned before their owner, in `(type name, mesh, name, zone)`
//!   order;
//! - later ops of a batch see earlier ones (a policy put after its Mesh in the same
//!   batch finds it; deleting a Mesh removes what the batch put in it);
//! - the final rows never reference a missing Mesh or Zone, so a backend may write
//!   every upsert and then every delete in two statements (what PostgreSQL does);
//! - nothing here reads a clock: `now` comes from the caller (the embedded store's
//!   replicas must all apply the same one).
//!
//! [`Buffered`] is a [`WriteTxn`] on rows read ahead ([`reads`] says which) that
//! collects the writes into [`Writes`], for backends that flush in bulk.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use meridian_model::ResourceKind;

use crate::rules::{check_precondition, check_write, unchanged};
use crate::{
    NewResource, Precondition, PutOutcome, ResourceKey, Revision, StoreError, StoredResource,
    WriteOp, WriteOutcome,
};

/// What a change-log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOp {
    /// The resource was created or updated.
    Upsert,
    /// The resource was deleted (a tombstone).
    Delete,
}

/// One change-log entry, one per revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The revision of the change.
    pub revision: Revision,
    /// The resource changed.
    pub key: ResourceKey,
    /// The zone owning it at the time (lets KDS tell a zone's own deletions apart).
    pub zone: Option<String>,
    /// Upsert or tombstone.
    pub op: LogOp,
}

/// A resource a Mesh or Zone owns, as [`WriteTxn::owned_by`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    /// The owned resource.
    pub key: ResourceKey,
    /// Its owning zone, if zone-owned.
    pub zone: Option<String>,
}

/// A backend's view of one write transaction, as the engine uses it.
///
/// Reads see the state before the batch (the engine keeps the batch's own writes and
/// never reads a key again once it has touched it); writes happen only after every
/// operation of the batch has been accepted, one [`WriteTxn::write_row`] or
/// [`WriteTxn::delete_row`] per touched key.
pub trait WriteTxn {
    /// The backend's error; a refusal by the engine converts into it.
    type Error: From<StoreError>;

    /// The stored resource under `key`, if any.
    fn read(&mut self, key: &ResourceKey) -> Result<Option<StoredResource>, Self::Error>;

    /// Every resource `owner` owns: for a Mesh, everything in that mesh; for a Zone,
    /// every resource whose zone it is. Any order.
    fn owned_by(&mut self, owner: &ResourceKey) -> Result<Vec<Owned>, Self::Error>;

    /// Stores `row` under its key, replacing what is there.
    fn write_row(&mut self, row: StoredResource) -> Result<(), Self::Error>;

    /// Removes the resource under `key` (it existed before the batch).
    fn delete_row(&mut self, key: &ResourceKey) -> Result<(), Self::Error>;

    /// Appends one change-log entry; entries come in revision order.
    fn append_log(&mut self, entry: LogEntry) -> Result<(), Self::Error>;

    /// Sets a setting (in op order: the last value of a key wins).
    fn set_setting(&mut self, key: String, value: String) -> Result<(), Self::Error>;

    /// Removes a deleted Zone's insight.
    fn delete_zone_insight(&mut self, zone: &str) -> Result<(), Self::Error>;
}

/// The result of [`apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// One outcome per operation, in order.
    pub outcomes: Vec<WriteOutcome>,
    /// The revision counter after the batch (`start` if nothing changed).
    pub revision: Revision,
}

/// One key the batch has read or written.
struct Slot {
    /// Whether the key existed before the batch.
    existed: bool,
    /// Its state now, within the batch.
    current: Option<StoredResource>,
    /// Whether the batch changed it.
    dirty: bool,
}

/// The batch's working state: the rows it has seen, and what it logged.
struct Batch<'t, T: WriteTxn> {
    txn: &'t mut T,
    slots: HashMap<ResourceKey, Slot>,
    revision: Revision,
    now: DateTime<Utc>,
    log: Vec<LogEntry>,
    settings: Vec<(String, String)>,
    deleted_zones: Vec<String>,
}

/// Applies `ops` in order, as one all-or-nothing batch, on top of revision `start`
/// with `now` as the time of every change. Returns the outcomes and the new revision,
/// or the first refusal (after which nothing was written through `txn`).
pub fn apply<T: WriteTxn>(
    txn: &mut T,
    ops: Vec<WriteOp>,
    start: Revision,
    now: DateTime<Utc>,
) -> Result<Applied, T::Error> {
    let mut batch = Batch {
        txn,
        slots: HashMap::new(),
        revision: start,
        now,
        log: Vec::new(),
        settings: Vec::new(),
        deleted_zones: Vec::new(),
    };
    let mut outcomes = Vec::with_capacity(ops.len());
    for op in ops {
        outcomes.push(match op {
            WriteOp::Put(resource, precondition) => batch.put(resource, precondition)?,
            WriteOp::Delete(key, precondition) => batch.delete(key, precondition)?,
            WriteOp::SetSetting { key, value } => {
                batch.settings.push((key, value));
                WriteOutcome::SettingSet
            }
        });
    }
    let revision = batch.revision;
    batch.finish()?;
    Ok(Applied { outcomes, revision })
}

impl<T: WriteTxn> Batch<'_, T> {
    /// The current state of `key` within the batch.
    fn get(&mut self, key: &ResourceKey) -> Result<Option<&StoredResource>, T::Error> {
        if !self.slots.contains_key(key) {
            let stored = self.txn.read(key)?;
            self.slots.insert(
                key.clone(),
                Slot {
                    existed: stored.is_some(),
                    current: stored,
                    dirty: false,
                },
            );
        }
        Ok(self.slots.get(key).and_then(|slot| slot.current.as_ref()))
    }

    fn exists(&mut self, kind: ResourceKind, name: &str) -> Result<bool, T::Error> {
        Ok(self.get(&ResourceKey::global(kind, name))?.is_some())
    }

    /// Records the new state of a key the batch has already read.
    fn set(&mut self, key: &ResourceKey, current: Option<StoredResource>, existed: bool) {
        let slot = self.slots.entry(key.clone()).or_insert(Slot {
            existed,
            current: None,
            dirty: false,
        });
        slot.current = current;
        slot.dirty = true;
    }

    fn next_revision(&mut self) -> Result<Revision, StoreError> {
        self.revision = self
            .revision
            .checked_add(1)
            .ok_or_else(|| StoreError::Backend("the revision counter is exhausted".to_owned()))?;
        Ok(self.revision)
    }

    fn log(
        &mut self,
        key: &ResourceKey,
        zone: Option<String>,
        op: LogOp,
    ) -> Result<(), StoreError> {
        let revision = self.next_revision()?;
        self.log.push(LogEntry {
            revision,
            key: key.clone(),
            zone,
            op,
        });
        Ok(())
    }

    fn put(
        &mut self,
        resource: NewResource,
        precondition: Precondition,
    ) -> Result<WriteOutcome, T::Error> {
        check_write(&resource)?;
        let key = resource.key.clone();
        let existing = self.get(&key)?.cloned();
        check_precondition(&key, existing.as_ref(), precondition)?;
        if let Some(same) = unchanged(existing.as_ref(), &resource) {
            return Ok(WriteOutcome::Put(PutOutcome::Unchanged, same.clone()));
        }
        if let Some(mesh) = key.mesh()
            && !self.exists(ResourceKind::Mesh, mesh)?
        {
            return Err(StoreError::MeshNotFound {
                key: key.clone(),
                mesh: mesh.to_owned(),
            }
            .into());
        }
        if let Some(zone) = &resource.zone
            && !self.exists(ResourceKind::Zone, zone)?
        {
            return Err(StoreError::ZoneNotFound {
                key,
                zone: zone.clone(),
            }
            .into());
        }
        self.log(&key, resource.zone.clone(), LogOp::Upsert)?;
        let (outcome, version, created_at) = match &existing {
            Some(existing) => (
                PutOutcome::Updated,
                existing.version + 1,
                existing.created_at,
            ),
            None => (PutOutcome::Created, 1, self.now),
        };
        let NewResource {
            key,
            labels,
            spec,
            zone,
        } = resource;
        let stored = StoredResource {
            key,
            labels,
            spec,
            zone,
            version,
            revision: self.revision,
            created_at,
            modified_at: self.now,
        };
        self.set(&stored.key, Some(stored.clone()), existing.is_some());
        Ok(WriteOutcome::Put(outcome, stored))
    }

    fn delete(
        &mut self,
        key: ResourceKey,
        precondition: Precondition,
    ) -> Result<WriteOutcome, T::Error> {
        let existing = self
            .get(&key)?
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.clone()))?;
        check_precondition(&key, Some(&existing), precondition)?;

        // What the target owns goes first, each with its own tombstone.
        let owned = match key.kind {
            ResourceKind::Mesh | ResourceKind::Zone => self.owned_now(&key)?,
            _ => Vec::new(),
        };
        if key.kind == ResourceKind::Zone {
            self.deleted_zones.push(key.name.clone());
        }
        let mut keys = Vec::with_capacity(owned.len() + 1);
        keys.push(key.clone());
        for owned in owned {
            self.log(&owned.key, owned.zone, LogOp::Delete)?;
            // Owned rows the batch has not seen come from the store: they existed.
            self.set(&owned.key, None, true);
            keys.push(owned.key);
        }
        self.log(&key, existing.zone, LogOp::Delete)?;
        self.set(&key, None, true);
        Ok(WriteOutcome::Deleted {
            keys,
            revision: self.revision,
        })
    }

    /// What `owner` owns at this point of the batch: the store's rows, overlaid with
    /// the batch's own writes, in `(type name, mesh, name, zone)` order.
    fn owned_now(&mut self, owner: &ResourceKey) -> Result<Vec<Owned>, T::Error> {
        let mut owned: Vec<Owned> = self
            .txn
            .owned_by(owner)?
            .into_iter()
            .filter(|o| !self.slots.contains_key(&o.key))
            .collect();
        owned.extend(
            self.slots
                .values()
                .filter_map(|slot| slot.current.as_ref())
                .filter(|r| owns(owner, r))
                .map(|r| Owned {
                    key: r.key.clone(),
                    zone: r.zone.clone(),
                }),
        );
        owned.sort_by(|a, b| {
            (a.key.kind.type_name(), &a.key.mesh, &a.key.name, &a.zone).cmp(&(
                b.key.kind.type_name(),
                &b.key.mesh,
                &b.key.name,
                &b.zone,
            ))
        });
        Ok(owned)
    }

    /// Writes the batch's final state through the transaction.
    fn finish(self) -> Result<(), T::Error> {
        let Batch {
            txn,
            slots,
            log,
            settings,
            deleted_zones,
            ..
        } = self;
        // Key order, so every replica and every run writes the same sequence.
        let dirty: BTreeMap<ResourceKey, Slot> =
            slots.into_iter().filter(|(_, slot)| slot.dirty).collect();
        for (key, slot) in dirty {
            match slot.current {
                Some(row) => txn.write_row(row)?,
                None if slot.existed => txn.delete_row(&key)?,
                // Created and deleted within the batch: nothing to store.
                None => {}
            }
        }
        for entry in log {
            txn.append_log(entry)?;
        }
        for (key, value) in settings {
            txn.set_setting(key, value)?;
        }
        for zone in deleted_zones {
            txn.delete_zone_insight(&zone)?;
        }
        Ok(())
    }
}

/// Whether `owner` (a Mesh or a Zone) owns `resource`.
fn owns(owner: &ResourceKey, resource: &StoredResource) -> bool {
    match owner.kind {
        ResourceKind::Mesh => resource.key.mesh == owner.name,
        ResourceKind::Zone => resource.zone.as_deref() == Some(owner.name.as_str()),
        _ => false,
    }
}

/// What [`apply`] may read for `ops`: every key it may [`WriteTxn::read`], and every
/// owner it may ask [`WriteTxn::owned_by`] about. A backend that reads ahead in bulk
/// ([`Buffered`]) loads exactly these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// Keys: each op's target, and the Mesh and Zone a put references.
    pub keys: Vec<ResourceKey>,
    /// Meshes and Zones whose deletion the batch asks for.
    pub owners: Vec<ResourceKey>,
}

/// The rows [`apply`] may read for `ops`, without duplicates.
pub fn reads(ops: &[WriteOp]) -> Reads {
    let mut keys = std::collections::BTreeSet::new();
    let mut owners = std::collections::BTreeSet::new();
    for op in ops {
        match op {
            WriteOp::Put(resource, _) => {
                keys.insert(resource.key.clone());
                if let Some(mesh) = resource.key.mesh() {
                    keys.insert(ResourceKey::global(ResourceKind::Mesh, mesh));
                }
                if let Some(zone) = &resource.zone {
                    keys.insert(ResourceKey::global(ResourceKind::Zone, zone.as_str()));
                }
            }
            WriteOp::Delete(key, _) => {
                keys.insert(key.clone());
                if matches!(key.kind, ResourceKind::Mesh | ResourceKind::Zone) {
                    owners.insert(key.clone());
                }
            }
            WriteOp::SetSetting { .. } => {}
        }
    }
    Reads {
        keys: keys.into_iter().collect(),
        owners: owners.into_iter().collect(),
    }
}

/// Everything a batch writes, collected by [`Buffered`] for a bulk flush.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Writes {
    /// Final rows, one per key.
    pub upserts: Vec<StoredResource>,
    /// Keys removed, one each; none of them is in `upserts`.
    pub deletes: Vec<ResourceKey>,
    /// Change-log entries, in revision order.
    pub log: Vec<LogEntry>,
    /// Settings in op order (a key may repeat: the last value wins).
    pub settings: Vec<(String, String)>,
    /// Zones whose insight goes.
    pub deleted_zone_insights: Vec<String>,
}

/// A [`WriteTxn`] on rows read ahead, buffering every write into [`Writes`].
#[derive(Debug, Default)]
pub struct Buffered {
    rows: HashMap<ResourceKey, Option<StoredResource>>,
    owned: HashMap<ResourceKey, Vec<Owned>>,
    writes: Writes,
}

impl Buffered {
    /// A buffer over `rows` (what exists among [`Reads::keys`]; the other keys read as
    /// absent) and `owned` (what each of [`Reads::owners`] owns).
    pub fn new(
        reads: &Reads,
        rows: impl IntoIterator<Item = StoredResource>,
        owned: impl IntoIterator<Item = (ResourceKey, Vec<Owned>)>,
    ) -> Self {
        let mut buffered = Buffered {
            rows: reads.keys.iter().map(|k| (k.clone(), None)).collect(),
            owned: reads
                .owners
                .iter()
                .map(|k| (k.clone(), Vec::new()))
                .collect(),
            writes: Writes::default(),
        };
        for row in rows {
            buffered.rows.insert(row.key.clone(), Some(row));
        }
        buffered.owned.extend(owned);
        buffered
    }

    /// The writes collected.
    pub fn into_writes(self) -> Writes {
        self.writes
    }
}

fn not_read_ahead(what: &str, key: &ResourceKey) -> StoreError {
    StoreError::Backend(format!(
        "write engine: {what} {key} was not read ahead (engine::reads is out of step)"
    ))
}

impl WriteTxn for Buffered {
    type Error = StoreError;

    fn read(&mut self, key: &ResourceKey) -> Result<Option<StoredResource>, StoreError> {
        self.rows
            .get(key)
            .cloned()
            .ok_or_else(|| not_read_ahead("the row", key))
    }

    fn owned_by(&mut self, owner: &ResourceKey) -> Result<Vec<Owned>, StoreError> {
        self.owned
            .get(owner)
            .cloned()
            .ok_or_else(|| not_read_ahead("what is owned by", owner))
    }

    fn write_row(&mut self, row: StoredResource) -> Result<(), StoreError> {
        self.writes.upserts.push(row);
        Ok(())
    }

    fn delete_row(&mut self, key: &ResourceKey) -> Result<(), StoreError> {
        self.writes.deletes.push(key.clone());
        Ok(())
    }

    fn append_log(&mut self, entry: LogEntry) -> Result<(), StoreError> {
        self.writes.log.push(entry);
        Ok(())
    }

    fn set_setting(&mut self, key: String, value: String) -> Result<(), StoreError> {
        self.writes.settings.push((key, value));
        Ok(())
    }

    fn delete_zone_insight(&mut self, zone: &str) -> Result<(), StoreError> {
        self.writes.deleted_zone_insights.push(zone.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
