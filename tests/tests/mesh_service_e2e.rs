//! MeshService and MeshMultiZoneService end to end with the real binary: global on
//! PostgreSQL, two zone CPs on their embedded stores, over TLS with zone tokens.
//!
//! Dataplanes registered in zone-1 make zone-1's CP generate a MeshService per
//! `kuma.io/service` (in a mesh whose `meshServices.mode` is not Disabled); it
//! reaches global as `<name>.zone-1` with the zone labels and zone-2 under that
//! name, never comes back to zone-1, follows its Dataplanes' ports and goes away
//! everywhere a grace period after its last Dataplane. A MeshService someone wrote by hand is left
//! alone. A MeshMultiZoneService written on global reaches every zone, and
//! MeshServices cannot be written on global.
//!
//! Then traffic: sidecars registered from Kuma 2.x Dataplane documents dial
//! MeshService and MeshMultiZoneService ports across zones, routed and
//! permitted by Kuma 2.x policies (see the last test).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use meridian_tests::cluster::{Cluster, answered_by, exchange};
use meridian_tests::global_replicas::{ADMIN, GlobalReplica, start_zone_with};
use meridian_tests::postgres::TestDatabase;
use meridian_tests::process::MeridianProcess;
use meridian_tests::scratch::{Dir, free_port};
use meridian_tests::{eventually, get_json as get};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);

async fn put_status(http: &reqwest::Client, url: &str, body: &Value) -> (StatusCode, String) {
    let response = http
        .put(url)
        .bearer_auth(ADMIN)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn put(http: &reqwest::Client, url: &str, body: &Value) {
    let (status, text) = put_status(http, url, body).await;
    assert!(status.is_success(), "PUT {url}: {status} {text}");
}

async fn delete(http: &reqwest::Client, url: &str) {
    let response = http.delete(url).bearer_auth(ADMIN).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "DELETE {url}: {}",
        response.status()
    );
}

fn dataplane(name: &str, inbounds: Value) -> Value {
    json!({"type": "Dataplane", "name": name, "mesh": "default",
           "networking": {"address": "10.0.0.1", "inbound": inbounds}})
}

/// The port numbers of a MeshService document.
fn ports(service: &Value) -> Vec<u64> {
    service["spec"]["ports"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["port"].as_u64()).collect())
        .unwrap_or_default()
}

