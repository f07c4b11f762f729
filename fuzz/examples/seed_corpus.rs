//! Writes the seed corpus of the fuzz targets into `fuzz/corpus/<target>/`:
//!
//! - `sni_peek`: real ClientHellos, the exact first flight of rustls clients
//!   (TLS 1.3 and 1.2, with and without SNI and ALPN, a Meridian SNI name, a
//!   16 KB-ALPN hello spanning several records), plus an HTTP request;
//! - `kds_decode`: KDS messages encoded with prost (`Changes`, both stream
//!   directions' messages, ACKs with NACKs);
//! - `kds_apply`: the receiver selector byte, then length-delimited `Changes`;
//! - `model_document`: universal-format documents of every kind, in YAML and JSON
//!   (the seed-page examples and the test fixtures among them).
//!
//! `sni_name` takes `arbitrary`-structured input: its corpus is what fuzzing found,
//! minimized with `cargo fuzz cmin`.
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml
//! --example seed_corpus` (the ClientHellos hold random values, so each run writes
//! other bytes; commit the result only when seeds change).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meridian_proto::kds;
use meridian_sni::SniTarget;
use prost::Message;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let path = corpus(target).join(name);
    std::fs::write(&path, bytes).expect("write a seed");
    println!("{} ({} bytes)", path.display(), bytes.len());
}

/// The first flight of a rustls client with these settings.
fn client_hello(
    versions: &[&'static rustls::SupportedProtocolVersion],
    name: &str,
    alpn: Vec<Vec<u8>>,
) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    let name = ServerName::try_from(name.to_owned()).expect("a server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("a client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write the hello");
    }
    out
}

fn sni_peek() {
    let both = &[&rustls::version::TLS13, &rustls::version::TLS12];
    let sni = SniTarget::new("default", "backend_kuma-demo_svc_3001")
        .with_tag("version", "v2")
        .to_sni();
    let h2 = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    write(
        "sni_peek",
        "tls13-meridian-sni-alpn",
        &client_hello(&[&rustls::version::TLS13], &sni, h2.clone()),
    );
    write(
        "sni_peek",
        "tls12-only",
        &client_hello(&[&rustls::version::TLS12], "backend.example.com", vec![]),
    );
    // An IP address: rustls sends no SNI extension.
    write(
        "sni_peek",
        "no-sni",
        &client_hello(both, "10.0.0.1", h2.clone()),
    );
    // About 16 KB of ALPN protocols: the hello spans several records.
    let long_alpn = (0..200)
        .map(|i| format!("protocol-{i:03}-{}", "x".repeat(64)).into_bytes())
        .collect();
    write(
        "sni_peek",
        "multi-record",
        &client_hello(both, "web.example.com", long_alpn),
    );
    write(
        "sni_peek",
        "http-request",
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    );
}

/// A KDS resource; its spec must pass the receiver's validation.
fn resource(kind: &str, mesh: &str, name: &str, zone: &str, spec: Value) -> kds::Resource {
    let resource = kds::Resource {
        r#type: kind.into(),
        mesh: mesh.into(),
        name: name.into(),
        labels: [("team".to_owned(), "payments".to_owned())].into(),
        spec: serde_json::to_vec(&spec).expect("JSON"),
        version: 3,
        revision: 42,
        zone: zone.into(),
    };
    if let Err(reason) = meridian_kds::convert::from_proto(&resource) {
        panic!("seed {kind} {name} is refused: {reason}");
    }
    resource
}

fn key(kind: &str, mesh: &str, name: &str) -> kds::ResourceKey {
    kds::ResourceKey {
        r#type: kind.into(),
        mesh: mesh.into(),
        name: name.into(),
    }
}

fn dataplane_spec() -> Value {
    json!({"networking": {"address": "10.0.0.1", "inbound": [
        {"port": 10001, "servicePort": 8080, "tags": {"kuma.io/service": "web"}}
    ]}})
}

/// What global sends a zone: meshes, zones, policies, other zones' ingresses.
fn global_changes() -> kds::Changes {
    kds::Changes {
        nonce: "00000000000000a1".into(),
        upserts: vec![
            resource(
                "Mesh",
                "",
                "default",
                "",
                json!({"routing": {"zoneEgress": true}}),
            ),
            resource("Zone", "", "zone-3", "", json!({})),
            resource(
                "MeshTimeout",
                "default",
                "timeout-2",
                "",
                json!({"targetRef": {"kind": "Mesh"}, "to": [
                    {"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1m"}}
                ]}),
            ),
            resource(
                "ZoneIngress",
                "",
                "ingress-2.zone-2",
                "zone-2",
                json!({"zone": "zone-2", "networking": {"address": "10.0.0.4", "port": 10001}}),
            ),
        ],
        removals: vec![key("MeshTimeout", "default", "timeout-1")],
        through_revision: 7,
        snapshot_start: false,
        snapshot_end: false,
    }
}

