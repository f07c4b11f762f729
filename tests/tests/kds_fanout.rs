//! The KDS fan-out, scoped full syncs and heartbeats, on real stores (PostgreSQL and
//! the embedded store), through the session engine the servers run:
//! - a session that lags the shared change feed falls back to the store and still
//!   converges exactly;
//! - a full sync of a store holding many data planes sends none of them, and stays
//!   consistent when writes land while it streams;
//! - heartbeats write nothing: no revision, no transaction on the store.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use meridian_kds::scope::{GlobalToZone, Scope, ZoneToGlobal};
use meridian_kds::session::{self, Pending, Queue, SendSide};
use meridian_kds::transform::{FromGlobal, FromZone};
use meridian_kds::{Fanout, Inbound, Outbound};
use meridian_model::ResourceKind;
use meridian_proto::kds;
use meridian_store::{Precondition, ResourceKey, Store, WriteOp};
use meridian_tests::postgres::TestDatabase;
use serde_json::json;
use tokio::sync::mpsc;

use meridian_tests::fixtures::{dataplane, resource, timeout};

/// Global with a mesh, zones a and b, `policies` MeshTimeouts and `dataplanes` of
/// zone b, written 500 per transaction.
async fn seed(global: &dyn Store, policies: usize, dataplanes: usize) {
    let mut ops = vec![
        WriteOp::Put(
            resource(ResourceKind::Mesh, "", "default", json!({}), None),
            Precondition::Any,
        ),
        WriteOp::Put(
            resource(ResourceKind::Zone, "", "zone-a", json!({}), None),
            Precondition::Any,
        ),
        WriteOp::Put(
            resource(ResourceKind::Zone, "", "zone-b", json!({}), None),
            Precondition::Any,
        ),
        WriteOp::Put(
            resource(
                ResourceKind::ZoneIngress,
                "",
                "ingress.zone-b",
                json!({"networking": {"address": "10.0.0.9", "port": 10001}}),
                Some("zone-b"),
            ),
            Precondition::Any,
        ),
    ];
    for i in 0..policies {
        ops.push(WriteOp::Put(
            timeout(&format!("t{i:05}"), "1h"),
            Precondition::Any,
        ));
    }
    for i in 0..dataplanes {
        ops.push(WriteOp::Put(
            dataplane(&format!("dp-{i:05}.zone-b"), "zone-b"),
            Precondition::Any,
        ));
    }
    while !ops.is_empty() {
        let rest = ops.split_off(ops.len().min(500));
        global.apply(ops).await.unwrap();
        ops = rest;
    }
}

/// `(key, spec)` of everything `scope` admits in `store`.
async fn in_scope(
    store: &dyn Store,
    scope: &dyn Scope,
) -> BTreeMap<String, meridian_model::SpecBody> {
    let mut out = BTreeMap::new();
    for kind in ResourceKind::ALL {
        let all = meridian_store::list_all(store, meridian_store::ListQuery::all(kind))
            .await
            .unwrap();
        for r in all {
            if scope.includes(&r.key, r.zone.as_deref()) {
                out.insert(
                    format!("{} {}/{}", r.key.kind.type_name(), r.key.mesh, r.key.name),
                    r.spec,
                );
            }
        }
    }
    out
}

/// The stores a test runs on, kept alive with their databases or directories.
struct Stores {
    global: Arc<dyn Store>,
    zone: Arc<dyn Store>,
    _keep: (
        Option<(TestDatabase, TestDatabase)>,
        Option<tempfile::TempDir>,
    ),
}

async fn postgres() -> Stores {
    meridian_tests::init();
    let (g, z) = (TestDatabase::create().await, TestDatabase::create().await);
    Stores {
        global: Arc::new(g.store().await),
        zone: Arc::new(z.store().await),
        _keep: (Some((g, z)), None),
    }
}

async fn embedded() -> Stores {
    meridian_tests::init();
    let dir = tempfile::tempdir().unwrap();
    let global = meridian_embedded_store::EmbeddedStore::open(&dir.path().join("global"))
        .await
        .unwrap();
    let zone = meridian_embedded_store::EmbeddedStore::open(&dir.path().join("zone"))
        .await
        .unwrap();
    Stores {
        global: Arc::new(global),
        zone: Arc::new(zone),
        _keep: (None, Some(dir)),
    }
}

fn down_scope() -> GlobalToZone {
    GlobalToZone {
        zone: "zone-a".into(),
    }
}

fn down_inbound(zone: &Arc<dyn Store>) -> Inbound<GlobalToZone, FromGlobal> {
    Inbound::new(
        zone.clone(),
        "kds.global.applied",
        down_scope(),
        FromGlobal {
            zone: "zone-a".into(),
        },
    )
}

