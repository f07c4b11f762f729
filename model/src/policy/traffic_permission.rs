//! `MeshTrafficPermission`: which clients may open connections to the
//! selected proxies. Only `from` entries; each says Allow, Deny or
//! AllowWithShadowDeny for the clients its targetRef selects.

use crate::error::{Validate, Violations};
use crate::kind::ResourceKind;
use crate::policy::{PolicyEntry, TargetRefPolicy, entries, validate_entries};
use crate::target_ref::TargetRef;

/// The body (`spec`) of a `MeshTrafficPermission`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshTrafficPermissionSpec {
    /// The proxies whose inbounds are protected; absent means `Mesh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    /// Rules per group of clients; at least one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<TrafficPermissionFrom>>,
}

/// One rule: the clients it applies to and the action.
pub type TrafficPermissionFrom = PolicyEntry<TrafficPermissionConf>;

#[cfg(feature = "openapi")]
impl super::EntrySchema for TrafficPermissionConf {
    const ENTRY: super::EntryDocs = super::EntryDocs {
        name: "TrafficPermissionFrom",
        about: "One rule: the clients it applies to and the action.",
        target_ref: "The clients.",
        default: "What to do with their connections.",
    };
}

/// The mergeable configuration of a traffic permission rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrafficPermissionConf {
    /// The action.
    pub action: Action,
}

/// What happens to a client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Action {
    /// Let it through.
    Allow,
    /// Reject it.
    Deny,
    /// Let it through but log that it would be denied (for rolling out denies).
    AllowWithShadowDeny,
}

impl Action {
    /// Whether the connection is let through.
    pub const fn allows(self) -> bool {
        matches!(self, Self::Allow | Self::AllowWithShadowDeny)
    }
}

impl TargetRefPolicy for MeshTrafficPermissionSpec {
    type Conf = TrafficPermissionConf;

    fn target_ref(&self) -> Option<&TargetRef> {
        self.target_ref.as_ref()
    }

    fn entries_from(&self) -> Vec<(&TargetRef, &Self::Conf)> {
        entries(self.from.as_deref())
    }
}

impl Validate for MeshTrafficPermissionSpec {
    fn validate(&self, path: &str, v: &mut Violations) {
        validate_entries(
            ResourceKind::MeshTrafficPermission,
            path,
            self.target_ref.as_ref(),
            (None, self.from.as_deref()),
            v,
            |_, _, _| {},
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::{ResourceKind, Spec};
    use serde_json::json;

    fn errors(value: serde_json::Value) -> Vec<String> {
        match Spec::from_value(ResourceKind::MeshTrafficPermission, value.clone()) {
            Ok(spec) => {
                assert_eq!(spec.to_value(), value);
                vec![]
            }
            Err(e) => e
                .violations
                .into_iter()
                .map(|v| format!("{}: {}", v.field, v.reason))
                .collect(),
        }
    }

    #[test]
    fn table() {
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (
                json!({"targetRef": {"kind": "Mesh"}, "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}),
                vec![],
            ),
            (
                json!({"targetRef": {"kind": "MeshService", "name": "backend"}, "from": [
                    {"targetRef": {"kind": "MeshSubset", "tags": {"env": "dev"}}, "default": {"action": "Deny"}},
                    {"targetRef": {"kind": "MeshServiceSubset", "name": "web", "tags": {"v": "1"}}, "default": {"action": "AllowWithShadowDeny"}}
                ]}),
                vec![],
            ),
            (
                json!({"targetRef": {"kind": "Mesh"}}),
                vec!["spec.from: must be set"],
            ),
            (
                json!({"from": []}),
                vec!["spec.from: must have at least one item"],
            ),
            (
                json!({"targetRef": {"kind": "Mesh"}, "to": [], "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}),
                vec!["spec.to: MeshTrafficPermission does not support `to`"],
            ),
            (
                json!({"from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Maybe"}}]}),
                vec![
                    "spec.from[0].default.action: unknown variant `Maybe`, expected one of `Allow`, `Deny`, `AllowWithShadowDeny`",
                ],
            ),
            (
                json!({"from": [{"targetRef": {"kind": "MeshService"}, "default": {"action": "Deny"}}]}),
                vec!["spec.from[0].targetRef.name: must be set for kind MeshService"],
            ),
        ];
        for (value, want) in cases {
            assert_eq!(errors(value.clone()), want, "{value}");
        }
    }
}
