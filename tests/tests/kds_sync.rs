//! KDS sync logic between two real stores (one standing for global, one for a
//! zone), without the gRPC transport: snapshot, resume with only the delta, chunking,
//! per-resource NACKs, pruning after a compacted snapshot, and zone confinement.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use meridian_kds::scope::{GlobalToZone, ZoneToGlobal};
use meridian_kds::transform::{FromGlobal, FromZone};
use meridian_kds::{Inbound, Outbound};
use meridian_model::ResourceKind;
use meridian_proto::kds;
use meridian_store::{NewResource, Precondition, ResourceKey, Store};
use meridian_tests::postgres::TestDatabase;
use serde_json::json;

struct Pair {
    global: Arc<dyn Store>,
    zone: Arc<dyn Store>,
    _databases: (TestDatabase, TestDatabase),
}

async fn pair() -> Pair {
    meridian_tests::init();
    let (g, z) = (TestDatabase::create().await, TestDatabase::create().await);
    Pair {
        global: Arc::new(g.store().await),
        zone: Arc::new(z.store().await),
        _databases: (g, z),
    }
}

use meridian_tests::fixtures::{dataplane, resource, timeout};

async fn put(store: &dyn Store, r: NewResource) {
    store.put(r, Precondition::Any).await.unwrap();
}

async fn seed_global(global: &dyn Store) {
    put(
        global,
        resource(ResourceKind::Mesh, "", "default", json!({}), None),
    )
    .await;
    for zone in ["zone-a", "zone-b"] {
        put(
            global,
            resource(ResourceKind::Zone, "", zone, json!({}), None),
        )
        .await;
    }
    for i in 0..3 {
        put(global, timeout(&format!("t{i}"), "1h")).await;
    }
    put(
        global,
        resource(
            ResourceKind::ZoneIngress,
            "",
            "ingress.zone-b",
            json!({"networking": {"address": "10.0.0.9", "port": 10001}}),
            Some("zone-b"),
        ),
    )
    .await;
    put(global, dataplane("dp.zone-b", "zone-b")).await;
}

async fn names(store: &dyn Store, kind: ResourceKind) -> Vec<String> {
    let page = store
        .list(&meridian_store::ListQuery::all(kind))
        .await
        .unwrap();
    page.items.into_iter().map(|r| r.key.name).collect()
}

async fn sync_down(
    pair: &Pair,
    outbound: &Outbound<GlobalToZone>,
    inbound: &mut Inbound<GlobalToZone, FromGlobal>,
) -> (usize, bool) {
    let since = inbound.applied_revision().await.unwrap();
    let catch_up = outbound.catch_up(since).await.unwrap();
    for message in &catch_up.messages {
        let applied = inbound.apply(message).await.unwrap();
        assert!(
            applied.nacks.is_empty(),
            "unexpected NACKs: {:?}",
            applied.nacks
        );
    }
    assert_eq!(
        inbound.applied_revision().await.unwrap(),
        pair.global.current_revision().await.unwrap()
    );
    (catch_up.resource_count(), catch_up.snapshot)
}

