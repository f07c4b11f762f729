//! The REST API over a real socket on a real PostgreSQL database: resource shapes,
//! status codes, validation problems, auth, concurrency, paging, and readiness while
//! the database goes away and comes back.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use meridian_global_cp::{GlobalCp, GlobalCpConfig};
use meridian_store::Store;
use meridian_store::postgres::PostgresStore;
use meridian_tests::fault_proxy::FaultProxy;
use meridian_tests::postgres::{TestDatabase, server_url};
use meridian_tests::problem_fields;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "test-admin-token";

struct Api {
    base: String,
    http: reqwest::Client,
    global: Option<GlobalCp>,
    _proxy: Option<FaultProxy>,
    _database: TestDatabase,
}

impl Api {
    async fn start() -> Self {
        meridian_tests::init();
        let database = TestDatabase::create().await;
        let store = database.store().await;
        Self::serve(database, Arc::new(store), None).await
    }

    async fn serve(
        database: TestDatabase,
        store: Arc<dyn Store>,
        proxy: Option<FaultProxy>,
    ) -> Self {
        let config = GlobalCpConfig {
            api_addr: "127.0.0.1:0".parse().unwrap(),
            admin_token: Some(TOKEN.to_owned()),
            ..GlobalCpConfig::default()
        };
        let global = GlobalCp::start(config, store)
            .await
            .expect("global CP starts");
        Api {
            base: format!("http://{}", global.api_addr()),
            http: reqwest::Client::new(),
            global: Some(global),
            _proxy: proxy,
            _database: database,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.call(Method::GET, path, None, None).await;
        (status, body)
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, body) = self.call(Method::PUT, path, Some(body), Some(TOKEN)).await;
        (status, body)
    }
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::from_str(&text).expect("fixture is YAML")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_mesh_exists_and_meshes_round_trip() {
    let api = Api::start().await;
    let (status, list) = api.get("/meshes").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["name"], "default");

    let mesh = json!({
        "type": "Mesh", "name": "payments",
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
        "routing": {"zoneEgress": true}
    });
    let (status, created) = api.put("/meshes/payments", mesh.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _) = api.put("/meshes/payments", mesh.clone()).await;
    assert_eq!(status, StatusCode::OK);

