//! The zone CP's data-plane config stream over real gRPC, with a real store:
//! registration, config pushes on policy changes, certificates from the mesh
//! CA, ingress summaries, deregistration on disconnect, refused registrations.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use meridian_identity::{DEFAULT_CA_VALIDITY, MeshCa};
use meridian_model::{ResourceKind, SecretSpec, Spec, ca_cert_secret_name, ca_key_secret_name};
use meridian_proto::dp::dataplane_config_client::DataplaneConfigClient;
use meridian_proto::dp::{Hello, ProxyKind, ProxyMessage, proxy_message};
use meridian_proxy_api::{ClientSettings, ProxyClient, ProxyConfig, Registration};
use meridian_store::{NewResource, Precondition, ResourceKey, Store};
use meridian_tests::eventually;
use meridian_tests::postgres::TestDatabase;
use meridian_zone_cp::{ZoneCp, ZoneCpConfig};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

async fn put(store: &dyn Store, kind: ResourceKind, mesh: &str, name: &str, spec: Value) {
    let spec = meridian_model::SpecBody::parse(kind, spec).unwrap();
    store
        .put(
            NewResource {
                key: ResourceKey {
                    kind,
                    mesh: mesh.into(),
                    name: name.into(),
                },
                labels: Default::default(),
                spec,
                zone: None,
            },
            Precondition::Any,
        )
        .await
        .unwrap();
}

/// A zone store as KDS would leave it: an mTLS mesh and its CA secrets.
/// A fresh database, its store, and a zone CP on it (the common start of these
/// tests; the database lives as long as the first element).
async fn started() -> (TestDatabase, Arc<dyn Store>, ZoneCp) {
    meridian_tests::init();
    let db = TestDatabase::create().await;
    let store: Arc<dyn Store> = Arc::new(db.store().await);
    let zone = zone(store.clone()).await;
    (db, store, zone)
}

async fn zone(store: Arc<dyn Store>) -> ZoneCp {
    zone_with_tls(store, None).await
}

