//! Table-driven tests of policy matching: the seed 004 routes, specificity,
//! origin and name tiebreaks, merging, and traffic permissions.

use super::*;
use crate::document::parse_document;
use crate::policy::Action;
use serde_json::{Value, json};

/// The action for a client of mesh `default` with `tags` and no SNI.
fn action_for(
    rules: &TrafficPermissionRules,
    service: &str,
    tags: &BTreeMap<String, String>,
) -> Action {
    let spiffe_id = format!("spiffe://default/{service}");
    let has_tag = |k: &str, v: &str| tags.get(k).is_some_and(|have| have == v);
    let client = crate::policy::ClientView {
        service,
        spiffe_id: &spiffe_id,
        sni: None,
        has_tag: &has_tag,
    };
    rules.decide(&client).0
}

fn yaml(s: &str) -> Value {
    serde_norway::from_str(s).expect("test YAML parses")
}

fn resource(src: &str) -> Resource {
    parse_document(yaml(src)).unwrap_or_else(|e| panic!("{src}: {e}"))
}

/// A dataplane serving `service` with extra inbound `tags`, calling `outbounds`
/// (each `(service, protocol)`).
fn dataplane(
    service: &str,
    tags: &[(&str, &str)],
    outbounds: &[(&str, Option<&str>)],
) -> DataplaneSpec {
    let mut inbound_tags = serde_json::Map::new();
    inbound_tags.insert("kuma.io/service".into(), json!(service));
    for (k, v) in tags {
        inbound_tags.insert((*k).into(), json!(v));
    }
    let outbound: Vec<Value> = outbounds
        .iter()
        .enumerate()
        .map(|(i, (svc, proto))| {
            let mut t = json!({"kuma.io/service": svc});
            if let Some(p) = proto {
                t["kuma.io/protocol"] = json!(p);
            }
            json!({"port": 20000 + i, "tags": t})
        })
        .collect();
    let value = json!({"networking": {"address": "10.0.0.1",
        "inbound": [{"port": 10001, "tags": inbound_tags}], "outbound": outbound}});
    match Spec::from_value(crate::ResourceKind::Dataplane, value) {
        Ok(Spec::Dataplane(dp)) => dp,
        other => panic!("bad test dataplane: {other:?}"),
    }
}

fn run(dp: &DataplaneSpec, mesh: &MeshSpec, resources: &[Resource]) -> ProxyPolicies {
    let items: Vec<PolicyItem<'_>> = resources.iter().map(PolicyItem::from).collect();
    let labels = BTreeMap::new();
    let proxy = DataplaneRef {
        name: "dp-1",
        labels: &labels,
        spec: dp,
    };
    match_policies(ProxyRef::Dataplane(proxy), mesh, &items)
}

/// `(service, subset tags, weight)` per routed backend.
type Backends = Option<Vec<(String, Vec<(String, String)>, u32)>>;

fn backends(p: &ProxyPolicies, service: &str) -> Backends {
    let out = p.service_outbound(service)?;
    out.route.as_ref().map(|refs| {
        refs.iter()
            .map(|b| {
                (
                    b.service().to_owned(),
                    b.subset_tags().into_iter().collect(),
                    b.effective_weight(),
                )
            })
            .collect()
    })
}

const SEED_SPLIT: &str = r#"
type: MeshTCPRoute
name: tcp-route-1
mesh: default
spec:
  targetRef: {kind: MeshSubset, tags: {app: frontend}}
  to:
  - targetRef: {kind: MeshService, name: backend}
    rules:
    - default:
        backendRefs:
        - {kind: MeshServiceSubset, name: backend_kuma-demo_svc_3001, tags: {version: v0}, weight: 90}
        - {kind: MeshServiceSubset, name: backend_kuma-demo_svc_3001, tags: {version: v1}, weight: 10}
"#;

const SEED_REDIRECT: &str = r#"
type: MeshTCPRoute
name: tcp-route-1
mesh: default
spec:
  targetRef: {kind: MeshSubset, tags: {app: frontend}}
  to:
  - targetRef: {kind: MeshService, name: backend}
    rules:
    - default:
        backendRefs:
        - {kind: MeshService, name: external-backend}
"#;

fn v(version: &str) -> Vec<(String, String)> {
    vec![("version".to_owned(), version.to_owned())]
}

