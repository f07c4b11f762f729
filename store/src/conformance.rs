//! The store conformance suite: behaviour every [`Store`] backend must have.
//!
//! Each case takes a fresh, empty store. A backend runs the whole suite with
//! [`conformance_tests!`](crate::conformance_tests), which expands to one
//! `#[tokio::test]` per case:
//!
//! ```text
//! meridian_store::conformance_tests!(MyFixture::new());
//! ```
//!
//! where `MyFixture::new()` is a future of a [`Fixture`]: something that owns a fresh
//! store and whatever it needs (a database, a directory) until the case ends.

// A test suite: a failed expectation is a failed case.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use meridian_model::{ResourceKind, SpecBody};
use serde_json::json;

use crate::{
    Change, ListQuery, NewResource, Precondition, PutOutcome, ResourceKey, Store, StoreError,
    WriteOp, WriteOutcome,
};

/// Owns a fresh, empty store for one case, and what it lives on.
pub trait Fixture: Send + Sync {
    /// The store under test.
    fn store(&self) -> &dyn Store;
}

/// Expands to one `#[tokio::test]` per conformance case. `$new_fixture` is an
/// expression evaluating to a future of a [`Fixture`].
#[macro_export]
macro_rules! conformance_tests {
    ($new_store:expr) => {
        $crate::conformance_tests!(@cases $new_store;
            put_then_get_round_trips,
            identical_put_is_unchanged,
            update_bumps_version_and_revision,
            preconditions_are_enforced,
            mesh_scoped_resources_need_their_mesh,
            zone_owned_resources_need_their_zone,
            deleting_a_mesh_deletes_its_resources_with_tombstones,
            deleting_a_zone_deletes_what_it_owns,
            delete_of_missing_resource_is_not_found,
            list_filters_orders_and_pages,
            list_after_pages_one_kind_by_key,
            changes_since_returns_latest_state_per_key_in_order,
            changes_since_pages_by_revision,
            compaction_drops_old_changes_and_reports_the_horizon,
            failed_batch_writes_nothing,
            watch_wakes_on_commit,
            concurrent_writers_get_distinct_ordered_revisions,
            settings_keep_their_first_value,
            settings_are_written_atomically_with_a_batch,
            snapshot_is_every_resource_at_one_revision,
            zone_insights_are_status_not_config,
            zone_insight_replace_is_compare_and_set,
            a_large_batch_with_mixed_preconditions_applies_in_order,
            a_batch_failing_halfway_leaves_nothing,
            a_batch_sees_its_own_writes,
            a_resource_moved_away_from_a_zone_survives_its_deletion,
            rows_an_earlier_version_accepted_still_read
        );
    };
    (@cases $new_store:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $new_store.await;
                $crate::conformance::$case($crate::conformance::Fixture::store(&fixture)).await;
            }
        )*
    };
}

/// A valid spec of `kind` (the suite's documents are all valid).
fn spec(kind: ResourceKind, value: serde_json::Value) -> SpecBody {
    SpecBody::parse(kind, value).unwrap()
}

fn mesh(name: &str) -> NewResource {
    NewResource {
        key: ResourceKey::global(ResourceKind::Mesh, name),
        labels: BTreeMap::new(),
        spec: spec(ResourceKind::Mesh, json!({})),
        zone: None,
    }
}

fn zone(name: &str) -> NewResource {
    NewResource {
        key: ResourceKey::global(ResourceKind::Zone, name),
        labels: BTreeMap::new(),
        spec: spec(ResourceKind::Zone, json!({"enabled": true})),
        zone: None,
    }
}

fn policy(mesh: &str, name: &str, labels: &[(&str, &str)]) -> NewResource {
    NewResource {
        key: ResourceKey::in_mesh(ResourceKind::MeshTimeout, mesh, name),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        spec: spec(
            ResourceKind::MeshTimeout,
            json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1h"}}]}),
        ),
        zone: None,
    }
}