async fn zone_with_tls(
    store: Arc<dyn Store>,
    dp_tls: Option<meridian_identity::serving::ServingIdentity>,
) -> ZoneCp {
    put(
        store.as_ref(),
        ResourceKind::Mesh,
        "",
        "default",
        json!({"mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}),
    )
    .await;
    let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY)
        .unwrap()
        .to_pem();
    for (name, pem) in [
        (ca_cert_secret_name("ca-1"), &ca.cert_pem),
        (ca_key_secret_name("ca-1"), &ca.key_pem),
    ] {
        let spec = Spec::Secret(SecretSpec::from_bytes(pem.as_bytes())).to_value();
        put(store.as_ref(), ResourceKind::Secret, "default", &name, spec).await;
    }
    let config = ZoneCpConfig {
        api_addr: "127.0.0.1:0".parse().unwrap(),
        dp_addr: Some("127.0.0.1:0".parse().unwrap()),
        admin_token: Some("admin".into()),
        dp_tls,
        ..ZoneCpConfig::new("east")
    };
    ZoneCp::start(config, store).await.unwrap()
}

fn sidecar(name: &str, service: &str, port: u16, outbound: Option<&str>) -> Registration {
    let mut doc = json!({"type": "Dataplane", "mesh": "default", "name": name,
        "networking": {"address": "127.0.0.1", "inbound": [{"port": port, "servicePort": 9000,
            "tags": {"kuma.io/service": service}}]}});
    if let Some(target) = outbound {
        doc["networking"]["outbound"] =
            json!([{"port": 15001, "tags": {"kuma.io/service": target}}]);
    }
    Registration {
        kind: ProxyKind::Sidecar,
        mesh: "default".into(),
        name: name.into(),
        resource: doc,
    }
}

fn client(zone: &ZoneCp, registration: Registration) -> ProxyClient {
    ProxyClient::spawn(ClientSettings {
        zone_cp: format!("http://{}", zone.dp_addr().unwrap()),
        zone_cp_ca_pem: None,
        registration,
    })
    .unwrap()
}

async fn config_where(
    client: &ProxyClient,
    what: &str,
    check: impl Fn(&ProxyConfig) -> bool,
) -> Arc<ProxyConfig> {
    let mut rx = client.config();
    let found = tokio::time::timeout(WAIT, rx.wait_for(|c| c.as_deref().is_some_and(&check))).await;
    let found = found
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"))
        .unwrap();
    found.clone().unwrap()
}

#[tokio::test]
async fn proxies_register_get_configs_and_certificates_and_leave() {
    let (_db, store, zone) = started().await;

    let backend = client(&zone, sidecar("backend-1", "backend", 20001, None));
    let config = config_where(&backend, "backend's config", |c| {
        matches!(c, ProxyConfig::Sidecar(_))
    })
    .await;
    let ProxyConfig::Sidecar(s) = &*config else {
        unreachable!()
    };
    assert!(s.mtls);
    assert_eq!(s.inbounds[0].listen, "127.0.0.1:20001".parse().unwrap());
    assert_eq!(s.inbounds[0].app, "127.0.0.1:9000".parse().unwrap());
    let mut identity = backend.identity();
    let id = tokio::time::timeout(WAIT, identity.wait_for(Option::is_some))
        .await
        .unwrap()
        .unwrap();
    let id = id.as_ref().unwrap();
    assert_eq!(id.cert.id.to_uri(), "spiffe://default/backend");
    assert!(id.cert.cert_chain_pem.contains("BEGIN CERTIFICATE"));

    let dp_key = ResourceKey::in_mesh(ResourceKind::Dataplane, "default", "backend-1");
    let stored = store.get(&dp_key).await.unwrap().expect("registered");
    assert_eq!(stored.zone.as_deref(), Some("east"));
    // Config applied and certificate held: its inbound is an endpoint now.
    eventually("backend's inbound ready", WAIT, || async {
        let stored = store.get(&dp_key).await.unwrap()?;
        (stored.spec.to_value()["networking"]["inbound"][0]["health"]["ready"] == true)
            .then_some(())
    })
    .await;

    // A frontend sees backend's inbound as its endpoint.
    let frontend = client(&zone, sidecar("web-1", "web", 20002, Some("backend")));
    let config = config_where(&frontend, "frontend's endpoint", |c| match c {
        ProxyConfig::Sidecar(s) => s
            .outbounds
            .first()
            .is_some_and(|o| o.backends[0].endpoints.len() == 1),
        _ => false,
    })
    .await;
    let ProxyConfig::Sidecar(s) = &*config else {
        unreachable!()
    };
    assert_eq!(
        s.outbounds[0].backends[0].endpoints[0].address,
        "127.0.0.1:20001".parse().unwrap()
    );

    // A policy change pushes a new config: a redirect to another service.
    put(store.as_ref(), ResourceKind::MeshTcpRoute, "default", "redirect", json!({
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                "rules": [{"default": {"backendRefs": [{"kind": "MeshService", "name": "backend-v2"}]}}]}]}))
    .await;
    config_where(&frontend, "the redirect", |c| match c {
        ProxyConfig::Sidecar(s) => s
            .outbounds
            .first()
            .is_some_and(|o| o.backends[0].service == "backend-v2"),
        _ => false,
    })
    .await;

    // The ingress routes backend's SNI to it and advertises one instance.
    let ingress = client(
        &zone,
        Registration {
            kind: ProxyKind::Ingress,
            mesh: String::new(),
            name: "ingress".into(),
            resource: json!({"type": "ZoneIngress", "name": "ingress",
            "networking": {"address": "127.0.0.1", "port": 10001, "advertisedAddress": "127.0.0.1", "advertisedPort": 10001}}),
        },
    );
    let backend_sni = meridian_sni::SniTarget::new("default", "backend").to_sni();
    config_where(&ingress, "ingress route to backend", |c| match c {
        ProxyConfig::Ingress(z) => z
            .routes
            .iter()
            .any(|r| r.sni == backend_sni && r.endpoints.len() == 1),
        _ => false,
    })
    .await;
    let ingress_key = ResourceKey::global(ResourceKind::ZoneIngress, "ingress");
    eventually("availableServices in the stored ingress", WAIT, || async {
        let stored = store.get(&ingress_key).await.unwrap()?;
        let services = stored
            .spec
            .to_value()
            .get("availableServices")?
            .as_array()?
            .clone();
        services
            .iter()
            .any(|s| s["tags"]["kuma.io/service"] == "backend" && s["instances"] == 1)
            .then_some(())
    })
    .await;

    // Backend leaves: deregistered, and the ingress stops routing to it.
    backend.shutdown().await;
    eventually("backend deregistered", WAIT, || async {
        store.get(&dp_key).await.unwrap().is_none().then_some(())
    })
    .await;
    config_where(&ingress, "ingress without backend", |c| match c {
        ProxyConfig::Ingress(z) => !z.routes.iter().any(|r| r.sni == backend_sni),
        _ => false,
    })
    .await;

    frontend.shutdown().await;
    ingress.shutdown().await;
    zone.shutdown().await.unwrap();
}