/// What a zone sends global: its dataplanes, ingresses, egresses.
fn zone_changes() -> kds::Changes {
    kds::Changes {
        nonce: "00000000000000b2".into(),
        upserts: vec![
            resource("Dataplane", "default", "web-2", "zone-1", dataplane_spec()),
            resource(
                "ZoneEgress",
                "",
                "egress-2",
                "",
                json!({"networking": {"address": "10.0.0.3", "port": 10002}}),
            ),
        ],
        removals: vec![key("Dataplane", "default", "web-1")],
        through_revision: 11,
        snapshot_start: false,
        snapshot_end: false,
    }
}

fn snapshot_chunks(mut changes: kds::Changes) -> [kds::Changes; 2] {
    let mut end = kds::Changes {
        nonce: "00000000000000c3".into(),
        through_revision: changes.through_revision,
        snapshot_end: true,
        ..Default::default()
    };
    end.upserts = changes.upserts.split_off(1);
    changes.snapshot_start = true;
    changes.through_revision = 0;
    changes.removals.clear();
    [changes, end]
}

fn kds_decode() {
    let global = global_changes();
    let zone = zone_changes();
    write("kds_decode", "changes-from-global", &global.encode_to_vec());
    write(
        "kds_decode",
        "global-delta",
        &kds::GlobalDelta {
            changes: Some(global.clone()),
            global_revision: 9,
        }
        .encode_to_vec(),
    );
    write(
        "kds_decode",
        "zone-delta",
        &kds::ZoneDelta {
            changes: Some(zone.clone()),
        }
        .encode_to_vec(),
    );
    write(
        "kds_decode",
        "subscribe",
        &kds::ZoneToGlobalAck {
            kind: Some(kds::zone_to_global_ack::Kind::Subscribe(kds::Subscribe {
                since_revision: 5,
            })),
        }
        .encode_to_vec(),
    );
    write(
        "kds_decode",
        "ack-with-nack",
        &kds::GlobalAck {
            kind: Some(kds::global_ack::Kind::Ack(kds::Ack {
                nonce: "00000000000000b2".into(),
                nacks: vec![kds::Nack {
                    key: Some(key("Dataplane", "default", "web-2")),
                    reason: "the spec is not JSON".into(),
                }],
            })),
        }
        .encode_to_vec(),
    );
    let [start, _] = snapshot_chunks(zone);
    write("kds_decode", "snapshot-start", &start.encode_to_vec());
}

fn delimited(selector: u8, messages: &[kds::Changes]) -> Vec<u8> {
    let mut out = vec![selector];
    for message in messages {
        message
            .encode_length_delimited(&mut out)
            .expect("a Vec grows");
    }
    out
}

fn kds_apply() {
    // Even selector: a zone applying global's changes; odd: global applying zone-1's.
    write(
        "kds_apply",
        "zone-applies-global",
        &delimited(0, &[global_changes()]),
    );
    write(
        "kds_apply",
        "global-applies-zone",
        &delimited(1, &[zone_changes()]),
    );
    write(
        "kds_apply",
        "zone-applies-snapshot",
        &delimited(0, &snapshot_chunks(global_changes())),
    );
    write(
        "kds_apply",
        "global-applies-snapshot",
        &delimited(1, &snapshot_chunks(zone_changes())),
    );
    let mut bad = zone_changes();
    bad.upserts[0].r#type = "MeshTimeout".into();
    bad.upserts[1].zone = "zone-2".into();
    write("kds_apply", "global-nacks-zone", &delimited(1, &[bad]));
}

const SEED_SPLIT: &str = include_str!("../../tests/tests/fixtures/tcp-route-1.yaml");

