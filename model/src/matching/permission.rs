//! The inbound side of `MeshTrafficPermission`: an ordered rule list that
//! answers "may this client connect?" at the destination sidecar.
//!
//! Two generations, as in Kuma 2.14: when any policy selecting the inbound has
//! inbound `rules`, those decide alone (every deny of every such policy first,
//! then the shadow denies and allows; a client nothing matches is denied);
//! otherwise the `from` entries decide, most specific first.

use crate::policy::{Action, ClientView, Match};
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
    /// Match lists of inbound `rules`, in evaluation order (denies first);
    /// when not empty they decide and `rules` is not consulted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<PermissionMatch>,
}

/// One list of an inbound rule: clients any of `matches` selects get `action`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionMatch {
    /// What the selected clients get.
    pub action: Action,
    /// Any one selects a client.
    pub matches: Vec<Match>,
    /// The policy the list came from.
    pub policy: String,
}

/// What decided a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decider<'a> {
    /// A `from` rule or a match list of this policy.
    Policy(&'a str),
    /// No rule selected the client; the mesh's default applied.
    Default,
}

impl TrafficPermissionRules {
    /// The action for a client and what decided it.
    pub fn decide(&self, client: &ClientView<'_>) -> (Action, Decider<'_>) {
        if !self.matches.is_empty() {
            return self
                .matches
                .iter()
                .find(|m| Match::any(&m.matches, client))
                .map_or((Action::Deny, Decider::Default), |m| {
                    (m.action, Decider::Policy(&m.policy))
                });
        }
        match self.rule_for(client.service, client.has_tag) {
            Some(r) => (r.action, Decider::Policy(&r.policy)),
            None => (self.default_action(), Decider::Default),
        }
    }

    /// The rule deciding for a client with this service and `has_tag(key, value)`
    /// (the tags its certificate states), or `None` for the default action.
    fn rule_for(
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