/// Opens a stream with `hello`; the returned sender keeps it open.
async fn raw_hello(
    zone: &ZoneCp,
    hello: Hello,
) -> Result<
    (
        tonic::Streaming<meridian_proto::dp::ControlMessage>,
        tokio::sync::mpsc::Sender<ProxyMessage>,
    ),
    tonic::Status,
> {
    let mut client = DataplaneConfigClient::connect(format!("http://{}", zone.dp_addr().unwrap()))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(ProxyMessage {
        message: Some(proxy_message::Message::Hello(hello)),
    })
    .await
    .unwrap();
    let stream = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?;
    Ok((stream.into_inner(), tx))
}

#[tokio::test]
async fn bad_registrations_are_refused_with_the_reason() {
    let (_db, store, zone) = started().await;

    let hello = |kind: ProxyKind, name: &str, resource: Value| Hello {
        kind: kind as i32,
        mesh: "default".into(),
        name: name.into(),
        resource: serde_json::to_vec(&resource).unwrap(),
        version: "test".into(),
        features: vec![],
    };
    let dp = sidecar("a", "svc", 20010, None).resource;
    let cases = [
        (
            hello(ProxyKind::Ingress, "a", dp.clone()),
            tonic::Code::InvalidArgument,
            "registers a ZoneIngress",
        ),
        (
            hello(ProxyKind::Sidecar, "b", dp.clone()),
            tonic::Code::InvalidArgument,
            "differs from the resource's name",
        ),
        (
            hello(ProxyKind::Unspecified, "a", dp.clone()),
            tonic::Code::InvalidArgument,
            "Hello.kind",
        ),
        (
            Hello {
                resource: b"{not json".to_vec(),
                ..hello(ProxyKind::Sidecar, "a", dp.clone())
            },
            tonic::Code::InvalidArgument,
            "not JSON",
        ),
        (
            hello(
                ProxyKind::Sidecar,
                "a",
                json!({"type": "Dataplane", "mesh": "default", "name": "a",
                "networking": {"address": "127.0.0.1", "inbound": [{"port": 70000, "tags": {"kuma.io/service": "svc"}}]}}),
            ),
            tonic::Code::InvalidArgument,
            "inbound[0].port",
        ),
    ];
    for (hello, code, detail) in cases {
        let Err(status) = raw_hello(&zone, hello).await else {
            panic!("{detail:?}: registration accepted");
        };
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().contains(detail),
            "{detail:?} not in {:?}",
            status.message()
        );
    }

    // One live stream per proxy name.
    let first = raw_hello(&zone, hello(ProxyKind::Sidecar, "a", dp.clone()))
        .await
        .unwrap();
    // Registered, but it never ACKed a config nor got a certificate: no endpoint.
    let stored = store
        .get(&ResourceKey::in_mesh(
            ResourceKind::Dataplane,
            "default",
            "a",
        ))
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(
        stored.spec.to_value()["networking"]["inbound"][0]["health"]["ready"],
        false
    );
    let Err(second) = raw_hello(&zone, hello(ProxyKind::Sidecar, "a", dp)).await else {
        panic!("a second stream for the same proxy was accepted");
    };
    assert_eq!(second.code(), tonic::Code::AlreadyExists, "{second:?}");
    drop(first);
    zone.shutdown().await.unwrap();
}

