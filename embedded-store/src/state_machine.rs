//! The replicated state machine, persisted in `state.redb`: openraft's
//! [`RaftStateMachine`].
//!
//! Every log entry is applied in one redb write transaction that also records the
//! entry's log id as `last_applied` (and the membership, for membership entries), so
//! the state on disk always matches exactly one point of the log.
//!
//! Applies commit without fsync ([`Durability::None`]) except every
//! [`DURABLE_EVERY`]th entry, membership entries, snapshots and shutdown
//! ([`flush`]): the Raft log is durable before an entry commits, so after
//! a crash the state on disk is an earlier point of the same log and openraft applies
//! the rest again (applies are deterministic: no clock, no local input). Logs are only
//! purged up to a snapshot, and a snapshot is stored with a durable commit that
//! persists every apply before it, so nothing still needed for that replay is ever
//! purged. This halves the fsyncs of each write (one for the log, none here). A
//! [`Command::Apply`] batch runs [`meridian_store::engine`] (the write rules every
//! backend shares) over the transaction's tables; if any operation is refused the
//! transaction is aborted and a fresh one records only `last_applied`, and the
//! response carries the refusal (a [`StoreError`]) — a deterministic result every
//! replica reaches, never a Raft error. Only redb failures are storage errors (which
//! stop the node).
//!
//! Nothing here reads the clock or any other local input: time comes in the command,
//! stamped by the leader, and is clamped to never run backwards (`Counters::clock`).
//!
//! Snapshots are the JSON-encoded content of every table except the derived
//! `latest_change` index (`SnapshotPayload`), with the last applied log id and
//! membership in openraft's [`SnapshotMeta`]. The current snapshot is kept in the
//! `snapshot` table so it survives restarts; installing one replaces every table in one
//! transaction.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, SubsecRound, Utc};
use meridian_model::ResourceKind;
use meridian_store::engine::{self, LogEntry, LogOp, Owned, WriteTxn};
use meridian_store::{ResourceKey, Revision, StoreError, StoredResource};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, StorageError,
    StoredMembership,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::blocking::blocking;
use crate::error::{EmbeddedStoreError, storage_error};
use crate::tables::{
    CHANGE_LOG, ChangeOp, ChangeRow, Counters, InsightRow, LATEST_CHANGE, META_COUNTERS,
    META_LAST_APPLIED, META_MEMBERSHIP, RESOURCES, ResourceRow, SETTINGS, SM_META, SNAPSHOT,
    SNAPSHOT_DATA, SNAPSHOT_META, ZONE_INSIGHTS, decode, encode, read_counters, read_resource,
    resources_of_kind, revision_key,
};
use crate::types::{Command, CommandResponse, Entry, NodeId, TypeConfig};

/// The snapshot payload format written by this version.
const SNAPSHOT_FORMAT: u32 = 1;

/// Every this many applied entries, an apply commits durably, so the file's freed
/// pages can be reused (redb recycles them only after a durable commit) and a restart
/// replays at most this many entries.
const DURABLE_EVERY: u64 = 128;

type Membership = StoredMembership<NodeId, openraft::BasicNode>;
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// The redb-backed state machine. Clones share the database.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    revision_tx: Arc<watch::Sender<Revision>>,
    /// Entries applied since the last durable commit.
    since_durable: Arc<AtomicU64>,
}

/// Builds snapshots from a consistent read transaction, in parallel with applies.
#[derive(Clone)]
pub struct SnapshotBuilder {
    db: Arc<Database>,
}

/// Everything a snapshot carries besides openraft's meta.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotPayload {
    /// [`SNAPSHOT_FORMAT`].
    format: u32,
    /// Revision, horizon, clock.
    counters: Counters,
    /// `(type name, mesh, name)` and row, in key order.
    resources: Vec<((String, String, String), ResourceRow)>,
    /// The change log, by revision.
    change_log: Vec<(u64, ChangeRow)>,
    /// Settings.
    settings: Vec<(String, String)>,
    /// Zone insights.
    zone_insights: Vec<(String, InsightRow)>,
}

/// Why a command did not apply: refused (deterministic, reported to the caller) or a
/// storage failure (fatal to the node).
enum Failure {
    Rejected(StoreError),
    Storage(EmbeddedStoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Rejected(e)
    }
}

impl<E: Into<EmbeddedStoreError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Storage(e.into())
    }
}

