//! Document-level tests: the seed 004 examples, meta rules, and how
//! violations are reported.

use super::*;
use serde_json::json;

/// The two Universal-format examples of Kuma's MeshTCPRoute page (seed 004), verbatim.
const SEED_SPLIT: &str = r#"
type: MeshTCPRoute
name: tcp-route-1
mesh: default
spec:
  targetRef:
    kind: MeshSubset
    tags:
      app: frontend
  to:
  - targetRef:
      kind: MeshService
      name: backend
    rules:
    - default:
        backendRefs:
        - kind: MeshServiceSubset
          name: backend_kuma-demo_svc_3001
          tags:
            version: v0
          weight: 90
        - kind: MeshServiceSubset
          name: backend_kuma-demo_svc_3001
          tags:
            version: v1
          weight: 10
"#;

const SEED_REDIRECT: &str = r#"
type: MeshTCPRoute
name: tcp-route-1
mesh: default
spec:
  targetRef:
    kind: MeshSubset
    tags:
      app: frontend
  to:
  - targetRef:
      kind: MeshService
      name: backend
    rules:
    - default:
        backendRefs:
        - kind: MeshService
          name: external-backend
"#;

pub(crate) fn yaml(s: &str) -> Value {
    serde_norway::from_str(s).expect("test YAML parses")
}

fn violations(doc: Value) -> Vec<String> {
    match parse_document(doc) {
        Ok(r) => panic!("expected violations, got {r:?}"),
        Err(e) => e
            .violations
            .into_iter()
            .map(|v| format!("{}: {}", v.field, v.reason))
            .collect(),
    }
}

#[test]
fn seed_004_examples_round_trip_exactly() {
    for src in [SEED_SPLIT, SEED_REDIRECT] {
        let original = yaml(src);
        let res = parse_document(original.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.meta.kind, ResourceKind::MeshTcpRoute);
        assert_eq!(res.meta.name, "tcp-route-1");
        assert_eq!(res.meta.mesh.as_deref(), Some("default"));
        let rendered = Value::Object(render_document(&res.meta, &res.spec.to_value()));
        assert_eq!(rendered, original);
        assert_eq!(res.to_document(), original);
        // The stored spec value parses back to the same spec.
        assert_eq!(
            Spec::from_value(ResourceKind::MeshTcpRoute, res.spec.to_value()),
            Ok(res.spec)
        );
    }
}

#[test]
fn non_policy_documents_round_trip() {
    let cases = [
        r#"
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
routing:
  zoneEgress: true
"#,
        "type: Zone\nname: zone-1\nenabled: false\n",
        r#"
type: Dataplane
mesh: default
name: web-01
labels:
  kuma.io/origin: zone
networking:
  address: 10.0.0.1
  inbound:
  - port: 10001
    servicePort: 8080
    tags:
      kuma.io/service: web
  outbound:
  - port: 33033
    tags:
      kuma.io/service: backend
"#,
        "type: ZoneIngress\nname: zi-1\nzone: zone-1\nnetworking: {address: 10.0.0.2, port: 10001}\n",
        "type: ZoneEgress\nname: ze-1\nnetworking: {address: 10.0.0.3, port: 10002}\n",
    ];
    for src in cases {
        let original = yaml(src);
        let res = parse_document(original.clone()).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(res.to_document(), original, "{src}");
    }
}

#[test]
fn timestamps_are_accepted_and_dropped() {
    let mut doc = yaml(SEED_REDIRECT);
    doc["creationTime"] = json!("2024-01-01T00:00:00Z");
    doc["modificationTime"] = json!("2024-01-01T00:00:00Z");
    let res = parse_document(doc).expect("valid");
    assert_eq!(res.to_document(), yaml(SEED_REDIRECT));
}

