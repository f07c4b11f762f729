//! `MeshTCPRoute`: where a proxy's TCP connections to a service really go —
//! weighted splits across subsets (canary, A/B) or redirection to another
//! service. Unlike other outbound policies, the `default` sits inside
//! `rules` (at most one rule per `to` entry).

use std::collections::BTreeMap;

use crate::error::{Validate, Violations, index, join};
use crate::kind::ResourceKind;
use crate::policy::{TargetRefPolicy, Targeted, validate_entries};
use crate::target_ref::{TargetRef, TargetRefKind};

/// The body (`spec`) of a `MeshTCPRoute`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshTcpRouteSpec {
    /// The proxies whose outbounds are routed; absent means `Mesh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    /// Routes per destination service; at least one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<TcpRouteTo>>,
}

/// The routes for one destination.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TcpRouteTo {
    /// The destination (a `MeshService`).
    pub target_ref: TargetRef,
    /// At most one rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<TcpRouteRule>,
}

/// A routing rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TcpRouteRule {
    /// The mergeable routing configuration.
    pub default: TcpRouteConf,
}

/// Where connections go.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TcpRouteConf {
    /// Weighted destinations; at least one.
    pub backend_refs: Vec<BackendRef>,
}

/// A weighted destination of a route: a targetRef of a destination kind
/// (Kuma's `BackendRef`), a weight and, for real MeshService and
/// MeshMultiZoneService objects, a port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackendRef {
    /// `MeshService`, `MeshServiceSubset`, `MeshExternalService` or
    /// `MeshMultiZoneService`.
    pub kind: TargetRefKind,
    /// The service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The subset's tags (`MeshServiceSubset` only, required there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Resource labels selecting the service (instead of `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The namespace of a named MeshService (`k8s.kuma.io/namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A port of the MeshService, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// A port of the MeshService or MeshMultiZoneService (required for the latter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Relative weight (default 1; 0 receives no traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

impl BackendRef {
    /// The weight, defaulting to 1 as in Kuma.
    pub fn effective_weight(&self) -> u32 {
        self.weight.unwrap_or(1)
    }

    /// The service name (validated to be present).
    pub fn service(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    /// The subset tags (empty for a whole service).
    pub fn subset_tags(&self) -> BTreeMap<String, String> {
        self.tags.clone().unwrap_or_default()
    }

    /// The destination as a targetRef (what Kuma validates it as).
    pub fn target_ref(&self) -> TargetRef {
        TargetRef {
            name: self.name.clone(),
            tags: self.tags.clone(),
            labels: self.labels.clone(),
            namespace: self.namespace.clone(),
            section_name: self.section_name.clone(),
            ..TargetRef::of(self.kind)
        }
    }
}

impl TargetRefPolicy for MeshTcpRouteSpec {
    type Conf = TcpRouteConf;

    fn target_ref(&self) -> Option<&TargetRef> {
        self.target_ref.as_ref()
    }

    fn entries_to(&self) -> Vec<(&TargetRef, &Self::Conf)> {
        self.to
            .iter()
            .flatten()
            .filter_map(|t| t.rules.first().map(|r| (&t.target_ref, &r.default)))
            .collect()
    }