/// Makes every apply so far durable with one empty durable commit; the store calls
/// it at shutdown, once Raft has stopped, so a restart replays nothing.
pub(crate) fn flush(db: &Database) -> Result<(), EmbeddedStoreError> {
    db.begin_write()?.commit()?;
    Ok(())
}

/// Moves the watched revision forward, never back.
pub(crate) fn publish(revision_tx: &watch::Sender<Revision>, revision: Revision) {
    revision_tx.send_if_modified(|current| {
        let newer = revision > *current;
        if newer {
            *current = revision;
        }
        newer
    });
}

impl StateMachine {
    /// Opens (or creates) the state database at `path`. `revision_tx` is advanced
    /// after every applied batch that used revisions; it is set to the stored
    /// revision here.
    pub fn open(
        path: &Path,
        revision_tx: Arc<watch::Sender<Revision>>,
    ) -> Result<StateMachine, EmbeddedStoreError> {
        let db = crate::store::open_database(path)?;
        let txn = db.begin_write()?;
        txn.open_table(RESOURCES)?;
        txn.open_table(CHANGE_LOG)?;
        txn.open_table(LATEST_CHANGE)?;
        txn.open_table(SETTINGS)?;
        txn.open_table(ZONE_INSIGHTS)?;
        txn.open_table(SM_META)?;
        txn.open_table(SNAPSHOT)?;
        txn.commit()?;
        let revision = {
            let txn = db.begin_read()?;
            read_counters(&txn.open_table(SM_META)?)?.revision
        };
        publish(&revision_tx, revision);
        Ok(StateMachine {
            db: Arc::new(db),
            revision_tx,
            since_durable: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Whether the next applied entry commits durably: every [`DURABLE_EVERY`]th
    /// entry and membership changes; the others commit without fsync (see the module
    /// docs for why that is safe).
    fn durable_turn(&self, membership: bool) -> bool {
        let count = self.since_durable.fetch_add(1, Ordering::Relaxed) + 1;
        let durable = membership || count >= DURABLE_EVERY;
        if durable {
            self.since_durable.store(0, Ordering::Relaxed);
        }
        durable
    }

    /// A write transaction for applying one entry.
    fn begin_apply(&self, durable: bool) -> Result<WriteTransaction, EmbeddedStoreError> {
        let mut txn = self.db.begin_write()?;
        if !durable {
            txn.set_durability(Durability::None)
                .map_err(redb::Error::from)?;
        }
        Ok(txn)
    }

    /// The state database, for the store's read path.
    pub(crate) fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    fn applied(&self) -> Result<(Option<LogId<NodeId>>, Membership), EmbeddedStoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(SM_META)?;
        read_applied(&meta)
    }

    /// Applies one entry in one transaction; returns its response.
    fn apply_entry(&self, entry: Entry) -> Result<CommandResponse, EmbeddedStoreError> {
        let log_id = entry.log_id;
        let durable = self.durable_turn(matches!(entry.payload, EntryPayload::Membership(_)));
        let mut txn = self.begin_apply(durable)?;
        let mut published = None;
        let response = match entry.payload {
            EntryPayload::Blank => CommandResponse::Empty,
            EntryPayload::Membership(membership) => {
                let stored = Membership::new(Some(log_id), membership);
                txn.open_table(SM_META)?
                    .insert(META_MEMBERSHIP, encode("membership", &stored)?.as_slice())?;
                CommandResponse::Empty
            }
            EntryPayload::Normal(command) => match execute(&txn, command) {
                Ok((response, revision)) => {
                    published = revision;
                    response
                }
                Err(Failure::Rejected(error)) => {
                    // Nothing of the batch may stay: drop it, record only the log id.
                    txn.abort()?;
                    txn = self.begin_apply(durable)?;
                    CommandResponse::Applied(Err(error))
                }
                Err(Failure::Storage(error)) => return Err(error),
            },
        };
        txn.open_table(SM_META)?.insert(
            META_LAST_APPLIED,
            encode("last applied", &Some(log_id))?.as_slice(),
        )?;
        txn.commit()?;
        if let Some(revision) = published {
            publish(&self.revision_tx, revision);
        }
        Ok(response)
    }

    fn current_snapshot(&self) -> Result<Option<Snapshot<TypeConfig>>, EmbeddedStoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SNAPSHOT)?;
        let (Some(meta), Some(data)) = (table.get(SNAPSHOT_META)?, table.get(SNAPSHOT_DATA)?)
        else {
            return Ok(None);
        };
        let meta: Meta = decode("snapshot meta", meta.value())?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.value().to_vec())),
        }))
    }

    fn install(&self, meta: &Meta, data: &[u8]) -> Result<(), EmbeddedStoreError> {
        let payload: SnapshotPayload = decode("snapshot", data)?;
        if payload.format != SNAPSHOT_FORMAT {
            return Err(EmbeddedStoreError::Corrupt(format!(
                "snapshot format {} is not supported (expected {SNAPSHOT_FORMAT})",
                payload.format
            )));
        }
        let txn = self.db.begin_write()?;
        {
            let mut resources = txn.open_table(RESOURCES)?;
            let mut log = txn.open_table(CHANGE_LOG)?;
            let mut latest = txn.open_table(LATEST_CHANGE)?;
            let mut settings = txn.open_table(SETTINGS)?;
            let mut insights = txn.open_table(ZONE_INSIGHTS)?;
            let mut sm_meta = txn.open_table(SM_META)?;
            let mut snapshot = txn.open_table(SNAPSHOT)?;
            resources.retain(|_, _| false)?;
            log.retain(|_, _| false)?;
            latest.retain(|_, _| false)?;
            settings.retain(|_, _| false)?;
            insights.retain(|_, _| false)?;
            snapshot.retain(|_, _| false)?;
            for ((kind, mesh, name), row) in &payload.resources {
                resources.insert(
                    (kind.as_str(), mesh.as_str(), name.as_str()),
                    encode("resource", row)?.as_slice(),
                )?;
            }
            // Ascending revisions: the last write per key is its newest entry.
            for (revision, row) in &payload.change_log {
                log.insert(*revision, encode("change", row)?.as_slice())?;
                latest.insert(
                    (row.kind.as_str(), row.mesh.as_str(), row.name.as_str()),
                    *revision,
                )?;
            }
            for (key, value) in &payload.settings {
                settings.insert(key.as_str(), value.as_str())?;
            }
            for (zone, row) in &payload.zone_insights {
                insights.insert(zone.as_str(), encode("insight", row)?.as_slice())?;
            }
            sm_meta.insert(
                META_COUNTERS,
                encode("counters", &payload.counters)?.as_slice(),
            )?;
            sm_meta.insert(
                META_LAST_APPLIED,
                encode("last applied", &meta.last_log_id)?.as_slice(),
            )?;
            sm_meta.insert(
                META_MEMBERSHIP,
                encode("membership", &meta.last_membership)?.as_slice(),
            )?;
            snapshot.insert(SNAPSHOT_META, encode("snapshot meta", meta)?.as_slice())?;
            snapshot.insert(SNAPSHOT_DATA, data)?;
        }
        txn.commit()?;
        publish(&self.revision_tx, payload.counters.revision);
        metrics::counter!("meridian_raft_snapshots_installed_total").increment(1);
        metrics::gauge!("meridian_raft_snapshot_bytes").set(data.len() as f64);
        tracing::info!(snapshot = %meta.snapshot_id, revision = payload.counters.revision, bytes = data.len(), "installed a Raft snapshot");
        Ok(())
    }
}

