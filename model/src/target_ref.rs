//! `targetRef`: how a policy names the proxies it configures (top level), the
//! destinations it applies to (`to`) and the clients it applies to (`from`).
//!
//! Every kind of Kuma 2.14 is accepted where Kuma's validators accept it, with
//! Kuma's field rules per kind ([`TargetRef::validate_with`]). Meridian resolves
//! the tag-based kinds — `Mesh`, `MeshSubset`, `MeshService` (by name: the
//! `kuma.io/service` tag), `MeshServiceSubset` — and Kuma 2.9+'s `Dataplane`
//! (top level: proxies by `name` or `labels`, one inbound by `sectionName`), with
//! `proxyTypes` on `Mesh`/`MeshSubset`. The other kinds (`MeshGateway`,
//! `MeshHTTPRoute`, `MeshExternalService`, `MeshMultiZoneService`) and MeshService
//! `labels`/`namespace` are kept, select nothing, and are named in the write's
//! warnings ([`crate::warnings()`]), never silently ignored.
//!
//! Specificity follows Kuma's table (`api/common/v1alpha1/targetref.go`): Mesh <
//! Dataplane < MeshSubset < MeshService < MeshServiceSubset; among `Dataplane`
//! refs, `labels` < `name`, and without `sectionName` < with it.

use std::collections::BTreeMap;

use crate::error::{Violations, join};
use crate::name::{validate_tag_key, validate_tag_value};

/// The kind of thing a targetRef names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TargetRefKind {
    /// Every proxy / destination / client of the mesh.
    Mesh,
    /// Proxies whose tags include the given tags.
    MeshSubset,
    /// One service (the `kuma.io/service` tag).
    MeshService,
    /// The instances of a service whose tags include the given tags.
    MeshServiceSubset,
    /// Kuma's built-in gateway (Meridian has none: selects nothing).
    MeshGateway,
    /// Kuma's HTTP route (Meridian is L4: selects nothing).
    #[serde(rename = "MeshHTTPRoute")]
    #[cfg_attr(feature = "openapi", schema(rename = "MeshHTTPRoute"))]
    MeshHttpRoute,
    /// A service outside the mesh, reached through the egress (not resolved
    /// yet: selects nothing).
    MeshExternalService,
    /// A service made of MeshServices of several zones (not resolved yet:
    /// selects nothing).
    MeshMultiZoneService,
    /// Kuma 2.9+: data plane proxies by name or labels (top level only).
    Dataplane,
}

/// Kuma's proxy types a `Mesh`/`MeshSubset` ref can be narrowed to. Meridian's
/// proxies are all sidecars: a ref for gateways only selects nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ProxyType {
    /// A sidecar next to an application.
    Sidecar,
    /// A gateway (Meridian has none).
    Gateway,
}

impl TargetRefKind {
    /// The kinds whose refs Meridian resolves to proxies, destinations or
    /// clients, least specific first. The others are accepted where Kuma
    /// accepts them and select nothing; [`crate::warnings()`] names each use.
    pub const RESOLVED: [TargetRefKind; 5] = [
        Self::Mesh,
        Self::Dataplane,
        Self::MeshSubset,
        Self::MeshService,
        Self::MeshServiceSubset,
    ];

    /// The name as written in documents.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Mesh => "Mesh",
            Self::MeshSubset => "MeshSubset",
            Self::MeshService => "MeshService",
            Self::MeshServiceSubset => "MeshServiceSubset",
            Self::MeshGateway => "MeshGateway",
            Self::MeshHttpRoute => "MeshHTTPRoute",
            Self::MeshExternalService => "MeshExternalService",
            Self::MeshMultiZoneService => "MeshMultiZoneService",
            Self::Dataplane => "Dataplane",
        }
    }

    /// Resolved by Meridian (see [`TargetRefKind::RESOLVED`]).
    pub const fn is_resolved(self) -> bool {
        matches!(
            self,
            Self::Mesh
                | Self::Dataplane
                | Self::MeshSubset
                | Self::MeshService
                | Self::MeshServiceSubset
        )
    }

    /// Kuma's specificity order (its `order` table): Mesh 1 < Dataplane 2 <
    /// MeshSubset 3 < MeshGateway 4 < MeshService 5 < MeshExternalService 6 <
    /// MeshMultiZoneService 7 < MeshServiceSubset 8 < MeshHTTPRoute 9.
    pub const fn specificity(self) -> u8 {
        match self {
            Self::Mesh => 1,
            Self::Dataplane => 2,
            Self::MeshSubset => 3,
            Self::MeshGateway => 4,
            Self::MeshService => 5,
            Self::MeshExternalService => 6,
            Self::MeshMultiZoneService => 7,
            Self::MeshServiceSubset => 8,
            Self::MeshHttpRoute => 9,
        }
    }
}

