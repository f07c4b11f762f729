//! Several global replicas on one PostgreSQL database:
//! - every replica pushes a commit made through another to its own zones (LISTEN/NOTIFY);
//! - a zone that lists every replica's KDS URL fails over when its replica is
//!   SIGKILLed, and resumes: nothing lost, nothing re-sent;
//! - the background duties run on exactly one elected replica and move when it dies;
//! - PostgreSQL restarted under both replicas: readiness goes 503 and back by itself,
//!   and push between replicas works again;
//! - leader-term fencing of a zone's streams on one replica;
//! - the elected replica expires insights a dead replica left online.
//!
//! Timings measured along the way are printed on stderr (`--nocapture` to see them).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_global_cp::api::zone_token::ZoneTokens;
use meridian_global_cp::kds::tls;
use meridian_global_cp::{DutyElection, GlobalCp, GlobalCpConfig, KdsSettings};
use meridian_model::ResourceKind;
use meridian_proto::kds::kds_client::KdsClient;
use meridian_proto::kds::{self, GlobalAck, GlobalDelta, ZoneDelta, ZoneToGlobalAck};
use meridian_proto::metadata;
use meridian_store::{NewResource, Precondition, ResourceKey, Store};
use meridian_tests::eventually;
use meridian_tests::global_replicas::{ADMIN, GlobalReplica, start_zone};
use meridian_tests::pg_instance::PgInstance;
use meridian_tests::postgres::TestDatabase;
use meridian_tests::scratch::Dir;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

const DEADLINE: Duration = Duration::from_secs(30);
const LEADER: &str = "meridian_global_duty_leader";

async fn get(http: &reqwest::Client, url: &str) -> Option<Value> {
    let response = http
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    response.json().await.ok()
}

async fn put(http: &reqwest::Client, url: &str, body: &Value) -> Result<(), String> {
    let response = http
        .put(url)
        .bearer_auth(ADMIN)
        .timeout(Duration::from_secs(5))
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "PUT {url}: {status} {}",
            response.text().await.unwrap_or_default()
        ))
    }
}