fn read_applied(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<(Option<LogId<NodeId>>, Membership), EmbeddedStoreError> {
    let last_applied: Option<LogId<NodeId>> = match meta.get(META_LAST_APPLIED)? {
        Some(bytes) => decode("last applied", bytes.value())?,
        None => None,
    };
    let membership = match meta.get(META_MEMBERSHIP)? {
        Some(bytes) => decode("membership", bytes.value())?,
        None => Membership::default(),
    };
    Ok((last_applied, membership))
}

impl SnapshotBuilder {
    fn build(&self) -> Result<Snapshot<TypeConfig>, EmbeddedStoreError> {
        let (meta, data) = {
            let txn = self.db.begin_read()?;
            let (last_applied, membership) = read_applied(&txn.open_table(SM_META)?)?;
            let mut payload = SnapshotPayload {
                format: SNAPSHOT_FORMAT,
                counters: read_counters(&txn.open_table(SM_META)?)?,
                resources: Vec::new(),
                change_log: Vec::new(),
                settings: Vec::new(),
                zone_insights: Vec::new(),
            };
            for item in txn.open_table(RESOURCES)?.iter()? {
                let (key, value) = item?;
                let (kind, mesh, name) = key.value();
                payload.resources.push((
                    (kind.to_owned(), mesh.to_owned(), name.to_owned()),
                    decode("resource", value.value())?,
                ));
            }
            for item in txn.open_table(CHANGE_LOG)?.iter()? {
                let (key, value) = item?;
                payload
                    .change_log
                    .push((key.value(), decode("change", value.value())?));
            }
            for item in txn.open_table(SETTINGS)?.iter()? {
                let (key, value) = item?;
                payload
                    .settings
                    .push((key.value().to_owned(), value.value().to_owned()));
            }
            for item in txn.open_table(ZONE_INSIGHTS)?.iter()? {
                let (key, value) = item?;
                payload
                    .zone_insights
                    .push((key.value().to_owned(), decode("insight", value.value())?));
            }
            let snapshot_id = match &last_applied {
                Some(log_id) => format!(
                    "{}-{}-{}",
                    log_id.leader_id,
                    log_id.index,
                    Utc::now().timestamp_micros()
                ),
                None => format!("empty-{}", Utc::now().timestamp_micros()),
            };
            let meta = Meta {
                last_log_id: last_applied,
                last_membership: membership,
                snapshot_id,
            };
            (meta, encode("snapshot", &payload)?)
        };
        // Keep it as the current snapshot unless a newer one got there first (an
        // install racing this build).
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(SNAPSHOT)?;
            let stored: Option<Meta> = table
                .get(SNAPSHOT_META)?
                .map(|bytes| decode("snapshot meta", bytes.value()))
                .transpose()?;
            if stored.is_none_or(|stored| stored.last_log_id <= meta.last_log_id) {
                table.insert(SNAPSHOT_META, encode("snapshot meta", &meta)?.as_slice())?;
                table.insert(SNAPSHOT_DATA, data.as_slice())?;
            }
        }
        txn.commit()?;
        metrics::counter!("meridian_raft_snapshots_built_total").increment(1);
        metrics::gauge!("meridian_raft_snapshot_bytes").set(data.len() as f64);
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "built a Raft snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        // Reading and encoding the whole store: off the runtime too.
        let builder = self.clone();
        blocking(move || builder.build())
            .await
            .map_err(|e| storage_error(e, ErrorVerb::Write, ErrorSubject::Snapshot(None)))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        self.applied()
            .map_err(|e| storage_error(e, ErrorVerb::Read, ErrorSubject::StateMachine))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let machine = self.clone();
        // The outer error is the task's, the inner one an entry's.
        let applied = blocking(move || {
            let mut responses = Vec::with_capacity(entries.len());
            for entry in entries {
                let log_id = entry.log_id;
                match machine.apply_entry(entry) {
                    Ok(response) => responses.push(response),
                    Err(error) => return Ok(Err((log_id, error))),
                }
            }
            Ok(Ok(responses))
        })
        .await
        .map_err(|e| storage_error(e, ErrorVerb::Write, ErrorSubject::Apply(last)))?;
        applied
            .map_err(|(log_id, e)| storage_error(e, ErrorVerb::Write, ErrorSubject::Apply(log_id)))
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let (machine, owned_meta) = (self.clone(), meta.clone());
        let data = snapshot.into_inner();
        blocking(move || machine.install(&owned_meta, &data))
            .await
            .map_err(|e| {
                storage_error(
                    e,
                    ErrorVerb::Write,
                    ErrorSubject::Snapshot(Some(meta.signature())),
                )
            })
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        self.current_snapshot()
            .map_err(|e| storage_error(e, ErrorVerb::Read, ErrorSubject::Snapshot(None)))
    }
}