fn dataplane(mesh: &str, name: &str, zone: &str) -> NewResource {
    NewResource {
        key: ResourceKey::in_mesh(ResourceKind::Dataplane, mesh, name),
        labels: BTreeMap::from([("kuma.io/zone".to_owned(), zone.to_owned())]),
        spec: spec(
            ResourceKind::Dataplane,
            json!({"networking": {"address": "10.0.0.1", "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]}}),
        ),
        zone: Some(zone.to_owned()),
    }
}

async fn put(store: &dyn Store, resource: NewResource) -> crate::StoredResource {
    let key = resource.key.clone();
    match store.put(resource, Precondition::Any).await {
        Ok((_, stored)) => stored,
        Err(e) => panic!("put {key} failed: {e}"),
    }
}

/// A created resource reads back exactly, with version 1 and the next revision.
pub async fn put_then_get_round_trips(store: &dyn Store) {
    assert_eq!(store.current_revision().await.unwrap(), 0);
    let (outcome, created) = store.put(mesh("default"), Precondition::Any).await.unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    assert_eq!(created.version, 1);
    assert_eq!(created.revision, 1);
    let read = store.get(&created.key).await.unwrap().expect("mesh exists");
    assert_eq!(read, created);
    assert_eq!(store.current_revision().await.unwrap(), 1);
    let missing = ResourceKey::global(ResourceKind::Mesh, "nope");
    assert_eq!(store.get(&missing).await.unwrap(), None);
}

/// Re-putting the same labels and spec writes nothing and uses no revision.
pub async fn identical_put_is_unchanged(store: &dyn Store) {
    let first = put(store, mesh("default")).await;
    let (outcome, again) = store.put(mesh("default"), Precondition::Any).await.unwrap();
    assert_eq!(outcome, PutOutcome::Unchanged);
    assert_eq!(again, first);
    assert_eq!(store.current_revision().await.unwrap(), first.revision);
}

/// A changed put increments the version, takes a new revision, keeps creation time.
pub async fn update_bumps_version_and_revision(store: &dyn Store) {
    let first = put(store, mesh("default")).await;
    let mut changed = mesh("default");
    changed.spec = spec(ResourceKind::Mesh, json!({"routing": {"zoneEgress": true}}));
    let changed_spec = changed.spec.clone();
    let (outcome, second) = store.put(changed, Precondition::Any).await.unwrap();
    assert_eq!(outcome, PutOutcome::Updated);
    assert_eq!(second.version, 2);
    assert_eq!(second.revision, first.revision + 1);
    assert_eq!(second.created_at, first.created_at);
    assert!(second.modified_at >= first.modified_at);
    assert_eq!(second.spec, changed_spec);
}

/// Create-only and expected-version writes fail with clear errors when unmet.
pub async fn preconditions_are_enforced(store: &dyn Store) {
    let first = put(store, mesh("default")).await;
    let err = store
        .put(mesh("default"), Precondition::Absent)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists(ref k) if k == &first.key),
        "{err}"
    );

    let mut changed = mesh("default");
    changed.labels.insert("team".into(), "a".into());
    let err = store
        .put(changed.clone(), Precondition::Version(7))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: 7,
                actual: Some(1),
                ..
            }
        ),
        "{err}"
    );
    let (outcome, stored) = store.put(changed, Precondition::Version(1)).await.unwrap();
    assert_eq!((outcome, stored.version), (PutOutcome::Updated, 2));

    let err = store
        .delete(&first.key, Precondition::Version(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                actual: Some(2),
                ..
            }
        ),
        "{err}"
    );
    let err = store
        .put(mesh("other"), Precondition::Version(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: None, .. }),
        "{err}"
    );
    // Nothing above used a revision except the two successful writes.
    assert_eq!(store.current_revision().await.unwrap(), 2);
}

/// A policy in a mesh that does not exist is refused; a global kind with a mesh too.
pub async fn mesh_scoped_resources_need_their_mesh(store: &dyn Store) {
    let err = store
        .put(policy("missing", "p", &[]), Precondition::Any)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::MeshNotFound { ref mesh, .. } if mesh == "missing"),
        "{err}"
    );
    let mut bad = mesh("m");
    bad.key.mesh = "default".into();
    let err = store.put(bad, Precondition::Any).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
    assert_eq!(store.current_revision().await.unwrap(), 0);
}

/// A zone-owned resource needs an existing zone; other kinds cannot have one.
pub async fn zone_owned_resources_need_their_zone(store: &dyn Store) {
    put(store, mesh("default")).await;
    let err = store
        .put(dataplane("default", "dp-1", "zone-1"), Precondition::Any)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::ZoneNotFound { ref zone, .. } if zone == "zone-1"),
        "{err}"
    );
    let mut no_zone = dataplane("default", "dp-1", "zone-1");
    no_zone.zone = None;
    let err = store.put(no_zone, Precondition::Any).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
    let mut zoned_policy = policy("default", "p", &[]);
    zoned_policy.zone = Some("zone-1".into());
    let err = store
        .put(zoned_policy, Precondition::Any)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err}");

    put(store, zone("zone-1")).await;
    let stored = put(store, dataplane("default", "dp-1", "zone-1")).await;
    assert_eq!(stored.zone.as_deref(), Some("zone-1"));
}