fn model_document() {
    let yaml_docs: Vec<(&str, String)> = vec![
        ("mesh-tcp-route-split.yaml", SEED_SPLIT.to_owned()),
        (
            "mesh-tcp-route-redirect.yaml",
            "type: MeshTCPRoute\nname: tcp-route-1\nmesh: default\nspec:\n  targetRef:\n    kind: MeshSubset\n    tags:\n      app: frontend\n  to:\n  - targetRef:\n      kind: MeshService\n      name: backend\n    rules:\n    - default:\n        backendRefs:\n        - kind: MeshService\n          name: external-backend\n".to_owned(),
        ),
        (
            "mesh.yaml",
            "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\nrouting:\n  zoneEgress: true\n".to_owned(),
        ),
        ("zone.yaml", "type: Zone\nname: zone-1\nenabled: false\n".to_owned()),
        (
            "dataplane.yaml",
            "type: Dataplane\nmesh: default\nname: web-01\nlabels:\n  kuma.io/origin: zone\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 10001\n    servicePort: 8080\n    tags:\n      kuma.io/service: web\n  outbound:\n  - port: 33033\n    tags:\n      kuma.io/service: backend\n".to_owned(),
        ),
        (
            "zone-ingress.yaml",
            "type: ZoneIngress\nname: zi-1\nzone: zone-1\nnetworking: {address: 10.0.0.2, port: 10001}\n".to_owned(),
        ),
        (
            "zone-egress.yaml",
            "type: ZoneEgress\nname: ze-1\nnetworking: {address: 10.0.0.3, port: 10002}\n".to_owned(),
        ),
        (
            "mesh-service.yaml",
            "type: MeshService\nmesh: default\nname: redis\nlabels:\n  kuma.io/origin: zone\n  kuma.io/managed-by: meshservice-generator\nspec:\n  selector:\n    dataplaneTags:\n      kuma.io/service: redis\n  ports:\n  - name: main\n    port: 6379\n    targetPort: 6379\n    appProtocol: tcp\n  identities:\n  - type: ServiceTag\n    value: redis\n  state: Available\nstatus:\n  dataplaneProxies:\n    healthy: 1\n    total: 2\n".to_owned(),
        ),
        (
            "mesh-multizone-service.yaml",
            "type: MeshMultiZoneService\nmesh: default\nname: redis\nspec:\n  selector:\n    meshService:\n      matchLabels:\n        kuma.io/display-name: redis\n  ports:\n  - port: 6379\n    appProtocol: tcp\n".to_owned(),
        ),
        // The Kubernetes form of the same policy (seed 004): refused, with violations.
        (
            "kubernetes-form.yaml",
            "apiVersion: kuma.io/v1alpha1\nkind: MeshTCPRoute\nmetadata:\n  name: tcp-route-1\n  namespace: kong-mesh-system\n  labels:\n    kuma.io/mesh: default\nspec:\n  targetRef:\n    kind: MeshSubset\n    tags:\n      app: frontend\n".to_owned(),
        ),
    ];
    for (name, text) in &yaml_docs {
        let value: Value = serde_norway::from_str(text).expect("seed YAML");
        let parsed = meridian_model::parse_document(value);
        // Only the Kubernetes form is there to be refused.
        assert_eq!(
            parsed.is_ok(),
            !name.starts_with("kubernetes"),
            "{name}: {parsed:?}"
        );
        write("model_document", name, text.as_bytes());
    }
    let policy = |kind: &str, name: &str, spec: Value| json!({"type": kind, "name": name, "mesh": "default", "labels": {"kuma.io/origin": "zone"}, "spec": spec});
    let json_docs = vec![
        (
            "mesh-traffic-permission.json",
            policy(
                "MeshTrafficPermission",
                "allow-all",
                json!({"targetRef": {"kind": "Mesh"}, "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}),
            ),
        ),
        (
            "mesh-timeout.json",
            policy(
                "MeshTimeout",
                "timeouts",
                json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1h", "connectionTimeout": "5s"}}]}),
            ),
        ),
        (
            "mesh-health-check.json",
            policy(
                "MeshHealthCheck",
                "hc",
                json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": {
                    "interval": "10s", "timeout": "2s", "unhealthyThreshold": 3, "healthyThreshold": 1,
                    "tcp": {"disabled": false, "send": "Zm9v", "receive": ["YmFy"]}}}]}),
            ),
        ),
        (
            "mesh-circuit-breaker.json",
            policy(
                "MeshCircuitBreaker",
                "cb",
                json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {
                    "connectionLimits": {"maxConnections": 2, "maxPendingRequests": 8},
                    "outlierDetection": {"interval": "5s", "baseEjectionTime": "30s", "maxEjectionPercent": 20,
                        "detectors": {"totalFailures": {"consecutive": 10},
                            "successRate": {"minimumHosts": 5, "requestVolume": 10, "standardDeviationFactor": "1.9"}}}}}]}),
            ),
        ),
        (
            "mesh-load-balancing-strategy.json",
            policy(
                "MeshLoadBalancingStrategy",
                "lb",
                json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {
                    "localityAwareness": {"crossZone": {"failover": [{"from": {"zones": ["zone-1"]}, "to": {"type": "Any"}}]}}}}]}),
            ),
        ),
        (
            "secret.json",
            json!({"type": "Secret", "name": "sec-1", "mesh": "default", "data": "c2VjcmV0"}),
        ),
    ];
    for (name, doc) in &json_docs {
        if let Err(e) = meridian_model::parse_document(doc.clone()) {
            panic!("seed {name} is refused: {e}");
        }
        write(
            "model_document",
            name,
            &serde_json::to_vec_pretty(doc).expect("JSON"),
        );
    }
}

fn main() {
    sni_peek();
    kds_decode();
    kds_apply();
    model_document();
}
