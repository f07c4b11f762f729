//! `MeshTrafficPermission`: which clients may open connections to the
//! selected proxies. Either `from` entries, each saying Allow, Deny or
//! AllowWithShadowDeny for the clients its targetRef selects (the 2.x model),
//! or inbound `rules` (Kuma 2.10+): lists of `matches` on the client's SPIFFE
//! ID and SNI to deny, allow with shadow deny, or allow. Never both in one
//! policy.

use crate::error::{Validate, Violations, index, join};
use crate::kind::ResourceKind;
use crate::policy::inbound_match::{Match, validate_matches};
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
    /// Rules per group of clients (or `rules`, not both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<TrafficPermissionFrom>>,
    /// Inbound rules by client SPIFFE ID and SNI (or `from`, not both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<TrafficPermissionRule>>,
}

/// An inbound rule of a `MeshTrafficPermission`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrafficPermissionRule {
    /// Which clients are denied or allowed.
    #[serde(default)]
    pub default: TrafficPermissionRuleConf,
}

/// Which clients an inbound rule denies or allows. At an inbound, every deny
/// of every applicable policy is checked first, then the allows (shadow denies
/// included); a client no match selects is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrafficPermissionRuleConf {
    /// Clients refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<Vec<Match>>,
    /// Clients let through but logged as if denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_with_shadow_deny: Option<Vec<Match>>,
    /// Clients let through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<Match>>,
}

impl TrafficPermissionRuleConf {
    /// Each list with the action it stands for.
    pub fn lists(&self) -> [(Action, &[Match]); 3] {
        [
            (Action::Deny, self.deny.as_deref().unwrap_or_default()),
            (
                Action::AllowWithShadowDeny,
                self.allow_with_shadow_deny.as_deref().unwrap_or_default(),
            ),
            (Action::Allow, self.allow.as_deref().unwrap_or_default()),
        ]
    }
}

impl MeshTrafficPermissionSpec {
    /// The confs of the inbound `rules`, in document order.
    pub fn rule_confs(&self) -> impl Iterator<Item = &TrafficPermissionRuleConf> {
        self.rules.iter().flatten().map(|r| &r.default)
    }
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

    fn reaches_inbounds(&self) -> bool {
        // Its rules carry their own conf, so they are not `entries_rules`.
        self.from.as_ref().is_some_and(|f| !f.is_empty())
            || self.rules.as_ref().is_some_and(|r| !r.is_empty())
    }
}

impl Validate for MeshTrafficPermissionSpec {
    fn validate(&self, path: &str, v: &mut Violations) {
        validate_entries(
            ResourceKind::MeshTrafficPermission,
            path,
            self.target_ref.as_ref(),
            (None, self.from.as_deref()),
            self.rules.as_ref().map(Vec::len),
            v,
            |_, _, _| {},
        );
        let rules_path = join(path, "rules");
        for (i, conf) in self.rule_confs().enumerate() {
            let at = join(&index(&rules_path, i), "default");
            if conf.lists().iter().all(|(_, l)| l.is_empty()) {
                v.add(
                    index(&rules_path, i),
                    "at least one of 'allow', 'allowWithShadowDeny', 'deny' has to be defined",
                );
            }
            for (field, list) in [
                ("deny", &conf.deny),
                ("allowWithShadowDeny", &conf.allow_with_shadow_deny),
                ("allow", &conf.allow),
            ] {
                validate_matches(&join(&at, field), list.as_deref(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ResourceKind;
    use serde_json::json;

    fn errors(value: serde_json::Value) -> Vec<String> {
        crate::test_support::violation_lines(ResourceKind::MeshTrafficPermission, value, true)
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
                vec!["spec: at least one of 'from' or 'rules' has to be defined"],
            ),
            (
                json!({"from": []}),
                vec!["spec: at least one of 'from' or 'rules' has to be defined"],
            ),
            (
                json!({"rules": [{"default": {
                    "deny": [{"spiffeID": {"type": "Exact", "value": "spiffe://default/web"}}],
                    "allow": [{"spiffeID": {"type": "Prefix", "value": "spiffe://default"}},
                              {"sni": {"type": "Exact", "value": "backend.default"}}]
                }}]}),
                vec![],
            ),
            (
                json!({"rules": [{"default": {}}, {"default": {
                    "allow": [{"spiffeID": {"type": "Exact", "value": "web"}}, {"sni": {"type": "Exact"}}]
                }}], "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}),
                vec![
                    "spec: field 'from' must be empty when 'rules' is defined",
                    "spec.rules[0]: at least one of 'allow', 'allowWithShadowDeny', 'deny' has to be defined",
                    "spec.rules[1].default.allow[0].spiffeID: must be a valid Spiffe ID: scheme is missing or invalid (got \"web\")",
                    "spec.rules[1].default.allow[1].sni.value: must be set",
                ],
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
                vec!["spec.from[0].targetRef: name or labels must be set when kind is MeshService"],
            ),
        ];
        for (value, want) in cases {
            assert_eq!(errors(value.clone()), want, "{value}");
        }
    }
}
