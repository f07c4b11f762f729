//! `targetRef`: how a policy names the proxies it configures (top level), the
//! destinations it applies to (`to`) and the clients it applies to (`from`).
//!
//! Meridian implements the tag-based kinds of Kuma 2.x — `Mesh`, `MeshSubset`,
//! `MeshService`, `MeshServiceSubset` — and Kuma 2.9+'s `Dataplane` (top level:
//! proxies by `name` or `labels`, one inbound by `sectionName`), with `proxyTypes`
//! on `Mesh`/`MeshSubset`. Kuma's other kinds are recognised so that a document
//! using them gets a clear "not supported by Meridian" violation instead of a
//! generic parse error.
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
    /// Kuma's gateway kind (not supported by Meridian).
    MeshGateway,
    /// Kuma's HTTP route kind (not supported by Meridian).
    #[serde(rename = "MeshHTTPRoute")]
    #[cfg_attr(feature = "openapi", schema(rename = "MeshHTTPRoute"))]
    MeshHttpRoute,
    /// Kuma's external service kind (not supported by Meridian).
    MeshExternalService,
    /// Kuma's multi-zone service kind (not supported by Meridian).
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
    /// The kinds Meridian implements, least specific first.
    pub const SUPPORTED: [TargetRefKind; 5] = [
        Self::Mesh,
        Self::Dataplane,
        Self::MeshSubset,
        Self::MeshService,
        Self::MeshServiceSubset,
    ];

    /// The kinds `to` and `from` entries can use (`Dataplane` is top level only).
    pub const TAG_BASED: [TargetRefKind; 4] = [
        Self::Mesh,
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

    /// Implemented by Meridian.
    pub const fn is_supported(self) -> bool {
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
    /// Tags to match (`MeshSubset`, `MeshServiceSubset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
            TargetRefKind::MeshService => self.name.as_deref() == Some(service),
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
        let kind_path = join(path, "kind");
        if !self.kind.is_supported() {
            let list: Vec<&str> = TargetRefKind::SUPPORTED
                .iter()
                .map(|k| k.as_str())
                .collect();
            v.add(
                kind_path,
                format!(
                    "{} is not supported by Meridian (supported kinds: {})",
                    self.kind,
                    list.join(", ")
                ),
            );
            return;
        }
        if !allowed.contains(&self.kind) {
            let list: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
            v.add(
                kind_path,
                format!(
                    "{place} does not support kind {} (allowed: {})",
                    self.kind,
                    list.join(", ")
                ),
            );
        }
        let kind = self.kind;
        let not_for_kind = |field: &str, v: &mut Violations| {
            v.add(
                join(path, field),
                format!("must not be set for kind {kind}"),
            );
        };
        if kind == TargetRefKind::Dataplane {
            if self.tags.is_some() {
                not_for_kind("tags", v);
            }
            if let Some(name) = &self.name
                && let Err(e) = crate::name::validate_name(name)
            {
                v.add(join(path, "name"), e);
            }
            if let Some(labels) = &self.labels {
                if self.name.is_some() || self.namespace.is_some() {
                    v.add(
                        join(path, "labels"),
                        "either labels or name and namespace must be specified",
                    );
                }
                validate_tags(&join(path, "labels"), labels, v);
            }
            if self.section_name.as_deref() == Some("") {
                v.add(join(path, "sectionName"), "must not be empty");
            } else if self.section_name.is_some() && !inbound {
                v.add(
                    join(path, "sectionName"),
                    "can only be used with inbound policies",
                );
            }
        } else {
            let needs_name = matches!(
                kind,
                TargetRefKind::MeshService | TargetRefKind::MeshServiceSubset
            );
            let needs_tags = matches!(
                kind,
                TargetRefKind::MeshSubset | TargetRefKind::MeshServiceSubset
            );
            validate_name_and_tags(
                path,
                kind,
                self.name.as_deref(),
                self.tags.as_ref(),
                needs_name,
                needs_tags,
                v,
            );
            for (field, set) in [
                ("labels", self.labels.is_some()),
                ("namespace", self.namespace.is_some()),
                ("sectionName", self.section_name.is_some()),
            ] {
                if !set {
                    continue;
                }
                if kind == TargetRefKind::MeshService {
                    // Kuma selects MeshService resources by these; Meridian's
                    // MeshService is the `kuma.io/service` tag until the kind exists.
                    v.add(
                        join(path, field),
                        "is not supported by Meridian yet: it selects MeshService resources, and MeshService here is the kuma.io/service tag",
                    );
                } else {
                    not_for_kind(field, v);
                }
            }
        }
        match (&self.proxy_types, kind) {
            (None, _) => {}
            (Some(types), TargetRefKind::Mesh | TargetRefKind::MeshSubset) => {
                if types.is_empty() {
                    v.add(
                        join(path, "proxyTypes"),
                        "must be undefined or have at least one element",
                    );
                }
            }
            (Some(_), _) => not_for_kind("proxyTypes", v),
        }
        if self.mesh.is_some() {
            v.add(
                join(path, "mesh"),
                "is reserved for cross-mesh references and must not be set",
            );
        }
    }
}

/// Shared by targetRefs and backendRefs: `name` and `tags` must be present
/// exactly when the kind needs them, and well-formed.
pub(crate) fn validate_name_and_tags(
    path: &str,
    kind: TargetRefKind,
    name: Option<&str>,
    tags: Option<&BTreeMap<String, String>>,
    needs_name: bool,
    needs_tags: bool,
    v: &mut Violations,
) {
    let name_path = join(path, "name");
    match (needs_name, name) {
        (true, None) => v.add(name_path, format!("must be set for kind {kind}")),
        (true, Some(n)) => {
            if let Err(e) = validate_tag_value(n) {
                v.add(name_path, e);
            }
        }
        (false, Some(_)) => v.add(name_path, format!("must not be set for kind {kind}")),
        (false, None) => {}
    }
    let tags_path = join(path, "tags");
    match (needs_tags, tags) {
        (true, None) => v.add(tags_path, format!("must be set for kind {kind}")),
        (true, Some(t)) if t.is_empty() => {
            v.add(tags_path, format!("must not be empty for kind {kind}"))
        }
        (true, Some(t)) => validate_tags(&tags_path, t, v),
        (false, Some(_)) => v.add(tags_path, format!("must not be set for kind {kind}")),
        (false, None) => {}
    }
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
        let all = &TargetRefKind::SUPPORTED;
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
                vec!["spec.targetRef.name: must be set for kind MeshService"],
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
                    "spec.targetRef.kind: MeshGateway is not supported by Meridian (supported kinds: Mesh, Dataplane, MeshSubset, MeshService, MeshServiceSubset)",
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
                    "spec.targetRef.labels: is not supported by Meridian yet: it selects MeshService resources, and MeshService here is the kuma.io/service tag",
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
