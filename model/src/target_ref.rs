//! `targetRef`: how a policy names the proxies it configures (top level), the
//! destinations it applies to (`to`) and the clients it applies to (`from`).
//!
//! Meridian implements the tag-based kinds of Kuma 2.x: `Mesh`, `MeshSubset`,
//! `MeshService` and `MeshServiceSubset`. Kuma's other kinds are recognised so
//! that a document using them gets a clear "not supported by Meridian"
//! violation instead of a generic parse error.

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
    /// Kuma 2.9+ dataplane kind (not supported by Meridian).
    Dataplane,
}

impl TargetRefKind {
    /// The four kinds Meridian implements, least specific first.
    pub const SUPPORTED: [TargetRefKind; 4] = [
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
            Self::Mesh | Self::MeshSubset | Self::MeshService | Self::MeshServiceSubset
        )
    }

    /// Kuma's specificity order: Mesh < MeshSubset < MeshService < MeshServiceSubset.
    /// Unsupported kinds never pass validation; they rank lowest.
    pub const fn specificity(self) -> u8 {
        match self {
            Self::Mesh => 1,
            Self::MeshSubset => 2,
            Self::MeshService => 3,
            Self::MeshServiceSubset => 4,
            _ => 0,
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
}

impl TargetRef {
    /// A `Mesh` reference.
    pub fn mesh() -> Self {
        Self {
            kind: TargetRefKind::Mesh,
            name: None,
            tags: None,
            mesh: None,
        }
    }

    /// A `MeshService` reference.
    pub fn service(name: impl Into<String>) -> Self {
        Self {
            kind: TargetRefKind::MeshService,
            name: Some(name.into()),
            tags: None,
            mesh: None,
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
            TargetRefKind::Mesh => true,
            TargetRefKind::MeshSubset => tags_match(),
            TargetRefKind::MeshService => self.name.as_deref() == Some(service),
            TargetRefKind::MeshServiceSubset => {
                self.name.as_deref() == Some(service) && tags_match()
            }
            _ => false,
        }
    }

    /// Records violations of this reference at `path`. `allowed` are the kinds
    /// the policy accepts at this level, `place` describes the level for
    /// messages (e.g. "MeshTCPRoute `to`").
    pub(crate) fn validate_at(
        &self,
        path: &str,
        allowed: &[TargetRefKind],
        place: &str,
        v: &mut Violations,
    ) {
        let kind_path = join(path, "kind");
        if !self.kind.is_supported() {
            v.add(
                kind_path,
                format!(
                    "{} is not supported by Meridian (supported kinds: Mesh, MeshSubset, MeshService, MeshServiceSubset)",
                    self.kind
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
        let needs_name = matches!(
            self.kind,
            TargetRefKind::MeshService | TargetRefKind::MeshServiceSubset
        );
        let needs_tags = matches!(
            self.kind,
            TargetRefKind::MeshSubset | TargetRefKind::MeshServiceSubset
        );
        validate_name_and_tags(
            path,
            self.kind,
            self.name.as_deref(),
            self.tags.as_ref(),
            needs_name,
            needs_tags,
            v,
        );
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
        tr.validate_at("spec.targetRef", allowed, "MeshTimeout top-level", &mut v);
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
                    "spec.targetRef.kind: MeshGateway is not supported by Meridian (supported kinds: Mesh, MeshSubset, MeshService, MeshServiceSubset)",
                ],
            ),
            (
                json!({"kind": "Mesh", "mesh": "other"}),
                vec![
                    "spec.targetRef.mesh: is reserved for cross-mesh references and must not be set",
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
            kind: TargetRefKind::MeshSubset,
            name: None,
            tags: Some(
                t.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            mesh: None,
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