/// Kuma 2.x `Dataplane` targetRefs select sidecars by the name and the labels they
/// registered with (the document's labels are kept beside the zone CP's own).
#[tokio::test]
async fn dataplane_targetrefs_select_by_registered_name_and_labels() {
    let (_db, store, zone) = started().await;
    let labelled = |name: &str, team: &str, port: u16| {
        let mut registration = sidecar(name, "svc", port, Some("backend"));
        registration.resource["labels"] = json!({"team": team});
        registration
    };
    let a = client(&zone, labelled("a", "a", 20031));
    let b = client(&zone, labelled("b", "b", 20032));
    let timeout = |top: Value, default: Value| json!({"targetRef": top, "to": [{"targetRef": {"kind": "Mesh"}, "default": default}]});
    put(
        store.as_ref(),
        ResourceKind::MeshTimeout,
        "default",
        "team-a",
        timeout(
            json!({"kind": "Dataplane", "labels": {"team": "a"}}),
            json!({"idleTimeout": "7s"}),
        ),
    )
    .await;
    put(
        store.as_ref(),
        ResourceKind::MeshTimeout,
        "default",
        "proxy-b",
        timeout(
            json!({"kind": "Dataplane", "name": "b"}),
            json!({"connectionTimeout": "3s"}),
        ),
    )
    .await;
    let outbound_timeout = |config: &ProxyConfig| match config {
        ProxyConfig::Sidecar(s) => s
            .outbounds
            .first()
            .and_then(|o| o.timeout.as_ref())
            .map(|t| serde_json::to_value(t).unwrap()),
        _ => None,
    };
    config_where(&a, "team a's timeout on a", |c| {
        outbound_timeout(c) == Some(json!({"idleTimeout": "7s"}))
    })
    .await;
    // b got the later policy, so the earlier one was computed for it too: it has
    // only its own (the label policy did not select it).
    config_where(&b, "b's own timeout and nothing else", |c| {
        outbound_timeout(c) == Some(json!({"connectionTimeout": "3s"}))
    })
    .await;
    let stored = store
        .get(&ResourceKey::in_mesh(
            ResourceKind::Dataplane,
            "default",
            "a",
        ))
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(stored.labels.get("team").map(String::as_str), Some("a"));
    assert_eq!(
        stored.labels.get("kuma.io/zone").map(String::as_str),
        Some("east")
    );
    drop((a, b));
    zone.shutdown().await.unwrap();
}