/// The tables a batch writes, open for the length of one transaction.
struct Tables<'txn> {
    resources: Table<'txn, (&'static str, &'static str, &'static str), &'static [u8]>,
    log: Table<'txn, u64, &'static [u8]>,
    latest: Table<'txn, (&'static str, &'static str, &'static str), u64>,
    settings: Table<'txn, &'static str, &'static str>,
    insights: Table<'txn, &'static str, &'static [u8]>,
    meta: Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, EmbeddedStoreError> {
        Ok(Tables {
            resources: txn.open_table(RESOURCES)?,
            log: txn.open_table(CHANGE_LOG)?,
            latest: txn.open_table(LATEST_CHANGE)?,
            settings: txn.open_table(SETTINGS)?,
            insights: txn.open_table(ZONE_INSIGHTS)?,
            meta: txn.open_table(SM_META)?,
        })
    }

    fn write_counters(&mut self, counters: &Counters) -> Result<(), EmbeddedStoreError> {
        self.meta
            .insert(META_COUNTERS, encode("counters", counters)?.as_slice())?;
        Ok(())
    }
}

/// The engine's view of a batch's redb transaction: reads and writes go straight to
/// the open tables (the engine writes only once the whole batch is accepted; a
/// refused batch's transaction is aborted anyway).
impl WriteTxn for Tables<'_> {
    type Error = Failure;

    fn read(&mut self, key: &ResourceKey) -> Result<Option<StoredResource>, Failure> {
        Ok(read_resource(&self.resources, key)?)
    }

    fn owned_by(&mut self, owner: &ResourceKey) -> Result<Vec<Owned>, Failure> {
        let mut owned = Vec::new();
        let kinds = ResourceKind::ALL.into_iter();
        let (kinds, mesh): (Vec<ResourceKind>, Option<&str>) = match owner.kind {
            ResourceKind::Mesh => (
                kinds.filter(|k| k.is_mesh_scoped()).collect(),
                Some(owner.name.as_str()),
            ),
            ResourceKind::Zone => (kinds.filter(|k| k.is_zone_owned()).collect(), None),
            _ => return Ok(owned),
        };
        for kind in kinds {
            for r in resources_of_kind(&self.resources, kind, mesh)? {
                if owner.kind == ResourceKind::Mesh
                    || r.zone.as_deref() == Some(owner.name.as_str())
                {
                    owned.push(Owned {
                        key: r.key,
                        zone: r.zone,
                    });
                }
            }
        }
        Ok(owned)
    }

    fn write_row(&mut self, row: StoredResource) -> Result<(), Failure> {
        let key = row.key.clone();
        let row = ResourceRow::of(row);
        self.resources.insert(
            (key.kind.type_name(), key.mesh.as_str(), key.name.as_str()),
            encode("resource", &row)?.as_slice(),
        )?;
        Ok(())
    }

    fn delete_row(&mut self, key: &ResourceKey) -> Result<(), Failure> {
        self.resources
            .remove((key.kind.type_name(), key.mesh.as_str(), key.name.as_str()))?;
        Ok(())
    }

    fn append_log(&mut self, entry: LogEntry) -> Result<(), Failure> {
        let LogEntry {
            revision,
            key,
            zone,
            op,
        } = entry;
        let row = ChangeRow {
            kind: key.kind.type_name().to_owned(),
            mesh: key.mesh.clone(),
            name: key.name.clone(),
            zone,
            op: match op {
                LogOp::Upsert => ChangeOp::Upsert,
                LogOp::Delete => ChangeOp::Delete,
            },
        };
        let at = revision_key(revision)?;
        self.log.insert(at, encode("change", &row)?.as_slice())?;
        self.latest.insert(
            (key.kind.type_name(), key.mesh.as_str(), key.name.as_str()),
            at,
        )?;
        Ok(())
    }

    fn set_setting(&mut self, key: String, value: String) -> Result<(), Failure> {
        self.settings.insert(key.as_str(), value.as_str())?;
        Ok(())
    }

    fn delete_zone_insight(&mut self, zone: &str) -> Result<(), Failure> {
        self.insights.remove(zone)?;
        Ok(())
    }
}

