//! openraft's own storage conformance suite (`openraft::testing::Suite`) against the
//! redb log store and state machine.

use std::sync::Arc;

use meridian_embedded_store::types::NodeId;
use meridian_embedded_store::{LOG_FILE, LogStore, STATE_FILE, StateMachine, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, StorageIOError};
use tokio::sync::watch;

/// Builds a log store and a state machine in a fresh temporary directory, which the
/// suite keeps alive (the guard) for the length of each case.
struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let log =
            LogStore::open(&dir.path().join(LOG_FILE)).map_err(|e| StorageIOError::write(&e))?;
        let sm = StateMachine::open(&dir.path().join(STATE_FILE), Arc::new(watch::channel(0).0))
            .map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    if let Err(error) = Suite::test_all(RedbBuilder) {
        panic!("openraft storage suite failed: {error}");
    }
}