/// The mesh's `constraints.dataplaneProxy`, as Kuma's membership check: every
/// inbound must match a requirement (`*`: any value) and no restriction.
#[tokio::test]
async fn mesh_constraints_decide_who_may_register() {
    let (_db, store, zone) = started().await;
    let mut mesh = store
        .get(&ResourceKey::global(ResourceKind::Mesh, "default"))
        .await
        .unwrap()
        .expect("the mesh")
        .spec
        .to_value();
    mesh["constraints"] = json!({"dataplaneProxy": {
        "requirements": [{"tags": {"team": "*"}}],
        "restrictions": [{"tags": {"version": "v0"}}]}});
    put(store.as_ref(), ResourceKind::Mesh, "", "default", mesh).await;

    let hello = |name: &str, tags: Value| Hello {
        kind: ProxyKind::Sidecar as i32,
        mesh: "default".into(),
        name: name.into(),
        resource: serde_json::to_vec(
            &json!({"type": "Dataplane", "mesh": "default", "name": name,
            "networking": {"address": "127.0.0.1", "inbound": [{"port": 20020, "tags": tags}]}}),
        )
        .unwrap(),
        version: "test".into(),
        features: vec![],
    };
    for (name, tags, detail) in [
        (
            "no-team",
            json!({"kuma.io/service": "svc"}),
            "do not fulfill any requirement",
        ),
        (
            "restricted",
            json!({"kuma.io/service": "svc", "team": "a", "version": "v0"}),
            "match restricted tags {\"version\": \"v0\"}",
        ),
    ] {
        let Err(status) = raw_hello(&zone, hello(name, tags)).await else {
            panic!("{name}: registration accepted");
        };
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
        assert!(
            status.message().contains(detail),
            "{detail:?} not in {:?}",
            status.message()
        );
        let key = ResourceKey::in_mesh(ResourceKind::Dataplane, "default", name);
        assert!(
            store.get(&key).await.unwrap().is_none(),
            "{name} was stored"
        );
    }
    let admitted = raw_hello(
        &zone,
        hello(
            "admitted",
            json!({"kuma.io/service": "svc", "team": "a", "version": "v1"}),
        ),
    )
    .await;
    assert!(admitted.is_ok(), "{:?}", admitted.err());
    zone.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_stream_over_tls_with_a_generated_certificate() {
    meridian_tests::init();
    let db = TestDatabase::create().await;
    let store: Arc<dyn Store> = Arc::new(db.store().await);
    let dir = meridian_tests::scratch::Dir::new("dp-tls");
    let identity = meridian_identity::serving::load_or_generate(
        None,
        None,
        std::path::Path::new(&dir.path("tls")),
        "dp",
        "test zone data-plane server",
        &[],
    )
    .unwrap();
    let ca = std::fs::read_to_string(identity.generated_ca.as_ref().unwrap()).unwrap();
    let zone = zone_with_tls(store, Some(identity)).await;
    let client = ProxyClient::spawn(ClientSettings {
        zone_cp: format!("https://{}", zone.dp_addr().unwrap()),
        zone_cp_ca_pem: Some(ca),
        registration: sidecar("tls-1", "backend", 20020, None),
    })
    .unwrap();
    config_where(&client, "a config over TLS", |c| {
        matches!(c, ProxyConfig::Sidecar(_))
    })
    .await;
    client.shutdown().await;
    zone.shutdown().await.unwrap();
}

/// Waits until the zone CP's reconciler has applied everything in `store`.
async fn processed(zone: &ZoneCp, store: &dyn Store) {
    let target = store.current_revision().await.unwrap();
    let mut applied = zone.dp_stats().unwrap().revision();
    tokio::time::timeout(WAIT, applied.wait_for(|r| *r >= target))
        .await
        .unwrap_or_else(|_| panic!("the reconciler did not reach revision {target}"))
        .unwrap();
}

#[tokio::test]
async fn unrelated_changes_compute_nothing_and_endpoints_travel_alone() {
    use meridian_zone_cp::dp::{Part, Reason};
    let (_db, store, zone) = started().await;
    let stats = zone.dp_stats().unwrap();

    let backend = client(&zone, sidecar("backend-1", "backend", 20101, None));
    let web = client(&zone, sidecar("web-1", "web", 20102, Some("backend")));
    let db_proxy = client(&zone, sidecar("db-1", "db", 20103, None));
    config_where(&web, "web reaches backend-1", |c| match c {
        ProxyConfig::Sidecar(s) => s.outbounds[0].backends[0].endpoints.len() == 1,
        _ => false,
    })
    .await;
    for (proxy, name) in [(&backend, "backend"), (&db_proxy, "db")] {
        config_where(proxy, name, |c| matches!(c, ProxyConfig::Sidecar(_))).await;
    }
    // Every sidecar is ready (an endpoint) before counting starts.
    for name in ["backend-1", "web-1", "db-1"] {
        let key = ResourceKey::in_mesh(ResourceKind::Dataplane, "default", name);
        eventually("sidecar ready", WAIT, || async {
            let stored = store.get(&key).await.unwrap()?;
            (stored.spec.to_value()["networking"]["inbound"][0]["health"]["ready"] == true)
                .then_some(())
        })
        .await;
    }
    processed(&zone, store.as_ref()).await;
    let (computed, configs, endpoints) = (
        stats.total_computations(),
        stats.pushes(Part::Config),
        stats.pushes(Part::Endpoints),
    );

    // A timeout for the clients of a service nobody calls, and a secret.
    put(store.as_ref(), ResourceKind::MeshTimeout, "default", "db-clients", json!({
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "MeshService", "name": "db"}, "default": {"idleTimeout": "5s"}}]}))
    .await;
    let secret = Spec::Secret(SecretSpec::from_bytes(b"unrelated")).to_value();
    put(
        store.as_ref(),
        ResourceKind::Secret,
        "default",
        "other",
        secret,
    )
    .await;
    processed(&zone, store.as_ref()).await;
    assert_eq!(stats.total_computations(), computed, "nothing recomputed");
    assert_eq!(stats.pushes(Part::Config), configs, "no config pushed");
    assert_eq!(stats.pushes(Part::Endpoints), endpoints);

    // A second backend instance: web (its only client) gets an endpoint
    // update, nobody else gets anything but the newcomer its own config.
    let backend2 = client(&zone, sidecar("backend-2", "backend", 20104, None));
    config_where(&web, "web reaches backend-2 too", |c| match c {
        ProxyConfig::Sidecar(s) => s.outbounds[0].backends[0].endpoints.len() == 2,
        _ => false,
    })
    .await;
    processed(&zone, store.as_ref()).await;
    assert_eq!(
        stats.pushes(Part::Config),
        configs + 1,
        "only backend-2's own config"
    );
    assert_eq!(
        stats.pushes(Part::Endpoints),
        endpoints + 1,
        "one endpoint update, to web"
    );
    assert_eq!(stats.computations(Reason::Policy), 0);
    drop(backend2);
}

