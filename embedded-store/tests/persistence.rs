//! Durability: everything survives a restart, and snapshots plus log purging keep the
//! Raft log bounded without losing state.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use meridian_embedded_store::{
    EmbeddedStore, EmbeddedStoreOptions, LogStore, STATE_FILE, StateMachine,
};
use meridian_model::ResourceKind;
use meridian_store::{
    ChangeBatch, NewResource, Precondition, PutOutcome, ResourceKey, Snapshot, Store, WriteOp,
};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{RaftLogReader, RaftSnapshotBuilder};
use serde_json::json;
use tokio::sync::watch;

fn mesh(name: &str) -> NewResource {
    NewResource {
        key: ResourceKey::global(ResourceKind::Mesh, name),
        labels: BTreeMap::new(),
        spec: meridian_model::SpecBody::parse(ResourceKind::Mesh, json!({})).expect("valid spec"),
        zone: None,
    }
}

fn zone(name: &str) -> NewResource {
    NewResource {
        key: ResourceKey::global(ResourceKind::Zone, name),
        labels: BTreeMap::new(),
        spec: meridian_model::SpecBody::parse(ResourceKind::Zone, json!({"enabled": true}))
            .expect("valid spec"),
        zone: None,
    }
}

fn policy(mesh: &str, name: &str) -> NewResource {
    NewResource {
        key: ResourceKey::in_mesh(ResourceKind::MeshTimeout, mesh, name),
        labels: BTreeMap::from([("team".to_owned(), "a".to_owned())]),
        spec: meridian_model::SpecBody::parse(ResourceKind::MeshTimeout, json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1h"}}]})).expect("valid spec"),
        zone: None,
    }
}

fn dataplane(mesh: &str, name: &str, zone: &str) -> NewResource {
    NewResource {
        key: ResourceKey::in_mesh(ResourceKind::Dataplane, mesh, name),
        labels: BTreeMap::new(),
        spec: meridian_model::SpecBody::parse(ResourceKind::Dataplane, json!({"networking": {"address": "10.0.0.1", "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]}})).expect("valid spec"),
        zone: Some(zone.to_owned()),
    }
}

async fn put(store: &EmbeddedStore, resource: NewResource) {
    store
        .put(resource, Precondition::Any)
        .await
        .expect("put succeeds");
}

/// Everything a reader can observe, to compare before and after a restart.
#[derive(Debug, PartialEq)]
struct Observed {
    revision: i64,
    horizon: i64,
    snapshot: Snapshot,
    changes: ChangeBatch,
    settings: Vec<Option<String>>,
    insight: Option<serde_json::Value>,
}

async fn observe(store: &EmbeddedStore) -> Observed {
    let horizon = store.compaction_horizon().await.expect("horizon");
    Observed {
        revision: store.current_revision().await.expect("revision"),
        horizon,
        snapshot: store.snapshot().await.expect("snapshot"),
        changes: store.changes_since(horizon, 10_000).await.expect("changes"),
        settings: vec![
            store.setting("token").await.expect("setting"),
            store.setting("applied").await.expect("setting"),
        ],
        insight: store.get_zone_insight("zone-1").await.expect("insight"),
    }
}

async fn reopen(dir: &Path, store: EmbeddedStore, options: EmbeddedStoreOptions) -> EmbeddedStore {
    store.shutdown().await;
    drop(store);
    EmbeddedStore::open_with(dir, options)
        .await
        .expect("store reopens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = EmbeddedStore::open(dir.path()).await.expect("store opens");
    put(&store, mesh("default")).await; // 1
    put(&store, zone("zone-1")).await; // 2
    put(&store, policy("default", "a")).await; // 3
    put(&store, policy("default", "b")).await; // 4
    put(&store, dataplane("default", "dp-1", "zone-1")).await; // 5
    store
        .delete(
            &ResourceKey::in_mesh(ResourceKind::MeshTimeout, "default", "b"),
            Precondition::Any,
        )
        .await
        .expect("delete"); // 6
    store
        .apply(vec![WriteOp::SetSetting {
            key: "applied".into(),
            value: "6".into(),
        }])
        .await
        .expect("setting");
    assert_eq!(
        store
            .setting_or_insert("token", "hash")
            .await
            .expect("token"),
        "hash"
    );
    store
        .put_zone_insight("zone-1", json!({"online": true}))
        .await
        .expect("insight");
    assert_eq!(store.compact(2).await.expect("compact"), 2);
    let before = observe(&store).await;
    assert_eq!(before.revision, 6);
    // After the horizon (2): a@3, dp-1@5 and b's tombstone@6 (b's upsert@4 is superseded).
    assert_eq!(before.changes.changes.len(), 3);

    let store = reopen(dir.path(), store, EmbeddedStoreOptions::default()).await;
    let after = observe(&store).await;
    assert_eq!(after, before);
    assert_eq!(*store.watch().borrow(), 6);
    store.ping().await.expect("leader after reopen");

    let (outcome, stored) = store
        .put(policy("default", "c"), Precondition::Any)
        .await
        .expect("put after reopen");
    assert_eq!((outcome, stored.revision), (PutOutcome::Created, 7));
    // The first value of a setting is still kept after a restart.
    assert_eq!(
        store
            .setting_or_insert("token", "other")
            .await
            .expect("token"),
        "hash"
    );
    store.shutdown().await;
    assert!(
        store.ping().await.is_err(),
        "a shut-down store is not ready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_purge_the_log_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = EmbeddedStoreOptions {
        snapshot_logs_since_last: 10,
        max_in_snapshot_log_to_keep: 0,
        ..EmbeddedStoreOptions::default()
    };
    let store = EmbeddedStore::open_with(dir.path(), options.clone())
        .await
        .expect("store opens");
    put(&store, mesh("default")).await;
    for i in 0..40 {
        put(&store, policy("default", &format!("p{i}"))).await;
    }
    store
        .apply(vec![WriteOp::SetSetting {
            key: "applied".into(),
            value: "41".into(),
        }])
        .await
        .expect("setting");

    // A snapshot is built and the log purged up to it.
    let mut metrics = store.raft().metrics();
    tokio::time::timeout(
        Duration::from_secs(10),
        metrics.wait_for(|m| {
            m.snapshot.is_some_and(|s| s.index >= 30) && m.purged.is_some_and(|p| p.index >= 30)
        }),
    )
    .await
    .expect("snapshot and purge within 10 s")
    .expect("raft alive");
    let before = observe(&store).await;
    assert_eq!(before.revision, 41);
    assert_eq!(before.snapshot.resources.len(), 41);

    let store = reopen(dir.path(), store, options).await;
    assert_eq!(observe(&store).await, before);
    let metrics = store.raft().metrics().borrow().clone();
    assert!(metrics.purged.is_some(), "the purge survived: {metrics:?}");
    assert!(
        metrics.snapshot.is_some(),
        "the snapshot survived: {metrics:?}"
    );
    let (_, stored) = store
        .put(policy("default", "next"), Precondition::Any)
        .await
        .expect("put after reopen");
    assert_eq!(stored.revision, 42);
    store.shutdown().await;
    drop(store);

    // The log on disk starts after the purged entries.
    let mut log =
        LogStore::open(&dir.path().join(meridian_embedded_store::LOG_FILE)).expect("log opens");
    let state = log.get_log_state().await.expect("log state");
    let purged = state.last_purged_log_id.expect("purged").index;
    let first = log.try_get_log_entries(0..=purged).await.expect("entries");
    assert!(first.is_empty(), "purged entries are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_snapshot_reproduces_the_state() {
    let source = tempfile::tempdir().expect("temporary directory");
    let store = EmbeddedStore::open(source.path())
        .await
        .expect("store opens");
    put(&store, mesh("default")).await;
    put(&store, zone("zone-1")).await;
    put(&store, dataplane("default", "dp-1", "zone-1")).await;
    put(&store, policy("default", "a")).await;
    store
        .put_zone_insight("zone-1", json!({"online": true}))
        .await
        .expect("insight");
    store
        .setting_or_insert("token", "hash")
        .await
        .expect("token");
    store.shutdown().await;
    drop(store);

    let open_sm = |dir: &Path| {
        StateMachine::open(&dir.join(STATE_FILE), Arc::new(watch::channel(0).0))
            .expect("state machine opens")
    };
    let mut leader = open_sm(source.path());
    let built = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot builds");

    let target = tempfile::tempdir().expect("temporary directory");
    let mut follower = open_sm(target.path());
    let mut data = follower
        .begin_receiving_snapshot()
        .await
        .expect("receiving");
    *data = *built.snapshot;
    follower
        .install_snapshot(&built.meta, data)
        .await
        .expect("installs");
    assert_eq!(
        follower.applied_state().await.expect("applied"),
        leader.applied_state().await.expect("applied")
    );
    // Rebuilt from the installed state, the snapshot carries the same content.
    let rebuilt = follower
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot builds");
    let original = leader
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("exists");
    let as_json = |bytes: &[u8]| -> serde_json::Value {
        serde_json::from_slice(bytes).expect("snapshot is JSON")
    };
    assert_eq!(
        as_json(rebuilt.snapshot.get_ref()),
        as_json(original.snapshot.get_ref())
    );
    assert_eq!(rebuilt.meta.last_log_id, built.meta.last_log_id);
}

/// Set in the child process of [`acknowledged_writes_survive_a_killed_process`]: the
/// store directory it writes to before it is killed.
const CRASH_DIR: &str = "MERIDIAN_TEST_CRASH_DIR";

/// Applies commit without fsync between durable points (the log is durable): a
/// process killed with SIGKILL leaves the state file behind the log, and the next
/// open applies the rest again, so every acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_killed_process() {
    if let Ok(dir) = std::env::var(CRASH_DIR) {
        // The child: write, report, and wait to be killed.
        let store = EmbeddedStore::open(Path::new(&dir))
            .await
            .expect("store opens");
        put(&store, mesh("default")).await;
        for i in 0..40 {
            put(&store, policy("default", &format!("p{i}"))).await;
        }
        let revision = store.current_revision().await.expect("revision");
        println!("written {revision}");
        std::future::pending::<()>().await;
    }

    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "acknowledged_writes_survive_a_killed_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("child stdout");
    let written = std::io::BufReader::new(stdout)
        .lines()
        .map(|line| line.expect("child output"))
        // libtest prints `test <name> ... ` before the child's own output.
        .find_map(|line| line.rsplit_once("written ").map(|(_, n)| n.to_owned()))
        .expect("the child reports its writes");
    child.kill().expect("SIGKILL");
    child.wait().expect("child reaped");
    assert_eq!(written, "41");

    // The state file is behind the log: the writes were not fsynced there.
    {
        let mut log =
            LogStore::open(&dir.path().join(meridian_embedded_store::LOG_FILE)).expect("log");
        let last_logged = log.get_log_state().await.expect("log state").last_log_id;
        let mut state =
            StateMachine::open(&dir.path().join(STATE_FILE), Arc::new(watch::channel(0).0))
                .expect("state machine opens");
        let (applied, _) = state.applied_state().await.expect("applied");
        assert!(
            applied < last_logged,
            "the killed process left applies only in memory: applied {applied:?}, logged {last_logged:?}"
        );
    }

    let store = EmbeddedStore::open(dir.path())
        .await
        .expect("store reopens");
    assert_eq!(store.current_revision().await.expect("revision"), 41);
    let snapshot = store.snapshot().await.expect("snapshot");
    assert_eq!(snapshot.resources.len(), 41);
    let (_, stored) = store
        .put(policy("default", "next"), Precondition::Any)
        .await
        .expect("put after the crash");
    assert_eq!(stored.revision, 42);
    store.shutdown().await;
}