#[test]
fn seed_004_routes() {
    let split: Backends = Some(vec![
        ("backend_kuma-demo_svc_3001".into(), v("v0"), 90),
        ("backend_kuma-demo_svc_3001".into(), v("v1"), 10),
    ]);
    let redirect: Backends = Some(vec![("external-backend".into(), vec![], 1)]);
    let frontend = dataplane(
        "web",
        &[("app", "frontend")],
        &[("backend", None), ("other", None)],
    );
    let http_frontend = dataplane("web", &[("app", "frontend")], &[("backend", Some("http"))]);
    let not_frontend = dataplane("web", &[("app", "admin")], &[("backend", None)]);
    let cases: Vec<(&str, &str, &DataplaneSpec, Backends)> = vec![
        ("split, frontend", SEED_SPLIT, &frontend, split.clone()),
        (
            "redirect, frontend",
            SEED_REDIRECT,
            &frontend,
            redirect.clone(),
        ),
        // No MeshHTTPRoute in Meridian: the TCP route applies to http destinations too.
        ("split, http destination", SEED_SPLIT, &http_frontend, split),
        (
            "redirect, http destination",
            SEED_REDIRECT,
            &http_frontend,
            redirect,
        ),
        ("split, not frontend", SEED_SPLIT, &not_frontend, None),
        ("redirect, not frontend", SEED_REDIRECT, &not_frontend, None),
    ];
    for (name, src, dp, want) in cases {
        let p = run(dp, &MeshSpec::default(), &[resource(src)]);
        assert_eq!(backends(&p, "backend"), want, "{name}");
        assert!(p.service_outbound("backend").is_some(), "{name}");
    }
    // Another destination is untouched and defaults to itself.
    let p = run(&frontend, &MeshSpec::default(), &[resource(SEED_SPLIT)]);
    assert_eq!(backends(&p, "other"), None);
    let other = p.service_outbound("other").expect("other outbound");
    assert_eq!(
        other.route, None,
        "no route: the zone CP dials the service itself"
    );
}

/// A MeshTCPRoute redirecting `backend` to `target`.
fn route(name: &str, top: &str, target: &str, labels: &str) -> Resource {
    resource(&format!(
        "type: MeshTCPRoute\nname: {name}\nmesh: default\n{labels}\nspec:\n  targetRef: {top}\n  to:\n  - targetRef: {{kind: MeshService, name: backend}}\n    rules:\n    - default: {{backendRefs: [{{kind: MeshService, name: {target}}}]}}\n"
    ))
}

#[test]
fn ordering_specificity_origin_name() {
    let dp = dataplane(
        "web",
        &[("app", "frontend"), ("version", "v1")],
        &[("backend", None)],
    );
    let mesh = "{kind: Mesh}";
    let subset = "{kind: MeshSubset, tags: {app: frontend}}";
    let service = "{kind: MeshService, name: web}";
    let service_subset = "{kind: MeshServiceSubset, name: web, tags: {version: v1}}";
    let zone = "labels: {kuma.io/origin: zone}";
    let global = "labels: {kuma.io/origin: global}";
    let cases: Vec<(&str, Vec<Resource>, &str)> = vec![
        (
            "MeshService beats MeshSubset beats Mesh",
            vec![
                route("a", service, "by-service", ""),
                route("b", subset, "by-subset", ""),
                route("c", mesh, "by-mesh", ""),
            ],
            "by-service",
        ),
        (
            "MeshSubset beats Mesh",
            vec![
                route("a", mesh, "by-mesh", ""),
                route("z", subset, "by-subset", ""),
            ],
            "by-subset",
        ),
        (
            "MeshServiceSubset beats MeshService",
            vec![
                route("a", service, "by-service", ""),
                route("b", service_subset, "by-service-subset", ""),
            ],
            "by-service-subset",
        ),
        (
            "specificity beats origin",
            vec![
                route("a", mesh, "zone-mesh", zone),
                route("b", subset, "global-subset", global),
            ],
            "global-subset",
        ),
        (
            "zone origin beats global",
            vec![
                route("a", mesh, "global", global),
                route("b", mesh, "zone", zone),
            ],
            "zone",
        ),
        (
            "zone origin beats absent origin",
            vec![route("b", mesh, "zone", zone), route("a", mesh, "none", "")],
            "zone",
        ),
        (
            "smaller name wins",
            vec![
                route("bbb", mesh, "from-bbb", ""),
                route("aaa", mesh, "from-aaa", ""),
            ],
            "from-aaa",
        ),
        (
            "prefix name wins",
            vec![
                route("aaaaa", mesh, "from-aaaaa", ""),
                route("aaa", mesh, "from-aaa", ""),
            ],
            "from-aaa",
        ),
        (
            "origin beats name",
            vec![
                route("aaa", mesh, "global-aaa", ""),
                route("zzz", mesh, "zone-zzz", zone),
            ],
            "zone-zzz",
        ),
        (
            "non-matching specific policy is ignored",
            vec![
                route("a", "{kind: MeshService, name: api}", "by-api", ""),
                route("b", mesh, "by-mesh", ""),
            ],
            "by-mesh",
        ),
    ];
    for (name, resources, want) in cases {
        for rs in [resources.clone(), resources.into_iter().rev().collect()] {
            let p = run(&dp, &MeshSpec::default(), &rs);
            let got = backends(&p, "backend").and_then(|b| b.first().map(|x| x.0.clone()));
            assert_eq!(got.as_deref(), Some(want), "{name}");
        }
    }
}