/// The first config a raw stream receives, as its messages arrived: whether it
/// came in fragments, and the config.
async fn first_config(
    stream: &mut tonic::Streaming<meridian_proto::dp::ControlMessage>,
) -> (usize, ProxyConfig) {
    use meridian_proto::dp::control_message::Message as FromCp;
    use meridian_proto::fragment::{Reassembler, SIZE};
    let mut reassembler = Reassembler::default();
    let mut fragments = 0;
    loop {
        let message = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("a message in time")
            .unwrap()
            .expect("the stream stays open");
        if let Some(FromCp::Fragment(fragment)) = &message.message {
            assert!(fragment.data.len() <= SIZE);
            fragments += 1;
        }
        if let Some(whole) = reassembler.push(message).unwrap()
            && let Some(FromCp::Config(config)) = whole.message
        {
            return (fragments, serde_json::from_slice(&config.config).unwrap());
        }
    }
}

#[tokio::test]
async fn large_configs_travel_in_fragments_to_proxies_that_reassemble_them() {
    use meridian_proto::fragment::{FEATURE, SIZE};
    let (_db, store, zone) = started().await;

    // 300 ready backend instances: the config of one of their clients is
    // several fragments long.
    const BACKENDS: usize = 300;
    let ops = (0..BACKENDS)
        .map(|i| {
            let spec = json!({"networking": {"address": format!("10.0.{}.{}", i / 250, i % 250 + 1),
                "inbound": [{"port": 8080, "health": {"ready": true},
                    "tags": {"kuma.io/service": "backend", "version": "v1", "instance": format!("backend-{i}")}}]}});
            meridian_store::WriteOp::Put(
                NewResource {
                    key: ResourceKey::in_mesh(
                        ResourceKind::Dataplane,
                        "default",
                        format!("backend-{i}"),
                    ),
                    labels: Default::default(),
                    spec: meridian_model::SpecBody::parse(ResourceKind::Dataplane, spec).unwrap(),
                    zone: Some("east".into()),
                },
                Precondition::Any,
            )
        })
        .collect();
    store.apply(ops).await.unwrap();
    let has_all = |c: &ProxyConfig| match c {
        ProxyConfig::Sidecar(s) => s
            .outbounds
            .first()
            .is_some_and(|o| o.backends[0].endpoints.len() == BACKENDS),
        _ => false,
    };

    // The product's client negotiates fragments and puts the config together.
    let web = client(&zone, sidecar("web-1", "web", 20201, Some("backend")));
    let config = config_where(&web, "web reaches every backend", has_all).await;
    let size = serde_json::to_vec(&*config).unwrap().len();
    assert!(size > 2 * SIZE, "the config ({size} bytes) spans fragments");

    // On the wire: fragments for a proxy that announced them, one message for
    // one that did not.
    for (name, port, features, fragmented) in [
        ("web-2", 20202, vec![FEATURE.to_owned()], true),
        ("web-3", 20203, vec![], false),
    ] {
        let hello = Hello {
            kind: ProxyKind::Sidecar as i32,
            mesh: "default".into(),
            name: name.into(),
            resource: serde_json::to_vec(&sidecar(name, "web", port, Some("backend")).resource)
                .unwrap(),
            version: "test".into(),
            features,
        };
        let (mut stream, _keep) = raw_hello(&zone, hello).await.unwrap();
        let (fragments, config) = first_config(&mut stream).await;
        assert!(has_all(&config), "{name}: every backend");
        assert_eq!(fragments > 2, fragmented, "{name}: {fragments} fragments");
        if !fragmented {
            assert_eq!(fragments, 0);
        }
    }
}
