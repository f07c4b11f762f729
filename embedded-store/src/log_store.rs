//! The Raft log, persisted in its own redb file (`raft-log.redb`): openraft's
//! [`RaftLogStorage`].
//!
//! Tables: `log` maps a log index (`u64`, ordered numerically) to the JSON-encoded
//! entry; `log_meta` keeps the vote and the last purged log id (JSON). The committed
//! log id is not kept (see `save_committed`). Every write is one redb transaction committed with redb's default
//! (immediate, fsynced) durability before openraft is told it is flushed, and writes
//! are serialised by redb's single writer, as openraft requires. Writes run on the
//! blocking pool ([`crate::blocking`]).
//!
//! Purging writes the new `last_purged` and deletes the entries in one transaction, so
//! a crash never leaves a hole between the purged id and the first entry.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::blocking::blocking;
use crate::error::{EmbeddedStoreError, storage_error};
use crate::tables::{decode, encode};
use crate::types::{Entry, NodeId, TypeConfig};

/// Log entries by index.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Vote, committed and last purged log ids.
const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("log_meta");

const META_VOTE: &str = "vote";
const META_LAST_PURGED: &str = "last_purged";

/// The redb-backed Raft log. Cheap to clone: clones share the database, and a clone
/// is the log reader openraft's replication tasks use.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (or creates) the log database at `path`.
    pub fn open(path: &Path) -> Result<LogStore, EmbeddedStoreError> {
        let db = crate::store::open_database(path)?;
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(LOG_META)?;
        txn.commit()?;
        Ok(LogStore { db: Arc::new(db) })
    }

    /// The log database, shared with every clone.
    pub(crate) fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, EmbeddedStoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG_META)?;
        table
            .get(key)?
            .map(|bytes| decode(key, bytes.value()))
            .transpose()
    }

    fn write_meta<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), EmbeddedStoreError> {
        let bytes = encode(key, value)?;
        let txn = self.db.begin_write()?;
        txn.open_table(LOG_META)?.insert(key, bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn entries(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, EmbeddedStoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG)?;
        let mut out = Vec::new();
        for item in table.range::<u64>(range)? {
            let (_, value) = item?;
            out.push(decode("log entry", value.value())?);
        }
        Ok(out)
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>, EmbeddedStoreError> {
        let last_purged: Option<LogId<NodeId>> = self.read_meta(META_LAST_PURGED)?;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG)?;
        let last = match table.last()? {
            Some((_, value)) => {
                let entry: Entry = decode("log entry", value.value())?;
                Some(entry.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    fn append_all(&self, entries: Vec<Entry>) -> Result<(), EmbeddedStoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(LOG)?;
            for entry in &entries {
                let bytes = encode("log entry", entry)?;
                table.insert(entry.log_id.index, bytes.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn truncate_from(&self, index: u64) -> Result<(), EmbeddedStoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(LOG)?;
            table.retain_in(index.., |_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn purge_upto(&self, log_id: &LogId<NodeId>) -> Result<(), EmbeddedStoreError> {
        let bytes = encode(META_LAST_PURGED, log_id)?;
        let txn = self.db.begin_write()?;
        {
            txn.open_table(LOG_META)?
                .insert(META_LAST_PURGED, bytes.as_slice())?;
            let mut table = txn.open_table(LOG)?;
            table.retain_in(..=log_id.index, |_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        self.entries(bounds(&range))
            .map_err(|e| storage_error(e, ErrorVerb::Read, ErrorSubject::Logs))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.log_state()
            .map_err(|e| storage_error(e, ErrorVerb::Read, ErrorSubject::Logs))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let (log, vote) = (self.clone(), *vote);
        blocking(move || log.write_meta(META_VOTE, &vote))
            .await
            .map_err(|e| storage_error(e, ErrorVerb::Write, ErrorSubject::Vote))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_meta(META_VOTE)
            .map_err(|e| storage_error(e, ErrorVerb::Read, ErrorSubject::Vote))
    }

    /// Not persisted: the state machine makes every apply durable before returning
    /// (openraft's "optionally persisted committed"), so a restart loses nothing
    /// by not knowing it, and a commit costs one redb transaction (two fsyncs) less.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        if let Some(committed) = committed {
            metrics::gauge!("meridian_raft_commit_index").set(committed.index as f64);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        // A value an older version stored is ignored: see `save_committed`.
        Ok(None)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // The commit is durable when it returns: report the flush right away.
        let (log, entries) = (self.clone(), entries.into_iter().collect());
        match blocking(move || log.append_all(entries)).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(storage_error(e, ErrorVerb::Write, ErrorSubject::Logs))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(%log_id, "truncating the Raft log");
        let log = self.clone();
        blocking(move || log.truncate_from(log_id.index))
            .await
            .map_err(|e| storage_error(e, ErrorVerb::Delete, ErrorSubject::Logs))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        tracing::debug!(%log_id, "purging the Raft log");
        let log = self.clone();
        blocking(move || log.purge_upto(&log_id))
            .await
            .map_err(|e| storage_error(e, ErrorVerb::Delete, ErrorSubject::Logs))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn blank(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn log_survives_reopen_and_purge_leaves_no_hole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft-log.redb");
        {
            let store = LogStore::open(&path).unwrap();
            store
                .append_all((1..=5).map(|i| blank(1, i)).collect())
                .unwrap();
            store
                .purge_upto(&LogId::new(CommittedLeaderId::new(1, 1), 2))
                .unwrap();
            store.truncate_from(5).unwrap();
        }
        let store = LogStore::open(&path).unwrap();
        let state = store.log_state().unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(2));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(4));
        let indexes: Vec<_> = store
            .entries((Bound::Unbounded, Bound::Unbounded))
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(indexes, [3, 4]);
    }
}