    fn to_refs(&self) -> Vec<&TargetRef> {
        self.to.iter().flatten().map(|t| &t.target_ref).collect()
    }
}

impl Validate for MeshTcpRouteSpec {
    fn validate(&self, path: &str, v: &mut Violations) {
        validate_entries(
            ResourceKind::MeshTcpRoute,
            path,
            self.target_ref.as_ref(),
            (self.to.as_deref(), None),
            None,
            v,
            |entry_path, entry, v| {
                let rules_path = join(entry_path, "rules");
                if entry.rules.len() > 1 {
                    v.add(
                        rules_path.clone(),
                        format!("must have at most one rule (got {})", entry.rules.len()),
                    );
                }
                for (j, rule) in entry.rules.iter().enumerate() {
                    let refs_path = join(&join(&index(&rules_path, j), "default"), "backendRefs");
                    validate_backend_refs(&refs_path, &rule.default.backend_refs, v);
                }
            },
        );
    }
}

impl Targeted for TcpRouteTo {
    fn target_ref(&self) -> &TargetRef {
        &self.target_ref
    }
}

/// The kinds a backendRef may name (Kuma's list).
const BACKEND_KINDS: &[TargetRefKind] = &[
    TargetRefKind::MeshService,
    TargetRefKind::MeshServiceSubset,
    TargetRefKind::MeshExternalService,
    TargetRefKind::MeshMultiZoneService,
];

fn validate_backend_refs(path: &str, refs: &[BackendRef], v: &mut Violations) {
    if refs.is_empty() {
        v.add(path, "must have at least one item");
    }
    for (i, r) in refs.iter().enumerate() {
        let p = index(path, i);
        r.target_ref()
            .validate_at(&p, BACKEND_KINDS, "a backendRef", false, v);
        if r.kind == TargetRefKind::MeshMultiZoneService && r.port.is_none() {
            v.add(
                join(&p, "port"),
                "must be defined with kind MeshMultiZoneService",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ResourceKind;
    use serde_json::json;

    fn errors(value: serde_json::Value) -> Vec<String> {
        crate::test_support::violation_lines(ResourceKind::MeshTcpRoute, value, true)
    }

    fn route(to_ref: serde_json::Value, backend_refs: serde_json::Value) -> serde_json::Value {
        json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": to_ref, "rules": [{"default": {"backendRefs": backend_refs}}]}]})
    }

    #[test]
    fn table() {
        let svc = json!({"kind": "MeshService", "name": "backend"});
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (
                route(
                    svc.clone(),
                    json!([{"kind": "MeshService", "name": "other", "weight": 0}]),
                ),
                vec![],
            ),
            (
                json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": svc.clone()}]}),
                vec![],
            ),
            (
                // Two independent problems are both reported.
                route(
                    json!({"kind": "MeshGateway", "name": "gw"}),
                    json!([{"kind": "MeshServiceSubset", "name": "backend"}]),
                ),
                vec![
                    "spec.to[0].targetRef.kind: MeshTCPRoute `to` does not support kind MeshGateway (allowed: MeshService, MeshExternalService, MeshMultiZoneService)",
                    "spec.to[0].rules[0].default.backendRefs[0].tags: must be set for kind MeshServiceSubset",
                ],
            ),
            (
                route(json!({"kind": "Mesh"}), json!([])),
                vec![
                    "spec.to[0].targetRef.kind: MeshTCPRoute `to` does not support kind Mesh (allowed: MeshService, MeshExternalService, MeshMultiZoneService)",
                    "spec.to[0].rules[0].default.backendRefs: must have at least one item",
                ],
            ),
            (
                route(
                    svc.clone(),
                    json!([{"kind": "MeshService"}, {"kind": "MeshService", "name": "x", "tags": {"a": "b"}}, {"kind": "MeshSubset", "tags": {"a": "b"}}]),
                ),
                vec![
                    "spec.to[0].rules[0].default.backendRefs[0]: name or labels must be set when kind is MeshService",
                    "spec.to[0].rules[0].default.backendRefs[1].tags: must not be set for kind MeshService",
                    "spec.to[0].rules[0].default.backendRefs[2].kind: a backendRef does not support kind MeshSubset (allowed: MeshService, MeshServiceSubset, MeshExternalService, MeshMultiZoneService)",
                ],
            ),
            (
                route(
                    svc.clone(),
                    json!([{"kind": "MeshService", "name": "x", "weight": -1}]),
                ),
                vec![
                    "spec.to[0].rules[0].default.backendRefs[0].weight: invalid value: integer `-1`, expected u32",
                ],
            ),
            (
                json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": svc.clone(), "rules": [
                    {"default": {"backendRefs": [{"kind": "MeshService", "name": "a"}]}},
                    {"default": {"backendRefs": [{"kind": "MeshService", "name": "b"}]}}
                ]}]}),
                vec!["spec.to[0].rules: must have at most one rule (got 2)"],
            ),
            (
                json!({"targetRef": {"kind": "Mesh"}, "from": [{"targetRef": {"kind": "Mesh"}}]}),
                vec!["spec.from: MeshTCPRoute does not support `from`"],
            ),
            (
                json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": svc.clone(), "rules": [{"default": {"backendRefs": [], "filters": []}}]}]}),
                vec![
                    "spec.to[0].rules[0].default.filters: unknown field `filters`, expected `backendRefs`",
                    "spec.to[0].rules[0].default.backendRefs: must have at least one item",
                ],
            ),
        ];
        for (value, want) in cases {
            assert_eq!(errors(value.clone()), want, "{value}");
        }
    }
}
