//! The policies Kuma creates with a new mesh, unless its
//! `skipCreatingInitialPolicies` names their kind (or `*`).
//!
//! Kuma 2.14 (`pkg/defaults/mesh`) creates, named `<prefix>-<mesh>`:
//! - `mesh-timeout-all`: MeshTimeout for sidecars — outbound connect 5s and
//!   idle 1h (HTTP request 15s, stream idle 30m), inbound twice as long
//!   (request and stream duration unlimited);
//! - `mesh-gateways-timeout-all`: MeshTimeout for gateways (it selects no
//!   proxy here: Meridian has no gateways, but the document is Kuma's);
//! - `mesh-circuit-breaker-all`: MeshCircuitBreaker, 1024 connections,
//!   pending requests and requests and 3 retries per destination;
//! - `mesh-retry-all`: MeshRetry, 5 TCP connect attempts (HTTP and gRPC: 5
//!   retries, 16s per try, back-off 25ms–250ms; kept, not applied here).
//!
//! The documents are written here in Kuma's universal shape and parsed with
//! the model's own parser, so they pass the same validation as a user's.

use crate::document::Spec;
use crate::kind::ResourceKind;
use crate::mesh::MeshSpec;

/// One initial policy of a mesh.
#[derive(Debug, Clone, PartialEq)]
pub struct InitialPolicy {
    /// Its kind.
    pub kind: ResourceKind,
    /// Its name (`<prefix>-<mesh>`).
    pub name: String,
    /// Its spec.
    pub spec: Spec,
}

/// Kuma's initial policies: (name prefix, kind, spec).
fn kuma_defaults() -> [(&'static str, ResourceKind, serde_json::Value); 4] {
    use serde_json::json;
    [
        (
            "mesh-timeout-all",
            ResourceKind::MeshTimeout,
            json!({"targetRef": {"kind": "Mesh", "proxyTypes": ["Sidecar"]},
                "from": [{"targetRef": {"kind": "Mesh"}, "default": {
                    "connectionTimeout": "10s", "idleTimeout": "2h",
                    "http": {"requestTimeout": "0s", "streamIdleTimeout": "1h", "maxStreamDuration": "0s"}}}],
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {
                    "connectionTimeout": "5s", "idleTimeout": "1h",
                    "http": {"requestTimeout": "15s", "streamIdleTimeout": "30m"}}}]}),
        ),
        (
            "mesh-gateways-timeout-all",
            ResourceKind::MeshTimeout,
            json!({"targetRef": {"kind": "Mesh", "proxyTypes": ["Gateway"]},
                "from": [{"targetRef": {"kind": "Mesh"}, "default": {
                    "idleTimeout": "5m",
                    "http": {"streamIdleTimeout": "5s", "requestHeadersTimeout": "500ms"}}}],
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {
                    "idleTimeout": "1h", "http": {"streamIdleTimeout": "5s"}}}]}),
        ),
        (
            "mesh-circuit-breaker-all",
            ResourceKind::MeshCircuitBreaker,
            json!({"targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionLimits": {
                    "maxConnections": 1024, "maxPendingRequests": 1024,
                    "maxRequests": 1024, "maxRetries": 3}}}]}),
        ),
        (
            "mesh-retry-all",
            ResourceKind::MeshRetry,
            json!({"targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {
                    "tcp": {"maxConnectAttempt": 5},
                    "http": {"numRetries": 5, "perTryTimeout": "16s",
                        "backOff": {"baseInterval": "25ms", "maxInterval": "250ms"}},
                    "grpc": {"numRetries": 5, "perTryTimeout": "16s",
                        "backOff": {"baseInterval": "25ms", "maxInterval": "250ms"}}}}]}),
        ),
    ]
}

/// The policies to create with mesh `name`: Kuma's, less the kinds its
/// `skipCreatingInitialPolicies` lists (all of them for `*`).
pub fn initial_policies(name: &str, mesh: &MeshSpec) -> Vec<InitialPolicy> {
    let skipped = mesh
        .skip_creating_initial_policies
        .as_deref()
        .unwrap_or_default();
    if skipped.iter().any(|s| s == "*") {
        return Vec::new();
    }
    kuma_defaults()
        .into_iter()
        .filter(|(_, kind, _)| !skipped.iter().any(|s| s == kind.type_name()))
        .map(|(prefix, kind, value)| InitialPolicy {
            kind,
            name: format!("{prefix}-{name}"),
            // A constant document; a test parses every one of them.
            spec: Spec::from_value(kind, value)
                .unwrap_or_else(|e| unreachable!("Kuma's initial {kind} is invalid: {e}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(mesh: serde_json::Value) -> Vec<String> {
        let Ok(Spec::Mesh(mesh)) = Spec::from_value(ResourceKind::Mesh, mesh) else {
            panic!("a valid mesh")
        };
        initial_policies("m", &mesh)
            .into_iter()
            .map(|p| p.name)
            .collect()
    }

    #[test]
    fn kumas_initial_policies_parse_and_skips_are_honoured() {
        assert_eq!(
            names(serde_json::json!({})),
            [
                "mesh-timeout-all-m",
                "mesh-gateways-timeout-all-m",
                "mesh-circuit-breaker-all-m",
                "mesh-retry-all-m"
            ]
        );
        assert_eq!(
            names(serde_json::json!({"skipCreatingInitialPolicies": ["MeshTimeout", "MeshRetry"]})),
            ["mesh-circuit-breaker-all-m"]
        );
        assert!(names(serde_json::json!({"skipCreatingInitialPolicies": ["*"]})).is_empty());
    }
}
