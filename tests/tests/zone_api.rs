//! The zone control plane's REST API (meridian-api in the zone role) over a real
//! socket on a real PostgreSQL database: the zone's own proxies are writable and
//! stamped with the zone, everything managed on global is read-only, and reads are
//! the same paths and shapes as on global.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use meridian_global_cp::{GlobalCp, GlobalCpConfig};
use meridian_model::ResourceKind;
use meridian_store::{NewResource, Precondition, ResourceKey, Store};
use meridian_tests::postgres::TestDatabase;
use meridian_tests::problem_fields;
use meridian_zone_cp::{ZoneCp, ZoneCpConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "test-admin-token";

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    fn new(addr: std::net::SocketAddr) -> Self {
        Client {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body read");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None, None).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body), Some(TOKEN)).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None, Some(TOKEN)).await
    }
}

/// A zone CP for `zone` on a fresh database that already holds the `default` mesh
/// (as if synced from global).
struct Zone {
    api: Client,
    cp: Option<ZoneCp>,
    store: Arc<dyn Store>,
    _database: TestDatabase,
}

impl Zone {
    async fn start(zone: &str) -> Self {
        meridian_tests::init();
        let database = TestDatabase::create().await;
        let store: Arc<dyn Store> = Arc::new(database.store().await);
        put_empty(
            store.as_ref(),
            ResourceKey::global(ResourceKind::Mesh, "default"),
        )
        .await;
        let cp = start_zone(zone, store.clone()).await;
        Zone {
            api: Client::new(cp.api_addr()),
            cp: Some(cp),
            store,
            _database: database,
        }
    }
}

async fn start_zone(zone: &str, store: Arc<dyn Store>) -> ZoneCp {
    let config = ZoneCpConfig {
        api_addr: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(TOKEN.to_owned()),
        dp_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..ZoneCpConfig::new(zone)
    };
    ZoneCp::start(config, store).await.expect("zone CP starts")
}

async fn put_empty(store: &dyn Store, key: ResourceKey) {
    let spec = meridian_model::SpecBody::parse(key.kind, json!({})).unwrap();
    store
        .put(
            NewResource {
                key,
                labels: Default::default(),
                spec,
                zone: None,
            },
            Precondition::Absent,
        )
        .await
        .unwrap();
}

fn dataplane(name: &str) -> Value {
    json!({"type": "Dataplane", "name": name, "mesh": "default",
        "labels": {"team": "web"},
        "networking": {"address": "10.0.0.1",
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_writes_its_own_proxies_stamped_with_the_zone() {
    let zone = Zone::start("east").await;
    let api = &zone.api;

    // The zone CP created its own Zone resource: the owner of what follows.
    let (status, own) = api.get("/zones/east").await;
    assert_eq!(status, StatusCode::OK, "{own}");

    let (status, created) = api
        .put("/meshes/default/dataplanes/web-1", dataplane("web-1"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["labels"],
        json!({"kuma.io/origin": "zone", "kuma.io/zone": "east", "team": "web"})
    );
    let stored = zone
        .store
        .get(&ResourceKey::in_mesh(
            ResourceKind::Dataplane,
            "default",
            "web-1",
        ))
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.zone.as_deref(), Some("east"));
    assert_eq!(stored.labels["kuma.io/zone"], "east");

    let (status, _) = api
        .put("/meshes/default/dataplanes/web-1", dataplane("web-1"))
        .await;
    assert_eq!(status, StatusCode::OK, "an identical PUT updates nothing");
    let (status, read) = api.get("/meshes/default/dataplanes/web-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["networking"]["address"], "10.0.0.1");

    let ingress = json!({"type": "ZoneIngress", "name": "ingress-1",
        "networking": {"address": "10.0.0.5", "port": 10001}});
    let (status, body) = api.put("/zoneingresses/ingress-1", ingress).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["labels"]["kuma.io/origin"], "zone");
    let egress = json!({"type": "ZoneEgress", "name": "egress-1",
        "networking": {"address": "10.0.0.6", "port": 10002}});
    let (status, body) = api.put("/zoneegresses/egress-1", egress).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["labels"]["kuma.io/zone"], "east");

    // A ZoneIngress naming another zone is refused.
    let elsewhere = json!({"type": "ZoneIngress", "name": "ingress-2", "zone": "west",
        "networking": {"address": "10.0.0.7", "port": 10001}});
    let (status, problem) = api.put("/zoneingresses/ingress-2", elsewhere).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem_fields(&problem), ["zone"]);

    // Validation is the same as on global: every invalid field is listed.
    let invalid = json!({"type": "Dataplane", "name": "web-2", "mesh": "default",
        "networking": {"address": "", "inbound": [{"port": 70000, "tags": {}}]}});
    let (status, problem) = api.put("/meshes/default/dataplanes/web-2", invalid).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let invalid_fields = problem_fields(&problem);
    assert!(
        invalid_fields.len() >= 2 && invalid_fields.iter().all(|f| f.starts_with("networking")),
        "{problem}"
    );
    let unknown = json!({"type": "Dataplane", "name": "web-2", "mesh": "default",
        "networking": {"address": "10.0.0.2"}, "colour": "red"});
    let (status, problem) = api.put("/meshes/default/dataplanes/web-2", unknown).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    // Every problem at once: the unknown field and the missing inbound.
    assert_eq!(problem_fields(&problem), ["colour", "networking.inbound"]);
    let (status, problem) = api
        .put("/meshes/default/dataplanes/other", dataplane("web-1"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem_fields(&problem), ["name"]);

    // Writes need the admin token, as on global.
    let (status, _) = api
        .call(
            Method::PUT,
            "/meshes/default/dataplanes/web-3",
            Some(dataplane("web-3")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, deleted) = api.delete("/meshes/default/dataplanes/web-1").await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["deleted"][0]["name"], "web-1");
    let (status, _) = api.get("/meshes/default/dataplanes/web-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A restart on the same store finds its Zone and keeps serving.
    let Zone {
        api: _, cp, store, ..
    } = zone;
    cp.unwrap().shutdown().await.unwrap();
    let cp = start_zone("east", store.clone()).await;
    let again = Client::new(cp.api_addr());
    let (status, list) = again.get("/zoneingresses").await;
    assert_eq!((status, list["total"].clone()), (StatusCode::OK, json!(1)));
    cp.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_refuses_writes_managed_on_global() {
    let zone = Zone::start("east").await;
    let api = &zone.api;
    let policy = json!({"type": "MeshTimeout", "name": "timeouts", "mesh": "default",
        "spec": {"targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "30s"}}]}});
    let (status, problem) = api
        .put("/meshes/default/meshtimeouts/timeouts", policy)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{problem}");
    assert_eq!(
        problem["detail"],
        "MeshTimeout is managed on the global control plane; this is zone east's read-only copy"
    );
    let (status, problem) = api
        .put("/meshes/other", json!({"type": "Mesh", "name": "other"}))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{problem}");
    let (status, _) = api
        .put("/zones/west", json!({"type": "Zone", "name": "west"}))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    for path in [
        "/meshes/default",
        "/zones/east",
        "/meshes/default/meshtimeouts/timeouts",
    ] {
        let (status, problem) = api.delete(path).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}: {problem}");
    }
    assert!(
        zone.store
            .get(&ResourceKey::global(ResourceKind::Mesh, "default"))
            .await
            .unwrap()
            .is_some()
    );

    // Zone tokens are issued by global only.
    let (status, _) = api
        .call(
            Method::POST,
            "/tokens/zone",
            Some(json!({"zone": "east"})),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Another zone's proxies (synced from global) are not this zone's to change.
    put_empty(
        zone.store.as_ref(),
        ResourceKey::global(ResourceKind::Zone, "west"),
    )
    .await;
    let spec = meridian_model::SpecBody::new(
        meridian_model::parse_document(dataplane("west-1"))
            .unwrap()
            .spec,
    );
    let key = ResourceKey::in_mesh(ResourceKind::Dataplane, "default", "west-1");
    zone.store
        .put(
            NewResource {
                key: key.clone(),
                labels: Default::default(),
                spec,
                zone: Some("west".into()),
            },
            Precondition::Absent,
        )
        .await
        .unwrap();
    let (status, problem) = api
        .put("/meshes/default/dataplanes/west-1", dataplane("west-1"))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{problem}");
    let (status, problem) = api.delete("/meshes/default/dataplanes/west-1").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{problem}");
    let stored = zone.store.get(&key).await.unwrap().unwrap();
    assert_eq!(stored.zone.as_deref(), Some("west"));

    // The document says the same.
    let (status, openapi) = api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let paths = &openapi["paths"];
    assert!(paths["/meshes/{mesh}/dataplanes/{name}"]["put"].is_object());
    assert!(paths["/zoneingresses/{name}"]["delete"].is_object());
    assert!(paths["/meshes/{mesh}/meshtimeouts/{name}"]["put"].is_null());
    assert!(paths["/meshes/{mesh}/meshtimeouts/{name}"]["get"].is_object());
    assert!(paths["/tokens/zone"].is_null());
    let (status, about) = api.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&about["component"], &about["zone"]),
        (&json!("zone-cp"), &json!("east"))
    );
    zone.cp.unwrap().shutdown().await.unwrap();
}

/// Global and a zone serving one store answer every read path with the same body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_the_same_paths_and_shapes_as_global() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let store: Arc<dyn Store> = Arc::new(database.store().await);
    let global = GlobalCp::start(
        GlobalCpConfig {
            api_addr: "127.0.0.1:0".parse().unwrap(),
            admin_token: Some(TOKEN.to_owned()),
            ..GlobalCpConfig::default()
        },
        store.clone(),
    )
    .await
    .unwrap();
    let zone = start_zone("east", store.clone()).await;
    let (global_api, zone_api) = (Client::new(global.api_addr()), Client::new(zone.api_addr()));

    let policy = json!({"type": "MeshTimeout", "name": "timeouts", "mesh": "default",
        "labels": {"team": "web"},
        "spec": {"targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "30s"}}]}});
    let (status, body) = global_api
        .put("/meshes/default/meshtimeouts/timeouts", policy)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = zone_api
        .put("/meshes/default/dataplanes/web-1", dataplane("web-1"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    for path in [
        "/meshes",
        "/meshes/default",
        "/meshes/default/meshtimeouts",
        "/meshes/default/meshtimeouts?team=web",
        "/meshes/default/meshtimeouts/timeouts",
        "/meshes/default/dataplanes",
        "/meshes/default/dataplanes/web-1",
        "/meshes/default/meshtcproutes?size=1",
        "/meshes/nope/meshtimeouts",
        "/zones",
        "/zones/east",
        "/zones/east/insight",
        "/zones+insights",
        "/zoneingresses",
        "/zoneegresses/missing",
        "/healthz",
        "/readyz",
    ] {
        let from_global = global_api.get(path).await;
        let from_zone = zone_api.get(path).await;
        assert_eq!(from_global, from_zone, "{path}");
    }
    let (_, dataplanes) = global_api.get("/meshes/default/dataplanes").await;
    assert_eq!(dataplanes["total"], 1);

    zone.shutdown().await.unwrap();
    global.shutdown().await.unwrap();
}