/// Deleting a Mesh removes its policies and dataplanes, logging a tombstone for each.
pub async fn deleting_a_mesh_deletes_its_resources_with_tombstones(store: &dyn Store) {
    put(store, mesh("default")).await;
    put(store, mesh("other")).await;
    put(store, zone("zone-1")).await;
    put(store, policy("default", "p1", &[])).await;
    put(store, policy("other", "p2", &[])).await;
    put(store, dataplane("default", "dp-1", "zone-1")).await;
    let before = store.current_revision().await.unwrap();

    let removed = store
        .delete(
            &ResourceKey::global(ResourceKind::Mesh, "default"),
            Precondition::Any,
        )
        .await
        .unwrap();
    assert_eq!(
        removed,
        vec![
            ResourceKey::global(ResourceKind::Mesh, "default"),
            ResourceKey::in_mesh(ResourceKind::Dataplane, "default", "dp-1"),
            ResourceKey::in_mesh(ResourceKind::MeshTimeout, "default", "p1"),
        ]
    );
    assert_eq!(
        store
            .get(&ResourceKey::in_mesh(
                ResourceKind::MeshTimeout,
                "default",
                "p1"
            ))
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .get(&ResourceKey::in_mesh(
                ResourceKind::MeshTimeout,
                "other",
                "p2"
            ))
            .await
            .unwrap()
            .is_some()
    );

    let batch = store.changes_since(before, 100).await.unwrap();
    let tombstones: Vec<_> = batch
        .changes
        .iter()
        .map(|c| match c {
            Change::Delete { key, .. } => key.clone(),
            Change::Upsert(r) => panic!("unexpected upsert of {}", r.key),
        })
        .collect();
    // Owned resources are tombstoned before their owner.
    assert_eq!(tombstones.len(), 3);
    assert_eq!(
        tombstones[2],
        ResourceKey::global(ResourceKind::Mesh, "default")
    );
    assert_eq!(batch.through, before + 3);
}

/// Deleting a Zone removes the resources it owns and its insight.
pub async fn deleting_a_zone_deletes_what_it_owns(store: &dyn Store) {
    put(store, mesh("default")).await;
    put(store, zone("zone-1")).await;
    put(store, zone("zone-2")).await;
    put(store, dataplane("default", "dp-1", "zone-1")).await;
    put(store, dataplane("default", "dp-2", "zone-2")).await;
    store
        .put_zone_insight("zone-1", json!({"online": true}))
        .await
        .unwrap();

    let removed = store
        .delete(
            &ResourceKey::global(ResourceKind::Zone, "zone-1"),
            Precondition::Any,
        )
        .await
        .unwrap();
    assert_eq!(removed.len(), 2);
    let dps = store
        .list(&ListQuery::all(ResourceKind::Dataplane))
        .await
        .unwrap();
    let names: Vec<_> = dps.items.iter().map(|r| r.key.name.as_str()).collect();
    assert_eq!(names, ["dp-2"]);
    assert_eq!(store.get_zone_insight("zone-1").await.unwrap(), None);
    // The dataplane's tombstone carries its zone, so KDS can tell whose it was.
    let batch = store.changes_since(5, 10).await.unwrap();
    assert!(batch.changes.iter().any(|c| matches!(c,
        Change::Delete { key, zone: Some(z), .. } if key.name == "dp-1" && z == "zone-1")));
}

/// Deleting what does not exist is NotFound and uses no revision.
pub async fn delete_of_missing_resource_is_not_found(store: &dyn Store) {
    let key = ResourceKey::global(ResourceKind::Mesh, "ghost");
    let err = store.delete(&key, Precondition::Any).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(ref k) if k == &key),
        "{err}"
    );
    assert_eq!(store.current_revision().await.unwrap(), 0);
}

/// Lists filter by mesh, zone and labels, order by mesh then name, and page.
pub async fn list_filters_orders_and_pages(store: &dyn Store) {
    put(store, mesh("a")).await;
    put(store, mesh("b")).await;
    for name in ["p3", "p1", "p2"] {
        put(store, policy("b", name, &[("team", "x")])).await;
    }
    put(store, policy("a", "p9", &[("team", "y")])).await;

    let mut query = ListQuery::all(ResourceKind::MeshTimeout);
    let all = store.list(&query).await.unwrap();
    let names: Vec<_> = all
        .items
        .iter()
        .map(|r| format!("{}/{}", r.key.mesh, r.key.name))
        .collect();
    assert_eq!(names, ["a/p9", "b/p1", "b/p2", "b/p3"]);
    assert_eq!(all.total, 4);

    query.mesh = Some("b".into());
    query.offset = 1;
    query.limit = 1;
    let page = store.list(&query).await.unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].key.name, "p2");

    query.offset = 10;
    let past_end = store.list(&query).await.unwrap();
    assert_eq!((past_end.total, past_end.items.len()), (3, 0));

    let mut by_label = ListQuery::all(ResourceKind::MeshTimeout);
    by_label.labels.insert("team".into(), "y".into());
    let labelled = store.list(&by_label).await.unwrap();
    assert_eq!(labelled.total, 1);
    assert_eq!(labelled.items[0].key.name, "p9");

    put(store, zone("z1")).await;
    put(store, zone("z2")).await;
    put(store, dataplane("a", "dp-1", "z1")).await;
    put(store, dataplane("a", "dp-2", "z2")).await;
    let mut by_zone = ListQuery::all(ResourceKind::Dataplane);
    by_zone.zone = Some("z2".into());
    let zoned = store.list(&by_zone).await.unwrap();
    assert_eq!(zoned.total, 1);
    assert_eq!(zoned.items[0].key.name, "dp-2");
}

