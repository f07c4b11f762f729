//! Resources the store-level tests write: a generic builder, a MeshTimeout and
//! a Dataplane in mesh `default`.

use std::collections::BTreeMap;

use meridian_model::{ResourceKind, SpecBody};
use meridian_store::{NewResource, ResourceKey};
use serde_json::json;

/// A resource with no labels; `spec` must be valid for `kind`.
pub fn resource(
    kind: ResourceKind,
    mesh: &str,
    name: &str,
    spec: serde_json::Value,
    zone: Option<&str>,
) -> NewResource {
    NewResource {
        key: ResourceKey {
            kind,
            mesh: mesh.into(),
            name: name.into(),
        },
        labels: BTreeMap::new(),
        spec: SpecBody::parse(kind, spec)
            .unwrap_or_else(|e| panic!("the fixture {kind} spec is invalid: {e}")),
        zone: zone.map(str::to_owned),
    }
}

/// A MeshTimeout for every proxy and destination with this `idleTimeout`.
pub fn timeout(name: &str, idle: &str) -> NewResource {
    resource(
        ResourceKind::MeshTimeout,
        "default",
        name,
        json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}]}),
        None,
    )
}

/// A `web` Dataplane owned by `zone`.
pub fn dataplane(name: &str, zone: &str) -> NewResource {
    resource(
        ResourceKind::Dataplane,
        "default",
        name,
        json!({"networking": {"address": "10.0.0.1", "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]}}),
        Some(zone),
    )
}
