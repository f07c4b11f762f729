//! Several replicas of the embedded store in one process, talking Raft over real
//! loopback sockets: writes through any replica, membership changes by API, and
//! peers that refuse a replica without the group's certificate.

use std::collections::BTreeMap;
use std::time::Duration;

use meridian_embedded_store::{EmbeddedStore, EmbeddedStoreOptions, RaftCluster, RaftTiming};
use meridian_model::ResourceKind;
use meridian_store::{NewResource, Precondition, ResourceKey, Store};
use serde_json::json;
use tempfile::TempDir;

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

fn mesh(name: &str) -> NewResource {
    NewResource {
        key: ResourceKey::global(ResourceKind::Mesh, name),
        labels: BTreeMap::new(),
        spec: meridian_model::SpecBody::parse(ResourceKind::Mesh, json!({})).expect("valid spec"),
        zone: None,
    }
}

fn options(id: u64, addrs: &BTreeMap<u64, std::net::SocketAddr>) -> EmbeddedStoreOptions {
    EmbeddedStoreOptions {
        cluster: Some(RaftCluster {
            id,
            listen: addrs[&id],
            advertise: None,
            peers: addrs
                .iter()
                .filter(|(peer, _)| **peer <= 3)
                .map(|(peer, addr)| (*peer, addr.to_string()))
                .chain(std::iter::once((id, addrs[&id].to_string())))
                .collect(),
            tls: None,
            timing: RaftTiming {
                heartbeat: Duration::from_millis(100),
                election_min: Duration::from_millis(500),
                election_max: Duration::from_millis(1000),
            },
        }),
        write_timeout: Duration::from_secs(5),
        leader_timeout: Duration::from_secs(30),
        ..EmbeddedStoreOptions::default()
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_replica_and_membership_by_api() {
    let dirs: Vec<TempDir> = (0..4).map(|_| TempDir::new().expect("dir")).collect();
    let addrs: BTreeMap<u64, _> = (1..=4).map(|id| (id, free_addr())).collect();
    // The group elects a leader only once a majority is up: open them together.
    let opened = futures::future::join_all(
        (1..=3)
            .map(|id| EmbeddedStore::open_with(dirs[id as usize - 1].path(), options(id, &addrs))),
    )
    .await;
    let stores: BTreeMap<u64, EmbeddedStore> = (1..=3)
        .zip(opened.into_iter().map(|s| s.expect("replica opens")))
        .collect();

    // A write on a follower is forwarded and readable there at once.
    let follower = stores
        .values()
        .find(|s| s.group_status().leader != Some(s.node_id()))
        .expect("a follower");
    follower
        .put(mesh("from-follower"), Precondition::Absent)
        .await
        .expect("a follower's write is forwarded");
    let key = ResourceKey::global(ResourceKind::Mesh, "from-follower");
    assert!(
        follower.get(&key).await.expect("read").is_some(),
        "read-your-writes"
    );

    // Add replica 4 as a learner through a follower, then promote it.
    let fourth = EmbeddedStore::open_with(dirs[3].path(), options(4, &addrs));
    let add = follower.add_learner(4, addrs[&4].to_string());
    let (fourth, added) = tokio::join!(fourth, add);
    let fourth = fourth.expect("replica 4 joins");
    let index = added.expect("learner added");
    // The learner holds the log up to the change; its state machine applies it next.
    fourth
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(Some(index), "the learner applies the log")
        .await
        .expect("the learner caught up");
    assert!(
        fourth.get(&key).await.expect("read").is_some(),
        "the learner has the write"
    );
    follower.promote(4).await.expect("promoted");
    let status = follower.group_status();
    let roles: BTreeMap<u64, &str> = status.members.iter().map(|m| (m.id, m.role)).collect();
    assert_eq!(
        roles,
        BTreeMap::from([(1, "voter"), (2, "voter"), (3, "voter"), (4, "voter")])
    );

    // Promoting an unknown node is refused with a reason, and changes nothing.
    let refused = follower.promote(9).await.expect_err("node 9 is unknown");
    assert!(refused.to_string().contains('9'), "{refused}");

    // Remove the leader: the others elect a new one and keep taking writes.
    let leader_id = follower.group_status().leader.expect("a leader");
    follower.remove_member(leader_id).await.expect("removed");
    let survivor = stores
        .iter()
        .find(|(id, _)| **id != leader_id)
        .map(|(_, s)| s.clone())
        .expect("a survivor");
    wait_for("a new leader among the rest", || {
        survivor
            .group_status()
            .leader
            .is_some_and(|l| l != leader_id)
    })
    .await;
    survivor
        .put(mesh("after-removal"), Precondition::Absent)
        .await
        .expect("the group takes writes without the removed replica");
    let members: Vec<u64> = survivor
        .group_status()
        .members
        .iter()
        .map(|m| m.id)
        .collect();
    assert!(!members.contains(&leader_id), "{members:?}");

    for store in stores.values().chain(std::iter::once(&fourth)) {
        store.shutdown().await;
    }
}