impl std::fmt::Display for TargetRefKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reference to a group of proxies, destinations or clients.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TargetRef {
    /// What kind of thing is referenced.
    pub kind: TargetRefKind,
    /// The service name (`MeshService`, `MeshServiceSubset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tags to match (`MeshSubset`, `MeshServiceSubset`; a `MeshGateway`
    /// listener's). A number or boolean value is read as its text, as Kuma's
    /// decoder reads `port: 6000`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "scalar_tags"
    )]
    pub tags: Option<BTreeMap<String, String>>,
    /// Reserved by Kuma for cross-mesh references; must not be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    /// Resource labels to match (`Dataplane`: the Dataplane resource's labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The namespace of a named resource (`Dataplane`): matched against the
    /// `k8s.kuma.io/namespace` label, which universal resources do not have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// One inbound of the selected `Dataplane`, by its `name` or its port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// The proxy types a `Mesh` or `MeshSubset` ref is narrowed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_types: Option<Vec<ProxyType>>,
}

/// The label naming a Kubernetes namespace (what a `namespace` matches).
pub const NAMESPACE_LABEL: &str = "k8s.kuma.io/namespace";

impl TargetRef {
    /// A `Mesh` reference.
    pub fn mesh() -> Self {
        Self::of(TargetRefKind::Mesh)
    }

    /// A reference of `kind` with no other field set.
    pub fn of(kind: TargetRefKind) -> Self {
        Self {
            kind,
            name: None,
            tags: None,
            mesh: None,
            labels: None,
            namespace: None,
            section_name: None,
            proxy_types: None,
        }
    }

    /// Kuma's ordering of top-level refs: the kind's specificity, then (for
    /// `Dataplane`) `labels` before `name`, and without `sectionName` before with.
    pub fn specificity(&self) -> (u8, u8, u8) {
        let dataplane = self.kind == TargetRefKind::Dataplane;
        (
            self.kind.specificity(),
            u8::from(dataplane && self.name.is_some()),
            u8::from(dataplane && self.section_name.is_some()),
        )
    }

    /// Whether the ref's `proxyTypes` (if any) include sidecars, the only proxies
    /// Meridian has.
    pub fn includes_sidecars(&self) -> bool {
        self.proxy_types
            .as_ref()
            .is_none_or(|types| types.contains(&ProxyType::Sidecar))
    }