/// `list_after` walks one kind by (mesh, name), resuming after the last key it gave,
/// and never strays into another kind.
pub async fn list_after_pages_one_kind_by_key(store: &dyn Store) {
    put(store, mesh("a")).await;
    put(store, mesh("b")).await;
    for name in ["p3", "p1", "p2"] {
        put(store, policy("b", name, &[])).await;
    }
    put(store, policy("a", "p9", &[])).await;
    put(store, zone("z1")).await;
    put(store, dataplane("a", "dp-1", "z1")).await;
    let mut seen = Vec::new();
    let mut after: Option<(String, String)> = None;
    loop {
        let cursor = after.as_ref().map(|(m, n)| (m.as_str(), n.as_str()));
        let page = store
            .list_after(ResourceKind::MeshTimeout, cursor, 2)
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some((last.key.mesh.clone(), last.key.name.clone()));
        seen.extend(
            page.iter()
                .map(|r| format!("{}/{}", r.key.mesh, r.key.name)),
        );
    }
    assert_eq!(seen, ["a/p9", "b/p1", "b/p2", "b/p3"]);
    let meshes = store
        .list_after(ResourceKind::Mesh, None, 10)
        .await
        .unwrap();
    assert_eq!(meshes.len(), 2);
    let past = store
        .list_after(ResourceKind::Zone, Some(("", "z1")), 10)
        .await
        .unwrap();
    assert!(past.is_empty(), "{past:?}");
}

/// changes_since gives each changed key once, in its latest state, in revision order;
/// a deleted-then-recreated key shows only its upsert.
pub async fn changes_since_returns_latest_state_per_key_in_order(store: &dyn Store) {
    put(store, mesh("default")).await; // 1
    put(store, policy("default", "a", &[])).await; // 2
    put(store, policy("default", "b", &[])).await; // 3
    put(store, policy("default", "a", &[("v", "2")])).await; // 4
    let b = ResourceKey::in_mesh(ResourceKind::MeshTimeout, "default", "b");
    store.delete(&b, Precondition::Any).await.unwrap(); // 5
    put(store, policy("default", "c", &[])).await; // 6
    store
        .delete(
            &ResourceKey::in_mesh(ResourceKind::MeshTimeout, "default", "c"),
            Precondition::Any,
        )
        .await
        .unwrap(); // 7
    put(store, policy("default", "c", &[("v", "3")])).await; // 8

    let batch = store.changes_since(1, 100).await.unwrap();
    assert_eq!(batch.through, 8);
    let summary: Vec<_> = batch
        .changes
        .iter()
        .map(|c| match c {
            Change::Upsert(r) => format!("upsert {} v{} @{}", r.key.name, r.version, r.revision),
            Change::Delete { key, revision, .. } => format!("delete {} @{revision}", key.name),
        })
        .collect();
    assert_eq!(summary, ["upsert a v2 @4", "delete b @5", "upsert c v1 @8"]);

    let nothing = store.changes_since(8, 100).await.unwrap();
    assert!(nothing.changes.is_empty());
    assert_eq!(nothing.through, 8);
}

/// A limited read returns `through` = the last revision returned; continuing from it
/// yields the rest, with nothing lost or repeated.
pub async fn changes_since_pages_by_revision(store: &dyn Store) {
    put(store, mesh("default")).await;
    for i in 0..7 {
        put(store, policy("default", &format!("p{i}"), &[])).await;
    }
    let mut seen = Vec::new();
    let mut since = 0;
    loop {
        let batch = store.changes_since(since, 3).await.unwrap();
        assert!(batch.changes.len() <= 3);
        seen.extend(batch.changes.iter().map(|c| c.revision()));
        if batch.changes.is_empty() {
            break;
        }
        since = batch.through;
    }
    assert_eq!(seen, (1..=8).collect::<Vec<_>>());
}