fn down(pair: &Pair) -> (Outbound<GlobalToZone>, Inbound<GlobalToZone, FromGlobal>) {
    let scope = GlobalToZone {
        zone: "zone-a".into(),
    };
    (
        Outbound::new(pair.global.clone(), scope.clone()),
        Inbound::new(
            pair.zone.clone(),
            "kds.global.applied",
            scope,
            FromGlobal {
                zone: "zone-a".into(),
            },
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_zone_gets_a_snapshot_then_only_deltas() {
    let pair = pair().await;
    seed_global(pair.global.as_ref()).await;
    let (outbound, mut inbound) = down(&pair);

    let (sent, snapshot) = sync_down(&pair, &outbound, &mut inbound).await;
    assert!(snapshot);
    // Mesh, zone-b (not zone-a itself), 3 timeouts, zone-b's ingress; no dataplanes.
    assert_eq!(sent, 6);
    assert_eq!(
        names(pair.zone.as_ref(), ResourceKind::MeshTimeout).await,
        ["t0", "t1", "t2"]
    );
    assert_eq!(
        names(pair.zone.as_ref(), ResourceKind::ZoneIngress).await,
        ["ingress.zone-b"]
    );
    assert!(
        names(pair.zone.as_ref(), ResourceKind::Dataplane)
            .await
            .is_empty()
    );

    // Two changes on global: the zone receives exactly two resources.
    put(pair.global.as_ref(), timeout("t1", "2h")).await;
    pair.global
        .delete(
            &ResourceKey::in_mesh(ResourceKind::MeshTimeout, "default", "t2"),
            Precondition::Any,
        )
        .await
        .unwrap();
    put(pair.global.as_ref(), dataplane("dp2.zone-b", "zone-b")).await; // not for zones
    let (sent, snapshot) = sync_down(&pair, &outbound, &mut inbound).await;
    assert!(!snapshot);
    assert_eq!(sent, 2);
    assert_eq!(
        names(pair.zone.as_ref(), ResourceKind::MeshTimeout).await,
        ["t0", "t1"]
    );
    let t1 = pair
        .zone
        .get(&ResourceKey::in_mesh(
            ResourceKind::MeshTimeout,
            "default",
            "t1",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t1.spec.to_value()["to"][0]["default"]["idleTimeout"], "2h");

    // Nothing changed: nothing is sent.
    let (sent, _) = sync_down(&pair, &outbound, &mut inbound).await;
    assert_eq!(sent, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_behind_the_compaction_horizon_gets_a_snapshot_that_prunes() {
    let pair = pair().await;
    seed_global(pair.global.as_ref()).await;
    let (outbound, mut inbound) = down(&pair);
    sync_down(&pair, &outbound, &mut inbound).await;

    pair.global
        .delete(
            &ResourceKey::in_mesh(ResourceKind::MeshTimeout, "default", "t0"),
            Precondition::Any,
        )
        .await
        .unwrap();
    put(pair.global.as_ref(), timeout("t9", "9h")).await;
    let current = pair.global.current_revision().await.unwrap();
    pair.global.compact(current).await.unwrap();

    let (_, snapshot) = sync_down(&pair, &outbound, &mut inbound).await;
    assert!(
        snapshot,
        "the tombstone was compacted away: only a snapshot is safe"
    );
    assert_eq!(
        names(pair.zone.as_ref(), ResourceKind::MeshTimeout).await,
        ["t1", "t2", "t9"]
    );
    // The zone's own Zone record is never pruned (it owns the zone's dataplanes).
    put(
        pair.zone.as_ref(),
        resource(ResourceKind::Zone, "", "zone-a", json!({}), None),
    )
    .await;
    pair.global
        .compact(pair.global.current_revision().await.unwrap())
        .await
        .unwrap();
    put(pair.global.as_ref(), timeout("t10", "1h")).await;
    pair.global
        .compact(pair.global.current_revision().await.unwrap())
        .await
        .unwrap();
    sync_down(&pair, &outbound, &mut inbound).await;
    assert!(
        names(pair.zone.as_ref(), ResourceKind::Zone)
            .await
            .contains(&"zone-a".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_snapshots_are_chunked_and_only_the_last_chunk_records_progress() {
    let pair = pair().await;
    seed_global(pair.global.as_ref()).await;
    for i in 0..40 {
        put(pair.global.as_ref(), timeout(&format!("bulk-{i:02}"), "1h")).await;
    }
    let scope = GlobalToZone {
        zone: "zone-a".into(),
    };
    let outbound = Outbound::new(pair.global.clone(), scope.clone()).with_max_message_bytes(2048);
    let mut inbound = Inbound::new(
        pair.zone.clone(),
        "kds.global.applied",
        scope,
        FromGlobal {
            zone: "zone-a".into(),
        },
    );
    let catch_up = outbound.catch_up(0).await.unwrap();
    assert!(
        catch_up.messages.len() > 1,
        "{} messages",
        catch_up.messages.len()
    );
    for message in &catch_up.messages {
        use prost::Message;
        assert!(
            message.encoded_len() <= 2048 + 64,
            "a chunk of {} bytes",
            message.encoded_len()
        );
    }
    let (last, rest) = catch_up.messages.split_last().unwrap();
    for message in rest {
        assert_eq!(message.through_revision, 0);
        inbound.apply(message).await.unwrap();
        assert_eq!(
            inbound.applied_revision().await.unwrap(),
            0,
            "no progress mid-snapshot"
        );
    }
    inbound.apply(last).await.unwrap();
    assert_eq!(inbound.applied_revision().await.unwrap(), catch_up.through);
    assert_eq!(
        names(pair.zone.as_ref(), ResourceKind::MeshTimeout)
            .await
            .len(),
        43
    );

    // A resource that cannot fit even alone is named, and the rest still flows.
    let tiny = Outbound::new(
        pair.global.clone(),
        GlobalToZone {
            zone: "zone-a".into(),
        },
    )
    .with_max_message_bytes(120);
    let catch_up = tiny.catch_up(0).await.unwrap();
    assert!(!catch_up.oversized.is_empty());
    assert!(
        catch_up.oversized[0]
            .to_string()
            .contains("KDS message limit"),
        "{}",
        catch_up.oversized[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_resources_are_nacked_and_the_rest_applies() {
    let pair = pair().await;
    put(
        pair.zone.as_ref(),
        resource(ResourceKind::Mesh, "", "default", json!({}), None),
    )
    .await;
    let scope = GlobalToZone {
        zone: "zone-a".into(),
    };
    let mut inbound = Inbound::new(
        pair.zone.clone(),
        "kds.global.applied",
        scope,
        FromGlobal {
            zone: "zone-a".into(),
        },
    );
    let good = meridian_kds::convert::to_proto(
        &pair
            .zone
            .put(timeout("good", "1h"), Precondition::Any)
            .await
            .unwrap()
            .1,
    );
    pair.zone
        .delete(
            &ResourceKey::in_mesh(ResourceKind::MeshTimeout, "default", "good"),
            Precondition::Any,
        )
        .await
        .unwrap();
    let mut bad = good.clone();
    bad.name = "bad".into();
    bad.spec = br#"{"targetRef": {"kind": "Mesh"}, "nonsense": true}"#.to_vec();
    let mut orphan = good.clone();
    orphan.name = "orphan".into();
    orphan.mesh = "no-such-mesh".into();
    let message = kds::Changes {
        nonce: "n1".into(),
        upserts: vec![bad, good, orphan],
        through_revision: 42,
        ..Default::default()
    };
    let applied = inbound.apply(&message).await.unwrap();
    let nacked: Vec<_> = applied
        .nacks
        .iter()
        .map(|n| n.key.clone().unwrap().name)
        .collect();
    assert_eq!(nacked, ["bad", "orphan"], "{:?}", applied.nacks);
    assert!(
        applied.nacks[0].reason.contains("nonsense"),
        "{}",
        applied.nacks[0].reason
    );
    assert!(
        applied.nacks[1].reason.contains("no-such-mesh"),
        "{}",
        applied.nacks[1].reason
    );
    assert_eq!(
        names(pair.zone.as_ref(), ResourceKind::MeshTimeout).await,
        ["good"]
    );
    assert_eq!(inbound.applied_revision().await.unwrap(), 42);

    // A chunk claiming to be mid-snapshot without a start is a protocol violation.
    let stray = kds::Changes {
        upserts: message.upserts.clone(),
        ..Default::default()
    };
    assert!(inbound.apply(&stray).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_can_only_touch_its_own_resources_on_global() {
    let pair = pair().await;
    seed_global(pair.global.as_ref()).await;
    // The zone's own store: its Zone, the mesh, and two dataplanes.
    put(
        pair.zone.as_ref(),
        resource(ResourceKind::Mesh, "", "default", json!({}), None),
    )
    .await;
    put(
        pair.zone.as_ref(),
        resource(ResourceKind::Zone, "", "zone-a", json!({}), None),
    )
    .await;
    put(pair.zone.as_ref(), dataplane("web-1", "zone-a")).await;
    put(pair.zone.as_ref(), dataplane("web-2", "zone-a")).await;

    let outbound = Outbound::new(
        pair.zone.clone(),
        ZoneToGlobal {
            zone: "zone-a".into(),
        },
    );
    let mut inbound = Inbound::new(
        pair.global.clone(),
        "kds.zone.zone-a.applied",
        ZoneToGlobal {
            zone: "zone-a".into(),
        },
        FromZone {
            zone: "zone-a".into(),
        },
    );
    let catch_up = outbound.catch_up(0).await.unwrap();
    assert_eq!(catch_up.resource_count(), 2);
    for message in &catch_up.messages {
        assert!(inbound.apply(message).await.unwrap().nacks.is_empty());
    }
    let mut global_dps = names(pair.global.as_ref(), ResourceKind::Dataplane).await;
    global_dps.sort();
    assert_eq!(global_dps, ["dp.zone-b", "web-1.zone-a", "web-2.zone-a"]);

    // zone-a tries to delete zone-b's dataplane and to overwrite it: neither lands.
    let attack = kds::Changes {
        nonce: "x".into(),
        upserts: vec![kds::Resource {
            zone: "zone-b".into(),
            ..meridian_kds::convert::to_proto(
                &pair
                    .global
                    .get(&ResourceKey::in_mesh(
                        ResourceKind::Dataplane,
                        "default",
                        "dp.zone-b",
                    ))
                    .await
                    .unwrap()
                    .unwrap(),
            )
        }],
        removals: vec![kds::ResourceKey {
            r#type: "Dataplane".into(),
            mesh: "default".into(),
            name: "dp".into(),
        }],
        through_revision: 99,
        ..Default::default()
    };
    let applied = inbound.apply(&attack).await.unwrap();
    assert_eq!(
        applied.nacks.len(),
        1,
        "the upsert claiming zone-b is refused: {:?}",
        applied.nacks
    );
    let dp_b = pair
        .global
        .get(&ResourceKey::in_mesh(
            ResourceKind::Dataplane,
            "default",
            "dp.zone-b",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dp_b.zone.as_deref(), Some("zone-b"));
    // The removal of "dp" maps to "dp.zone-a", which does not exist: zone-b's is untouched.
    assert_eq!(
        names(pair.global.as_ref(), ResourceKind::Dataplane)
            .await
            .len(),
        3
    );

    // The zone removes its own dataplane: global follows.
    pair.zone
        .delete(
            &ResourceKey::in_mesh(ResourceKind::Dataplane, "default", "web-2"),
            Precondition::Any,
        )
        .await
        .unwrap();
    let since = catch_up.through;
    let delta = outbound.catch_up(since).await.unwrap();
    assert_eq!(delta.resource_count(), 1);
    for message in &delta.messages {
        inbound.apply(message).await.unwrap();
    }
    let mut global_dps = names(pair.global.as_ref(), ResourceKind::Dataplane).await;
    global_dps.sort();
    assert_eq!(global_dps, ["dp.zone-b", "web-1.zone-a"]);
}

#[tokio::test]
async fn full_snapshots_wait_for_a_permit_and_deltas_do_not() {
    let pair = pair().await;
    seed_global(pair.global.as_ref()).await;
    let permits = Arc::new(tokio::sync::Semaphore::new(1));
    let scope = GlobalToZone {
        zone: "zone-a".into(),
    };
    let outbound = Outbound::new(pair.global.clone(), scope).with_snapshot_permits(permits.clone());
    // Another zone's full sync holds the only permit.
    let held = permits.clone().acquire_owned().await.unwrap();
    let snapshot = tokio::spawn(async move { outbound.catch_up(0).await.map(|c| c.snapshot) });
    // A delta needs no permit, even while the snapshot waits.
    let delta = Outbound::new(
        pair.global.clone(),
        GlobalToZone {
            zone: "zone-b".into(),
        },
    )
    .with_snapshot_permits(permits.clone());
    let revision = pair.global.current_revision().await.unwrap();
    let caught_up = delta.catch_up(revision).await.unwrap();
    assert!(!caught_up.snapshot);
    assert!(
        !snapshot.is_finished(),
        "the snapshot started without a permit"
    );
    assert_eq!(permits.available_permits(), 0);
    drop(held);
    assert!(
        snapshot.await.unwrap().unwrap(),
        "a full snapshot once admitted"
    );
    assert_eq!(permits.available_permits(), 1, "the permit is returned");
}

/// Deltas that arrived together apply in one transaction with the same result as
/// one by one: a resource put and removed within the batch is gone, a later put
/// wins, each message's NACKs come back in its own ACK, the last revision is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_applied_together_end_as_applied_one_by_one() {
    let pair = pair().await;
    let inbound_for = |store: Arc<dyn Store>| {
        Inbound::new(
            store,
            "kds.global.applied",
            GlobalToZone {
                zone: "zone-a".into(),
            },
            FromGlobal {
                zone: "zone-a".into(),
            },
        )
    };
    // Two zone stores: one gets the batch, the other the same messages one by one.
    let other = TestDatabase::create().await;
    let one_by_one: Arc<dyn Store> = Arc::new(other.store().await);
    // The proto form of a resource as global would send it (written in a scratch
    // store for its version and times).
    let scratch_db = TestDatabase::create().await;
    let scratch = scratch_db.store().await;
    put(
        &scratch,
        resource(ResourceKind::Mesh, "", "default", json!({}), None),
    )
    .await;
    let wire = |r: meridian_store::StoredResource| meridian_kds::convert::to_proto(&r);
    let mesh = wire(
        scratch
            .get(&ResourceKey::global(ResourceKind::Mesh, "default"))
            .await
            .unwrap()
            .unwrap(),
    );
    let mut proto = Vec::new();
    for (name, idle) in [("kept", "1h"), ("gone", "1h"), ("kept", "2h")] {
        proto.push(wire(
            scratch
                .put(timeout(name, idle), Precondition::Any)
                .await
                .unwrap()
                .1,
        ));
    }
    let mut bad = proto[0].clone();
    bad.name = "bad".into();
    bad.spec = br#"{"targetRef": {"kind": "Mesh"}, "nonsense": true}"#.to_vec();
    let gone_key = meridian_kds::convert::key_of(&proto[1]);
    let messages = vec![
        kds::Changes {
            nonce: "m1".into(),
            upserts: vec![mesh, proto[0].clone(), proto[1].clone()],
            through_revision: 10,
            ..Default::default()
        },
        kds::Changes {
            nonce: "m2".into(),
            upserts: vec![bad],
            removals: vec![gone_key],
            through_revision: 11,
            ..Default::default()
        },
        kds::Changes {
            nonce: "m3".into(),
            upserts: vec![proto[2].clone()],
            through_revision: 12,
            ..Default::default()
        },
    ];

    let mut together = inbound_for(pair.zone.clone());
    let applied = together.apply_batch(&messages).await.unwrap();
    let mut single = inbound_for(one_by_one.clone());
    let mut expected = Vec::new();
    for message in &messages {
        expected.push(single.apply(message).await.unwrap());
    }

    let nacked = |a: &meridian_kds::Applied| -> Vec<String> {
        a.nacks
            .iter()
            .map(|n| n.key.clone().unwrap().name)
            .collect()
    };
    assert_eq!(applied.len(), 3);
    assert_eq!(nacked(&applied[1]), ["bad"], "the NACK is in m2's ACK");
    assert!(nacked(&applied[0]).is_empty() && nacked(&applied[2]).is_empty());
    assert_eq!(
        applied.iter().map(|a| a.through).collect::<Vec<_>>(),
        expected.iter().map(|a| a.through).collect::<Vec<_>>()
    );
    for store in [&pair.zone, &one_by_one] {
        assert_eq!(
            names(store.as_ref(), ResourceKind::MeshTimeout).await,
            ["kept"]
        );
        let kept = store
            .get(&ResourceKey::in_mesh(
                ResourceKind::MeshTimeout,
                "default",
                "kept",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            kept.spec.to_value()["to"][0]["default"]["idleTimeout"],
            "2h",
            "the later put wins"
        );
    }
    assert_eq!(together.applied_revision().await.unwrap(), 12);
}