/// Runs one command against `txn`. Returns the response and, for a batch that used
/// revisions, the new revision to announce.
fn execute(
    txn: &WriteTransaction,
    command: Command,
) -> Result<(CommandResponse, Option<Revision>), Failure> {
    let mut t = Tables::open(txn)?;
    let mut counters = read_counters(&t.meta)?;
    match command {
        Command::Apply { ops, now } => {
            let now = clamp_clock(&mut counters, now);
            let start = counters.revision;
            let applied = engine::apply(&mut t, ops, start, now)?;
            counters.revision = applied.revision;
            t.write_counters(&counters)?;
            let announce = (applied.revision != start).then_some(applied.revision);
            Ok((CommandResponse::Applied(Ok(applied.outcomes)), announce))
        }
        Command::Compact { through } => {
            let through = through.min(counters.revision);
            if through <= counters.horizon {
                return Ok((CommandResponse::Compacted(counters.horizon), None));
            }
            let upto = revision_key(through)?;
            let mut dropped = Vec::new();
            for item in t.log.range(..=upto)? {
                let (at, value) = item?;
                let row: ChangeRow = decode("change", value.value())?;
                dropped.push((at.value(), row));
            }
            for (at, row) in &dropped {
                let key = (row.kind.as_str(), row.mesh.as_str(), row.name.as_str());
                let newest = t.latest.get(key)?.map(|v| v.value());
                if newest == Some(*at) {
                    t.latest.remove(key)?;
                }
            }
            t.log.retain_in(..=upto, |_, _| false)?;
            counters.horizon = through;
            t.write_counters(&counters)?;
            tracing::debug!(through, removed = dropped.len(), "change log compacted");
            Ok((CommandResponse::Compacted(through), None))
        }
        Command::PutZoneInsight { zone, insight, now } => {
            let updated_at = clamp_clock(&mut counters, now);
            let row = InsightRow {
                insight,
                updated_at,
            };
            t.insights
                .insert(zone.as_str(), encode("insight", &row)?.as_slice())?;
            t.write_counters(&counters)?;
            Ok((CommandResponse::InsightStored, None))
        }
        Command::SettingOrInsert { key, value } => {
            let existing = t.settings.get(key.as_str())?.map(|v| v.value().to_owned());
            let value = match existing {
                Some(existing) => existing,
                None => {
                    t.settings.insert(key.as_str(), value.as_str())?;
                    value
                }
            };
            Ok((CommandResponse::Setting(value), None))
        }
    }
}