/// After compaction, readers behind the horizon are told to take a snapshot; readers
/// at or past it still get deltas, tombstones included.
pub async fn compaction_drops_old_changes_and_reports_the_horizon(store: &dyn Store) {
    put(store, mesh("default")).await; // 1
    put(store, policy("default", "a", &[])).await; // 2
    store
        .delete(
            &ResourceKey::in_mesh(ResourceKind::MeshTimeout, "default", "a"),
            Precondition::Any,
        )
        .await
        .unwrap(); // 3
    put(store, policy("default", "b", &[])).await; // 4
    assert_eq!(store.compaction_horizon().await.unwrap(), 0);

    assert_eq!(store.compact(2).await.unwrap(), 2);
    assert_eq!(store.compaction_horizon().await.unwrap(), 2);
    let err = store.changes_since(1, 10).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Compacted {
                since: 1,
                horizon: 2
            }
        ),
        "{err}"
    );
    let batch = store.changes_since(2, 10).await.unwrap();
    assert_eq!(batch.changes.len(), 2);
    assert!(matches!(&batch.changes[0], Change::Delete { key, .. } if key.name == "a"));

    // Compaction never goes past the current revision, nor backwards.
    assert_eq!(store.compact(100).await.unwrap(), 4);
    assert_eq!(store.compact(1).await.unwrap(), 4);
    assert!(store.changes_since(4, 10).await.unwrap().changes.is_empty());
    // The resources themselves are untouched.
    assert!(
        store
            .get(&ResourceKey::in_mesh(
                ResourceKind::MeshTimeout,
                "default",
                "b"
            ))
            .await
            .unwrap()
            .is_some()
    );
}

/// A batch is all or nothing.
pub async fn failed_batch_writes_nothing(store: &dyn Store) {
    put(store, mesh("default")).await;
    let err = store
        .apply(vec![
            WriteOp::Put(policy("default", "ok", &[]), Precondition::Any),
            WriteOp::Put(policy("missing", "bad", &[]), Precondition::Any),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::MeshNotFound { .. }), "{err}");
    assert_eq!(store.current_revision().await.unwrap(), 1);
    assert_eq!(
        store
            .get(&ResourceKey::in_mesh(
                ResourceKind::MeshTimeout,
                "default",
                "ok"
            ))
            .await
            .unwrap(),
        None
    );
    let outcomes = store
        .apply(vec![
            WriteOp::Put(policy("default", "x", &[]), Precondition::Any),
            WriteOp::Put(policy("default", "y", &[]), Precondition::Any),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(store.current_revision().await.unwrap(), 3);
}

/// Subscribers see the committed revision without polling.
pub async fn watch_wakes_on_commit(store: &dyn Store) {
    let mut watch = store.watch();
    assert_eq!(*watch.borrow_and_update(), 0);
    put(store, mesh("default")).await;
    tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|r| *r >= 1))
        .await
        .expect("watch woke within 10 s")
        .expect("store alive");
}

/// Concurrent writers never share a revision, and the log has no gaps.
pub async fn concurrent_writers_get_distinct_ordered_revisions(store: &dyn Store) {
    put(store, mesh("default")).await;
    let writes =
        (0..16).map(|i| store.put(policy("default", &format!("p{i}"), &[]), Precondition::Any));
    let results = futures::future::join_all(writes).await;
    let mut revisions: Vec<_> = results
        .into_iter()
        .map(|r| r.expect("concurrent put").1.revision)
        .collect();
    revisions.sort_unstable();
    assert_eq!(revisions, (2..=17).collect::<Vec<_>>());
    let batch = store.changes_since(0, 100).await.unwrap();
    assert_eq!(batch.changes.len(), 17);
}

/// `setting_or_insert` stores a value once and returns it ever after.
pub async fn settings_keep_their_first_value(store: &dyn Store) {
    assert_eq!(
        store.setting_or_insert("k", "first").await.unwrap(),
        "first"
    );
    assert_eq!(
        store.setting_or_insert("k", "second").await.unwrap(),
        "first"
    );
    assert_eq!(store.current_revision().await.unwrap(), 0);
}

/// A setting written in a batch commits or fails with it, and uses no revision.
pub async fn settings_are_written_atomically_with_a_batch(store: &dyn Store) {
    put(store, mesh("default")).await;
    let set = |value: &str| WriteOp::SetSetting {
        key: "applied".into(),
        value: value.into(),
    };
    let err = store
        .apply(vec![
            set("5"),
            WriteOp::Put(policy("missing", "bad", &[]), Precondition::Any),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::MeshNotFound { .. }), "{err}");
    assert_eq!(store.setting("applied").await.unwrap(), None);

    store
        .apply(vec![
            WriteOp::Put(policy("default", "p", &[]), Precondition::Any),
            set("7"),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.setting("applied").await.unwrap().as_deref(),
        Some("7")
    );
    store.apply(vec![set("8")]).await.unwrap();
    assert_eq!(
        store.setting("applied").await.unwrap().as_deref(),
        Some("8")
    );
    assert_eq!(store.current_revision().await.unwrap(), 2);
}

/// A snapshot holds every resource, ordered by kind, mesh and name, and the revision
/// it is consistent at.
pub async fn snapshot_is_every_resource_at_one_revision(store: &dyn Store) {
    let empty = store.snapshot().await.unwrap();
    assert_eq!((empty.resources.len(), empty.revision), (0, 0));
    put(store, mesh("default")).await;
    put(store, zone("z1")).await;
    put(store, policy("default", "b", &[])).await;
    put(store, policy("default", "a", &[])).await;
    store
        .delete(
            &ResourceKey::in_mesh(ResourceKind::MeshTimeout, "default", "b"),
            Precondition::Any,
        )
        .await
        .unwrap();
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.revision, 5);
    let keys: Vec<_> = snapshot
        .resources
        .iter()
        .map(|r| format!("{}/{}/{}", r.key.kind, r.key.mesh, r.key.name))
        .collect();
    assert_eq!(keys, ["Mesh//default", "MeshTimeout/default/a", "Zone//z1"]);
}

