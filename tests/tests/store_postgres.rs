//! The store conformance suite on PostgreSQL, plus what only a shared database can
//! show: commits announced across processes (LISTEN/NOTIFY) and the ownership
//! constraints enforced by the schema itself.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use meridian_model::ResourceKind;
use meridian_store::{NewResource, Precondition, ResourceKey, Store};
use meridian_tests::postgres::{PostgresFixture, TestDatabase};
use serde_json::json;

meridian_store::conformance_tests!(PostgresFixture::new());

fn mesh(name: &str) -> NewResource {
    NewResource {
        key: ResourceKey::global(ResourceKind::Mesh, name),
        labels: BTreeMap::new(),
        spec: meridian_model::SpecBody::parse(ResourceKind::Mesh, json!({})).expect("valid spec"),
        zone: None,
    }
}

/// Two stores on one database stand for two global replicas: a commit through one
/// wakes the other's watchers via NOTIFY, without polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_on_one_replica_wakes_the_other() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let replica_1 = database.store().await;
    let replica_2 = database.store().await;
    let mut watch = replica_2.watch();
    assert_eq!(*watch.borrow_and_update(), 0);

    replica_1
        .put(mesh("default"), Precondition::Any)
        .await
        .unwrap();

    let seen = tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|r| *r >= 1))
        .await
        .expect("replica 2 heard the commit within 10 s")
        .map(|r| *r)
        .unwrap();
    assert_eq!(seen, 1);
}

/// The foreign keys are a backstop: even raw SQL cannot orphan a policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_refuses_orphans() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let store = database.store().await;
    store.put(mesh("default"), Precondition::Any).await.unwrap();
    let policy = NewResource {
        key: ResourceKey::in_mesh(ResourceKind::MeshTimeout, "default", "p"),
        labels: BTreeMap::new(),
        spec: meridian_model::minimal_spec(ResourceKind::MeshTimeout),
        zone: None,
    };
    store.put(policy, Precondition::Any).await.unwrap();

    let result = sqlx::query("DELETE FROM resources WHERE kind = 'Mesh' AND name = 'default'")
        .execute(store.pool())
        .await;
    let error = result.expect_err("deleting a mesh that still owns a policy must fail");
    assert!(
        error.to_string().contains("resources_mesh_owner"),
        "unexpected error: {error}"
    );
}
