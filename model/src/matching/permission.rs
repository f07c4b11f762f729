//! The inbound side of `MeshTrafficPermission`: an ordered rule list that
//! answers "may this client connect?" at the destination sidecar.

use std::collections::BTreeMap;

use crate::policy::Action;
use crate::target_ref::TargetRef;

/// One rule: clients selected by `from` get `action`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionRule {
    /// The clients (a `from` targetRef).
    pub from: TargetRef,
    /// What they get.
    pub action: Action,
    /// The policy the rule came from (for logs and debugging).
    pub policy: String,
}

/// The traffic permission rules of one inbound.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPermissionRules {
    /// Most specific first: the first rule selecting a client decides. This is
    /// Kuma's merge read backwards (the last matching conf in merge order wins).
    pub rules: Vec<PermissionRule>,
    /// Whether the mesh has mTLS on, which decides the default.
    pub mtls_enabled: bool,
}

impl TrafficPermissionRules {
    /// The action for a client identified by its service and tags (the
    /// service is authoritative: it comes from the peer certificate).
    pub fn action_for(
        &self,
        client_service: &str,
        client_tags: &BTreeMap<String, String>,
    ) -> Action {
        self.rule_for(client_service, |k, v| {
            client_tags.get(k).is_some_and(|have| have == v)
        })
        .map_or_else(|| self.default_action(), |r| r.action)
    }

    /// The rule deciding for a client with this service and `has_tag(key, value)`
    /// (the tags its certificate states), or `None` for the default action.
    pub fn rule_for(
        &self,
        client_service: &str,
        has_tag: impl Fn(&str, &str) -> bool,
    ) -> Option<&PermissionRule> {
        self.rules
            .iter()
            .find(|r| r.from.selects_by(client_service, &has_tag))
    }

    /// What happens when no rule selects the client, as in Kuma: with mTLS on,
    /// the connection is denied (Kuma creates no implicit allow; a new mesh
    /// only allows traffic if an allow-all MeshTrafficPermission is applied).
    /// With mTLS off there is no authenticated client identity, permissions
    /// cannot be enforced, and traffic is allowed.
    pub fn default_action(&self) -> Action {
        if self.mtls_enabled {
            Action::Deny
        } else {
            Action::Allow
        }
    }
}