#[test]
fn timeouts_merge_across_policies() {
    let dp = dataplane(
        "web",
        &[("app", "frontend")],
        &[("backend", None), ("db", None)],
    );
    let mesh_level = resource(
        "type: MeshTimeout\nname: mesh-wide\nmesh: default\nspec:\n  targetRef: {kind: Mesh}\n  to:\n  - targetRef: {kind: Mesh}\n    default: {connectionTimeout: 5s, idleTimeout: 1h}\n  from:\n  - targetRef: {kind: Mesh}\n    default: {idleTimeout: 2h}\n",
    );
    let service_level = resource(
        "type: MeshTimeout\nname: web\nmesh: default\nspec:\n  targetRef: {kind: MeshService, name: web}\n  to:\n  - targetRef: {kind: MeshService, name: backend}\n    default: {idleTimeout: 30s}\n  from:\n  - targetRef: {kind: Mesh}\n    default: {connectionTimeout: 1s}\n",
    );
    // Within one policy, a Mesh entry is merged before a MeshService entry whatever the document order.
    let entry_order = resource(
        "type: MeshTimeout\nname: entries\nmesh: default\nspec:\n  to:\n  - targetRef: {kind: MeshService, name: db}\n    default: {idleTimeout: 10s}\n  - targetRef: {kind: Mesh}\n    default: {idleTimeout: 99s}\n",
    );
    let p = run(
        &dp,
        &MeshSpec::default(),
        &[service_level, mesh_level, entry_order],
    );
    let timeout = |svc: &str| {
        serde_json::to_value(&p.service_outbound(svc).expect("outbound").timeout).expect("ser")
    };
    assert_eq!(
        timeout("backend"),
        json!({"connectionTimeout": "5s", "idleTimeout": "30s"})
    );
    assert_eq!(
        timeout("db"),
        json!({"connectionTimeout": "5s", "idleTimeout": "10s"})
    );
    let inbound = &p.inbounds[&10001];
    assert_eq!(inbound.service, "web");
    assert_eq!(
        serde_json::to_value(&inbound.timeout).expect("ser"),
        json!({"connectionTimeout": "1s", "idleTimeout": "2h"})
    );
    let t = p
        .service_outbound("backend")
        .expect("outbound")
        .timeout
        .as_ref()
        .and_then(|t| t.idle_timeout.as_ref())
        .map(|d| d.as_duration());
    assert_eq!(t, Some(std::time::Duration::from_secs(30)));
}

