//! Fault injection with real processes on loopback: every zone reaches global's KDS
//! through its own [`FaultProxy`], which the tests cut, restore or slow down, and
//! processes are SIGKILLed mid-sync. Each test asserts that nothing is lost or
//! duplicated (exact listings after convergence), polls with deadlines, and prints
//! the times it measured (`-- --nocapture`).
//!
//! - a zone reading its stream at 1 KB/s does not slow another zone;
//! - global killed in the middle of a zone's full sync;
//! - a zone CP killed in the middle of its full sync;
//! - a zone cut off from global while policies change on both sides, with an
//!   established cross-zone connection that keeps flowing; then healed;
//! - many zones at once: first contact (full syncs past the admission limit), then
//!   every zone reconnecting after a global restart.
//!
//! `MERIDIAN_SOAK_SECS=N` makes the partition last N seconds (default 3; the soak
//! variant runs minutes).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meridian_tests::cluster::{ADMIN, Cluster, Zone, answered_by};
use meridian_tests::eventually;
use meridian_tests::fault_proxy::FaultProxy;
use meridian_tests::process::MeridianProcess;
use meridian_tests::scratch::{Dir, free_addr, free_port};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(60);
const POLICIES: usize = 150;

fn timeout_policy(name: &str) -> Value {
    json!({"type": "MeshTimeout", "name": name, "mesh": "default",
        "spec": {"targetRef": {"kind": "Mesh"},
                 "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "30s"}}]}})
}

fn policy_names(prefix: &str, n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("{prefix}-{i:03}")).collect()
}

/// A zone CP whose KDS goes through a fault proxy; restartable on the same ports.
struct ProxiedZone {
    name: String,
    link: FaultProxy,
    args: Vec<String>,
    api: String,
}

impl ProxiedZone {
    /// Starts zone `name` dialling global through a new proxy, throttled to
    /// `rate` bytes/s (global→zone) from its first connection when given; registers
    /// it in `cluster.zones` so the cluster's proxy helpers find it.
    async fn start(cluster: &mut Cluster, dir: &Dir, name: &str, rate: Option<u64>) -> Self {
        let upstream: SocketAddr = cluster
            .kds_url
            .trim_start_matches("https://")
            .parse()
            .unwrap();
        let link = FaultProxy::start(upstream).await;
        link.throttle_downstream(rate);
        let token = cluster.zone_token_file(name).await;
        let api_addr = free_addr();
        let dp_addr = free_addr();
        let args: Vec<String> = [
            "zone-cp",
            "--zone",
            name,
            "--global-kds",
            &format!("https://{}", link.addr()),
            "--global-kds-ca",
            &cluster.kds_ca,
            "--zone-token",
            &token,
            "--api-addr",
            &api_addr,
            "--dp-addr",
            &dp_addr,
            "--data-dir",
            &dir.path(name),
            "--admin-token",
            ADMIN,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let zone = ProxiedZone {
            name: name.to_owned(),
            link,
            args,
            api: format!("http://{api_addr}"),
        };
        let process = zone.spawn().await;
        cluster.zones.insert(
            name.to_owned(),
            Zone {
                process,
                api: zone.api.clone(),
                dp_url: format!("http://{dp_addr}"),
            },
        );
        zone
    }

    async fn spawn(&self) -> MeridianProcess {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        MeridianProcess::start(&args).await
    }

    /// Kills the zone CP (SIGKILL).
    async fn kill(&self, cluster: &mut Cluster) {
        if let Some(zone) = cluster.zones.remove(&self.name) {
            zone.process.kill().await;
        }
    }

    /// Starts the zone CP again on its data directory and ports.
    async fn restart(&self, cluster: &mut Cluster) {
        let process = self.spawn().await;
        let dp_url = self
            .args
            .iter()
            .position(|a| a == "--dp-addr")
            .map(|i| format!("http://{}", self.args[i + 1]))
            .unwrap();
        cluster.zones.insert(
            self.name.clone(),
            Zone {
                process,
                api: self.api.clone(),
                dp_url,
            },
        );
    }

    async fn timeouts(&self) -> Option<BTreeSet<String>> {
        let url = format!("{}/meshes/default/meshtimeouts", self.api);
        let names = meridian_tests::scrape::names(&reqwest::Client::new(), &url).await?;
        Some(names.into_iter().collect())
    }

    /// Waits until the zone's KDS session is up while its full sync of the
    /// [`POLICIES`] is not done yet (a throttled link keeps it in flight).
    async fn wait_until_syncing(&self) {
        let http = reqwest::Client::new();
        eventually("the zone's sync is under way", WAIT, || async {
            let connected =
                meridian_tests::scrape::metric(&http, &self.api, "meridian_kds_connected").await?;
            (connected == 1.0).then_some(())
        })
        .await;
        assert!(
            self.timeouts().await.unwrap_or_default().len() < POLICIES,
            "the full sync finished before the fault"
        );
    }

    /// Waits until the zone lists exactly `expected` MeshTimeouts; answers how long.
    async fn converge(&self, expected: &BTreeSet<String>) -> Duration {
        let started = Instant::now();
        let what = format!("zone {} has exactly the expected policies", self.name);
        eventually(&what, WAIT, || async {
            (self.timeouts().await? == *expected).then_some(())
        })
        .await;
        started.elapsed()
    }
}

async fn apply_policies(cluster: &Cluster, names: &BTreeSet<String>) {
    for name in names {
        cluster.apply(timeout_policy(name)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_reading_at_one_kilobyte_a_second_does_not_slow_the_others() {
    let mut cluster = Cluster::start("faults-slow", &[]).await;
    let dir = Dir::new("faults-slow-zones");
    let mut expected = policy_names("bulk", POLICIES);
    apply_policies(&cluster, &expected).await;

    let slow = ProxiedZone::start(&mut cluster, &dir, "slow", Some(1024)).await;
    let fast = ProxiedZone::start(&mut cluster, &dir, "fast", None).await;
    let fast_synced = fast.converge(&expected).await;
    // The slow zone is still far from done: ~30 KB of snapshot at 1 KB/s.
    let slow_now = slow.timeouts().await.unwrap_or_default();
    assert!(
        slow_now.len() < POLICIES,
        "the slow zone is not slow: it already has {} policies",
        slow_now.len()
    );

    // A change on global reaches the fast zone while the slow one crawls.
    let changed = Instant::now();
    cluster.apply(timeout_policy("while-slow")).await;
    expected.insert("while-slow".to_owned());
    fast.converge(&expected).await;
    let fast_change = changed.elapsed();

    // Lift the throttle: the slow zone catches up with exactly the same set.
    slow.link.throttle_downstream(Some(100 * 1024 * 1024));
    let slow_synced = slow.converge(&expected).await;
    eprintln!(
        "faults: fast zone synced {POLICIES} policies in {fast_synced:?} and a later change in \
         {fast_change:?} while the slow zone read at 1 KB/s; the slow zone converged \
         {slow_synced:?} after the throttle was lifted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_killed_mid_sync_then_the_zone_converges_exactly() {
    let mut cluster = Cluster::start("faults-global-kill", &[]).await;
    let dir = Dir::new("faults-global-kill-zones");
    let expected = policy_names("bulk", POLICIES);
    apply_policies(&cluster, &expected).await;

    // 4 KB/s: the zone's full sync takes several seconds, and global dies within it.
    let zone = ProxiedZone::start(&mut cluster, &dir, "east", Some(4 * 1024)).await;
    zone.wait_until_syncing().await;
    cluster.kill_global().await;

    zone.link.throttle_downstream(None);
    let restarted = Instant::now();
    cluster.restart_global().await;
    let converged = zone.converge(&expected).await;
    eprintln!(
        "faults: global killed mid-sync; after its restart the zone converged on exactly \
         {POLICIES} policies in {converged:?} (global back after {:?})",
        restarted.elapsed().saturating_sub(converged)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_cp_killed_mid_sync_converges_exactly_after_restart() {
    let mut cluster = Cluster::start("faults-zone-kill", &[]).await;
    let dir = Dir::new("faults-zone-kill-zones");
    let expected = policy_names("bulk", POLICIES);
    apply_policies(&cluster, &expected).await;

    let zone = ProxiedZone::start(&mut cluster, &dir, "west", Some(4 * 1024)).await;
    zone.wait_until_syncing().await;
    zone.kill(&mut cluster).await;

    zone.link.throttle_downstream(None);
    let restarted = Instant::now();
    zone.restart(&mut cluster).await;
    let converged = zone.converge(&expected).await;
    eprintln!(
        "faults: zone CP killed mid-sync; restarted, it converged on exactly {POLICIES} \
         policies {converged:?} after it was up ({:?} after the restart began)",
        restarted.elapsed()
    );
}

/// A connection that stays open through the sidecars and the ingress, checked by
/// an echo round trip.
struct Established(TcpStream);

impl Established {
    async fn open(port: u16) -> Self {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(b"hello").await.unwrap();
        let mut answer = vec![0u8; 64];
        let n = stream.read(&mut answer).await.unwrap();
        assert!(n > 0, "the echo answered");
        // Drain the rest of the greeting and the echo.
        let mut seen = answer[..n].to_vec();
        while !seen.ends_with(b"hello") {
            let n = stream.read(&mut answer).await.unwrap();
            assert!(n > 0, "the connection closed early");
            seen.extend_from_slice(&answer[..n]);
        }
        assert!(answered_by(&seen).starts_with("north"), "{seen:?}");
        Established(stream)
    }

    /// Sends `payload` and reads it back: the connection still flows.
    async fn round_trip(&mut self, payload: &[u8]) {
        self.0.write_all(payload).await.unwrap();
        let mut back = vec![0u8; payload.len()];
        tokio::time::timeout(Duration::from_secs(10), self.0.read_exact(&mut back))
            .await
            .expect("the established connection answers")
            .expect("the established connection is open");
        assert_eq!(back, payload);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_cut_off_from_global_keeps_serving_and_converges_after_heal() {
    let outage = std::env::var("MERIDIAN_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(3), Duration::from_secs);
    let mut cluster = Cluster::start("faults-partition", &[]).await;
    let dir = Dir::new("faults-partition-zones");
    cluster
        .apply(
            json!({"type": "MeshTrafficPermission", "name": "allow-all", "mesh": "default",
            "spec": {"targetRef": {"kind": "Mesh"},
                     "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}}),
        )
        .await;
    let mut expected = policy_names("before", 10);
    apply_policies(&cluster, &expected).await;
    let south = ProxiedZone::start(&mut cluster, &dir, "south", None).await;
    let north = ProxiedZone::start(&mut cluster, &dir, "north", None).await;
    for zone in [&south, &north] {
        zone.converge(&expected).await;
    }

    // south's client → north's ingress → north's echo, one long-lived connection.
    let (_ingress, _) = cluster.ingress("north").await;
    let (_echo_app, echo) = cluster.echo("north/echo").await;
    let _echo = cluster
        .sidecar("north", "echo", "echo", Some(echo), &[], &[])
        .await;
    let outbound = free_port();
    let _client = cluster
        .sidecar(
            "south",
            "client",
            "client",
            None,
            &[(outbound, "echo")],
            &[],
        )
        .await;
    let addr = format!("127.0.0.1:{outbound}").parse().unwrap();
    eventually("south reaches north's echo", WAIT, || async {
        let answer = meridian_tests::cluster::exchange(addr, b"ping")
            .await
            .ok()?;
        answered_by(&answer).starts_with("north").then_some(())
    })
    .await;
    let mut established = Established::open(outbound).await;

    // The partition: south loses global while both sides change.
    south.link.cut();
    let cut_at = Instant::now();
    let added = policy_names("during", 5);
    apply_policies(&cluster, &added).await;
    let removed: Vec<String> = expected.iter().take(2).cloned().collect();
    for name in &removed {
        cluster.delete(&timeout_policy(name)).await;
        expected.remove(name);
    }
    expected.extend(added);
    let http = reqwest::Client::new();
    let local = json!({"type": "Dataplane", "name": "registered-during", "mesh": "default",
        "networking": {"address": "10.0.0.9",
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": "batch"}}]}});
    let status = http
        .put(format!(
            "{}/meshes/default/dataplanes/registered-during",
            south.api
        ))
        .bearer_auth(ADMIN)
        .json(&local)
        .send()
        .await
        .unwrap()
        .status();
    assert!(
        status.is_success(),
        "the cut-off zone takes its own writes: {status}"
    );
    while cut_at.elapsed() < outage {
        // The zone keeps serving what it had; the established connection flows.
        let served = south
            .timeouts()
            .await
            .expect("the cut-off zone serves reads");
        assert_eq!(served, policy_names("before", 10));
        established.round_trip(b"still flowing").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let healed_at = Instant::now();
    south.link.restore();
    let converged = south.converge(&expected).await;
    let on_global = eventually("global has the zone's write", WAIT, || async {
        let url = format!("{}/meshes/default/dataplanes", cluster.api);
        let names = meridian_tests::scrape::names(&http, &url).await?;
        names
            .contains(&"registered-during.south".to_owned())
            .then_some(healed_at.elapsed())
    })
    .await;
    established.round_trip(b"after the heal").await;
    north.converge(&expected).await;
    eprintln!(
        "faults: south cut off from global for {:?}: it kept serving and the established \
         connection kept flowing; after the heal it converged in {converged:?} and global had \
         its write after {on_global:?}",
        healed_at.duration_since(cut_at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_zones_at_once_first_contact_and_after_a_global_restart() {
    const ZONES: usize = 6;
    let mut cluster = Cluster::start("faults-herd", &[]).await;
    let dir = Dir::new("faults-herd-zones");
    let mut expected = policy_names("bulk", 50);
    apply_policies(&cluster, &expected).await;
    // Every zone's first contact is a full sync: more than global admits at once
    // (4 by default), so some wait for a permit.
    let started = Instant::now();
    let mut zones = Vec::new();
    for i in 0..ZONES {
        zones.push(ProxiedZone::start(&mut cluster, &dir, &format!("herd-{i}"), None).await);
    }
    for zone in &zones {
        zone.converge(&expected).await;
    }
    let first_contact = started.elapsed();

    // Global restarts: every zone reconnects (jittered backoff) and resumes.
    cluster.kill_global().await;
    cluster.restart_global().await;
    let restarted = Instant::now();
    cluster.apply(timeout_policy("after-restart")).await;
    expected.insert("after-restart".to_owned());
    for zone in &zones {
        zone.converge(&expected).await;
    }
    let after_restart = restarted.elapsed();
    eprintln!(
        "faults: {ZONES} zones started back to back converged on 50 policies within \
         {first_contact:?}; after a global restart all {ZONES} had the next policy within \
         {after_restart:?}"
    );
}