/// The names in a list answer.
fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_services_are_generated_in_their_zone_and_synced_everywhere() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let dir = Dir::new("mesh-service-e2e");
    let http = reqwest::Client::new();
    let global = GlobalReplica::start(&database.url, &dir, "global", None).await;
    let (global_api, ca) = (global.api.clone(), global.kds_ca());
    let mut zones = Vec::new();
    for zone in ["zone-1", "zone-2"] {
        let token = global.zone_token(&http, zone).await;
        // A short deletion grace period, so the test sees it start and end.
        let grace = ["--mesh-service-deletion-grace", "8s"];
        zones.push(start_zone_with(zone, &[&global.kds], &ca, &token, &dir, &grace).await);
    }
    let (zone_1, zone_2) = (&zones[0], &zones[1]);
    let (api_1, api_2) = (zone_1.api_url.clone(), zone_2.api_url.clone());

    // The default mesh generates MeshServices once its mode is set on global.
    put(
        &http,
        &format!("{global_api}/meshes/default"),
        &json!({"type": "Mesh", "name": "default", "meshServices": {"mode": "Exclusive"}}),
    )
    .await;
    for api in [&api_1, &api_2] {
        let url = format!("{api}/meshes/default");
        eventually("the mesh's mode reaches the zone", DEADLINE, || async {
            let mesh = get(&http, &url).await?;
            (mesh["meshServices"]["mode"] == "Exclusive").then_some(())
        })
        .await;
    }

    // A MeshService written by hand in zone-1, which the generator must leave alone.
    put(
        &http,
        &format!("{api_1}/meshes/default/meshservices/manual"),
        &json!({"type": "MeshService", "name": "manual", "mesh": "default",
                "spec": {"selector": {"dataplaneTags": {"app": "manual"}}, "ports": [{"port": 9000}]}}),
    )
    .await;

    // Two redis dataplanes in zone-1: one MeshService with the union of their ports.
    put(
        &http,
        &format!("{api_1}/meshes/default/dataplanes/redis-1"),
        &dataplane(
            "redis-1",
            json!([{"port": 6379, "tags": {"kuma.io/service": "redis", "kuma.io/protocol": "tcp"}}]),
        ),
    )
    .await;
    put(
        &http,
        &format!("{api_1}/meshes/default/dataplanes/redis-2"),
        &dataplane(
            "redis-2",
            json!([{"port": 6379, "tags": {"kuma.io/service": "redis"}},
                   {"port": 6380, "name": "admin", "tags": {"kuma.io/service": "redis"}}]),
        ),
    )
    .await;

    let local = format!("{api_1}/meshes/default/meshservices/redis");
    let generated = eventually("zone-1 generates the MeshService", DEADLINE, || async {
        let s = get(&http, &local).await?;
        (ports(&s) == [6379, 6380]).then_some(s)
    })
    .await;
    assert_eq!(
        generated["spec"]["selector"],
        json!({"dataplaneTags": {"kuma.io/service": "redis"}})
    );
    assert_eq!(
        generated["spec"]["identities"],
        json!([{"type": "ServiceTag", "value": "redis"}])
    );
    assert_eq!(generated["spec"]["ports"][1]["name"], "admin");
    assert_eq!(generated["spec"]["ports"][0]["name"], "6379");
    // REST-registered dataplanes carry no readiness report: ready.
    assert_eq!(generated["spec"]["state"], "Available");
    assert_eq!(generated["status"]["dataplaneProxies"]["total"], 2);
    for (k, v) in [
        ("kuma.io/managed-by", "meshservice-generator"),
        ("kuma.io/display-name", "redis"),
        ("kuma.io/env", "universal"),
        ("kuma.io/mesh", "default"),
        ("kuma.io/zone", "zone-1"),
        ("kuma.io/origin", "zone"),
    ] {
        assert_eq!(generated["labels"][k], v, "label {k}: {generated}");
    }

    // Global has it as redis.zone-1, stamped with the zone.
    let on_global = format!("{global_api}/meshes/default/meshservices/redis.zone-1");
    // Global may first hold an earlier version (one dataplane's ports): wait
    // for the one zone-1 settled on.
    let synced = eventually("the MeshService reaches global", DEADLINE, || async {
        let s = get(&http, &on_global).await?;
        (s["spec"] == generated["spec"]).then_some(s)
    })
    .await;
    assert_eq!(synced["labels"]["kuma.io/zone"], "zone-1");
    assert_eq!(synced["labels"]["kuma.io/origin"], "zone");
    assert_eq!(synced["labels"]["kuma.io/display-name"], "redis");
    assert_eq!(synced["spec"], generated["spec"]);

    // zone-2 gets zone-1's MeshServices under global's names.
    let on_zone_2 = format!("{api_2}/meshes/default/meshservices/redis.zone-1");
    let remote = eventually("the MeshService reaches zone-2", DEADLINE, || async {
        let s = get(&http, &on_zone_2).await?;
        (s["spec"] == generated["spec"]).then_some(s)
    })
    .await;
    assert_eq!(remote["labels"]["kuma.io/zone"], "zone-1");
    assert_eq!(remote["spec"], generated["spec"]);
    let manual_2 = format!("{api_2}/meshes/default/meshservices/manual.zone-1");
    eventually(
        "zone-2 also has zone-1's hand-written one",
        DEADLINE,
        || get(&http, &manual_2),
    )
    .await;

    // MeshServices are zone-owned: global refuses to write them.
    let (status, _) = put_status(
        &http,
        &format!("{global_api}/meshes/default/meshservices/web"),
        &json!({"type": "MeshService", "name": "web", "mesh": "default", "spec": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // A MeshMultiZoneService is written on global and reaches every zone.
    put(
        &http,
        &format!("{global_api}/meshes/default/meshmultizoneservices/redis"),
        &json!({"type": "MeshMultiZoneService", "name": "redis", "mesh": "default",
                "spec": {"selector": {"meshService": {"matchLabels": {"kuma.io/display-name": "redis"}}},
                         "ports": [{"port": 6379, "appProtocol": "tcp"}]}}),
    )
    .await;
    for api in [&api_1, &api_2] {
        let url = format!("{api}/meshes/default/meshmultizoneservices/redis");
        eventually(
            "the MeshMultiZoneService reaches the zone",
            DEADLINE,
            || get(&http, &url),
        )
        .await;
    }
    // ... and zones may not write one.
    let (status, _) = put_status(
        &http,
        &format!("{api_1}/meshes/default/meshmultizoneservices/other"),
        &json!({"type": "MeshMultiZoneService", "name": "other", "mesh": "default",
                "spec": {"selector": {"meshService": {"matchLabels": {"a": "b"}}}, "ports": [{"port": 1}]}}),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // A zone never gets its own MeshServices back: zone-1 holds exactly its own two.
    let list_1 = get(&http, &format!("{api_1}/meshes/default/meshservices"))
        .await
        .unwrap();
    assert_eq!(names(&list_1), ["manual", "redis"], "{list_1}");

    // redis-2 goes: its port goes with it, everywhere.
    delete(&http, &format!("{api_1}/meshes/default/dataplanes/redis-2")).await;
    for url in [&local, &on_global, &on_zone_2] {
        eventually("the MeshService loses redis-2's port", DEADLINE, || async {
            let s = get(&http, url).await?;
            (ports(&s) == [6379] && s["status"]["dataplaneProxies"]["total"] == 1).then_some(())
        })
        .await;
    }

    // The last dataplane goes: the MeshService is first scheduled for
    // deletion everywhere (Unavailable, labelled with when its grace period
    // started), then, the period over, disappears everywhere; the
    // hand-written one stays.
    delete(&http, &format!("{api_1}/meshes/default/dataplanes/redis-1")).await;
    for url in [&local, &on_global, &on_zone_2] {
        eventually(
            "the MeshService's grace period starts",
            DEADLINE,
            || async {
                let s = get(&http, url).await?;
                let labelled = s["labels"]["kuma.io/deletion-grace-period-started-at"].is_string();
                (labelled && s["spec"]["state"] == "Unavailable").then_some(())
            },
        )
        .await;
    }
    for url in [&local, &on_global, &on_zone_2] {
        eventually("the MeshService is deleted", DEADLINE, || async {
            let response = http.get(url.as_str()).send().await.ok()?;
            (response.status() == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
    }
    assert!(
        get(
            &http,
            &format!("{api_1}/meshes/default/meshservices/manual")
        )
        .await
        .is_some(),
        "the hand-written MeshService is left alone"
    );
    let list_2 = get(&http, &format!("{api_2}/meshes/default/meshservices"))
        .await
        .unwrap();
    assert_eq!(names(&list_2), ["manual.zone-1"], "{list_2}");
    drop((zone_1, zone_2, global));
}

/// Starts `meridian dp` in `zone` from a Kuma universal Dataplane document
/// (written to a file, as `--dataplane-file` takes it).
async fn sidecar_from_document(cluster: &Cluster, zone: &str, doc: &Value) -> MeridianProcess {
    let path = cluster
        .dir
        .path(&format!("{}.json", doc["name"].as_str().unwrap()));
    std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    MeridianProcess::start_until(
        &[
            "dp",
            "--zone-cp",
            &cluster.zones[zone].dp_url,
            "--dataplane-file",
            &path,
        ],
        "meridian dp",
    )
    .await
}

/// Who answers a connection to `addr`, as soon as the answer is `want`.
async fn answered(addr: SocketAddr, want: &str) {
    eventually(&format!("{addr} answered by {want}"), DEADLINE, || async {
        let answer = exchange(addr, b"hi").await.ok()?;
        (answered_by(&answer) == want).then_some(())
    })
    .await;
}

/// Kuma 2.x documents, unchanged, carry traffic between zones: outbounds by
/// `backendRef` to a MeshService (by labels, another zone's; by name, the
/// zone's own) and to a MeshMultiZoneService (local part first, the other
/// zone's once the local one is gone), a MeshTCPRoute whose `to` selects one
/// port by `sectionName` and sends it to another zone's MeshService, and a
/// MeshTrafficPermission for a `Dataplane`-labels target denying clients of one
/// zone (`from` MeshSubset `kuma.io/zone`), while a 2.5-style tag outbound in
/// the same sidecar keeps working, let through in its zone by an MTP's `rules`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuma_2_documents_carry_traffic_between_zones() {
    let cluster = Cluster::start("mesh-service-traffic", &["zone-1", "zone-2"]).await;
    cluster
        .apply(json!({"type": "Mesh", "name": "default",
            "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
            "meshServices": {"mode": "Everywhere"}}))
        .await;
    cluster
        .apply(
            json!({"type": "MeshTrafficPermission", "name": "allow-all", "mesh": "default",
            "spec": {"targetRef": {"kind": "Mesh"},
                "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}}),
        )
        .await;
    // zone-1's proxies decide by inbound `rules` (Kuma 2.10+), which replace
    // `from` there: only `web` may connect.
    cluster
        .apply(
            json!({"type": "MeshTrafficPermission", "name": "zone-1-web-only", "mesh": "default",
            "spec": {"targetRef": {"kind": "Dataplane", "labels": {"kuma.io/zone": "zone-1"}},
                "rules": [{"default": {"allow": [
                    {"spiffeID": {"type": "Exact", "value": "spiffe://default/web"}}]}}]}}),
        )
        .await;
    let _ingress = cluster.ingress("zone-2").await;

    // One `backend` per zone on the same port (two loopback addresses), so
    // both zones' generated MeshServices have port `port`, named `tcp-main`.
    let port = free_port();
    let (_echo_1, app_1) = cluster.echo("backend-zone-1").await;
    let (_echo_2, app_2) = cluster.echo("backend-zone-2").await;
    let backend = |name: &str, ip: &str, app: SocketAddr| {
        json!({"type": "Dataplane", "mesh": "default", "name": name,
            "networking": {"address": ip, "inbound": [{"port": port, "name": "tcp-main",
                "servicePort": app.port(), "tags": {"kuma.io/service": "backend"}}]}})
    };
    let backend_1 = sidecar_from_document(
        &cluster,
        "zone-1",
        &backend("backend-1", "127.0.0.1", app_1),
    )
    .await;
    let _backend_2 = sidecar_from_document(
        &cluster,
        "zone-2",
        &backend("backend-2", "127.0.0.2", app_2),
    )
    .await;

    // The client in zone-1: three Kuma 2.x outbounds and a 2.5 one.
    let [to_multizone, to_zone_2, to_own, by_tag] = [0; 4].map(|_| free_port());
    let outbound = |local: u16, backend_ref: Value| json!({"port": local, "address": "127.0.0.1", "backendRef": backend_ref});
    let client = json!({"type": "Dataplane", "mesh": "default", "name": "web-1",
    "networking": {"address": "127.0.0.1",
        "inbound": [{"port": free_port(), "servicePort": free_port(), "tags": {"kuma.io/service": "web"}}],
        "outbound": [
            outbound(to_multizone, json!({"kind": "MeshMultiZoneService", "name": "backend-all", "port": port})),
            outbound(to_zone_2, json!({"kind": "MeshService",
                "labels": {"kuma.io/display-name": "backend", "kuma.io/zone": "zone-2"}, "port": port})),
            outbound(to_own, json!({"kind": "MeshService", "name": "backend", "port": port})),
            {"port": by_tag, "address": "127.0.0.1", "tags": {"kuma.io/service": "backend"}}
        ]}});
    let _client = sidecar_from_document(&cluster, "zone-1", &client).await;
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));

    // zone-2's MeshService, synced to zone-1 as `backend.zone-2`: through
    // zone-2's ingress, by the MeshService SNI name.
    answered(at(to_zone_2), "backend-zone-2").await;
    answered(at(to_own), "backend-zone-1").await;
    answered(at(by_tag), "backend-zone-1").await;

    // A route for one port of zone-1's own MeshService (by sectionName)
    // sends it to zone-2's.
    cluster
        .apply(json!({"type": "MeshTCPRoute", "name": "own-to-zone-2", "mesh": "default",
            "spec": {"targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "MeshService", "name": "backend", "sectionName": "tcp-main"},
                    "rules": [{"default": {"backendRefs": [{"kind": "MeshService",
                        "labels": {"kuma.io/display-name": "backend", "kuma.io/zone": "zone-2"},
                        "port": port}]}}]}]}}))
        .await;
    answered(at(to_own), "backend-zone-2").await;

    // A MeshMultiZoneService over both zones' MeshServices: its local part
    // first (the local zone is priority 0).
    cluster
        .apply(json!({"type": "MeshMultiZoneService", "name": "backend-all", "mesh": "default",
            "spec": {"selector": {"meshService": {"matchLabels": {"kuma.io/display-name": "backend"}}},
                "ports": [{"port": port, "appProtocol": "tcp"}]}}))
        .await;
    answered(at(to_multizone), "backend-zone-1").await;

    // zone-2's backend refuses zone-1's clients: the outbounds that lead
    // there fail; the ones answered in zone-1 do not.
    let refuse = json!({"type": "MeshTrafficPermission", "name": "zone-2-refuses-zone-1", "mesh": "default",
        "spec": {"targetRef": {"kind": "Dataplane", "labels": {"kuma.io/zone": "zone-2"}},
            "from": [{"targetRef": {"kind": "MeshSubset", "tags": {"kuma.io/zone": "zone-1"}},
                "default": {"action": "Deny"}}]}});
    cluster.apply(refuse.clone()).await;
    eventually("zone-2 refuses zone-1's client", DEADLINE, || async {
        exchange(at(to_zone_2), b"hi").await.is_err().then_some(())
    })
    .await;
    assert!(
        exchange(at(to_own), b"hi").await.is_err(),
        "routed to zone-2: refused"
    );
    for local in [by_tag, to_multizone] {
        let answer = exchange(at(local), b"hi")
            .await
            .unwrap_or_else(|e| panic!("{local} (by_tag {by_tag}): {e}"));
        assert_eq!(answered_by(&answer), "backend-zone-1");
    }

    // Without the refusal, and with zone-1's backend gone (its Dataplane and
    // so its MeshService with it), the multi-zone service is zone-2's part.
    cluster.delete(&refuse).await;
    answered(at(to_zone_2), "backend-zone-2").await;
    backend_1.kill().await;
    answered(at(to_multizone), "backend-zone-2").await;
}