    let (status, headers, read) = api.call(Method::GET, "/meshes/payments", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["etag"], "\"1\"",
        "an identical PUT does not bump the version"
    );
    assert_eq!(read["mtls"], mesh["mtls"]);
    assert_eq!(read["routing"], mesh["routing"]);
    assert!(read["creationTime"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_examples_apply_unchanged_and_read_back() {
    let api = Api::start().await;
    let split = fixture("seed004-traffic-split.yaml");
    let (status, body) = api
        .put("/meshes/default/meshtcproutes/tcp-route-1", split.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, read) = api.get("/meshes/default/meshtcproutes/tcp-route-1").await;
    assert_eq!(read["spec"], split["spec"], "spec round-trips exactly");
    assert_eq!(read["type"], "MeshTCPRoute");

    let redirect = fixture("seed004-traffic-redirection.yaml");
    let (status, body) = api
        .put(
            "/meshes/default/meshtcproutes/tcp-route-1",
            redirect.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, list) = api.get("/meshes/default/meshtcproutes").await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["spec"], redirect["spec"]);
}

/// Kuma documents with parts that do not apply to TCP are accepted, stored as
/// written, and answered with a `warnings` list naming each part (Kuma's shape:
/// strings); a document without such parts gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_only_parts_are_kept_and_named_in_warnings() {
    let api = Api::start().await;
    let check = json!({"type": "MeshHealthCheck", "name": "hc", "mesh": "default",
        "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"},
            "default": {"interval": "10s", "tcp": {}, "http": {"path": "/health", "expectedStatuses": [200]}}}]}});
    let (status, body) = api
        .put("/meshes/default/meshhealthchecks/hc", check.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let warnings: Vec<&str> = body["warnings"]
        .as_array()
        .expect("a warnings list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(warnings.len(), 1, "{body}");
    assert!(
        warnings[0].starts_with("spec.to[0].default.http: does not apply to TCP traffic"),
        "{body}"
    );
    let (_, read) = api.get("/meshes/default/meshhealthchecks/hc").await;
    assert_eq!(read["spec"], check["spec"], "kept as written");
    assert!(read.get("warnings").is_none(), "a GET carries no warnings");

    let plain = json!({"type": "MeshTimeout", "name": "t", "mesh": "default",
        "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1h"}}]}});
    let (status, body) = api.put("/meshes/default/meshtimeouts/t", plain).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("warnings").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_documents_get_a_problem_listing_every_field() {
    let api = Api::start().await;
    let bad = json!({
        "type": "MeshTCPRoute", "name": "r", "mesh": "default",
        "spec": {
            "targetRef": {"kind": "MeshService"},
            "to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                    "rules": [{"default": {"backendRefs": [{"kind": "MeshServiceSubset", "name": "backend"}]}}]}]
        }
    });
    let (status, headers, problem) = api
        .call(
            Method::PUT,
            "/meshes/default/meshtcproutes/r",
            Some(bad),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(problem["status"], 400);
    let fields = problem_fields(&problem);
    assert!(fields.contains(&"spec.targetRef".to_owned()), "{problem}");
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("spec.to[0].rules[0].default.backendRefs[0]")),
        "{problem}"
    );

    let unknown = json!({"type": "MeshTimeout", "name": "t", "mesh": "default",
                         "spec": {"targetRef": {"kind": "Mesh"}, "bogus": 1}});
    let (status, problem) = api.put("/meshes/default/meshtimeouts/t", unknown).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(problem.to_string().contains("bogus"), "{problem}");

    // Nothing was written by the failed requests.
    let (_, list) = api.get("/meshes/default/meshtcproutes").await;
    assert_eq!(list["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_names_and_mismatches_are_bad_requests() {
    let api = Api::start().await;
    let response = api
        .http
        .put(format!("{}/meshes/x", api.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{problem}"
    );

    let (status, problem) = api
        .put(
            "/meshes/Bad_Name",
            json!({"type": "Mesh", "name": "Bad_Name"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem_fields(&problem).contains(&"name".to_owned()),
        "{problem}"
    );

    let (status, problem) = api
        .put("/meshes/a", json!({"type": "Mesh", "name": "b"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem_fields(&problem), ["name"], "{problem}");

    let yaml = "type: Mesh\nname: from-yaml\n";
    let response = api
        .http
        .put(format!("{}/meshes/from-yaml", api.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let huge = json!({"type": "Mesh", "name": "big", "labels": {"x": "y".repeat(2 * 1024 * 1024)}});
    let (status, problem) = api.put("/meshes/big", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_admin_token_reads_do_not() {
    let api = Api::start().await;
    let mesh = json!({"type": "Mesh", "name": "m"});
    let (status, headers, problem) = api
        .call(Method::PUT, "/meshes/m", Some(mesh.clone()), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(problem["status"], 401);
    let (status, _, _) = api
        .call(Method::PUT, "/meshes/m", Some(mesh), Some("wrong"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = api
        .call(Method::DELETE, "/meshes/default", None, Some("wrong"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.get("/meshes/default").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_versions_conflict() {
    let api = Api::start().await;
    let path = "/meshes/default/meshtimeouts/t";
    let doc = |idle: &str| {
        json!({"type": "MeshTimeout", "name": "t", "mesh": "default",
        "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}]}})
    };
    let (status, body) = api.put(path, doc("1h")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let put_if = |version: &'static str, idle: &'static str| {
        api.http
            .put(format!("{}{path}", api.base))
            .bearer_auth(TOKEN)
            .header("if-match", version)
            .json(&doc(idle))
            .send()
    };
    assert_eq!(
        put_if("\"1\"", "2h").await.unwrap().status(),
        StatusCode::OK
    );
    let stale = put_if("\"1\"", "3h").await.unwrap();
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    let problem: Value = stale.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("expected version 1, found 2"),
        "{problem}"
    );

    let create_only = api
        .http
        .put(format!("{}{path}", api.base))
        .bearer_auth(TOKEN)
        .header("if-none-match", "*")
        .json(&doc("4h"))
        .send()
        .await
        .unwrap();
    assert_eq!(create_only.status(), StatusCode::CONFLICT);
    let (_, read) = api.get(path).await;
    assert_eq!(read["spec"]["to"][0]["default"]["idleTimeout"], "2h");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_and_filter_by_label() {
    let api = Api::start().await;
    // A mesh without Kuma's initial policies: the list holds only what this writes.
    let (status, body) = api
        .put(
            "/meshes/paging",
            json!({"type": "Mesh", "name": "paging", "skipCreatingInitialPolicies": ["*"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for i in 0..5 {
        let team = if i % 2 == 0 { "a" } else { "b" };
        let doc = json!({"type": "MeshTimeout", "name": format!("t{i}"), "mesh": "paging",
            "labels": {"team": team},
            "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1h"}}]}});
        let (status, body) = api
            .put(&format!("/meshes/paging/meshtimeouts/t{i}"), doc)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let mut names = Vec::new();
    let mut next = Some("/meshes/paging/meshtimeouts?size=2".to_owned());
    while let Some(path) = next {
        let (status, page) = api.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 5);
        assert!(page["items"].as_array().unwrap().len() <= 2);
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_owned()),
        );
        next = page["next"].as_str().map(str::to_owned);
    }
    assert_eq!(names, ["t0", "t1", "t2", "t3", "t4"]);

    let (_, filtered) = api
        .get("/meshes/paging/meshtimeouts?filter[labels.team]=b")
        .await;
    assert_eq!(filtered["total"], 2);
    let (status, problem) = api
        .get("/meshes/paging/meshtimeouts?size=0&colour=red")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem_fields(&problem), ["size", "colour"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_resources_are_read_only_and_missing_things_are_404() {
    let api = Api::start().await;
    let dataplane = json!({"type": "Dataplane", "name": "dp", "mesh": "default",
        "networking": {"address": "10.0.0.1", "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]}});
    let (status, problem) = api.put("/meshes/default/dataplanes/dp", dataplane).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{problem}");
    let (status, list) = api.get("/meshes/default/dataplanes").await;
    assert_eq!((status, list["total"].clone()), (StatusCode::OK, json!(0)));

    let policy = fixture("seed004-traffic-split.yaml");
    let mut in_missing_mesh = policy.clone();
    in_missing_mesh["mesh"] = json!("nope");
    let (status, problem) = api
        .put("/meshes/nope/meshtcproutes/tcp-route-1", in_missing_mesh)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, _) = api.get("/meshes/nope/meshtcproutes").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, problem) = api.get("/meshes/default/meshhttproutes").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("meshtcproutes"),
        "{problem}"
    );
    let (status, _) = api.get("/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_have_insights_and_deleting_a_mesh_cascades() {
    let api = Api::start().await;
    let (status, body) = api
        .put(
            "/zones/zone-1",
            json!({"type": "Zone", "name": "zone-1", "enabled": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, insight) = api.get("/zones/zone-1/insight").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(insight["online"], false);
    let (_, all) = api.get("/zones+insights").await;
    assert_eq!(all["items"][0]["zoneInsight"]["online"], false);
    let (status, _) = api.get("/zones/zone-9/insight").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    api.put(
        "/meshes/default/meshtcproutes/tcp-route-1",
        fixture("seed004-traffic-split.yaml"),
    )
    .await;
    let (status, _, deleted) = api
        .call(Method::DELETE, "/meshes/default", None, Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK);
    // The mesh, its route, and Kuma's initial policies created with it.
    let gone: Vec<&str> = deleted["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        gone,
        [
            "default",
            "mesh-circuit-breaker-all-default",
            "mesh-retry-all-default",
            "tcp-route-1",
            "mesh-gateways-timeout-all-default",
            "mesh-timeout-all-default"
        ],
        "{deleted}"
    );
    let (status, _) = api.get("/meshes/default/meshtcproutes/tcp-route-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_openapi_are_served() {
    let api = Api::start().await;
    assert_eq!(api.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(api.get("/readyz").await.0, StatusCode::OK);
    api.get("/meshes").await;
    let (status, metrics) = api.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains("meridian_http_requests_total"),
        "{metrics}"
    );
    let (status, openapi) = api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    assert!(
        openapi["paths"]["/meshes/{mesh}/meshloadbalancingstrategies/{name}"]["put"].is_object()
    );
}

/// `/readyz` answers 503 while PostgreSQL is unreachable and 200 again once it is
/// back, with no restart; requests during the outage get 503, not 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_and_recovers_by_itself() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let options: sqlx::postgres::PgConnectOptions = server_url().parse().unwrap();
    let upstream = tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = FaultProxy::start(upstream).await;
    let url = format!(
        "postgres://{}@{}/{}",
        options.get_username(),
        proxy.addr(),
        database.name()
    );
    let store = PostgresStore::connect(&url).await.unwrap();
    let mut api = Api::serve(database, Arc::new(store), None).await;
    assert_eq!(api.get("/readyz").await.0, StatusCode::OK);

    proxy.cut();
    let (status, problem) =
        meridian_tests::eventually("readyz reports 503", Duration::from_secs(30), || async {
            let (status, body) = api.get("/readyz").await;
            (status == StatusCode::SERVICE_UNAVAILABLE).then_some((status, body))
        })
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        problem["detail"].as_str().unwrap().contains("store"),
        "{problem}"
    );
    let (status, _) = api
        .put(
            "/meshes/during-outage",
            json!({"type": "Mesh", "name": "during-outage"}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    proxy.restore();
    meridian_tests::eventually("readyz recovers", Duration::from_secs(30), || async {
        (api.get("/readyz").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    let (status, _) = api
        .put(
            "/meshes/after-outage",
            json!({"type": "Mesh", "name": "after-outage"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    if let Some(global) = api.global.take() {
        global.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_tokens_are_issued_to_admins_only() {
    let api = Api::start().await;
    let request = json!({"zone": "zone-1", "validFor": "24h"});
    let (status, _, _) = api
        .call(Method::POST, "/tokens/zone", Some(request.clone()), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, issued) = api
        .call(Method::POST, "/tokens/zone", Some(request), Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert!(
        issued["token"].as_str().unwrap().starts_with("mrdz_"),
        "{issued}"
    );
    assert_eq!(issued["zone"], "zone-1");

    // A zone token is not an admin token.
    let zone_token = issued["token"].as_str().unwrap().to_owned();
    let (status, _, _) = api
        .call(
            Method::PUT,
            "/meshes/x",
            Some(json!({"type": "Mesh", "name": "x"})),
            Some(&zone_token),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let bad = json!({"zone": "Not.A.Label", "validFor": "forever"});
    let (status, _, problem) = api
        .call(Method::POST, "/tokens/zone", Some(bad), Some(TOKEN))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem_fields(&problem), ["zone", "validFor"], "{problem}");

    // Zone names are DNS labels: a dotted name is refused where zones are created too.
    let (status, problem) = api
        .put("/zones/a.b", json!({"type": "Zone", "name": "a.b"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem_fields(&problem), ["name"], "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_mesh_gets_kumas_initial_policies_unless_it_skips_them() {
    let api = Api::start().await;
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    for (mesh, skip, timeouts, breakers) in [
        (
            "plain",
            json!(null),
            vec!["mesh-gateways-timeout-all-plain", "mesh-timeout-all-plain"],
            vec!["mesh-circuit-breaker-all-plain"],
        ),
        (
            "no-timeouts",
            json!(["MeshTimeout"]),
            vec![],
            vec!["mesh-circuit-breaker-all-no-timeouts"],
        ),
        ("bare", json!(["*"]), vec![], vec![]),
    ] {
        let mut doc = json!({"type": "Mesh", "name": mesh});
        if !skip.is_null() {
            doc["skipCreatingInitialPolicies"] = skip;
        }
        let (status, body) = api.put(&format!("/meshes/{mesh}"), doc.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (_, list) = api.get(&format!("/meshes/{mesh}/meshtimeouts")).await;
        assert_eq!(names(&list), timeouts, "{mesh}");
        let (_, list) = api
            .get(&format!("/meshes/{mesh}/meshcircuitbreakers"))
            .await;
        assert_eq!(names(&list), breakers, "{mesh}");
        let (_, list) = api.get(&format!("/meshes/{mesh}/meshretries")).await;
        let retries: Vec<String> = if mesh == "bare" {
            Vec::new()
        } else {
            vec![format!("mesh-retry-all-{mesh}")]
        };
        assert_eq!(names(&list), retries, "{mesh}");
        // Updating the mesh creates nothing again.
        if mesh == "plain" {
            let (_, _, deleted) = api
                .call(
                    Method::DELETE,
                    "/meshes/plain/meshtimeouts/mesh-timeout-all-plain",
                    None,
                    Some(TOKEN),
                )
                .await;
            assert_eq!(deleted["deleted"][0]["name"], "mesh-timeout-all-plain");
            doc["routing"] = json!({"zoneEgress": true});
            let (status, body) = api.put("/meshes/plain", doc).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let (_, list) = api.get("/meshes/plain/meshtimeouts").await;
            assert_eq!(names(&list), ["mesh-gateways-timeout-all-plain"]);
        }
    }
    // Kuma's documents, as Kuma writes them.
    let (_, timeout) = api
        .get("/meshes/plain/meshtimeouts/mesh-gateways-timeout-all-plain")
        .await;
    assert_eq!(
        timeout["spec"]["targetRef"],
        json!({"kind": "Mesh", "proxyTypes": ["Gateway"]})
    );
    let (_, breaker) = api
        .get("/meshes/plain/meshcircuitbreakers/mesh-circuit-breaker-all-plain")
        .await;
    assert_eq!(
        breaker["spec"]["to"][0]["default"]["connectionLimits"]["maxConnections"],
        1024
    );
    // The installation's default mesh has them too.
    let (_, list) = api.get("/meshes/default/meshtimeouts").await;
    assert_eq!(
        names(&list),
        [
            "mesh-gateways-timeout-all-default",
            "mesh-timeout-all-default"
        ]
    );
}