/// Insights are kept per zone, overwritten in place, and never use a revision.
pub async fn zone_insights_are_status_not_config(store: &dyn Store) {
    assert_eq!(store.get_zone_insight("z").await.unwrap(), None);
    store
        .put_zone_insight("z", json!({"online": true}))
        .await
        .unwrap();
    store
        .put_zone_insight("z", json!({"online": false}))
        .await
        .unwrap();
    assert_eq!(
        store.get_zone_insight("z").await.unwrap(),
        Some(json!({"online": false}))
    );
    assert_eq!(store.current_revision().await.unwrap(), 0);
}

/// Replacing an insight only succeeds while it is still the one the caller read.
pub async fn zone_insight_replace_is_compare_and_set(store: &dyn Store) {
    let seen = json!({"online": true, "lastSeen": "2026-01-01T00:00:00Z", "lagSeconds": 0.0});
    assert!(
        !store
            .replace_zone_insight("z", &seen, json!({"online": false}))
            .await
            .unwrap(),
        "there is nothing to replace yet"
    );
    store.put_zone_insight("z", seen.clone()).await.unwrap();
    let read = store.get_zone_insight("z").await.unwrap().unwrap();
    assert!(
        store
            .replace_zone_insight("z", &read, json!({"online": false}))
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_zone_insight("z").await.unwrap(),
        Some(json!({"online": false}))
    );
    // Someone else's newer write is not overwritten by a change based on `read`.
    assert!(
        !store
            .replace_zone_insight("z", &read, json!({"online": true}))
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_zone_insight("z").await.unwrap(),
        Some(json!({"online": false}))
    );
    assert_eq!(store.current_revision().await.unwrap(), 0);
}

fn timeout_key(mesh: &str, name: &str) -> ResourceKey {
    ResourceKey::in_mesh(ResourceKind::MeshTimeout, mesh, name)
}

/// The kind of each outcome and the revision it carries (`-` for none), for compact
/// assertions on long batches.
fn summarise(outcomes: &[WriteOutcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|o| match o {
            WriteOutcome::Put(PutOutcome::Created, r) => {
                format!("created v{} @{}", r.version, r.revision)
            }
            WriteOutcome::Put(PutOutcome::Updated, r) => {
                format!("updated v{} @{}", r.version, r.revision)
            }
            WriteOutcome::Put(PutOutcome::Unchanged, r) => format!("unchanged v{}", r.version),
            WriteOutcome::Deleted { keys, revision } => {
                format!("deleted {} @{revision}", keys.len())
            }
            WriteOutcome::SettingSet => "setting".to_owned(),
        })
        .collect()
}

/// One batch of hundreds of puts and deletes with every kind of precondition: each op
/// gets the outcome and revision it would get alone, in op order.
pub async fn a_large_batch_with_mixed_preconditions_applies_in_order(store: &dyn Store) {
    put(store, mesh("default")).await; // 1
    let creates = (0..300)
        .map(|i| {
            WriteOp::Put(
                policy("default", &format!("p{i}"), &[]),
                Precondition::Absent,
            )
        })
        .collect();
    let created = store.apply(creates).await.unwrap(); // 2..=301
    assert_eq!(summarise(&created)[299], "created v1 @301");

    let mut ops = Vec::new();
    for i in 0..100 {
        let changed = policy("default", &format!("p{i}"), &[("round", "2")]);
        ops.push(WriteOp::Put(changed, Precondition::Version(1))); // 302..=401
    }
    for i in 100..150 {
        ops.push(WriteOp::Delete(
            timeout_key("default", &format!("p{i}")),
            Precondition::Version(1),
        )); // 402..=451
    }
    for i in 150..170 {
        ops.push(WriteOp::Put(
            policy("default", &format!("p{i}"), &[]),
            Precondition::Any,
        ));
    }
    for i in 0..50 {
        ops.push(WriteOp::Put(
            policy("default", &format!("n{i}"), &[]),
            Precondition::Absent,
        ));
        // 452..=501
    }
    ops.push(WriteOp::SetSetting {
        key: "applied".into(),
        value: "big".into(),
    });
    ops.push(WriteOp::Delete(
        timeout_key("default", "p170"),
        Precondition::Any,
    )); // 502
    let outcomes = store.apply(ops).await.unwrap();
    let summary = summarise(&outcomes);
    assert_eq!(summary.len(), 222);
    assert_eq!(summary[0], "updated v2 @302");
    assert_eq!(summary[99], "updated v2 @401");
    assert_eq!(summary[100], "deleted 1 @402");
    assert_eq!(summary[149], "deleted 1 @451");
    assert!(
        summary[150..170].iter().all(|s| s == "unchanged v1"),
        "{summary:?}"
    );
    assert_eq!(summary[170], "created v1 @452");
    assert_eq!(summary[219], "created v1 @501");
    assert_eq!(summary[220], "setting");
    assert_eq!(summary[221], "deleted 1 @502");
    assert_eq!(store.current_revision().await.unwrap(), 502);

    let p0 = store
        .get(&timeout_key("default", "p0"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p0.version, p0.revision), (2, 302));
    assert_eq!(p0.labels.get("round").map(String::as_str), Some("2"));
    assert_eq!(
        store.get(&timeout_key("default", "p120")).await.unwrap(),
        None
    );
    let p160 = store
        .get(&timeout_key("default", "p160"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p160.version, p160.revision), (1, 162));
    let mut query = ListQuery::all(ResourceKind::MeshTimeout);
    query.limit = 1;
    assert_eq!(store.list(&query).await.unwrap().total, 300 - 51 + 50);
    assert_eq!(
        store.setting("applied").await.unwrap().as_deref(),
        Some("big")
    );

    let batch = store.changes_since(301, 1000).await.unwrap();
    assert_eq!(batch.through, 502);
    let revisions: Vec<_> = batch.changes.iter().map(|c| c.revision()).collect();
    assert_eq!(revisions, (302..=502).collect::<Vec<_>>());
}