#[test]
fn meta_violations() {
    let spec = json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "MeshService", "name": "b"}}]});
    let known = ResourceKind::known_type_names();
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            json!({"type": "MeshHTTPRoute", "name": "r", "mesh": "default", "spec": {}}),
            vec![format!("type: unknown type \"MeshHTTPRoute\"; known types: {known}")],
        ),
        (json!({"name": "r"}), vec![format!("type: must be set (one of: {known})")]),
        (
            json!({"type": "MeshTCPRoute", "name": "Bad_Name", "spec": spec}),
            vec![
                "name: invalid first or last character: a name must consist of lower-case alphanumeric characters, '-' or '.', and start and end with an alphanumeric character".to_owned(),
                "mesh: must be set".to_owned(),
            ],
        ),
        (
            json!({"type": "MeshTCPRoute", "mesh": "my.mesh", "spec": spec}),
            vec![
                "name: must be set".to_owned(),
                "mesh: invalid character: a mesh name must consist of lower-case alphanumeric characters or '-', and start and end with an alphanumeric character".to_owned(),
            ],
        ),
        (json!({"type": "Zone", "name": "z", "mesh": "default"}), vec!["mesh: must not be set: Zone is not mesh-scoped".to_owned()]),
        (
            json!({"type": "MeshTCPRoute", "name": "r", "mesh": "default", "labels": {"kuma.io/origin": "zone", "bad key!": "x", "n": 1}, "spec": spec}),
            vec![
                "labels[\"bad key!\"]: invalid key \"bad key!\": must start and end with an alphanumeric character".to_owned(),
                "labels[\"n\"]: must be a string, got a number".to_owned(),
            ],
        ),
        (
            json!({"type": "MeshTCPRoute", "name": "r", "mesh": "default", "to": []}),
            vec![
                "to: unknown field `to`: MeshTCPRoute keeps its configuration under `spec`".to_owned(),
                "spec: must be set".to_owned(),
            ],
        ),
        (json!("just a string"), vec!["(root): must be an object (a resource document)".to_owned()]),
        (json!({"type": 5, "name": "r"}), vec!["type: must be a string, got a number".to_owned()]),
    ];
    for (doc, want) in cases {
        assert_eq!(violations(doc.clone()), want, "{doc}");
    }
}

#[test]
fn unknown_and_mistyped_fields_are_named() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"type": "MeshTCPRoute", "name": "r", "mesh": "default", "spec": {"targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "MeshService", "name": "b"}, "rules": [{"default": {"backendRefs": [{"kind": "MeshService", "name": "x", "wieght": 5}]}}]}]}}),
            "spec.to[0].rules[0].default.backendRefs[0].wieght: unknown field `wieght`, expected one of `kind`, `name`, `tags`, `labels`, `namespace`, `sectionName`, `port`, `weight`",
        ),
        (
            json!({"type": "MeshTCPRoute", "name": "r", "mesh": "default", "spec": {"targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "MeshService", "name": "b"}, "rules": [{"default": {"backendRefs": [{"kind": "MeshService", "name": "x", "weight": "ninety"}]}}]}]}}),
            "spec.to[0].rules[0].default.backendRefs[0].weight: invalid type: string \"ninety\", expected u32",
        ),
        (
            json!({"type": "Mesh", "name": "m", "mtls": {"enabledBackend": 1}}),
            "mtls.enabledBackend: invalid type: integer `1`, expected a string",
        ),
        (
            json!({"type": "MeshTimeout", "name": "t", "mesh": "default", "spec": {"targetRef": {"kind": "Mesh"}, "too": []}}),
            "spec.too: unknown field `too`, expected one of `targetRef`, `to`, `from`, `rules`",
        ),
        (
            json!({"type": "MeshTimeout", "name": "t", "mesh": "default", "spec": []}),
            "spec: must be an object, got an array",
        ),
    ];
    for (doc, want) in cases {
        assert_eq!(violations(doc.clone()), vec![want.to_owned()], "{doc}");
    }
}

#[test]
fn meta_and_spec_violations_are_collected_together() {
    // A bad name, a bad `to` targetRef and a subset backendRef without tags: three violations.
    let doc = yaml(
        r#"
type: MeshTCPRoute
name: Route
mesh: default
spec:
  targetRef: {kind: Mesh}
  to:
  - targetRef: {kind: MeshSubset, tags: {app: x}}
    rules:
    - default:
        backendRefs:
        - {kind: MeshServiceSubset, name: backend}
"#,
    );
    let got = violations(doc);
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got[0].starts_with("name: "), "{got:#?}");
    assert_eq!(
        got[1],
        "spec.to[0].targetRef.kind: MeshTCPRoute `to` does not support kind MeshSubset (allowed: MeshService, MeshExternalService, MeshMultiZoneService)"
    );
    assert_eq!(
        got[2],
        "spec.to[0].rules[0].default.backendRefs[0].tags: must be set for kind MeshServiceSubset"
    );
}

#[test]
fn render_orders_meta_and_flattens() {
    let meta = ResourceMeta {
        kind: ResourceKind::Mesh,
        name: "default".into(),
        mesh: None,
        labels: BTreeMap::new(),
    };
    // Meta keys inside a spec value never override the meta.
    let doc = render_document(
        &meta,
        &json!({"routing": {"zoneEgress": true}, "name": "evil"}),
    );
    assert_eq!(
        Value::Object(doc),
        json!({"type": "Mesh", "name": "default", "routing": {"zoneEgress": true}})
    );
}
