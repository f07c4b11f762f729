//! The engine on [`Buffered`] alone: what a batch writes, in memory, for rules the
//! conformance suite cannot see from outside (one write per key, nothing written on
//! refusal, what a backend must read ahead).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use serde_json::json;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn spec(kind: ResourceKind, value: serde_json::Value) -> meridian_model::SpecBody {
    meridian_model::SpecBody::parse(kind, value).unwrap()
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

/// A MeshTimeout with this idle timeout.
fn policy(mesh: &str, name: &str, idle: &str) -> NewResource {
    NewResource {
        key: ResourceKey::in_mesh(ResourceKind::MeshTimeout, mesh, name),
        labels: BTreeMap::new(),
        spec: spec(
            ResourceKind::MeshTimeout,
            json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}]}),
        ),
        zone: None,
    }
}

fn dataplane(mesh: &str, name: &str, zone: &str) -> NewResource {
    NewResource {
        key: ResourceKey::in_mesh(ResourceKind::Dataplane, mesh, name),
        labels: BTreeMap::new(),
        spec: spec(
            ResourceKind::Dataplane,
            json!({"networking": {"address": "10.0.0.1", "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]}}),
        ),
        zone: Some(zone.to_owned()),
    }
}

fn stored(resource: NewResource, revision: Revision) -> StoredResource {
    StoredResource {
        key: resource.key,
        labels: resource.labels,
        spec: resource.spec,
        zone: resource.zone,
        version: 1,
        revision,
        created_at: now(),
        modified_at: now(),
    }
}

fn put(resource: NewResource) -> WriteOp {
    WriteOp::Put(resource, Precondition::Any)
}

/// Runs `ops` on a store holding `rows`, reading ahead what [`reads`] names.
fn run(
    rows: &[StoredResource],
    ops: Vec<WriteOp>,
    start: Revision,
) -> (Result<Applied, StoreError>, Writes) {
    let reads = reads(&ops);
    let present = rows.iter().filter(|r| reads.keys.contains(&r.key)).cloned();
    let owned = reads.owners.iter().map(|owner| {
        let owned = rows
            .iter()
            .filter(|r| owns(owner, r))
            .map(|r| Owned {
                key: r.key.clone(),
                zone: r.zone.clone(),
            })
            .collect();
        (owner.clone(), owned)
    });
    let mut txn = Buffered::new(&reads, present, owned);
    let result = apply(&mut txn, ops, start, now());
    (result, txn.into_writes())
}

#[test]
fn later_ops_see_earlier_ones_and_each_key_is_written_once() {
    let (applied, writes) = run(
        &[],
        vec![
            put(mesh("m")),
            put(policy("m", "p", "1s")),
            WriteOp::Put(policy("m", "p", "2s"), Precondition::Version(1)),
        ],
        10,
    );
    let applied = applied.unwrap();
    assert_eq!(applied.revision, 13);
    let WriteOutcome::Put(PutOutcome::Updated, second) = &applied.outcomes[2] else {
        panic!("{:?}", applied.outcomes[2]);
    };
    assert_eq!((second.version, second.revision), (2, 13));
    assert_eq!(writes.upserts.len(), 2, "{:?}", writes.upserts);
    assert!(writes.upserts.contains(second));
    let revisions: Vec<_> = writes.log.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, [11, 12, 13]);
    assert!(writes.deletes.is_empty());
}

#[test]
fn a_refused_batch_writes_nothing() {
    let rows = [stored(mesh("m"), 1)];
    let (result, writes) = run(
        &rows,
        vec![
            put(policy("m", "a", "1h")),
            WriteOp::SetSetting {
                key: "k".into(),
                value: "v".into(),
            },
            WriteOp::Delete(
                ResourceKey::global(ResourceKind::Mesh, "m"),
                Precondition::Version(4),
            ),
        ],
        1,
    );
    assert!(
        matches!(
            result,
            Err(StoreError::Conflict {
                expected: 4,
                actual: Some(1),
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(writes, Writes::default());
}

#[test]
fn created_then_deleted_in_one_batch_stores_nothing_but_logs_both() {
    let rows = [stored(mesh("m"), 1)];
    let key = ResourceKey::in_mesh(ResourceKind::MeshTimeout, "m", "p");
    let (applied, writes) = run(
        &rows,
        vec![
            put(policy("m", "p", "1h")),
            WriteOp::Delete(key.clone(), Precondition::Version(1)),
        ],
        1,
    );
    assert_eq!(applied.unwrap().revision, 3);
    assert!(writes.upserts.is_empty() && writes.deletes.is_empty());
    let ops: Vec<_> = writes.log.iter().map(|e| (e.revision, e.op)).collect();
    assert_eq!(ops, [(2, LogOp::Upsert), (3, LogOp::Delete)]);
}

#[test]
fn deleting_a_mesh_removes_stored_and_batch_resources_in_type_name_order() {
    let rows = [
        stored(mesh("m"), 1),
        stored(zone("z"), 2),
        stored(policy("m", "old", "1h"), 3),
        stored(policy("other", "keep", "1h"), 4),
    ];
    let (applied, writes) = run(
        &rows,
        vec![
            put(dataplane("m", "dp", "z")),
            put(policy("m", "new", "1h")),
            WriteOp::Delete(
                ResourceKey::global(ResourceKind::Mesh, "m"),
                Precondition::Any,
            ),
        ],
        4,
    );
    let applied = applied.unwrap();
    let WriteOutcome::Deleted { keys, revision } = &applied.outcomes[2] else {
        panic!("{:?}", applied.outcomes[2]);
    };
    let names: Vec<_> = keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["m", "dp", "new", "old"]);
    assert_eq!(*revision, 10);
    // Only what existed before the batch is deleted from storage.
    let mut deleted: Vec<_> = writes.deletes.iter().map(|k| k.name.as_str()).collect();
    deleted.sort_unstable();
    assert_eq!(deleted, ["m", "old"]);
    assert!(writes.upserts.is_empty());
    let tombstone_zone = writes
        .log
        .iter()
        .find(|e| e.key.name == "dp" && e.op == LogOp::Delete)
        .and_then(|e| e.zone.clone());
    assert_eq!(tombstone_zone.as_deref(), Some("z"));
}

#[test]
fn a_resource_moved_to_another_zone_survives_its_old_zone() {
    let mut dp = stored(dataplane("m", "dp", "z1"), 4);
    dp.version = 3;
    let rows = [
        stored(mesh("m"), 1),
        stored(zone("z1"), 2),
        stored(zone("z2"), 3),
        dp,
    ];
    let (applied, writes) = run(
        &rows,
        vec![
            put(dataplane("m", "dp", "z2")),
            WriteOp::Delete(
                ResourceKey::global(ResourceKind::Zone, "z1"),
                Precondition::Any,
            ),
        ],
        4,
    );
    let applied = applied.unwrap();
    let WriteOutcome::Deleted { keys, .. } = &applied.outcomes[1] else {
        panic!("{:?}", applied.outcomes[1]);
    };
    assert_eq!(keys.len(), 1, "only the zone: {keys:?}");
    assert_eq!(writes.upserts.len(), 1);
    assert_eq!(writes.upserts[0].zone.as_deref(), Some("z2"));
    assert_eq!(writes.upserts[0].version, 4);
    assert_eq!(writes.deleted_zone_insights, ["z1"]);
}

#[test]
fn unchanged_puts_use_no_revision_and_write_nothing() {
    let rows = [stored(mesh("m"), 1)];
    let (applied, writes) = run(&rows, vec![put(mesh("m")), put(mesh("m"))], 1);
    let applied = applied.unwrap();
    assert_eq!(applied.revision, 1);
    assert!(
        applied
            .outcomes
            .iter()
            .all(|o| matches!(o, WriteOutcome::Put(PutOutcome::Unchanged, _)))
    );
    assert_eq!(writes, Writes::default());
}

#[test]
fn reads_name_targets_referenced_owners_and_cascading_deletes() {
    let ops = vec![
        put(dataplane("m", "dp", "z")),
        WriteOp::Delete(
            ResourceKey::global(ResourceKind::Zone, "z"),
            Precondition::Any,
        ),
        WriteOp::Delete(
            ResourceKey::in_mesh(ResourceKind::MeshTimeout, "m", "p"),
            Precondition::Any,
        ),
    ];
    let reads = reads(&ops);
    let mut names: Vec<_> = reads
        .keys
        .iter()
        .map(|k| format!("{}/{}", k.kind, k.name))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["Dataplane/dp", "Mesh/m", "MeshTimeout/p", "Zone/z"]);
    assert_eq!(reads.owners, [ResourceKey::global(ResourceKind::Zone, "z")]);
}

#[test]
fn a_read_outside_the_read_ahead_is_an_error_not_an_absent_row() {
    let mut txn = Buffered::new(&Reads::default(), [], []);
    let key = ResourceKey::global(ResourceKind::Mesh, "m");
    assert!(matches!(txn.read(&key), Err(StoreError::Backend(_))));
}
