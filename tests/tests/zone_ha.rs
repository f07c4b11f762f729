//! A zone control plane as a 3-replica Raft group of real processes on loopback:
//! the faults of the HA issue, each asserted by polling with a deadline.
//!
//! - the leader SIGKILLed under a stream of registrations: a new leader, KDS resumed
//!   from the replicated revision (not a full resync), no acknowledged write lost,
//!   none duplicated;
//! - a follower restarted after the log was compacted catches up by snapshot;
//! - a replica cut off from the others accepts no writes and runs no KDS, while the
//!   majority carries on; healed, it converges.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use meridian_tests::cluster::Cluster;
use meridian_tests::eventually;
use meridian_tests::zone_replicas::{GroupOptions, ZoneGroup};
use serde_json::{Value, json};

fn timeout_policy(name: &str) -> Value {
    json!({"type": "MeshTimeout", "name": name, "mesh": "default",
        "spec": {"targetRef": {"kind": "Mesh"},
                 "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "30s"}}]}})
}

fn dataplane(name: &str) -> Value {
    json!({"type": "Dataplane", "name": name, "mesh": "default",
        "networking": {"address": "10.0.0.1",
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]}})
}

async fn global_names(cluster: &Cluster, path: &str) -> Option<Vec<String>> {
    meridian_tests::scrape::names(&reqwest::Client::new(), &format!("{}{path}", cluster.api)).await
}

/// The test's registrations (`dp-N`), without the sidecar's.
fn registrations(names: Vec<String>) -> Vec<String> {
    names.into_iter().filter(|n| n.starts_with("dp-")).collect()
}

/// Which replica registered `sidecar-1`, as global has it.
async fn sidecar_registered_by(cluster: &Cluster) -> Option<String> {
    let doc: Value = reqwest::get(format!(
        "{}/meshes/default/dataplanes/sidecar-1.east",
        cluster.api
    ))
    .await
    .ok()?
    .json()
    .await
    .ok()?;
    doc["labels"]["meridian.io/registered-by"]
        .as_str()
        .map(str::to_owned)
}

async fn global_zone_streams(cluster: &Cluster, zone: &str) -> Option<f64> {
    let series = format!("meridian_kds_live_streams{{zone=\"{zone}\"}}");
    meridian_tests::scrape::metric(&reqwest::Client::new(), &cluster.api, &series).await
}

/// Global on PostgreSQL with `policies` MeshTimeouts, and a 3-replica zone synced
/// with it.
async fn zone_group_with_global(
    name: &str,
    zone: &str,
    tls: bool,
    partitionable: bool,
    policies: usize,
) -> (Cluster, ZoneGroup) {
    let cluster = Cluster::start(name, &[]).await;
    for i in 0..policies {
        cluster.apply(timeout_policy(&format!("before-{i}"))).await;
    }
    let token = cluster.zone_token_file(zone).await;
    let group = ZoneGroup::start(
        name,
        zone,
        GroupOptions {
            replicas: 3,
            tls,
            partitionable,
            global: Some((cluster.kds_url.clone(), cluster.kds_ca.clone(), token)),
            ..GroupOptions::default()
        },
    )
    .await;
    // Every replica has global's policies: the leader's KDS wrote them through Raft.
    for id in group.running() {
        eventually(
            "the zone's replicas have global's policies",
            Duration::from_secs(30),
            || async {
                let names = group.names(id, "/meshes/default/meshtimeouts").await?;
                (names.len() == policies).then_some(())
            },
        )
        .await;
    }
    (cluster, group)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zone_leader_killed_under_registrations_loses_and_duplicates_nothing() {
    let (cluster, mut group) =
        zone_group_with_global("zone-ha-kill", "east", true, false, 20).await;
    let leader = group.leader_except(&[], Duration::from_secs(15)).await;
    eventually(
        "global sees the zone's stream",
        Duration::from_secs(15),
        || async { (global_zone_streams(&cluster, "east").await? == 1.0).then_some(()) },
    )
    .await;
    // A sidecar connected to the leader, knowing every replica.
    let mut order = vec![leader];
    order.extend(group.running().into_iter().filter(|id| *id != leader));
    let _sidecar = group.sidecar("sidecar-1", &order).await;
    let by = eventually("global has the sidecar", Duration::from_secs(15), || {
        sidecar_registered_by(&cluster)
    })
    .await;
    assert_eq!(by, format!("dp-stream.replica-{leader}"));

    // Registrations go round-robin to every running replica (followers forward to
    // the leader); a refused one is retried on the next replica until acknowledged.
    const TOTAL: usize = 60;
    let mut acknowledged = Vec::new();
    let mut killed_at = None;
    let mut first_ack_after_kill = None;
    let mut next = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.len() < TOTAL {
        assert!(
            Instant::now() < deadline,
            "registrations stalled: {acknowledged:?}"
        );
        if acknowledged.len() == TOTAL / 3 && killed_at.is_none() {
            group.kill(leader).await;
            killed_at = Some(Instant::now());
        }
        let running = group.running();
        let replica = running[next % running.len()];
        next += 1;
        let name = format!("dp-{}", acknowledged.len());
        let status = group
            .put(
                replica,
                &format!("/meshes/default/dataplanes/{name}"),
                dataplane(&name),
            )
            .await;
        if status == 201 || status == 200 {
            acknowledged.push(name);
            if let (Some(at), None) = (killed_at, first_ack_after_kill) {
                first_ack_after_kill = Some(at.elapsed());
            }
        }
    }
    let killed_at = killed_at.expect("the leader was killed");

    let new_leader = group
        .leader_except(&[leader], Duration::from_secs(10))
        .await;
    let writes_back_after = first_ack_after_kill.expect("a write was acknowledged after the kill");
    assert_ne!(new_leader, leader);

    // Every acknowledged registration is on every surviving replica, once.
    let expected: BTreeSet<String> = acknowledged.iter().cloned().collect();
    assert_eq!(expected.len(), TOTAL, "acknowledged names are distinct");
    for id in group.running() {
        let names = eventually(
            "a survivor has every registration",
            Duration::from_secs(10),
            || async {
                let names = registrations(group.names(id, "/meshes/default/dataplanes").await?);
                (names.len() >= TOTAL).then_some(names)
            },
        )
        .await;
        assert_eq!(
            names.len(),
            TOTAL,
            "replica {id} lists a registration twice: {names:?}"
        );
        assert_eq!(
            names.into_iter().collect::<BTreeSet<_>>(),
            expected,
            "replica {id}"
        );
    }

    // KDS resumed from the new leader: global gets every registration, one stream.
    let synced = eventually(
        "global has every registration",
        Duration::from_secs(30),
        || async {
            let names = registrations(global_names(&cluster, "/meshes/default/dataplanes").await?);
            (names.len() == TOTAL).then_some(names)
        },
    )
    .await;
    let synced_after = killed_at.elapsed();
    // Global names what a zone sends `<name>.<zone>`.
    let expected_on_global: BTreeSet<String> =
        expected.iter().map(|n| format!("{n}.east")).collect();
    assert_eq!(
        synced.into_iter().collect::<BTreeSet<_>>(),
        expected_on_global
    );
    eventually(
        "global holds one stream for the zone",
        Duration::from_secs(15),
        || async { (global_zone_streams(&cluster, "east").await? == 1.0).then_some(()) },
    )
    .await;

    // A policy made on global now reaches the zone through the new leader; it resumed
    // from the replicated revision, so it received far fewer resources than the 20
    // policies + mesh a full resync would have sent.
    cluster.apply(timeout_policy("after-failover")).await;
    eventually(
        "the new policy reaches the zone",
        Duration::from_secs(15),
        || async {
            let names = group
                .names(new_leader, "/meshes/default/meshtimeouts")
                .await?;
            names.contains(&"after-failover".to_owned()).then_some(())
        },
    )
    .await;
    // The sidecar moved to a surviving replica, which registered it again.
    eventually(
        "the sidecar re-registered through a survivor",
        Duration::from_secs(15),
        || async {
            let by = sidecar_registered_by(&cluster).await?;
            (by != format!("dp-stream.replica-{leader}")).then_some(())
        },
    )
    .await;

    let received = group
        .metric(new_leader, "meridian_kds_resources_received_total")
        .await
        .unwrap_or(0.0);
    assert!(
        received < 10.0,
        "the new leader received {received} resources: a full resync, not a resume"
    );
    eprintln!(
        "zone HA: leader {leader} killed; the first write after it was acknowledged after {writes_back_after:?} \
         (replica {new_leader} leads); global had all {TOTAL} registrations after {synced_after:?}; \
         the new leader's KDS received {received} resources"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_restarted_after_compaction_catches_up_by_snapshot() {
    let mut group = ZoneGroup::start(
        "zone-ha-snapshot",
        "west",
        GroupOptions {
            replicas: 3,
            snapshot_every: Some(20),
            ..GroupOptions::default()
        },
    )
    .await;
    let leader = group.leader_except(&[], Duration::from_secs(15)).await;
    let follower = group
        .running()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    for i in 0..5 {
        assert_eq!(
            group.put_ingress(leader, &format!("ingress-{i}")).await,
            201
        );
    }
    let follower_log = eventually(
        "the follower has the first writes",
        Duration::from_secs(10),
        || async {
            let status = group.status(follower).await?;
            let applied = status["appliedIndex"].as_u64()?;
            (group.names(follower, "/zoneingresses").await?.len() == 5).then_some(applied)
        },
    )
    .await;
    group.kill(follower).await;

    // Enough writes for several snapshots; the log behind them is purged.
    for i in 5..80 {
        assert_eq!(
            group.put_ingress(leader, &format!("ingress-{i}")).await,
            201
        );
    }
    let status = group.status(leader).await.expect("leader status");
    let purged = status["purgedIndex"]
        .as_u64()
        .expect("the leader purged its log");
    assert!(
        purged > follower_log,
        "the leader's log still holds what the follower missed (purged {purged}, follower at {follower_log})"
    );

    let restarted = Instant::now();
    group.restart(follower).await;
    eventually(
        "the follower has every ingress",
        Duration::from_secs(30),
        || async {
            let names = group.names(follower, "/zoneingresses").await?;
            (names.len() == 80).then_some(())
        },
    )
    .await;
    let caught_up = restarted.elapsed();

    // `meridian raft status` on any replica: a table of the three, the leader marked.
    let output =
        meridian_tests::process::run_cli(&["raft", "--api", group.api(follower), "status"], &[])
            .await;
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}");
    assert!(table.contains(&format!("leader: {leader}")), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains("voter")).count(),
        3,
        "{table}"
    );
    let installed = group
        .metric(follower, "meridian_raft_snapshots_installed_total")
        .await
        .unwrap_or(0.0);
    assert!(
        installed >= 1.0,
        "the follower caught up without a snapshot"
    );
    eprintln!("zone HA: a restarted follower caught up by snapshot in {caught_up:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_replica_accepts_no_writes_and_runs_no_kds() {
    let (cluster, group) =
        zone_group_with_global("zone-ha-partition", "north", false, true, 3).await;
    let old = group.leader_except(&[], Duration::from_secs(15)).await;
    eventually("the leader runs KDS", Duration::from_secs(15), || async {
        (group.metric(old, "meridian_kds_connected").await? == 1.0).then_some(())
    })
    .await;

    let cut_at = Instant::now();
    group.isolate(old);
    let new = group.leader_except(&[old], Duration::from_secs(10)).await;
    let elected_after = cut_at.elapsed();
    eventually(
        "the cut-off replica stops KDS",
        Duration::from_secs(10),
        || async {
            let running = group.metric(old, "meridian_kds_running").await?;
            let connected = group.metric(old, "meridian_kds_connected").await?;
            (running == 0.0 && connected == 0.0).then_some(())
        },
    )
    .await;
    let stepped_down_after = cut_at.elapsed();
    let status = group
        .status(old)
        .await
        .expect("the cut-off replica answers");
    assert_eq!(status["leadsWithQuorum"], false, "{status}");

    // The minority refuses writes; the majority takes them and syncs them to global.
    let refused = group.put_ingress(old, "written-to-minority").await;
    assert_eq!(refused, 503, "a write to the cut-off replica");
    assert_eq!(group.put_ingress(new, "written-to-majority").await, 201);
    eventually(
        "global has the majority's write",
        Duration::from_secs(15),
        || async {
            let names = global_names(&cluster, "/zoneingresses").await?;
            names
                .contains(&"written-to-majority.north".to_owned())
                .then_some(())
        },
    )
    .await;
    eventually(
        "global holds one stream for the zone",
        Duration::from_secs(15),
        || async { (global_zone_streams(&cluster, "north").await? == 1.0).then_some(()) },
    )
    .await;

    // Healed, the old leader follows and converges; the refused write never happened.
    group.heal();
    eventually(
        "the healed replica converges",
        Duration::from_secs(15),
        || async {
            let status = group.status(old).await?;
            let names = group.names(old, "/zoneingresses").await?;
            (status["leader"].as_u64() == Some(new)
                && names.contains(&"written-to-majority".to_owned()))
            .then_some(())
        },
    )
    .await;
    let names = group.names(new, "/zoneingresses").await.expect("list");
    assert!(
        !names.contains(&"written-to-minority".to_owned()),
        "{names:?}"
    );
    eprintln!(
        "zone HA: leader {old} cut off; replica {new} led after {elected_after:?}; \
         the cut-off replica stopped KDS after {stepped_down_after:?}"
    );
}
