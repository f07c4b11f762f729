//! Access control end to end, over real sockets: read-only tokens on global and on a
//! zone (the real binary with `--read-token-file`), Secrets never served by any REST
//! path, and zone tokens taken back — revoked one by one, or all at once by rotating
//! the signing key — across two global replicas on one PostgreSQL database, with a
//! real zone CP whose stream must end and whose reconnects must be refused.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_global_cp::{GlobalCp, GlobalCpConfig};
use meridian_model::{ResourceKind, ca_cert_secret_name, ca_key_secret_name};
use meridian_proto::kds::kds_client::KdsClient;
use meridian_proto::kds::{self, ZoneToGlobalAck, zone_to_global_ack};
use meridian_store::{ListQuery, NewResource, Precondition, ResourceKey, Store, list_all};
use meridian_tests::eventually;
use meridian_tests::global_replicas::{ADMIN, GlobalReplica, start_zone};
use meridian_tests::postgres::TestDatabase;
use meridian_tests::process::MeridianProcess;
use meridian_tests::scratch::Dir;
use meridian_zone_cp::{ZoneCp, ZoneCpConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);
const READ_TOKEN_FILE: &str = "# dashboards\n\nreader-one\n  reader-two  \n# reader-three\n";

/// One request; answers the status, the content type and the body (JSON if it parses).
async fn call(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, String, Value) {
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body read");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, content_type, body)
}

