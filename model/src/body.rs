//! [`SpecBody`]: a validated [`Spec`] together with its canonical JSON, built once
//! at an edge and shared from then on.
//!
//! Every edge that receives a resource (a REST body, a KDS message, a row a store
//! reads back) parses it into a `SpecBody` exactly once. Inside the process the body
//! travels as a reference-counted handle: the store writes its canonical bytes, KDS
//! puts the same bytes on the wire, the zone's indexes read the typed spec, and
//! nothing re-parses or re-serialises it on the way.
//!
//! Invariants:
//! - the spec passed every check of [`Spec::from_value`] (a `SpecBody` cannot hold
//!   an invalid spec);
//! - the canonical JSON is [`Spec::to_value`] rendered compactly: two bodies of the
//!   same kind are equal exactly when their canonical bytes are, whatever key order
//!   or spelling of defaults the documents they came from used. Stores compare those
//!   bytes to detect a put that changes nothing.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::document::Spec;
use crate::error::ValidationError;
use crate::kind::ResourceKind;

/// A validated spec and its canonical JSON; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct SpecBody(Arc<Inner>);

struct Inner {
    spec: Spec,
    canonical: Box<RawValue>,
}

impl SpecBody {
    /// Wraps a spec that is already typed (and so valid), rendering its canonical
    /// JSON once.
    pub fn new(spec: Spec) -> Self {
        // `to_value` only holds strings, numbers, booleans and string-keyed maps, so
        // rendering it cannot fail.
        let canonical = serde_json::value::to_raw_value(&spec.to_value()).unwrap_or_default();
        SpecBody(Arc::new(Inner { spec, canonical }))
    }

    /// Parses and validates the spec value of `kind` (see [`Spec::from_value`]).
    pub fn parse(kind: ResourceKind, value: Value) -> Result<Self, ValidationError> {
        Spec::from_value(kind, value).map(Self::new)
    }

    /// Parses and validates the spec of `kind` from JSON text, such as a KDS message
    /// or a stored row.
    pub fn parse_json(kind: ResourceKind, json: &[u8]) -> Result<Self, ValidationError> {
        let value: Value = serde_json::from_slice(json).map_err(|e| {
            ValidationError::single("(root)", format!("the {kind} spec is not JSON: {e}"))
        })?;
        Self::parse(kind, value)
    }

    /// A stored spec from its JSON text (a store row, a Raft log entry): decoded
    /// without re-checking the write-time rules (see [`Spec::from_stored_value`]).
    pub fn parse_stored_json(kind: ResourceKind, json: &[u8]) -> Result<Self, ValidationError> {
        let value: Value = serde_json::from_slice(json).map_err(|e| {
            ValidationError::single("(root)", format!("the stored {kind} spec is not JSON: {e}"))
        })?;
        Spec::from_stored_value(kind, value).map(Self::new)
    }

    /// A stored spec from its JSON value (see [`SpecBody::parse_stored_json`]).
    pub fn parse_stored(kind: ResourceKind, value: Value) -> Result<Self, ValidationError> {
        Spec::from_stored_value(kind, value).map(Self::new)
    }

    /// The typed spec.
    pub fn spec(&self) -> &Spec {
        &self.0.spec
    }

    /// The typed spec, owned: moved out when this is the only handle, cloned
    /// otherwise.
    pub fn into_spec(self) -> Spec {
        match Arc::try_unwrap(self.0) {
            Ok(inner) => inner.spec,
            Err(shared) => shared.spec.clone(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> ResourceKind {
        self.0.spec.kind()
    }

    /// The canonical JSON, as stores keep it and KDS sends it.
    pub fn canonical_json(&self) -> &str {
        self.0.canonical.get()
    }

    /// The canonical JSON as raw JSON (cloning it copies the bytes without
    /// checking them again).
    pub fn canonical_raw(&self) -> &RawValue {
        &self.0.canonical
    }

    /// The canonical JSON as a value, for callers that render a document around it
    /// (the REST API).
    pub fn to_value(&self) -> Value {
        self.0.spec.to_value()
    }
}

impl PartialEq for SpecBody {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.canonical_json() == other.canonical_json()
    }
}

impl fmt::Debug for SpecBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.canonical_json())
    }
}

/// Serialises as the canonical JSON itself (not a string holding it), so a document
/// that embeds a body has the spec's own shape.
impl serde::Serialize for SpecBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.canonical.serialize(serializer)
    }
}

impl From<Spec> for SpecBody {
    fn from(spec: Spec) -> Self {
        SpecBody::new(spec)
    }
}