/// The command's time, truncated to microseconds (what PostgreSQL keeps) and never
/// earlier than any time applied before; records it as the clock.
fn clamp_clock(counters: &mut Counters, now: DateTime<Utc>) -> DateTime<Utc> {
    let now = now.trunc_subsecs(6);
    let now = counters.clock.map_or(now, |clock| clock.max(now));
    counters.clock = Some(now);
    now
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use meridian_store::{NewResource, Precondition, WriteOp};
    use openraft::CommittedLeaderId;
    use serde_json::json;

    use super::*;

    fn entry(index: u64, command: Command) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(command),
        }
    }

    fn put_op(resource: NewResource) -> WriteOp {
        WriteOp::Put(resource, Precondition::Any)
    }

    fn mesh(name: &str) -> NewResource {
        NewResource {
            key: ResourceKey::global(ResourceKind::Mesh, name),
            labels: Default::default(),
            spec: meridian_model::SpecBody::parse(ResourceKind::Mesh, json!({}))
                .expect("valid spec"),
            zone: None,
        }
    }

    #[tokio::test]
    async fn a_refused_batch_writes_nothing_but_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let tx = Arc::new(watch::channel(0).0);
        let mut sm = StateMachine::open(&dir.path().join("state.redb"), tx.clone()).unwrap();
        let now = Utc::now();
        let ok = sm
            .apply([entry(
                1,
                Command::Apply {
                    ops: vec![put_op(mesh("a"))],
                    now,
                },
            )])
            .await
            .unwrap();
        assert!(matches!(&ok[0], CommandResponse::Applied(Ok(_))));
        assert_eq!(*tx.borrow(), 1);
        let refused = sm
            .apply([entry(
                2,
                Command::Apply {
                    ops: vec![
                        put_op(mesh("b")),
                        WriteOp::Put(mesh("a"), Precondition::Absent),
                    ],
                    now,
                },
            )])
            .await
            .unwrap();
        assert!(matches!(
            &refused[0],
            CommandResponse::Applied(Err(StoreError::AlreadyExists(_)))
        ));
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(2));
        let txn = sm.db.begin_read().unwrap();
        let resources = txn.open_table(RESOURCES).unwrap();
        let b = ResourceKey::global(ResourceKind::Mesh, "b");
        assert_eq!(read_resource(&resources, &b).unwrap(), None);
        assert_eq!(
            read_counters(&txn.open_table(SM_META).unwrap())
                .unwrap()
                .revision,
            1
        );
    }

    #[test]
    fn the_clock_never_runs_backwards() {
        let mut counters = Counters::default();
        let later = Utc::now();
        let earlier = later - chrono::Duration::seconds(5);
        let first = clamp_clock(&mut counters, later);
        assert_eq!(first, later.trunc_subsecs(6));
        assert_eq!(clamp_clock(&mut counters, earlier), first);
    }
}