/// A sending side that passes messages through and counts its fallbacks.
#[derive(Default)]
struct Plain {
    fallbacks: AtomicUsize,
}

impl SendSide for Plain {
    type Wire = kds::Changes;

    fn wrap(&self, changes: kds::Changes, _: i64) -> kds::Changes {
        changes
    }

    fn fell_back(&self, _: &'static str) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    fn peer(&self) -> &str {
        "test zone"
    }
}

/// Applies messages from `rx` until the zone has applied `target` (or the deadline).
async fn apply_until(
    rx: &mut mpsc::Receiver<kds::Changes>,
    inbound: &mut Inbound<GlobalToZone, FromGlobal>,
    target: i64,
) -> Vec<kds::Changes> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while inbound.applied_revision().await.unwrap() < target {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, rx.recv())
            .await
            .expect("the zone did not reach global's revision in time")
            .expect("the session ended");
        let applied = inbound.apply(&message).await.unwrap();
        assert!(applied.nacks.is_empty(), "NACKs: {:?}", applied.nacks);
        seen.push(message);
    }
    seen
}

async fn lagging_session_converges(stores: Stores) {
    seed(stores.global.as_ref(), 3, 0).await;
    let fanout = Fanout::start(stores.global.clone());
    let outbound = Outbound::new(stores.global.clone(), down_scope());
    let mut inbound = down_inbound(&stores.zone);
    // A one-message queue nobody reads yet: the session blocks on its first send
    // while commits pile up in the fan-out.
    let (tx, mut rx) = mpsc::channel(1);
    let queue = Queue::new(tx, "zone");
    let (pending, side) = (Pending::default(), Plain::default());
    let feed = fanout.subscribe();
    let session = session::send_loop(&outbound, feed, 0, &queue, &pending, &side);
    let test = async {
        // The snapshot's single message fills the queue; the session now waits.
        let first = rx.recv().await.unwrap();
        inbound.apply(&first).await.unwrap();
        // Commits, one per transaction, until the fan-out has published more
        // batches than it retains past the session's position. The reader
        // coalesces commits that land while it reads, so the count of commits
        // alone does not say when: a probe subscribed now, never read, does
        // (the session read at most the batch it blocks on).
        let probe = fanout.subscribe();
        let mut i = 0;
        while probe.len() <= meridian_kds::fanout::RETAINED + 2 {
            assert!(i < 100_000, "the fan-out published {} batches", probe.len());
            stores
                .global
                .put(
                    timeout(&format!("t{}", i % 7), &format!("{i}s")),
                    Precondition::Any,
                )
                .await
                .unwrap();
            i += 1;
        }
        stores
            .global
            .delete(
                &ResourceKey::in_mesh(ResourceKind::MeshTimeout, "default", "t00000"),
                Precondition::Any,
            )
            .await
            .unwrap();
        let target = stores.global.current_revision().await.unwrap();
        apply_until(&mut rx, &mut inbound, target).await;
        // And the session keeps following the feed afterwards.
        stores
            .global
            .put(timeout("after-lag", "9s"), Precondition::Any)
            .await
            .unwrap();
        let target = stores.global.current_revision().await.unwrap();
        apply_until(&mut rx, &mut inbound, target).await;
    };
    tokio::select! {
        end = session => panic!("the session ended: {end}"),
        () = test => {}
    }
    assert!(
        side.fallbacks.load(Ordering::Relaxed) >= 1,
        "the session never fell back to the store, so the test did not lag it"
    );
    assert_eq!(
        in_scope(stores.zone.as_ref(), &down_scope()).await,
        in_scope(stores.global.as_ref(), &down_scope()).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_lags_the_fanout_converges_on_postgres() {
    lagging_session_converges(postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_lags_the_fanout_converges_on_the_embedded_store() {
    lagging_session_converges(embedded().await).await;
}

async fn scoped_full_sync_is_consistent(stores: Stores) {
    // Several pages of policies and of out-of-scope data planes.
    seed(stores.global.as_ref(), 1_200, 1_500).await;
    let outbound =
        Outbound::new(stores.global.clone(), down_scope()).with_max_message_bytes(16 * 1024);
    let mut inbound = down_inbound(&stores.zone);
    let mut stream = outbound.stream(0).await.unwrap();
    assert!(stream.is_snapshot());
    let mut messages = Vec::new();
    let mut wrote = false;
    while let Some(message) = stream.next().await.unwrap() {
        if !wrote {
            // Writes while the sync streams: a policy removed (first page, already
            // read or not), one changed, one added, a data plane added.
            let global = stores.global.as_ref();
            global
                .delete(
                    &ResourceKey::in_mesh(ResourceKind::MeshTimeout, "default", "t00000"),
                    Precondition::Any,
                )
                .await
                .unwrap();
            global
                .put(timeout("t00001", "42s"), Precondition::Any)
                .await
                .unwrap();
            global
                .put(timeout("t99999", "7s"), Precondition::Any)
                .await
                .unwrap();
            global
                .put(dataplane("late.zone-b", "zone-b"), Precondition::Any)
                .await
                .unwrap();
            wrote = true;
        }
        let applied = inbound.apply(&message).await.unwrap();
        assert!(applied.nacks.is_empty(), "NACKs: {:?}", applied.nacks);
        messages.push(message);
    }
    assert!(
        messages.len() > 10,
        "chunked into {} messages",
        messages.len()
    );
    let dataplanes = messages
        .iter()
        .flat_map(|m| &m.upserts)
        .filter(|r| r.r#type == "Dataplane")
        .count();
    assert_eq!(dataplanes, 0, "a full sync sent data planes");
    assert!(messages.first().unwrap().snapshot_start);
    assert!(messages.last().unwrap().snapshot_end);
    assert!(
        messages[..messages.len() - 1]
            .iter()
            .all(|m| m.through_revision == 0 && !m.snapshot_end),
        "only the last chunk records progress"
    );
    let global_revision = stores.global.current_revision().await.unwrap();
    assert_eq!(stream.through(), global_revision);
    assert_eq!(inbound.applied_revision().await.unwrap(), global_revision);
    let zone = in_scope(stores.zone.as_ref(), &down_scope()).await;
    assert_eq!(zone, in_scope(stores.global.as_ref(), &down_scope()).await);
    assert!(!zone.contains_key("MeshTimeout default/t00000"));
    assert_eq!(
        zone.get("MeshTimeout default/t00001")
            .map(|s| s.to_value()["to"][0]["default"]["idleTimeout"].clone()),
        Some(json!("42s"))
    );
    assert!(zone.contains_key("MeshTimeout default/t99999"));
    assert_eq!(
        zone.len(),
        1_200 + 2 + 1,
        "policies, zone-b, its ingress, the mesh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_streams_only_the_scope_and_stays_consistent_on_postgres() {
    scoped_full_sync_is_consistent(postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_streams_only_the_scope_and_stays_consistent_on_the_embedded_store() {
    scoped_full_sync_is_consistent(embedded().await).await;
}

/// The transaction id that last locked or wrote the revision row: every store
/// write transaction (even an empty one) locks it.
async fn revision_row_locker(url: &str) -> String {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT xmax::text || '/' || xmin::text FROM store_state")
        .fetch_one(&mut connection)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_write_nothing_to_the_store() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let global: Arc<dyn Store> = Arc::new(database.store().await);
    seed(global.as_ref(), 1, 0).await;
    let mut inbound = Inbound::new(
        global.clone(),
        "kds.zone.zone-a.applied",
        ZoneToGlobal {
            zone: "zone-a".into(),
        },
        FromZone {
            zone: "zone-a".into(),
        },
    );
    // A real change first, so the resume point is set and the row was written.
    let applied = inbound
        .apply(&kds::Changes {
            nonce: "n0".into(),
            upserts: vec![meridian_kds::convert::to_proto(
                &global
                    .get(&ResourceKey::in_mesh(
                        ResourceKind::MeshTimeout,
                        "default",
                        "t00000",
                    ))
                    .await
                    .unwrap()
                    .map(|mut r| {
                        r.key = ResourceKey::in_mesh(ResourceKind::Dataplane, "default", "web-1");
                        r.spec = meridian_model::minimal_spec(ResourceKind::Dataplane);
                        r.zone = Some("zone-a".into());
                        r
                    })
                    .unwrap(),
            )],
            through_revision: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(applied.nacks.is_empty(), "{:?}", applied.nacks);
    let revision = global.current_revision().await.unwrap();
    let locker = revision_row_locker(&database.url).await;
    for i in 0..50 {
        let beat = kds::Changes {
            nonce: format!("beat-{i}"),
            ..Default::default()
        };
        let applied = inbound.apply(&beat).await.unwrap();
        assert_eq!(applied.written, 0);
        assert_eq!(applied.through, None);
    }
    assert_eq!(
        global.current_revision().await.unwrap(),
        revision,
        "a heartbeat made a revision"
    );
    assert_eq!(
        revision_row_locker(&database.url).await,
        locker,
        "a heartbeat ran a write transaction (it locked the revision row)"
    );
    assert_eq!(
        inbound.applied_revision().await.unwrap(),
        5,
        "resume point kept"
    );
}