    /// Whether a `Dataplane` ref selects the proxy named `name` with resource
    /// `labels` (any other kind: `false`).
    pub fn selects_dataplane_named(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.kind != TargetRefKind::Dataplane {
            return false;
        }
        let name_ok = self.name.as_deref().is_none_or(|n| n == name);
        let namespace_ok = self
            .namespace
            .as_deref()
            .is_none_or(|ns| labels.get(NAMESPACE_LABEL).is_some_and(|l| l == ns));
        let labels_ok = self
            .labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v));
        name_ok && namespace_ok && labels_ok
    }

    /// Whether a `sectionName` (if any) names the inbound with this `name` and
    /// `port`, as Kuma resolves it (the inbound's name, else its port).
    pub fn section_selects(&self, inbound_name: Option<&str>, port: u32) -> bool {
        self.section_name
            .as_deref()
            .is_none_or(|s| inbound_name == Some(s) || s == port.to_string())
    }

    /// A `MeshService` reference.
    pub fn service(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::of(TargetRefKind::MeshService)
        }
    }

    /// Whether a workload with this service and tags is selected. The service
    /// is passed apart because a dataplane can expose several.
    pub fn selects(&self, service: &str, tags: &BTreeMap<String, String>) -> bool {
        self.selects_by(service, |k, v| tags.get(k).is_some_and(|have| have == v))
    }

    /// [`TargetRef::selects`] for a workload whose tags are known only through
    /// `has_tag(key, value)`: a client whose certificate states its tags, where one
    /// tag may have several values (one per inbound) and a subset needs every
    /// required pair present.
    pub fn selects_by(&self, service: &str, has_tag: impl Fn(&str, &str) -> bool) -> bool {
        let tags_match = || self.tags.iter().flatten().all(|(k, v)| has_tag(k, v));
        match self.kind {
            TargetRefKind::Mesh => self.includes_sidecars(),
            TargetRefKind::MeshSubset => self.includes_sidecars() && tags_match(),
            // `labels` and `namespace` select MeshService resources, which
            // matching does not resolve yet (a warning says so).
            TargetRefKind::MeshService => {
                self.labels.is_none()
                    && self.namespace.is_none()
                    && self.name.as_deref() == Some(service)
            }
            TargetRefKind::MeshServiceSubset => {
                self.name.as_deref() == Some(service) && tags_match()
            }
            // `Dataplane` refs select by the proxy's name and labels
            // ([`TargetRef::selects_dataplane_named`]), which a service and tags
            // do not carry.
            _ => false,
        }
    }

    /// Records violations of this reference at `path`. `allowed` are the kinds
    /// the policy accepts at this level, `place` describes the level for
    /// messages (e.g. "MeshTCPRoute `to`"); `inbound` says whether the policy
    /// configures inbounds (it has `from` entries), which a `Dataplane`
    /// `sectionName` needs (Kuma's rule).
    pub(crate) fn validate_at(
        &self,
        path: &str,
        allowed: &[TargetRefKind],
        place: &str,
        inbound: bool,
        v: &mut Violations,
    ) {
        self.validate_with(
            path,
            &RefRules {
                allowed,
                place,
                inbound,
                gateway_tags: false,
            },
            v,
        );
    }

    /// [`TargetRef::validate_at`] with every option (Kuma's
    /// `ValidateTargetRefOpts`): the field rules per kind are Kuma's.
    pub(crate) fn validate_with(&self, path: &str, rules: &RefRules<'_>, v: &mut Violations) {
        let kind = self.kind;
        if !rules.allowed.contains(&kind) {
            let list: Vec<&str> = rules.allowed.iter().map(|k| k.as_str()).collect();
            v.add(
                join(path, "kind"),
                format!(
                    "{} does not support kind {kind} (allowed: {})",
                    rules.place,
                    list.join(", ")
                ),
            );
            // Kuma checks nothing else of a ref whose kind is not allowed.
            return;
        }
        let not_for_kind = |field: &str, v: &mut Violations| {
            v.add(
                join(path, field),
                format!("must not be set for kind {kind}"),
            );
        };
        let forbid = |fields: &[(&str, bool)], v: &mut Violations| {
            for (field, set) in fields {
                if *set {
                    not_for_kind(field, v);
                }
            }
        };
        let (name, tags, labels) = (
            self.name.is_some(),
            self.tags.is_some(),
            self.labels.is_some(),
        );
        let (namespace, section, proxy_types) = (
            self.namespace.is_some(),
            self.section_name.is_some(),
            self.proxy_types.is_some(),
        );
        match kind {
            TargetRefKind::Mesh => {
                forbid(
                    &[
                        ("name", name),
                        ("tags", tags),
                        ("labels", labels),
                        ("namespace", namespace),
                        ("sectionName", section),
                    ],
                    v,
                );
                self.validate_proxy_types(path, v);
            }
            TargetRefKind::MeshSubset => {
                forbid(&[("name", name)], v);
                self.validate_required_tags(path, v);
                forbid(
                    &[
                        ("labels", labels),
                        ("namespace", namespace),
                        ("sectionName", section),
                    ],
                    v,
                );
                self.validate_proxy_types(path, v);
            }
            TargetRefKind::Dataplane => {
                forbid(&[("tags", tags)], v);
                self.validate_resource_name(path, v);
                self.validate_labels_or_name(
                    path,
                    "either labels or name and namespace must be specified",
                    v,
                );
                if self.section_name.as_deref() == Some("") {
                    v.add(join(path, "sectionName"), "must not be empty");
                } else if section && !rules.inbound {
                    v.add(
                        join(path, "sectionName"),
                        "can only be used with inbound policies",
                    );
                }
                forbid(&[("proxyTypes", proxy_types)], v);
            }
            TargetRefKind::MeshService | TargetRefKind::MeshHttpRoute => {
                self.validate_service_name(path, v);
                forbid(&[("tags", tags), ("proxyTypes", proxy_types)], v);
                self.require_name_or_labels(path, v);
                self.validate_labels_or_name(
                    path,
                    "either labels or name and namespace must be specified",
                    v,
                );
                if kind == TargetRefKind::MeshHttpRoute {
                    forbid(&[("sectionName", section)], v);
                } else if self.section_name.as_deref() == Some("") {
                    v.add(join(path, "sectionName"), "must not be empty");
                }
            }
            TargetRefKind::MeshExternalService => {
                self.validate_service_name(path, v);
                forbid(&[("tags", tags), ("proxyTypes", proxy_types)], v);
                self.require_name_or_labels(path, v);
                self.validate_labels_or_name(path, "either labels or name must be specified", v);
                forbid(&[("sectionName", section)], v);
            }
            TargetRefKind::MeshServiceSubset | TargetRefKind::MeshGateway => {
                match &self.name {
                    None => v.add(join(path, "name"), format!("must be set for kind {kind}")),
                    Some(_) => self.validate_service_name(path, v),
                }
                if kind == TargetRefKind::MeshServiceSubset {
                    self.validate_required_tags(path, v);
                } else if tags && !rules.gateway_tags {
                    not_for_kind("tags", v);
                } else if let Some(t) = &self.tags {
                    validate_tags(&join(path, "tags"), t, v);
                }
                forbid(
                    &[
                        ("proxyTypes", proxy_types),
                        ("labels", labels),
                        ("namespace", namespace),
                        ("sectionName", section),
                    ],
                    v,
                );
            }
            // Kuma's validator has no field rules for this kind.
            TargetRefKind::MeshMultiZoneService => {
                if let Some(l) = &self.labels {
                    validate_tags(&join(path, "labels"), l, v);
                }
            }
        }
        if self.mesh.is_some() {
            v.add(
                join(path, "mesh"),
                "is reserved for cross-mesh references and must not be set",
            );
        }
    }

    fn validate_proxy_types(&self, path: &str, v: &mut Violations) {
        if self.proxy_types.as_ref().is_some_and(Vec::is_empty) {
            v.add(
                join(path, "proxyTypes"),
                "must be undefined or have at least one element",
            );
        }
    }

    /// `tags` required and non-empty, every pair well-formed.
    fn validate_required_tags(&self, path: &str, v: &mut Violations) {
        let tags_path = join(path, "tags");
        match &self.tags {
            None => v.add(tags_path, format!("must be set for kind {}", self.kind)),
            Some(t) if t.is_empty() => v.add(
                tags_path,
                format!("must not be empty for kind {}", self.kind),
            ),
            Some(t) => validate_tags(&tags_path, t, v),
        }
    }

    /// A `Dataplane` name is a resource name.
    fn validate_resource_name(&self, path: &str, v: &mut Violations) {
        if let Some(name) = &self.name
            && let Err(e) = crate::name::validate_name(name)
        {
            v.add(join(path, "name"), e);
        }
    }

    /// The name of a service-like kind: a service tag value (a MeshService is
    /// named after its `kuma.io/service`).
    fn validate_service_name(&self, path: &str, v: &mut Violations) {
        if let Some(name) = &self.name
            && let Err(e) = validate_tag_value(name)
        {
            v.add(join(path, "name"), e);
        }
    }

    fn require_name_or_labels(&self, path: &str, v: &mut Violations) {
        let no_labels = self.labels.as_ref().is_none_or(BTreeMap::is_empty);
        if no_labels && self.name.as_deref().is_none_or(str::is_empty) {
            v.add(
                path,
                format!("name or labels must be set when kind is {}", self.kind),
            );
        }
    }

    /// `labels` select resources by label; they exclude `name` and `namespace`.
    fn validate_labels_or_name(&self, path: &str, message: &str, v: &mut Violations) {
        if let Some(labels) = &self.labels {
            if !labels.is_empty() && (self.name.is_some() || self.namespace.is_some()) {
                v.add(join(path, "labels"), message);
            }
            validate_tags(&join(path, "labels"), labels, v);
        }
    }
}