/// Checks what an API with `--reads-need-token` and the read tokens of
/// [`READ_TOKEN_FILE`] answers to reads and writes with each kind of token.
/// `writes` are `(method, path, body)` that the admin token may perform.
async fn check_read_only_tokens(api: &str, reads: &[&str], writes: &[(Method, &str, Value)]) {
    let http = reqwest::Client::new();
    for path in reads {
        let url = format!("{api}{path}");
        let (status, _, problem) = call(&http, Method::GET, &url, None, None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "GET {path} without a token"
        );
        assert_eq!(problem["status"], 401);
        for token in ["reader-one", "reader-two", ADMIN] {
            let (status, _, body) = call(&http, Method::GET, &url, Some(token), None).await;
            assert_eq!(status, StatusCode::OK, "GET {path} with {token}: {body}");
            let (status, _, _) = call(&http, Method::HEAD, &url, Some(token), None).await;
            assert_eq!(status, StatusCode::OK, "HEAD {path} with {token}");
        }
        // A commented-out line, a prefix of a token and a wrong token are no tokens.
        for token in ["# reader-three", "reader-three", "reader", "wrong"] {
            let (status, _, _) = call(&http, Method::GET, &url, Some(token), None).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "GET {path} with {token:?}"
            );
        }
    }
    for (method, path, body) in writes {
        let url = format!("{api}{path}");
        for token in ["reader-one", "reader-two"] {
            let (status, content_type, problem) =
                call(&http, method.clone(), &url, Some(token), Some(body.clone())).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {problem}");
            assert_eq!(content_type, "application/problem+json");
            assert_eq!(problem["status"], 403);
            assert_eq!(problem["detail"], "this token may only read", "{problem}");
        }
        let (status, _, _) = call(&http, method.clone(), &url, None, Some(body.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
    }
    // The admin token still does everything.
    for (method, path, body) in writes {
        let url = format!("{api}{path}");
        let (status, _, answer) =
            call(&http, method.clone(), &url, Some(ADMIN), Some(body.clone())).await;
        assert!(
            status.is_success(),
            "{method} {path} as admin: {status} {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_tokens_read_and_are_refused_writes_on_global() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let dir = Dir::new("read-tokens-global");
    let token_file = dir.path("read-tokens");
    std::fs::write(&token_file, READ_TOKEN_FILE).unwrap();
    let global = MeridianProcess::global_cp(
        &database.url,
        &[
            "--admin-token",
            ADMIN,
            "--reads-need-token",
            "--read-token-file",
            &token_file,
        ],
    )
    .await;
    let policy = json!({"type": "MeshTimeout", "name": "t1", "mesh": "default",
        "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1h"}}]}});
    check_read_only_tokens(
        &global.api_url,
        &["/meshes", "/meshes/default", "/zones", "/zones+insights"],
        &[
            (
                Method::PUT,
                "/meshes/default/meshtimeouts/t1",
                policy.clone(),
            ),
            (
                Method::POST,
                "/tokens/zone",
                json!({"zone": "zone-a", "validFor": "1h"}),
            ),
            (Method::DELETE, "/meshes/default/meshtimeouts/t1", json!({})),
        ],
    )
    .await;
    // The token operations are refused to readers too (not performed: the key stays).
    let http = reqwest::Client::new();
    for path in ["/tokens/zone/revoke", "/tokens/zone/rotate-key"] {
        let (status, _, problem) = call(
            &http,
            Method::POST,
            &format!("{}{path}", global.api_url),
            Some("reader-one"),
            Some(json!({"id": "0".repeat(32)})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {problem}");
    }
    // Health, metrics and the API document stay open.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let (status, _, _) = call(
            &http,
            Method::GET,
            &format!("{}{path}", global.api_url),
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_tokens_read_and_are_refused_writes_on_a_zone() {
    meridian_tests::init();
    let dir = Dir::new("read-tokens-zone");
    let token_file = dir.path("read-tokens");
    std::fs::write(&token_file, READ_TOKEN_FILE).unwrap();
    let data_dir = dir.path("zone");
    let zone = MeridianProcess::start(&[
        "zone-cp",
        "--zone",
        "zone-r",
        "--api-addr",
        "127.0.0.1:0",
        "--dp-addr",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
        "--admin-token",
        ADMIN,
        "--reads-need-token",
        "--read-token-file",
        &token_file,
    ])
    .await;
    let ingress = json!({"type": "ZoneIngress", "name": "ingress-1",
        "networking": {"address": "127.0.0.1", "port": 10001}});
    check_read_only_tokens(
        &zone.api_url,
        &["/meshes", "/zones", "/zones/zone-r", "/zoneingresses"],
        &[
            (Method::PUT, "/zoneingresses/ingress-1", ingress),
            (Method::DELETE, "/zoneingresses/ingress-1", json!({})),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_token_is_never_an_api_token() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let config = GlobalCpConfig {
        api_addr: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(ADMIN.to_owned()),
        reads_need_token: true,
        ..GlobalCpConfig::default()
    };
    let global = GlobalCp::start(config, Arc::new(database.store().await))
        .await
        .unwrap();
    let api = format!("http://{}", global.api_addr());
    let http = reqwest::Client::new();
    let (status, _, issued) = call(
        &http,
        Method::POST,
        &format!("{api}/tokens/zone"),
        Some(ADMIN),
        Some(json!({"zone": "zone-a"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let zone_token = issued["token"].as_str().unwrap();
    assert!(zone_token.starts_with("mrdz_"));
    let attempts = [
        (Method::GET, "/meshes", None),
        (
            Method::PUT,
            "/meshes/x",
            Some(json!({"type": "Mesh", "name": "x"})),
        ),
        (Method::DELETE, "/meshes/default", None),
        (
            Method::POST,
            "/tokens/zone",
            Some(json!({"zone": "zone-b"})),
        ),
        (Method::POST, "/tokens/zone/rotate-key", None),
    ];
    for (method, path, body) in attempts {
        let (status, _, problem) = call(
            &http,
            method.clone(),
            &format!("{api}{path}"),
            Some(zone_token),
            body,
        )
        .await;
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
            "{method} {path} with a zone token: {status} {problem}"
        );
    }
    let (status, _, _) = call(
        &http,
        Method::GET,
        &format!("{api}/meshes/default"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the default mesh was not deleted");
    global.shutdown().await.unwrap();
}

/// Every REST path a Secret could hide behind, for `mesh` and secret `name`.
fn secret_probe_paths(mesh: &str, names: &[String]) -> Vec<String> {
    let mut paths = vec![
        "/".to_owned(),
        "/meshes".to_owned(),
        format!("/meshes/{mesh}"),
        "/zones".to_owned(),
        "/zones+insights".to_owned(),
        "/openapi.json".to_owned(),
        "/secrets".to_owned(),
        format!("/meshes/{mesh}/secrets"),
        format!("/meshes/{mesh}/secrets?size=1000"),
        format!("/meshes/{mesh}/Secrets"),
        format!("/meshes/{mesh}/SECRETS"),
        format!("/meshes/{mesh}/secret"),
        format!("/meshes/{mesh}/Secret"),
        format!("/meshes/{mesh}/%73ecrets"),
        format!("/meshes/{mesh}/secrets/"),
    ];
    for kind in ResourceKind::ALL {
        let plural = kind.plural();
        if kind == ResourceKind::Mesh {
            continue;
        }
        if kind.is_mesh_scoped() {
            paths.push(format!("/meshes/{mesh}/{plural}?size=1000"));
        } else {
            paths.push(format!("/{plural}?size=1000"));
        }
    }
    for name in names {
        paths.push(format!("/secrets/{name}"));
        paths.push(format!("/meshes/{mesh}/secrets/{name}"));
        paths.push(format!("/meshes/{mesh}/Secret/{name}"));
        paths.push(format!("/meshes/{mesh}/%73ecrets/{name}"));
        paths.push(format!("/meshes/{mesh}/secrets/{name}/"));
        for kind in ResourceKind::ALL {
            if kind.is_mesh_scoped() {
                paths.push(format!("/meshes/{mesh}/{}/{name}", kind.plural()));
            }
        }
    }
    paths
}

/// Requests every probe path on `api`, with no token and with the admin token, and
/// checks no answer carries a Secret: its name, its data, or a PEM private key.
/// Paths that name the secrets kind must answer 404.
async fn assert_no_secret_served(api: &str, mesh: &str, secrets: &[(String, String)]) {
    let http = reqwest::Client::new();
    let names: Vec<String> = secrets.iter().map(|(n, _)| n.clone()).collect();
    let paths = secret_probe_paths(mesh, &names);
    for path in &paths {
        for token in [None, Some(ADMIN)] {
            let response = http
                .get(format!("{api}{path}"))
                .headers(
                    token
                        .map(|t| {
                            let mut h = reqwest::header::HeaderMap::new();
                            h.insert("authorization", format!("Bearer {t}").parse().unwrap());
                            h
                        })
                        .unwrap_or_default(),
                )
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            for (name, data) in secrets {
                // A 404 may echo the name asked for; any other answer naming a
                // secret would be listing or serving it.
                assert!(
                    status == StatusCode::NOT_FOUND || !body.contains(name.as_str()),
                    "GET {path} named {name}: {body}"
                );
                assert!(
                    !body.contains(&data[..40]),
                    "GET {path} served the data of {name}"
                );
            }
            assert!(
                !body.contains("PRIVATE KEY"),
                "GET {path} served a private key"
            );
            let lower = path.to_ascii_lowercase();
            if lower.contains("/secret") || lower.contains("/%73ecret") {
                assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}: {body}");
            }
        }
    }
}

async fn mesh_secrets(store: &dyn Store, mesh: &str) -> Vec<meridian_store::StoredResource> {
    list_all(store, ListQuery::all(ResourceKind::Secret))
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.key.mesh == mesh)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_never_served_by_global_or_a_zone() {
    meridian_tests::init();
    let global_db = TestDatabase::create().await;
    let global_store: Arc<dyn Store> = Arc::new(global_db.store().await);
    let config = GlobalCpConfig {
        api_addr: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(ADMIN.to_owned()),
        ..GlobalCpConfig::default()
    };
    let global = GlobalCp::start(config, global_store.clone()).await.unwrap();
    let api = format!("http://{}", global.api_addr());
    let http = reqwest::Client::new();
    let mesh = json!({"type": "Mesh", "name": "default",
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}});
    let (status, _, body) = call(
        &http,
        Method::PUT,
        &format!("{api}/meshes/default"),
        Some(ADMIN),
        Some(mesh),
    )
    .await;
    assert!(status.is_success(), "{body}");
    // Global generates the mesh CA: a certificate and a private key, as Secrets.
    let secrets = eventually("the mesh CA secrets exist", DEADLINE, || async {
        let secrets = mesh_secrets(global_store.as_ref(), "default").await;
        (secrets.len() == 2).then_some(secrets)
    })
    .await;
    let named: Vec<(String, String)> = secrets
        .iter()
        .map(|s| {
            (
                s.key.name.clone(),
                s.spec.to_value()["data"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&ca_key_secret_name("ca-1").as_str()));
    assert!(names.contains(&ca_cert_secret_name("ca-1").as_str()));
    assert_no_secret_served(&api, "default", &named).await;

    // A zone holds the same Secrets (KDS carries them to sign its proxies'
    // certificates): written here as KDS would write them.
    let zone_db = TestDatabase::create().await;
    let zone_store: Arc<dyn Store> = Arc::new(zone_db.store().await);
    let mesh = global_store
        .get(&ResourceKey::global(ResourceKind::Mesh, "default"))
        .await
        .unwrap()
        .unwrap();
    for resource in std::iter::once(mesh).chain(secrets) {
        zone_store
            .put(
                NewResource {
                    key: resource.key,
                    labels: resource.labels,
                    spec: resource.spec,
                    zone: None,
                },
                Precondition::Any,
            )
            .await
            .unwrap();
    }
    let zone = ZoneCp::start(
        ZoneCpConfig {
            api_addr: "127.0.0.1:0".parse().unwrap(),
            admin_token: Some(ADMIN.to_owned()),
            dp_addr: None,
            ..ZoneCpConfig::new("zone-s")
        },
        zone_store.clone(),
    )
    .await
    .unwrap();
    assert_eq!(mesh_secrets(zone_store.as_ref(), "default").await.len(), 2);
    assert_no_secret_served(&format!("http://{}", zone.api_addr()), "default", &named).await;
    zone.shutdown().await.unwrap();
    global.shutdown().await.unwrap();
}

/// Issues a zone token on `api`; answers the token and its id.
async fn issue(http: &reqwest::Client, api: &str, zone: &str) -> (String, String) {
    let (status, _, issued) = call(
        http,
        Method::POST,
        &format!("{api}/tokens/zone"),
        Some(ADMIN),
        Some(json!({"zone": zone, "validFor": "1h"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!(issued["zone"], zone);
    assert!(issued["expiresAt"].is_string(), "{issued}");
    let id = issued["id"].as_str().unwrap().to_owned();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{issued}"
    );
    (issued["token"].as_str().unwrap().to_owned(), id)
}

/// Opens a global→zone stream as `zone` with `token`; answers how global answered.
async fn subscribe(kds_url: &str, ca: &str, zone: &str, token: &str) -> Result<(), tonic::Status> {
    let channel = meridian_tests::kds_client::channel(kds_url, &std::fs::read(ca).unwrap()).await;
    let subscribe = ZoneToGlobalAck {
        kind: Some(zone_to_global_ack::Kind::Subscribe(kds::Subscribe {
            since_revision: 0,
        })),
    };
    let mut request = tonic::Request::new(tokio_stream::iter(vec![subscribe]));
    meridian_tests::kds_client::as_zone(&mut request, zone, Some(token));
    KdsClient::new(channel)
        .global_to_zone(request)
        .await
        .map(|_| ())
}

async fn metric(http: &reqwest::Client, api: &str, series: &str) -> Option<f64> {
    meridian_tests::scrape::metric(http, api, series).await
}

fn online_series(zone: &str) -> String {
    format!("meridian_kds_zone_online{{zone=\"{zone}\"}}")
}

async fn insight(http: &reqwest::Client, api: &str, zone: &str) -> Option<Value> {
    let response = http
        .get(format!("{api}/zones/{zone}/insight"))
        .send()
        .await
        .ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    response.json().await.ok()
}

/// Waits until `zone` (its process' API at `zone_api`) is connected to the global
/// replica `global` (as both of them report it).
async fn wait_connected(
    http: &reqwest::Client,
    global: &GlobalReplica,
    zone_api: &str,
    zone: &str,
) {
    let series = online_series(zone);
    eventually(&format!("{zone} connected"), DEADLINE, || async {
        let on_global = metric(http, &global.api, &series).await? == 1.0;
        let on_zone = metric(http, zone_api, "meridian_kds_connected").await? == 1.0;
        (on_global && on_zone).then_some(())
    })
    .await;
}

/// Waits until `zone`'s stream ended, as both ends report it; answers when each end
/// first showed it, measured from `since`.
async fn wait_disconnected(
    http: &reqwest::Client,
    global: &GlobalReplica,
    zone_api: &str,
    zone: &str,
    since: Instant,
) -> (Duration, Duration) {
    let series = &online_series(zone);
    let seen = &std::sync::Mutex::new((None, None));
    eventually(
        &format!("{zone}'s stream ended"),
        DEADLINE,
        move || async move {
            let global_down = metric(http, &global.api, series).await == Some(0.0);
            let zone_down = metric(http, zone_api, "meridian_kds_connected").await == Some(0.0);
            let mut seen = seen.lock().unwrap();
            if global_down && seen.0.is_none() {
                seen.0 = Some(since.elapsed());
            }
            if zone_down && seen.1.is_none() {
                seen.1 = Some(since.elapsed());
            }
            seen.0.zip(seen.1)
        },
    )
    .await
}

fn refused_series(reason: &str) -> String {
    format!("meridian_kds_zone_refused_total{{reason=\"{reason}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_zone_token_ends_its_stream_on_every_replica_and_is_refused() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let dir = Dir::new("revoke");
    let http = reqwest::Client::new();
    // Two global replicas on one database. The operator talks to g1; the zones are
    // connected to g2, which must learn of the revocation through the store.
    let g1 = GlobalReplica::start(&database.url, &dir, "g1", None).await;
    let g2 = GlobalReplica::start(&database.url, &dir, "g2", Some(&g1)).await;
    let ca = g1.kds_ca();
    let (token_a, id_a) = issue(&http, &g1.api, "zone-a").await;
    let (token_b, id_b) = issue(&http, &g1.api, "zone-b").await;
    let zone_a = start_zone("zone-a", &[&g2.kds], &ca, &token_a, &dir).await;
    let zone_b = start_zone("zone-b", &[&g2.kds], &ca, &token_b, &dir).await;
    wait_connected(&http, &g2, &zone_a.api_url, "zone-a").await;
    wait_connected(&http, &g2, &zone_b.api_url, "zone-b").await;
    let b_session = eventually("zone-b's insight", DEADLINE, || async {
        let insight = insight(&http, &g1.api, "zone-b").await?;
        (insight["online"] == true).then(|| insight["connectedAt"].clone())
    })
    .await;

    // Revoke zone-a's token through g1. Malformed ids are refused first.
    let revoke_url = format!("{}/tokens/zone/revoke", g1.api);
    for bad in [json!({"id": "not-an-id"}), json!({"token": id_a})] {
        let (status, _, problem) =
            call(&http, Method::POST, &revoke_url, Some(ADMIN), Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    }
    let revoked_at = Instant::now();
    let (status, _, answer) = call(
        &http,
        Method::POST,
        &revoke_url,
        Some(ADMIN),
        Some(json!({"id": id_a})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"id": id_a, "revoked": true}));

    // zone-a's live stream on g2 ends: both ends report it.
    let (global_saw, zone_saw) =
        wait_disconnected(&http, &g2, &zone_a.api_url, "zone-a", revoked_at).await;
    println!(
        "revocation through g1: zone-a's stream on g2 ended {} ms after the revoke answered (global's gauge), {} ms as the zone's gauge shows it",
        global_saw.as_millis(),
        zone_saw.as_millis()
    );
    assert!(
        global_saw < Duration::from_secs(5),
        "the stream outlived the revocation by {global_saw:?}"
    );
    // The zone keeps trying and is refused: g2 counts its refused reconnects.
    eventually("zone-a's reconnects are refused", DEADLINE, || async {
        (metric(&http, &g2.api, &refused_series("revoked")).await? >= 1.0).then_some(())
    })
    .await;
    for replica in [&g1, &g2] {
        let refused = subscribe(&replica.kds, &ca, "zone-a", &token_a)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert_eq!(refused.message(), "zone token revoked");
    }
    // The shared insight says zone-a is offline.
    eventually("zone-a's insight is offline", DEADLINE, || async {
        let insight = insight(&http, &g1.api, "zone-a").await?;
        (insight["online"] == false).then_some(())
    })
    .await;
    assert_eq!(
        metric(&http, &zone_a.api_url, "meridian_kds_connected").await,
        Some(0.0),
        "zone-a stays disconnected"
    );

    // zone-b's token was not touched: same session, still online.
    let insight_b = insight(&http, &g1.api, "zone-b").await.unwrap();
    assert_eq!(insight_b["online"], true, "{insight_b}");
    assert_eq!(
        insight_b["connectedAt"], b_session,
        "zone-b was not reconnected"
    );
    assert_eq!(
        metric(&http, &g2.api, &online_series("zone-b")).await,
        Some(1.0)
    );

    // A new token, written over the token file: zone-a connects again by itself.
    let (new_token, new_id) = issue(&http, &g1.api, "zone-a").await;
    assert_ne!(new_id, id_a);
    let reissued_at = Instant::now();
    std::fs::write(dir.path("zone-a.token"), &new_token).unwrap();
    wait_connected(&http, &g2, &zone_a.api_url, "zone-a").await;
    println!(
        "zone-a reconnected {} ms after its new token was written (reconnect backoff included)",
        reissued_at.elapsed().as_millis()
    );
    eventually("zone-a's insight is online", DEADLINE, || async {
        let insight = insight(&http, &g1.api, "zone-a").await?;
        (insight["online"] == true).then_some(())
    })
    .await;
    // The revoked token stays refused.
    assert_eq!(
        subscribe(&g2.kds, &ca, "zone-a", &token_a)
            .await
            .unwrap_err()
            .code(),
        tonic::Code::Unauthenticated
    );

    // Revoked through the replica the zone is connected to, the stream ends at once
    // (no waiting for the refresh interval).
    let revoked_at = Instant::now();
    let (status, _, answer) = call(
        &http,
        Method::POST,
        &format!("{}/tokens/zone/revoke", g2.api),
        Some(ADMIN),
        Some(json!({"id": id_b})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (global_saw, zone_saw) =
        wait_disconnected(&http, &g2, &zone_b.api_url, "zone-b", revoked_at).await;
    println!(
        "revocation through g2: zone-b's stream on g2 ended {} ms after the revoke answered (global's gauge), {} ms as the zone's gauge shows it",
        global_saw.as_millis(),
        zone_saw.as_millis()
    );
    assert_eq!(
        metric(&http, &g2.api, &online_series("zone-a")).await,
        Some(1.0),
        "zone-a's new token was not touched"
    );
    drop((zone_a, zone_b, g2, g1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_key_refuses_every_old_zone_token_on_every_replica() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let dir = Dir::new("rotate");
    let http = reqwest::Client::new();
    let g1 = GlobalReplica::start(&database.url, &dir, "g1", None).await;
    let g2 = GlobalReplica::start(&database.url, &dir, "g2", Some(&g1)).await;
    let ca = g1.kds_ca();
    let (old_token, _) = issue(&http, &g1.api, "zone-a").await;
    let (unused_old_token, _) = issue(&http, &g2.api, "zone-b").await;
    let zone_a = start_zone("zone-a", &[&g2.kds], &ca, &old_token, &dir).await;
    wait_connected(&http, &g2, &zone_a.api_url, "zone-a").await;
    let store = database.store().await;
    let old_key = store.setting("zone_token_hmac_key").await.unwrap().unwrap();

    // Rotate through g1; zone-a is connected to g2.
    let rotated_at = Instant::now();
    let response = http
        .post(format!("{}/tokens/zone/rotate-key", g1.api))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["rotated"], true, "{answer}");
    let new_key = store.setting("zone_token_hmac_key").await.unwrap().unwrap();
    assert_ne!(new_key, old_key, "the key changed");
    assert!(
        !text.contains(&new_key) && !text.contains(&old_key),
        "the key is never answered"
    );

    let (global_saw, zone_saw) =
        wait_disconnected(&http, &g2, &zone_a.api_url, "zone-a", rotated_at).await;
    println!(
        "key rotation through g1: zone-a's stream on g2 ended {} ms after the rotation answered (global's gauge), {} ms as the zone's gauge shows it",
        global_saw.as_millis(),
        zone_saw.as_millis()
    );
    // Every token signed with the old key is refused by both replicas, including
    // one that was never used.
    for replica in [&g1, &g2] {
        for (zone, token) in [("zone-a", &old_token), ("zone-b", &unused_old_token)] {
            let refused = subscribe(&replica.kds, &ca, zone, token).await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{zone}");
            assert!(
                refused.message().contains("signature is not valid"),
                "{refused:?}"
            );
        }
    }
    eventually("zone-a's reconnects are refused", DEADLINE, || async {
        (metric(&http, &g2.api, &refused_series("bad_signature")).await? >= 1.0).then_some(())
    })
    .await;

    // A token issued after the rotation (by either replica) works on both.
    let (new_token, _) = issue(&http, &g1.api, "zone-a").await;
    let (new_token_b, _) = issue(&http, &g2.api, "zone-b").await;
    for replica in [&g1, &g2] {
        subscribe(&replica.kds, &ca, "zone-b", &new_token_b)
            .await
            .unwrap();
    }
    std::fs::write(dir.path("zone-a.token"), &new_token).unwrap();
    wait_connected(&http, &g2, &zone_a.api_url, "zone-a").await;
    drop((zone_a, g2, g1));
}