fn timeout_policy(name: &str, idle: &str) -> Value {
    json!({"type": "MeshTimeout", "name": name, "mesh": "default",
           "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}]}})
}

fn dataplane(name: &str, address: &str) -> Value {
    json!({"type": "Dataplane", "name": name, "mesh": "default",
        "networking": {"address": address, "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]}})
}

/// `(name, spec)` of every item of a list answer, in order.
fn listing(list: &Value) -> Vec<(String, Value)> {
    let items = list["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        list["total"].as_u64(),
        Some(items.len() as u64),
        "one page holds the whole listing: {list}"
    );
    items
        .iter()
        .map(|i| (i["name"].as_str().unwrap().to_owned(), i["spec"].clone()))
        .collect()
}

fn names(list: &Value) -> Vec<String> {
    listing(list).into_iter().map(|(name, _)| name).collect()
}

fn sent_total(insight: &Value, direction: &str) -> u64 {
    insight[direction]["sent"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// Waits until `url` on a zone serves a resource.
async fn wait_for(http: &reqwest::Client, what: &str, url: &str) {
    eventually(what, DEADLINE, || get(http, url)).await;
}

/// Waits until exactly one of `replicas` reports itself elected; returns its index.
async fn wait_for_one_leader(http: &reqwest::Client, replicas: &[&GlobalReplica]) -> usize {
    eventually("exactly one replica runs the duties", DEADLINE, || async {
        let mut leaders = Vec::new();
        for (i, replica) in replicas.iter().enumerate() {
            if replica.metric(http, LEADER).await? == 1.0 {
                leaders.push(i);
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_fails_over_between_replicas_and_resumes_and_the_duties_move() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let dir = Dir::new("global-ha");
    let http = reqwest::Client::new();

    // Replica 1 starts alone, so it is the one elected.
    let replica_1 = GlobalReplica::start(&database.url, &dir, "global-1", None).await;
    eventually("replica 1 is elected", DEADLINE, || async {
        (replica_1.metric(&http, LEADER).await? == 1.0).then_some(())
    })
    .await;
    let replica_2 = GlobalReplica::start(&database.url, &dir, "global-2", Some(&replica_1)).await;
    assert_eq!(
        wait_for_one_leader(&http, &[&replica_1, &replica_2]).await,
        0
    );

    let token = replica_1.zone_token(&http, "zone-a").await;
    let zone = start_zone(
        "zone-a",
        &[&replica_1.kds, &replica_2.kds],
        &replica_1.kds_ca(),
        &token,
        &dir,
    )
    .await;
    let zone_api = zone.api_url.clone();
    wait_for(
        &http,
        "the default mesh reaches the zone",
        &format!("{zone_api}/meshes/default"),
    )
    .await;
    let streams = "meridian_kds_live_streams{zone=\"zone-a\"}";
    eventually("the zone is connected to replica 1", DEADLINE, || async {
        (replica_1.metric(&http, streams).await? == 1.0).then_some(())
    })
    .await;

    // A change committed through replica 2 is pushed by replica 1 to its zone.
    let started = Instant::now();
    put(
        &http,
        &format!("{}/meshes/default/meshtimeouts/t1", replica_2.api),
        &timeout_policy("t1", "1h"),
    )
    .await
    .unwrap();
    wait_for(
        &http,
        "a policy PUT on replica 2 reaches the zone on replica 1",
        &format!("{zone_api}/meshes/default/meshtimeouts/t1"),
    )
    .await;
    eprintln!(
        "global-ha: PUT on replica 2 → visible in the zone connected to replica 1: {:?}",
        started.elapsed()
    );

    // The zone's dataplane reaches global (through replica 1).
    put(
        &http,
        &format!("{zone_api}/meshes/default/dataplanes/web-1"),
        &dataplane("web-1", "10.0.0.1"),
    )
    .await
    .unwrap();
    wait_for(
        &http,
        "the zone's dataplane reaches global",
        &format!("{}/meshes/default/dataplanes/web-1.zone-a", replica_2.api),
    )
    .await;

    // Replica 1 dies. The zone moves to replica 2, which pushes the next change.
    let killed = Instant::now();
    replica_1.process.kill().await;
    put(
        &http,
        &format!("{}/meshes/default/meshtimeouts/t2", replica_2.api),
        &timeout_policy("t2", "2h"),
    )
    .await
    .unwrap();
    wait_for(
        &http,
        "a policy PUT after the kill reaches the zone through replica 2",
        &format!("{zone_api}/meshes/default/meshtimeouts/t2"),
    )
    .await;
    let failover = killed.elapsed();
    eventually("replica 2 runs the duties", DEADLINE, || async {
        (replica_2.metric(&http, LEADER).await? == 1.0).then_some(())
    })
    .await;
    let duty_failover = killed.elapsed();
    eprintln!(
        "global-ha: SIGKILL of replica 1 → new policy visible in the zone: {failover:?}; \
         → replica 2 elected for the duties: {duty_failover:?}"
    );
    assert_eq!(replica_2.metric(&http, streams).await, Some(1.0));

    // The zone→global stream resumed on replica 2 too.
    put(
        &http,
        &format!("{zone_api}/meshes/default/dataplanes/web-2"),
        &dataplane("web-2", "10.0.0.2"),
    )
    .await
    .unwrap();
    wait_for(
        &http,
        "a dataplane registered after the failover reaches global",
        &format!("{}/meshes/default/dataplanes/web-2.zone-a", replica_2.api),
    )
    .await;

    // Nothing lost, nothing duplicated: global and the zone list the same policies
    // and meshes, and global has exactly the zone's dataplanes.
    for path in ["/meshes/default/meshtimeouts", "/meshes"] {
        let on_global = get(&http, &format!("{}{path}", replica_2.api))
            .await
            .unwrap();
        let on_zone = get(&http, &format!("{zone_api}{path}")).await.unwrap();
        assert_eq!(listing(&on_zone), listing(&on_global), "{path}");
    }
    let timeouts = get(
        &http,
        &format!("{}/meshes/default/meshtimeouts", replica_2.api),
    )
    .await
    .unwrap();
    // The default mesh's initial MeshTimeouts, and the test's.
    assert_eq!(
        names(&timeouts),
        [
            "mesh-gateways-timeout-all-default",
            "mesh-timeout-all-default",
            "t1",
            "t2"
        ]
    );
    let global_dps = get(
        &http,
        &format!("{}/meshes/default/dataplanes", replica_2.api),
    )
    .await
    .unwrap();
    assert_eq!(names(&global_dps), ["web-1.zone-a", "web-2.zone-a"]);
    let zone_dps = get(&http, &format!("{zone_api}/meshes/default/dataplanes"))
        .await
        .unwrap();
    assert_eq!(names(&zone_dps), ["web-1", "web-2"]);
    let zones = get(&http, &format!("{}/zones", replica_2.api))
        .await
        .unwrap();
    assert_eq!(names(&zones), ["zone-a"]);

    // Resume, not resend: replica 2 sent the zone exactly the one change made after
    // the kill, and received exactly the one dataplane registered after it.
    let insight_url = format!("{}/zones/zone-a/insight", replica_2.api);
    let insight = eventually("the zone is online and caught up", DEADLINE, || async {
        let insight = get(&http, &insight_url).await?;
        (insight["online"] == true
            && insight["lagRevisions"] == 0
            && sent_total(&insight, "zoneToGlobal") == 1)
            .then_some(insight)
    })
    .await;
    assert_eq!(sent_total(&insight, "globalToZone"), 1, "{insight}");
    assert_eq!(sent_total(&insight, "zoneToGlobal"), 1, "{insight}");
    drop((zone, replica_2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_recover_by_themselves_when_postgres_restarts() {
    meridian_tests::init();
    let Some(postgres) = PgInstance::start().await else {
        return;
    };
    let dir = Dir::new("global-ha-pg");
    let http = reqwest::Client::new();
    let url = postgres.url();
    let replica_1 = GlobalReplica::start(&url, &dir, "global-1", None).await;
    let replica_2 = GlobalReplica::start(&url, &dir, "global-2", Some(&replica_1)).await;
    let replicas = [&replica_1, &replica_2];
    wait_for_one_leader(&http, &replicas).await;
    // The zone knows replica 2 only: what it receives, replica 2 pushed.
    let token = replica_1.zone_token(&http, "zone-b").await;
    let zone = start_zone(
        "zone-b",
        &[&replica_2.kds],
        &replica_1.kds_ca(),
        &token,
        &dir,
    )
    .await;
    let zone_api = zone.api_url.clone();
    wait_for(
        &http,
        "the default mesh reaches the zone",
        &format!("{zone_api}/meshes/default"),
    )
    .await;
    for replica in replicas {
        assert_eq!(replica.readyz(&http).await, Some(StatusCode::OK));
    }

    // PostgreSQL goes away: both replicas say they are not ready, and neither runs
    // the duties.
    let stopped = Instant::now();
    postgres.stop().await;
    let no_leader = async {
        eventually("no replica is elected", DEADLINE, || async {
            let mut elected = 0.0;
            for replica in replicas {
                elected += replica.metric(&http, LEADER).await?;
            }
            (elected == 0.0).then_some(())
        })
        .await;
        stopped.elapsed()
    };
    let (not_ready_1, not_ready_2, deposed) = tokio::join!(
        readiness_becomes(&http, &replica_1, StatusCode::SERVICE_UNAVAILABLE, stopped),
        readiness_becomes(&http, &replica_2, StatusCode::SERVICE_UNAVAILABLE, stopped),
        no_leader,
    );

    // While it is down (3 s, or MERIDIAN_SOAK_SECS): the zone keeps serving its
    // copy, and a REST write on global fails fast with an error instead of hanging.
    let outage = std::env::var("MERIDIAN_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(3), Duration::from_secs);
    while stopped.elapsed() < outage {
        let zone_mesh = http
            .get(format!("{zone_api}/meshes/default"))
            .send()
            .await
            .expect("the zone answers while PostgreSQL is down");
        assert_eq!(zone_mesh.status(), StatusCode::OK);
        let write = put(
            &http,
            &format!(
                "{}/meshes/default/meshtimeouts/during-outage",
                replica_1.api
            ),
            &timeout_policy("during-outage", "1h"),
        )
        .await;
        assert!(write.is_err(), "a write succeeded without PostgreSQL");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // It comes back on the same port: everything recovers without help.
    let restarted = Instant::now();
    postgres.start_again().await;
    let pg_up = restarted.elapsed();
    let (ready_1, ready_2) = tokio::join!(
        readiness_becomes(&http, &replica_1, StatusCode::OK, restarted),
        readiness_becomes(&http, &replica_2, StatusCode::OK, restarted),
    );
    let streams = "meridian_kds_live_streams{zone=\"zone-b\"}";
    eventually("the zone is connected to replica 2", DEADLINE, || async {
        (replica_2.metric(&http, streams).await? == 1.0).then_some(())
    })
    .await;
    let put_url = format!(
        "{}/meshes/default/meshtimeouts/after-restart",
        replica_1.api
    );
    let policy = timeout_policy("after-restart", "3h");
    let put_at = Instant::now();
    eventually("a PUT on replica 1 succeeds", DEADLINE, || async {
        put(&http, &put_url, &policy).await.ok()
    })
    .await;
    // Replica 2 learns of the commit through its LISTEN connection (its revision
    // gauge follows `Store::watch`, which only LISTEN moves for others' commits).
    let revision = replica_1
        .metric(&http, "meridian_store_revision")
        .await
        .unwrap();
    eventually(
        "replica 2 hears of replica 1's commit",
        DEADLINE,
        || async {
            (replica_2.metric(&http, "meridian_store_revision").await? >= revision).then_some(())
        },
    )
    .await;
    let heard = put_at.elapsed();
    wait_for(
        &http,
        "a PUT on replica 1 reaches the zone connected to replica 2",
        &format!("{zone_api}/meshes/default/meshtimeouts/after-restart"),
    )
    .await;
    let pushed = put_at.elapsed();
    let since_restart = restarted.elapsed();
    wait_for_one_leader(&http, &replicas).await;
    let reelected = restarted.elapsed();
    eprintln!(
        "global-ha: PostgreSQL stopped → /readyz 503 on replica 1: {not_ready_1:?}, replica 2: \
         {not_ready_2:?}; both duty gauges 0: {deposed:?}"
    );
    eprintln!(
        "global-ha: PostgreSQL started (pg_ctl took {pg_up:?}) → /readyz 200 on replica 1: \
         {ready_1:?}, replica 2: {ready_2:?}; one replica elected again: {reelected:?}; \
         a PUT on replica 1 → replica 2 notified: {heard:?}, visible in the zone on replica 2: \
         {pushed:?} ({since_restart:?} after the restart)"
    );
    drop((zone, replica_1, replica_2, postgres));
}

/// Waits until `replica`'s `/readyz` answers `status`; returns the time since `since`.
async fn readiness_becomes(
    http: &reqwest::Client,
    replica: &GlobalReplica,
    status: StatusCode,
    since: Instant,
) -> Duration {
    eventually(&format!("/readyz answers {status}"), DEADLINE, || async {
        (replica.readyz(http).await? == status).then_some(())
    })
    .await;
    since.elapsed()
}

/// An in-process global on `database` serving KDS, with its CA (PEM).
async fn global_with_kds(database: &TestDatabase, dir: &Dir) -> (GlobalCp, Arc<dyn Store>, String) {
    let store: Arc<dyn Store> = Arc::new(database.store().await);
    let identity = tls::load_or_generate(None, None, dir.path("tls").as_ref(), &[]).unwrap();
    let ca = std::fs::read_to_string(identity.generated_ca.as_ref().unwrap()).unwrap();
    let global = GlobalCp::start(
        GlobalCpConfig {
            api_addr: "127.0.0.1:0".parse().unwrap(),
            admin_token: Some(ADMIN.to_owned()),
            kds: Some(KdsSettings {
                addr: "127.0.0.1:0".parse().unwrap(),
                identity,
            }),
            ..GlobalCpConfig::default()
        },
        store.clone(),
    )
    .await
    .unwrap();
    (global, store, ca)
}

async fn kds_client(global: &GlobalCp, ca: &str) -> KdsClient<Channel> {
    let url = format!("https://{}", global.kds_addr().unwrap());
    KdsClient::new(meridian_tests::kds_client::channel(&url, ca.as_bytes()).await)
}

fn with_identity<T>(message: T, zone: &str, token: &str, term: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let headers = request.metadata_mut();
    headers.insert(metadata::ZONE, zone.parse().unwrap());
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    if let Some(term) = term {
        headers.insert(metadata::LEADER_TERM, term.parse().unwrap());
    }
    request
}

/// A global→zone stream kept open (its sender is held), or the status refusing it.
async fn subscribe(
    client: &mut KdsClient<Channel>,
    zone: &str,
    token: &str,
    term: Option<&str>,
) -> Result<(Streaming<GlobalDelta>, mpsc::Sender<ZoneToGlobalAck>), tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    let subscribe = ZoneToGlobalAck {
        kind: Some(kds::zone_to_global_ack::Kind::Subscribe(kds::Subscribe {
            since_revision: 0,
        })),
    };
    tx.send(subscribe).await.unwrap();
    let request = with_identity(ReceiverStream::new(rx), zone, token, term);
    let mut deltas = client.global_to_zone(request).await?.into_inner();
    // The stream is live: the first message (the snapshot) arrives.
    let first = tokio::time::timeout(DEADLINE, deltas.message())
        .await
        .unwrap()?;
    assert!(first.is_some(), "the snapshot arrives");
    Ok((deltas, tx))
}

/// A zone→global stream kept open, after its Resume.
async fn open_upward(
    client: &mut KdsClient<Channel>,
    zone: &str,
    token: &str,
    term: Option<&str>,
) -> Result<(Streaming<GlobalAck>, mpsc::Sender<ZoneDelta>), tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    let request = with_identity(ReceiverStream::new(rx), zone, token, term);
    let mut acks = client.zone_to_global(request).await?.into_inner();
    let resume = tokio::time::timeout(DEADLINE, acks.message())
        .await
        .unwrap()?;
    assert!(
        matches!(
            resume.and_then(|m| m.kind),
            Some(kds::global_ack::Kind::Resume(_))
        ),
        "global starts with Resume"
    );
    Ok((acks, tx))
}

/// How a stream ended: the status global closed it with.
async fn ended_with<T>(stream: &mut Streaming<T>) -> tonic::Status {
    loop {
        match tokio::time::timeout(DEADLINE, stream.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => return tonic::Status::ok("ended without a status"),
            Ok(Err(status)) => return status,
            Err(_) => panic!("the stream did not end within {DEADLINE:?}"),
        }
    }
}

async fn live_streams(http: &reqwest::Client, global: &GlobalCp, zone: &str) -> Option<f64> {
    let series = format!("meridian_kds_live_streams{{zone=\"{zone}\"}}");
    meridian_tests::scrape::metric(http, &format!("http://{}", global.api_addr()), &series).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_zone_leader_supersedes_older_streams_and_older_ones_are_refused() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let dir = Dir::new("global-ha-fencing");
    let http = reqwest::Client::new();
    let (global, store, ca) = global_with_kds(&database, &dir).await;
    let zone = "zone-fenced";
    let (token, _) = ZoneTokens::init(store.as_ref())
        .await
        .unwrap()
        .issue(zone, Duration::from_secs(3600));
    let mut client = kds_client(&global, &ca).await;

    // The zone leader of term 1 holds both streams.
    let (mut down_1, _keep_down_1) = subscribe(&mut client, zone, &token, Some("1"))
        .await
        .unwrap();
    let (mut up_1, _keep_up_1) = open_upward(&mut client, zone, &token, Some("1"))
        .await
        .unwrap();
    eventually("one live global→zone stream", DEADLINE, || async {
        (live_streams(&http, &global, zone).await? == 1.0).then_some(())
    })
    .await;

    // A new leader (term 2) connects: the term-1 streams end, with the reason.
    let (_down_2, _keep_down_2) = subscribe(&mut client, zone, &token, Some("2"))
        .await
        .unwrap();
    for status in [ended_with(&mut down_1).await, ended_with(&mut up_1).await] {
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert_eq!(
            status.message(),
            "superseded by a stream with leader term 2"
        );
    }
    eventually("the superseded stream is gone", DEADLINE, || async {
        (live_streams(&http, &global, zone).await? == 1.0).then_some(())
    })
    .await;

    // The old leader cannot come back, nor can a zone that sends no term.
    for term in [Some("1"), None] {
        let refused = subscribe(&mut client, zone, &token, term)
            .await
            .err()
            .unwrap();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(
            refused.message().contains("older than term 2"),
            "{refused:?}"
        );
        let refused = open_upward(&mut client, zone, &token, term)
            .await
            .err()
            .unwrap();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    }
    // The current leader's second stream, or a reconnect, has the same term: admitted.
    let (_up_2, _keep_up_2) = open_upward(&mut client, zone, &token, Some("2"))
        .await
        .unwrap();
    let (_down_2b, _keep_down_2b) = subscribe(&mut client, zone, &token, Some("2"))
        .await
        .unwrap();
    eventually(
        "two live global→zone streams of term 2",
        DEADLINE,
        || async { (live_streams(&http, &global, zone).await? == 2.0).then_some(()) },
    )
    .await;
    // A term that is not a number is a bad request.
    let bad = subscribe(&mut client, zone, &token, Some("two"))
        .await
        .err()
        .unwrap();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    global.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_elected_replica_expires_insights_a_dead_replica_left_online() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let seed = database.store().await;
    let now = chrono::Utc::now();
    let long_ago = now - chrono::TimeDelta::seconds(120);
    for (zone, last_seen) in [("ghost", long_ago), ("alive", now)] {
        seed.put(
            NewResource {
                key: ResourceKey::global(ResourceKind::Zone, zone),
                labels: Default::default(),
                spec: meridian_model::SpecBody::parse(ResourceKind::Zone, json!({}))
                    .expect("valid spec"),
                zone: None,
            },
            Precondition::Any,
        )
        .await
        .unwrap();
        seed.put_zone_insight(
            zone,
            json!({"online": true, "connectedAt": last_seen, "lastSeen": last_seen}),
        )
        .await
        .unwrap();
    }

    // Two in-process replicas, electing with the advisory lock.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let store = database.store().await;
        let config = GlobalCpConfig {
            api_addr: "127.0.0.1:0".parse().unwrap(),
            admin_token: Some(ADMIN.to_owned()),
            duty_election: DutyElection::Postgres(store.pool().clone()),
            insight_expiry: Duration::from_secs(30),
            ..GlobalCpConfig::default()
        };
        replicas.push(GlobalCp::start(config, Arc::new(store)).await.unwrap());
    }
    let leader = eventually("one replica is elected", DEADLINE, || async {
        let elected: Vec<usize> = (0..replicas.len())
            .filter(|&i| replicas[i].leadership().is_elected())
            .collect();
        (elected.len() == 1).then(|| elected[0])
    })
    .await;

    let ghost = eventually("the ghost zone's insight expires", DEADLINE, || async {
        let insight = seed.get_zone_insight("ghost").await.ok()??;
        (insight["online"] == false).then_some(insight)
    })
    .await;
    assert_eq!(ghost["disconnectedAt"], ghost["lastSeen"], "{ghost}");
    let alive = seed.get_zone_insight("alive").await.unwrap().unwrap();
    assert_eq!(
        alive["online"], true,
        "a fresh insight is left alone: {alive}"
    );

    // The elected replica stops: the other one takes over.
    let stopped = Instant::now();
    let other = 1 - leader;
    replicas.remove(leader).shutdown().await.unwrap();
    let survivor = replicas.pop().unwrap();
    let mut leadership = survivor.leadership();
    tokio::time::timeout(DEADLINE, leadership.wait_for(true))
        .await
        .expect("the other replica is elected");
    eprintln!(
        "global-ha: elected replica {leader} shut down → replica {other} elected: {:?}",
        stopped.elapsed()
    );
    assert!(survivor.leadership().is_elected());
    survivor.shutdown().await.unwrap();
}