/// What a level of a policy accepts in its targetRefs (Kuma's
/// `ValidateTargetRefOpts`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefRules<'a> {
    /// The kinds allowed at this level.
    pub(crate) allowed: &'a [TargetRefKind],
    /// The level, for messages ("MeshTimeout `to`").
    pub(crate) place: &'a str,
    /// The policy configures inbounds (a `Dataplane` `sectionName` needs it).
    pub(crate) inbound: bool,
    /// A `MeshGateway` ref may carry listener `tags` here.
    pub(crate) gateway_tags: bool,
}

/// Deserializes a tag map whose values may be written as numbers or booleans
/// (YAML `port: 6000`), keeping each as its text.
fn scalar_tags<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Text(String);
    impl<'de> serde::Deserialize<'de> for Text {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Text;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string, number or boolean")
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                    Ok(Text(v.to_owned()))
                }
                fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
                fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
                fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
                fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }
    let map: Option<BTreeMap<String, Text>> = serde::Deserialize::deserialize(d)?;
    Ok(map.map(|m| m.into_iter().map(|(k, Text(v))| (k, v)).collect()))
}

/// Records malformed tag keys and values under `path`.
pub(crate) fn validate_tags(path: &str, tags: &BTreeMap<String, String>, v: &mut Violations) {
    for (k, val) in tags {
        let p = format!("{path}[\"{k}\"]");
        if let Err(e) = validate_tag_key(k) {
            v.add(p.clone(), e);
        }
        if let Err(e) = validate_tag_value(val) {
            v.add(p, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: serde_json::Value, allowed: &[TargetRefKind]) -> Vec<String> {
        let tr: TargetRef = serde_json::from_value(value).expect("parse");
        let mut v = Violations::default();
        tr.validate_at(
            "spec.targetRef",
            allowed,
            "MeshTimeout top-level",
            true,
            &mut v,
        );
        v.0.into_iter()
            .map(|f| format!("{}: {}", f.field, f.reason))
            .collect()
    }

    #[test]
    fn kind_rules() {
        let all = &[
            TargetRefKind::Mesh,
            TargetRefKind::Dataplane,
            TargetRefKind::MeshSubset,
            TargetRefKind::MeshService,
            TargetRefKind::MeshServiceSubset,
        ];
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (json!({"kind": "Mesh"}), vec![]),
            (
                json!({"kind": "Mesh", "name": "x"}),
                vec!["spec.targetRef.name: must not be set for kind Mesh"],
            ),
            (
                json!({"kind": "Mesh", "tags": {"a": "b"}}),
                vec!["spec.targetRef.tags: must not be set for kind Mesh"],
            ),
            (
                json!({"kind": "MeshSubset", "tags": {"app": "frontend"}}),
                vec![],
            ),
            (
                json!({"kind": "MeshSubset"}),
                vec!["spec.targetRef.tags: must be set for kind MeshSubset"],
            ),
            (
                json!({"kind": "MeshSubset", "tags": {}}),
                vec!["spec.targetRef.tags: must not be empty for kind MeshSubset"],
            ),
            (json!({"kind": "MeshService", "name": "backend"}), vec![]),
            (
                json!({"kind": "MeshService"}),
                vec!["spec.targetRef: name or labels must be set when kind is MeshService"],
            ),
            (
                json!({"kind": "MeshServiceSubset", "name": "b", "tags": {"v": "1"}}),
                vec![],
            ),
            (
                json!({"kind": "MeshServiceSubset"}),
                vec![
                    "spec.targetRef.name: must be set for kind MeshServiceSubset",
                    "spec.targetRef.tags: must be set for kind MeshServiceSubset",
                ],
            ),
            (
                json!({"kind": "MeshGateway", "name": "gw"}),
                vec![
                    "spec.targetRef.kind: MeshTimeout top-level does not support kind MeshGateway (allowed: Mesh, Dataplane, MeshSubset, MeshService, MeshServiceSubset)",
                ],
            ),
            (
                json!({"kind": "Mesh", "mesh": "other"}),
                vec![
                    "spec.targetRef.mesh: is reserved for cross-mesh references and must not be set",
                ],
            ),
            (
                json!({"kind": "Dataplane", "name": "web-1", "sectionName": "main"}),
                vec![],
            ),
            (
                json!({"kind": "Dataplane", "labels": {"team": "a"}}),
                vec![],
            ),
            (json!({"kind": "Dataplane"}), vec![]),
            (
                json!({"kind": "Dataplane", "name": "web-1", "labels": {"team": "a"}, "tags": {"a": "b"}, "proxyTypes": ["Sidecar"]}),
                vec![
                    "spec.targetRef.tags: must not be set for kind Dataplane",
                    "spec.targetRef.labels: either labels or name and namespace must be specified",
                    "spec.targetRef.proxyTypes: must not be set for kind Dataplane",
                ],
            ),
            (
                json!({"kind": "Mesh", "proxyTypes": ["Sidecar", "Gateway"]}),
                vec![],
            ),
            (
                json!({"kind": "Mesh", "proxyTypes": [], "sectionName": "x", "labels": {"a": "b"}}),
                vec![
                    "spec.targetRef.labels: must not be set for kind Mesh",
                    "spec.targetRef.sectionName: must not be set for kind Mesh",
                    "spec.targetRef.proxyTypes: must be undefined or have at least one element",
                ],
            ),
            (
                json!({"kind": "MeshService", "labels": {"a": "b"}, "name": "x"}),
                vec![
                    "spec.targetRef.labels: either labels or name and namespace must be specified",
                ],
            ),
            (json!({"kind": "MeshService", "labels": {"a": "b"}}), vec![]),
            (
                json!({"kind": "MeshService", "name": "x", "sectionName": "http", "namespace": "ns"}),
                vec![],
            ),
            (
                json!({"kind": "MeshService", "tags": {"a": "b"}, "proxyTypes": ["Sidecar"]}),
                vec![
                    "spec.targetRef.tags: must not be set for kind MeshService",
                    "spec.targetRef.proxyTypes: must not be set for kind MeshService",
                    "spec.targetRef: name or labels must be set when kind is MeshService",
                ],
            ),
            (
                json!({"kind": "MeshSubset", "tags": {"a b": "c"}}),
                vec![
                    "spec.targetRef.tags[\"a b\"]: invalid tag key \"a b\": may only contain alphanumerics, '.', '-', '_', ':' or '/'",
                ],
            ),
        ];
        for (value, want) in cases {
            assert_eq!(check(value.clone(), all), want, "{value}");
        }
        let tr: TargetRef =
            serde_json::from_value(json!({"kind": "Dataplane", "sectionName": "main"})).unwrap();
        let mut v = Violations::default();
        tr.validate_at(
            "spec.targetRef",
            all,
            "MeshTCPRoute top-level",
            false,
            &mut v,
        );
        assert_eq!(
            v.0.iter()
                .map(|f| format!("{}: {}", f.field, f.reason))
                .collect::<Vec<_>>(),
            ["spec.targetRef.sectionName: can only be used with inbound policies"]
        );
        assert_eq!(
            check(
                json!({"kind": "MeshSubset", "tags": {"a": "b"}}),
                &[TargetRefKind::Mesh, TargetRefKind::MeshService]
            ),
            vec![
                "spec.targetRef.kind: MeshTimeout top-level does not support kind MeshSubset (allowed: Mesh, MeshService)"
            ]
        );
    }

    #[test]
    fn selects() {
        let tags: BTreeMap<String, String> = [
            ("app".to_owned(), "frontend".to_owned()),
            ("version".to_owned(), "v1".to_owned()),
        ]
        .into();
        let subset = |t: &[(&str, &str)]| TargetRef {
            tags: Some(
                t.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..TargetRef::of(TargetRefKind::MeshSubset)
        };
        assert!(TargetRef::mesh().selects("web", &tags));
        assert!(subset(&[("app", "frontend")]).selects("web", &tags));
        assert!(!subset(&[("app", "backend")]).selects("web", &tags));
        assert!(TargetRef::service("web").selects("web", &tags));
        assert!(!TargetRef::service("api").selects("web", &tags));
        let mut ss = subset(&[("version", "v1")]);
        ss.kind = TargetRefKind::MeshServiceSubset;
        ss.name = Some("web".into());
        assert!(ss.selects("web", &tags));
        assert!(!ss.selects("api", &tags));
    }
}