/// The smallest valid spec of `kind` (a MeshTimeout for every destination, a
/// Dataplane with one `web` inbound on 10.0.0.1:8080, …): what tests and benchmarks
/// write when only a resource's key or bookkeeping matters.
pub fn minimal_spec(kind: ResourceKind) -> SpecBody {
    let value = match kind {
        ResourceKind::Mesh | ResourceKind::Zone => serde_json::json!({}),
        ResourceKind::Secret => serde_json::json!({"data": "c2VjcmV0"}),
        ResourceKind::Dataplane => serde_json::json!({"networking": {"address": "10.0.0.1",
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]}}),
        ResourceKind::ZoneIngress | ResourceKind::ZoneEgress => {
            serde_json::json!({"networking": {"address": "10.0.0.1", "port": 10001}})
        }
        ResourceKind::MeshTrafficPermission => serde_json::json!({"targetRef": {"kind": "Mesh"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}),
        ResourceKind::MeshTcpRoute => serde_json::json!({"targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "MeshService", "name": "web"},
                "rules": [{"default": {"backendRefs": [{"kind": "MeshService", "name": "web"}]}}]}]}),
        ResourceKind::MeshLoadBalancingStrategy => {
            serde_json::json!({"targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"loadBalancer": {"type": "RoundRobin"}}}]})
        }
        ResourceKind::MeshTimeout => serde_json::json!({"targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1h"}}]}),
        ResourceKind::MeshHealthCheck => serde_json::json!({"targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"interval": "10s", "timeout": "2s",
                "unhealthyThreshold": 3, "healthyThreshold": 1, "tcp": {}}}]}),
        ResourceKind::MeshCircuitBreaker => serde_json::json!({"targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionLimits": {"maxConnections": 100}}}]}),
        ResourceKind::MeshRetry => serde_json::json!({"targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"tcp": {"maxConnectAttempt": 5}}}]}),
        ResourceKind::MeshService => serde_json::json!({"spec": {
            "selector": {"dataplaneTags": {"kuma.io/service": "web"}},
            "ports": [{"name": "8080", "port": 8080, "targetPort": 8080, "appProtocol": "tcp"}]}}),
        ResourceKind::MeshMultiZoneService => serde_json::json!({"spec": {
            "selector": {"meshService": {"matchLabels": {"kuma.io/display-name": "web"}}},
            "ports": [{"port": 8080, "appProtocol": "tcp"}]}}),
    };
    match SpecBody::parse(kind, value) {
        Ok(body) => body,
        // Every literal above is valid; the unit test below proves it for every kind.
        Err(e) => unreachable!("the minimal {kind} spec is invalid: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn equal_specs_have_equal_bodies_whatever_the_key_order() {
        let a = SpecBody::parse(
            ResourceKind::MeshTimeout,
            json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "5s", "connectionTimeout": "2s"}}]}),
        )
        .expect("valid");
        let b = SpecBody::parse(
            ResourceKind::MeshTimeout,
            json!({"to": [{"default": {"connectionTimeout": "2s", "idleTimeout": "5s"}, "targetRef": {"kind": "Mesh"}}], "targetRef": {"kind": "Mesh"}}),
        )
        .expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.canonical_json(), b.canonical_json());
        let c = SpecBody::parse(
            ResourceKind::MeshTimeout,
            json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "6s"}}]}),
        )
        .expect("valid");
        assert_ne!(a, c);
    }

    #[test]
    fn canonical_json_parses_back_to_the_same_body() {
        let a = SpecBody::parse(
            ResourceKind::Mesh,
            json!({"mtls": {"enabledBackend": "ca", "backends": [{"name": "ca", "type": "builtin"}]}}),
        )
        .expect("valid");
        let b = SpecBody::parse_json(ResourceKind::Mesh, a.canonical_json().as_bytes())
            .expect("canonical JSON is valid");
        assert_eq!(a, b);
        assert_eq!(b.kind(), ResourceKind::Mesh);
    }

    #[test]
    fn every_kind_has_a_valid_minimal_spec() {
        for kind in ResourceKind::ALL {
            assert_eq!(minimal_spec(kind).kind(), kind);
        }
    }

    #[test]
    fn invalid_input_names_the_problem() {
        let e = SpecBody::parse_json(ResourceKind::Mesh, b"{not json").expect_err("not JSON");
        assert!(e.to_string().contains("not JSON"), "{e}");
        let e = SpecBody::parse(
            ResourceKind::MeshTimeout,
            json!({"targetRef": {"kind": "Nope"}}),
        )
        .expect_err("invalid");
        assert!(e.to_string().contains("targetRef"), "{e}");
    }
}