/// A batch refused at its 150th op leaves no trace of the 149 before it: no row, no
/// revision, no change-log entry, no setting. The refusal names the op that failed,
/// against the batch's own earlier write of that key.
pub async fn a_batch_failing_halfway_leaves_nothing(store: &dyn Store) {
    put(store, mesh("default")).await;
    put(store, zone("zone-1")).await;
    put(store, dataplane("default", "dp-1", "zone-1")).await;
    let creates = (0..100)
        .map(|i| WriteOp::Put(policy("default", &format!("p{i}"), &[]), Precondition::Any))
        .collect();
    store.apply(creates).await.unwrap();
    let before = store.current_revision().await.unwrap();
    let snapshot = store.snapshot().await.unwrap();

    let mut ops = vec![WriteOp::SetSetting {
        key: "applied".into(),
        value: "never".into(),
    }];
    for i in 0..100 {
        let changed = policy("default", &format!("p{i}"), &[("round", "2")]);
        ops.push(WriteOp::Put(changed, Precondition::Version(1)));
    }
    ops.push(WriteOp::Put(
        policy("default", "new", &[]),
        Precondition::Absent,
    ));
    ops.push(WriteOp::Delete(
        ResourceKey::global(ResourceKind::Zone, "zone-1"),
        Precondition::Any,
    ));
    for i in 100..146 {
        ops.push(WriteOp::Put(
            policy("default", &format!("p{i}"), &[]),
            Precondition::Any,
        ));
    }
    // p0 is at version 2 by now, within the batch.
    ops.push(WriteOp::Delete(
        timeout_key("default", "p0"),
        Precondition::Version(1),
    ));
    ops.push(WriteOp::Put(
        policy("default", "after", &[]),
        Precondition::Any,
    ));
    assert_eq!(ops.len(), 151);
    let err = store.apply(ops).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict { ref key, expected: 1, actual: Some(2) } if key.name == "p0"
        ),
        "{err}"
    );

    assert_eq!(store.current_revision().await.unwrap(), before);
    assert_eq!(store.snapshot().await.unwrap(), snapshot);
    let nothing = store.changes_since(before, 1000).await.unwrap();
    assert!(nothing.changes.is_empty(), "{:?}", nothing.changes);
    assert_eq!(store.setting("applied").await.unwrap(), None);
}