#[test]
fn other_outbound_policies_merge() {
    let dp = dataplane("web", &[], &[("backend", None)]);
    let resources = [
        resource(
            "type: MeshLoadBalancingStrategy\nname: lb\nmesh: default\nspec:\n  to:\n  - targetRef: {kind: Mesh}\n    default:\n      loadBalancer: {type: RoundRobin}\n      localityAwareness: {crossZone: {failover: [{to: {type: Any}}]}}\n  - targetRef: {kind: MeshService, name: backend}\n    default:\n      localityAwareness: {crossZone: {failover: [{to: {type: Only, zones: [zone-2]}}]}}\n",
        ),
        resource(
            "type: MeshHealthCheck\nname: hc\nmesh: default\nspec:\n  to:\n  - targetRef: {kind: Mesh}\n    default: {interval: 10s, tcp: {}}\n",
        ),
        resource(
            "type: MeshCircuitBreaker\nname: cb\nmesh: default\nspec:\n  to:\n  - targetRef: {kind: MeshService, name: backend}\n    default: {connectionLimits: {maxConnections: 5}}\n  from:\n  - targetRef: {kind: Mesh}\n    default: {connectionLimits: {maxConnections: 7}}\n",
        ),
    ];
    let p = run(&dp, &MeshSpec::default(), &resources);
    let out = &p.service_outbound("backend").expect("outbound");
    // Lists are replaced, not appended: only the more specific failover list remains.
    assert_eq!(
        serde_json::to_value(&out.load_balancing).expect("ser"),
        json!({"loadBalancer": {"type": "RoundRobin"}, "localityAwareness": {"crossZone": {"failover": [{"to": {"type": "Only", "zones": ["zone-2"]}}]}}})
    );
    assert_eq!(
        serde_json::to_value(&out.health_check).expect("ser"),
        json!({"interval": "10s", "tcp": {}})
    );
    assert_eq!(
        serde_json::to_value(&out.circuit_breaker).expect("ser"),
        json!({"connectionLimits": {"maxConnections": 5}})
    );
    assert_eq!(out.route, None);
    assert_eq!(
        serde_json::to_value(&p.inbounds[&10001].circuit_breaker).expect("ser"),
        json!({"connectionLimits": {"maxConnections": 7}})
    );
}

fn mtp(name: &str, top: &str, from: &[(&str, &str)]) -> Resource {
    let entries: String = from
        .iter()
        .map(|(target, action)| {
            format!("  - targetRef: {target}\n    default: {{action: {action}}}\n")
        })
        .collect();
    resource(&format!(
        "type: MeshTrafficPermission\nname: {name}\nmesh: default\nspec:\n  targetRef: {top}\n  from:\n{entries}"
    ))
}

#[test]
fn traffic_permissions() {
    let dp = dataplane("backend", &[("app", "backend")], &[]);
    let mtls: MeshSpec = serde_json::from_value(json!({
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}
    }))
    .expect("mesh");
    let plain = MeshSpec::default();
    let mesh = "{kind: Mesh}";
    let me = "{kind: MeshService, name: backend}";
    let allow_all = mtp("allow-all", mesh, &[(mesh, "Allow")]);
    let deny_web = mtp(
        "deny-web",
        me,
        &[("{kind: MeshService, name: web}", "Deny")],
    );
    /// (case, mesh, policies, client service, client tags, expected action)
    type Case<'a> = (
        &'a str,
        &'a MeshSpec,
        Vec<Resource>,
        &'a str,
        &'a [(&'a str, &'a str)],
        Action,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "default with mTLS is deny",
            &mtls,
            vec![],
            "web",
            &[],
            Action::Deny,
        ),
        (
            "default without mTLS is allow",
            &plain,
            vec![],
            "web",
            &[],
            Action::Allow,
        ),
        (
            "allow all",
            &mtls,
            vec![allow_all.clone()],
            "web",
            &[],
            Action::Allow,
        ),
        (
            "specific deny beats mesh allow",
            &mtls,
            vec![allow_all.clone(), deny_web.clone()],
            "web",
            &[],
            Action::Deny,
        ),
        (
            "others still allowed",
            &mtls,
            vec![allow_all.clone(), deny_web.clone()],
            "api",
            &[],
            Action::Allow,
        ),
        (
            "entry specificity within a policy",
            &mtls,
            vec![mtp(
                "p",
                mesh,
                &[("{kind: MeshService, name: web}", "Allow"), (mesh, "Deny")],
            )],
            "web",
            &[],
            Action::Allow,
        ),
        (
            "subset of clients",
            &mtls,
            vec![mtp(
                "p",
                mesh,
                &[
                    (mesh, "Allow"),
                    ("{kind: MeshSubset, tags: {env: dev}}", "Deny"),
                ],
            )],
            "web",
            &[("env", "dev")],
            Action::Deny,
        ),
        (
            "service subset beats service",
            &mtls,
            vec![mtp(
                "p",
                mesh,
                &[
                    ("{kind: MeshService, name: web}", "Deny"),
                    (
                        "{kind: MeshServiceSubset, name: web, tags: {version: v2}}",
                        "AllowWithShadowDeny",
                    ),
                ],
            )],
            "web",
            &[("version", "v2")],
            Action::AllowWithShadowDeny,
        ),
        (
            "policy for another service is ignored",
            &mtls,
            vec![mtp(
                "p",
                "{kind: MeshService, name: other}",
                &[(mesh, "Allow")],
            )],
            "web",
            &[],
            Action::Deny,
        ),
        (
            "more specific policy wins",
            &mtls,
            vec![
                mtp("a", mesh, &[(mesh, "Deny")]),
                mtp("b", me, &[(mesh, "Allow")]),
            ],
            "web",
            &[],
            Action::Allow,
        ),
        (
            "zone origin wins at equal specificity",
            &mtls,
            vec![
                resource(
                    "type: MeshTrafficPermission\nname: z\nmesh: default\nlabels: {kuma.io/origin: zone}\nspec:\n  from: [{targetRef: {kind: Mesh}, default: {action: Deny}}]\n",
                ),
                mtp("a", mesh, &[(mesh, "Allow")]),
            ],
            "web",
            &[],
            Action::Deny,
        ),
        (
            "explicit deny without mTLS is reported",
            &plain,
            vec![mtp("d", mesh, &[(mesh, "Deny")])],
            "web",
            &[],
            Action::Deny,
        ),
    ];
    for (name, mesh_spec, resources, client, tags, want) in cases {
        let p = run(&dp, mesh_spec, &resources);
        let tags: BTreeMap<String, String> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let got = action_for(&p.inbounds[&10001].traffic_permissions, client, &tags);
        assert_eq!(got, want, "{name}");
    }
    assert!(Action::AllowWithShadowDeny.allows());
    assert!(!Action::Deny.allows());
}