/// Later ops of a batch see earlier ones: a policy finds the Mesh created before it,
/// a second put of a key updates the first, deleting a Mesh removes what the batch put
/// in it, and a deleted key can be created again.
pub async fn a_batch_sees_its_own_writes(store: &dyn Store) {
    let mut changed = policy("m", "p", &[("v", "2")]);
    changed.spec = spec(
        ResourceKind::MeshTimeout,
        json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "2h"}}]}),
    );
    let ops = vec![
        WriteOp::Put(mesh("m"), Precondition::Absent),
        WriteOp::Put(zone("z"), Precondition::Absent),
        WriteOp::Put(policy("m", "p", &[]), Precondition::Absent),
        WriteOp::Put(changed, Precondition::Version(1)),
        WriteOp::Put(dataplane("m", "dp", "z"), Precondition::Any),
        WriteOp::Delete(
            ResourceKey::global(ResourceKind::Mesh, "m"),
            Precondition::Version(1),
        ),
        WriteOp::Put(mesh("m"), Precondition::Absent),
        WriteOp::Put(policy("m", "p", &[]), Precondition::Absent),
    ];
    let outcomes = store.apply(ops).await.unwrap();
    assert_eq!(
        summarise(&outcomes),
        [
            "created v1 @1",
            "created v1 @2",
            "created v1 @3",
            "updated v2 @4",
            "created v1 @5",
            "deleted 3 @8",
            "created v1 @9",
            "created v1 @10",
        ]
    );
    let WriteOutcome::Deleted { keys, .. } = &outcomes[5] else {
        panic!("{:?}", outcomes[5]);
    };
    assert_eq!(
        keys,
        &[
            ResourceKey::global(ResourceKind::Mesh, "m"),
            ResourceKey::in_mesh(ResourceKind::Dataplane, "m", "dp"),
            timeout_key("m", "p"),
        ]
    );
    let p = store.get(&timeout_key("m", "p")).await.unwrap().unwrap();
    assert_eq!((p.version, p.revision), (1, 10));
    assert!(p.labels.is_empty());
    let dp = ResourceKey::in_mesh(ResourceKind::Dataplane, "m", "dp");
    assert_eq!(store.get(&dp).await.unwrap(), None);
    assert_eq!(store.current_revision().await.unwrap(), 10);

    let batch = store.changes_since(0, 100).await.unwrap();
    let summary: Vec<_> = batch
        .changes
        .iter()
        .map(|c| match c {
            Change::Upsert(r) => format!("upsert {}/{} @{}", r.key.kind, r.key.name, r.revision),
            Change::Delete {
                key,
                zone,
                revision,
            } => {
                format!("delete {}/{} {zone:?} @{revision}", key.kind, key.name)
            }
        })
        .collect();
    assert_eq!(
        summary,
        [
            "upsert Zone/z @2",
            "delete Dataplane/dp Some(\"z\") @6",
            "upsert Mesh/m @9",
            "upsert MeshTimeout/p @10",
        ]
    );
}

/// A resource moved to another zone in the same batch that deletes its old zone is
/// not the old zone's any more: it survives, with its new zone.
pub async fn a_resource_moved_away_from_a_zone_survives_its_deletion(store: &dyn Store) {
    put(store, mesh("default")).await;
    put(store, zone("zone-1")).await;
    put(store, zone("zone-2")).await;
    put(store, dataplane("default", "dp-1", "zone-1")).await;
    put(store, dataplane("default", "dp-2", "zone-1")).await;
    let outcomes = store
        .apply(vec![
            WriteOp::Put(
                dataplane("default", "dp-1", "zone-2"),
                Precondition::Version(1),
            ),
            WriteOp::Delete(
                ResourceKey::global(ResourceKind::Zone, "zone-1"),
                Precondition::Any,
            ),
        ])
        .await
        .unwrap();
    assert_eq!(summarise(&outcomes), ["updated v2 @6", "deleted 2 @8"]);
    let dps = store
        .list(&ListQuery::all(ResourceKind::Dataplane))
        .await
        .unwrap();
    let placed: Vec<_> = dps
        .items
        .iter()
        .map(|r| (r.key.name.as_str(), r.zone.as_deref(), r.version))
        .collect();
    assert_eq!(placed, [("dp-1", Some("zone-2"), 2)]);
    assert_eq!(
        store
            .get(&ResourceKey::global(ResourceKind::Zone, "zone-1"))
            .await
            .unwrap(),
        None
    );
}

/// A row written under looser rules (here a MeshTimeout `default: {}`, which this
/// version's validator refuses) still reads back through every read: rules apply
/// when writing, reads only decode the shape. Without this an upgrade that
/// tightens a rule would make such rows unreadable.
pub async fn rows_an_earlier_version_accepted_still_read(store: &dyn Store) {
    put(store, mesh("default")).await;
    let loose = json!({"targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {}}]});
    assert!(
        SpecBody::parse(ResourceKind::MeshTimeout, loose.clone()).is_err(),
        "this version refuses the spec on writes"
    );
    let spec = SpecBody::parse_stored(ResourceKind::MeshTimeout, loose.clone()).unwrap();
    let key = ResourceKey::in_mesh(ResourceKind::MeshTimeout, "default", "old");
    let written = put(
        store,
        NewResource {
            key: key.clone(),
            labels: BTreeMap::new(),
            spec,
            zone: None,
        },
    )
    .await;
    let read = store.get(&key).await.unwrap().expect("the row reads");
    assert_eq!(read, written);
    assert_eq!(read.spec.to_value(), loose);
    let changes = store.changes_since(0, 100).await.unwrap();
    assert!(
        changes.changes.iter().any(|c| c.key() == &key),
        "{changes:?}"
    );
    assert!(
        store
            .snapshot()
            .await
            .unwrap()
            .resources
            .iter()
            .any(|r| r.key == key)
    );
}