#[test]
fn non_policies_and_empty_inputs() {
    let dp = dataplane("web", &[], &[("backend", None)]);
    let mesh_res = resource("type: Mesh\nname: default\n");
    let p = run(&dp, &MeshSpec::default(), &[mesh_res]);
    assert_eq!(
        p.service_outbound("backend").expect("outbound"),
        &OutboundPolicies::default()
    );
    assert_eq!(p.inbounds[&10001].traffic_permissions.rules, vec![]);
}

/// Kuma 2.x top-level forms: `Dataplane` by name, by labels, with `sectionName`
/// (one inbound), and `proxyTypes`; and Kuma's order (Dataplane is less specific
/// than MeshSubset; labels < name < name with sectionName).
#[test]
fn dataplane_refs_and_proxy_types() {
    let spec = match Spec::from_value(
        crate::ResourceKind::Dataplane,
        json!({"networking": {"address": "10.0.0.1", "inbound": [
            {"port": 10001, "name": "main", "tags": {"kuma.io/service": "web", "app": "web"}},
            {"port": 10002, "tags": {"kuma.io/service": "metrics"}}],
            "outbound": [{"port": 20001, "tags": {"kuma.io/service": "backend"}}]}}),
    ) {
        Ok(Spec::Dataplane(dp)) => dp,
        other => panic!("{other:?}"),
    };
    let labels = BTreeMap::from([("team".to_owned(), "a".to_owned())]);
    let proxy = DataplaneRef {
        name: "web-1",
        labels: &labels,
        spec: &spec,
    };
    let timeout = |name: &str, top: &str, idle: &str| {
        resource(&format!(
            "type: MeshTimeout\nname: {name}\nmesh: default\nspec:\n  targetRef: {top}\n  to:\n  - targetRef: {{kind: Mesh}}\n    default: {{idleTimeout: {idle}}}\n"
        ))
    };
    let idle = |resources: &[Resource]| {
        let items: Vec<PolicyItem<'_>> = resources.iter().map(PolicyItem::from).collect();
        let p = match_policies(ProxyRef::Dataplane(proxy), &MeshSpec::default(), &items);
        p.service_outbound("backend")
            .expect("outbound")
            .timeout
            .as_ref()
            .and_then(|t| t.idle_timeout.as_ref())
            .map(ToString::to_string)
    };
    let by_name = timeout("by-name", "{kind: Dataplane, name: web-1}", "1s");
    let other_name = timeout("other", "{kind: Dataplane, name: web-2}", "2s");
    let by_labels = timeout("by-labels", "{kind: Dataplane, labels: {team: a}}", "3s");
    let other_labels = timeout("other-labels", "{kind: Dataplane, labels: {team: b}}", "4s");
    let gateways = timeout("gw", "{kind: Mesh, proxyTypes: [Gateway]}", "5s");
    let sidecars = timeout("sc", "{kind: Mesh, proxyTypes: [Sidecar]}", "6s");
    let subset = timeout("subset", "{kind: MeshSubset, tags: {app: web}}", "7s");
    assert_eq!(idle(std::slice::from_ref(&by_name)).as_deref(), Some("1s"));
    assert_eq!(idle(std::slice::from_ref(&other_name)), None);
    assert_eq!(
        idle(std::slice::from_ref(&by_labels)).as_deref(),
        Some("3s")
    );
    assert_eq!(idle(std::slice::from_ref(&other_labels)), None);
    assert_eq!(idle(std::slice::from_ref(&gateways)), None);
    assert_eq!(idle(std::slice::from_ref(&sidecars)).as_deref(), Some("6s"));
    // A name is more specific than labels; MeshSubset more than any Dataplane ref.
    assert_eq!(
        idle(&[by_name.clone(), by_labels.clone()]).as_deref(),
        Some("1s")
    );
    assert_eq!(idle(&[by_name, by_labels, subset]).as_deref(), Some("7s"));

    // `sectionName` narrows an inbound policy to one inbound, by name or port.
    let deny = |name: &str, section: &str| {
        mtp(
            name,
            &format!("{{kind: Dataplane, name: web-1, sectionName: \"{section}\"}}"),
            &[("{kind: Mesh}", "Deny")],
        )
    };
    let allow = mtp("allow-all", "{kind: Mesh}", &[("{kind: Mesh}", "Allow")]);
    for (section, denied) in [("main", 10001), ("10002", 10002)] {
        let resources = [allow.clone(), deny("deny-one", section)];
        let items: Vec<PolicyItem<'_>> = resources.iter().map(PolicyItem::from).collect();
        let p = match_policies(ProxyRef::Dataplane(proxy), &MeshSpec::default(), &items);
        for (port, inbound) in &p.inbounds {
            let action = action_for(&inbound.traffic_permissions, "client", &BTreeMap::new());
            let want = if *port == denied {
                Action::Deny
            } else {
                Action::Allow
            };
            assert_eq!(action, want, "sectionName {section}, inbound {port}");
        }
    }
}

#[test]
fn inbound_rules_of_every_generation() {
    let mesh = MeshSpec::default();
    let dp = dataplane("backend", &[], &[]);
    let policies = [
        resource(
            r#"
type: MeshTrafficPermission
name: allow-mesh
mesh: default
spec:
  targetRef: {kind: Mesh}
  rules:
    - default:
        allow:
          - spiffeID: {type: Prefix, value: "spiffe://default"}
"#,
        ),
        resource(
            r#"
type: MeshTrafficPermission
name: deny-web
mesh: default
spec:
  targetRef: {kind: MeshService, name: backend}
  rules:
    - default:
        deny:
          - spiffeID: {type: Exact, value: "spiffe://default/web"}
"#,
        ),
        resource(
            r#"
type: MeshTrafficPermission
name: legacy
mesh: default
spec:
  from: [{targetRef: {kind: Mesh}, default: {action: Allow}}]
"#,
        ),
        resource(
            r#"
type: MeshTimeout
name: inbound
mesh: default
spec:
  rules:
    - default: {idleTimeout: 7s}
    - matches: [{sni: {type: Exact, value: backend.default}}]
      default: {idleTimeout: 9s}
"#,
        ),
    ];
    let got = run(&dp, &mesh, &policies);
    let inbound = &got.inbounds[&10001];
    let lists: Vec<(Action, &str)> = inbound
        .traffic_permissions
        .matches
        .iter()
        .map(|m| (m.action, m.policy.as_str()))
        .collect();
    // Every deny first, though the deny comes from the more specific policy.
    assert_eq!(
        lists,
        [(Action::Deny, "deny-web"), (Action::Allow, "allow-mesh")]
    );
    let view = |id: &'static str| crate::policy::ClientView {
        service: id.rsplit('/').next().unwrap_or_default(),
        spiffe_id: id,
        sni: None,
        has_tag: &|_, _| false,
    };
    let decide = |id| inbound.traffic_permissions.decide(&view(id)).0;
    assert_eq!(decide("spiffe://default/web"), Action::Deny);
    assert_eq!(decide("spiffe://default/api"), Action::Allow);
    // The `from` policy allowing all is not consulted once rules apply.
    assert_eq!(decide("spiffe://other/api"), Action::Deny);
    // Only the rule without matches sets the inbound's timeout.
    assert_eq!(
        inbound
            .timeout
            .as_ref()
            .and_then(|t| t.idle_timeout.as_ref())
            .map(|d| d.as_duration()),
        Some(std::time::Duration::from_secs(7))
    );
}
