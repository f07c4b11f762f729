//! Conversions between store values and KDS messages, with validation of everything
//! received: a received resource passes the same model validation as a REST write.
//!
//! A spec travels as its canonical JSON inside the protobuf message: the sender copies
//! the bytes its store already holds (no re-serialisation), the receiver parses them
//! once into a [`SpecBody`]. JSON rather than a protobuf message per kind keeps one
//! schema (the model's, which the REST API also speaks) and lets a zone on an older
//! version NACK a field it does not know by name instead of dropping it silently.

use std::collections::BTreeMap;

use meridian_model::{ResourceKind, SpecBody, validate_mesh_name, validate_name};
use meridian_proto::kds;
use meridian_store::{ResourceKey, StoredResource};

/// A stored resource as sent on KDS.
pub fn to_proto(resource: &StoredResource) -> kds::Resource {
    kds::Resource {
        r#type: resource.key.kind.type_name().to_owned(),
        mesh: resource.key.mesh.clone(),
        name: resource.key.name.clone(),
        labels: resource.labels.clone().into_iter().collect(),
        spec: resource.spec.canonical_json().as_bytes().to_vec(),
        version: resource.version,
        revision: resource.revision,
        zone: resource.zone.clone().unwrap_or_default(),
    }
}

/// A key as sent on KDS.
pub fn key_to_proto(key: &ResourceKey) -> kds::ResourceKey {
    kds::ResourceKey {
        r#type: key.kind.type_name().to_owned(),
        mesh: key.mesh.clone(),
        name: key.name.clone(),
    }
}

/// A received key, or why it is not one. The name and mesh follow the rules of a
/// REST write: a Zone's name is a DNS label ([`validate_mesh_name`]), other names
/// [`validate_name`]; mesh-scoped kinds need a valid mesh and other kinds none.
pub fn key_from_proto(key: &kds::ResourceKey) -> Result<ResourceKey, String> {
    let kind = ResourceKind::from_type_name(&key.r#type)
        .ok_or_else(|| format!("unknown resource type {:?}", key.r#type))?;
    if key.name.is_empty() {
        return Err("the resource has no name".to_owned());
    }
    let name = if kind == ResourceKind::Zone {
        validate_mesh_name(&key.name)
    } else {
        validate_name(&key.name)
    };
    name.map_err(|e| format!("the name {:?} is invalid: {e}", key.name))?;
    if kind.is_mesh_scoped() {
        validate_mesh_name(&key.mesh)
            .map_err(|e| format!("the mesh {:?} is invalid: {e}", key.mesh))?;
    } else if !key.mesh.is_empty() {
        return Err(format!(
            "{kind} is not mesh-scoped, but the key names mesh {:?}",
            key.mesh
        ));
    }
    Ok(ResourceKey {
        kind,
        mesh: key.mesh.clone(),
        name: key.name.clone(),
    })
}

/// A received resource, validated as a REST write would be.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Its key as the sender named it.
    pub key: ResourceKey,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its spec, typed.
    pub spec: SpecBody,
    /// The owning zone the sender stated (zone-owned kinds).
    pub zone: Option<String>,
}

/// Validates a received resource: known type, well-formed key, spec JSON that passes
/// the model's validation.
pub fn from_proto(resource: &kds::Resource) -> Result<Received, String> {
    let key = key_from_proto(&kds::ResourceKey {
        r#type: resource.r#type.clone(),
        mesh: resource.mesh.clone(),
        name: resource.name.clone(),
    })?;
    let spec = SpecBody::parse_json(key.kind, &resource.spec).map_err(|e| e.to_string())?;
    Ok(Received {
        key,
        labels: resource.labels.clone().into_iter().collect(),
        spec,
        zone: (!resource.zone.is_empty()).then(|| resource.zone.clone()),
    })
}

/// The key of a received resource (for NACKs, even when it is invalid).
pub fn key_of(resource: &kds::Resource) -> kds::ResourceKey {
    kds::ResourceKey {
        r#type: resource.r#type.clone(),
        mesh: resource.mesh.clone(),
        name: resource.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_resources_are_refused_with_the_reason() {
        let mut resource = kds::Resource {
            r#type: "MeshTimeout".into(),
            mesh: "default".into(),
            name: "t".into(),
            spec: br#"{"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "soon"}}]}"#.to_vec(),
            ..Default::default()
        };
        let reason = from_proto(&resource).unwrap_err();
        assert!(reason.contains("idleTimeout"), "{reason}");

        resource.spec = b"{not json".to_vec();
        assert!(from_proto(&resource).unwrap_err().contains("not JSON"));
        resource.r#type = "Banana".into();
        assert!(
            from_proto(&resource)
                .unwrap_err()
                .contains("unknown resource type")
        );
    }

    /// Found by the `kds_decode` fuzz target: a `kds::Resource` (these 19 bytes)
    /// naming a Zone `"\0\0\0\0\0\0\x07"` passed validation, so a peer could store
    /// names that a REST write refuses.
    #[test]
    fn fuzz_kds_decode_invalid_names_are_refused() {
        const CRASH: &[u8] = &[
            10, 4, 90, 111, 110, 101, 42, 2, 123, 125, 26, 7, 0, 0, 0, 0, 0, 0, 7,
        ];
        let resource = <kds::Resource as prost::Message>::decode(CRASH).unwrap();
        assert_eq!(resource.r#type, "Zone");
        let reason = from_proto(&resource).unwrap_err();
        assert!(reason.contains("the name"), "{reason}");

        let key = |kind: &str, mesh: &str, name: &str| kds::ResourceKey {
            r#type: kind.into(),
            mesh: mesh.into(),
            name: name.into(),
        };
        for bad in [
            key("Zone", "", "zone.1"),
            key("Zone", "", "Zone-1"),
            key("Mesh", "", "a b"),
            key("Mesh", "default", "default"),
            key("MeshTimeout", "", "t"),
            key("MeshTimeout", "Default", "t"),
            key("MeshTimeout", "default", "../t"),
            key("Dataplane", "default", &"a".repeat(254)),
        ] {
            assert!(key_from_proto(&bad).is_err(), "{bad:?}");
        }
        for good in [
            key("Zone", "", "zone-1"),
            key("Mesh", "", "default"),
            key("MeshTimeout", "default", "t"),
            key("Dataplane", "default", "web-1.zone-1"),
            key("ZoneIngress", "", "ingress-1.zone-2"),
        ] {
            assert!(key_from_proto(&good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn valid_resources_round_trip() {
        let resource = kds::Resource {
            r#type: "Mesh".into(),
            name: "default".into(),
            spec: br#"{"routing": {"zoneEgress": true}}"#.to_vec(),
            ..Default::default()
        };
        let received = from_proto(&resource).unwrap();
        assert_eq!(
            received.key,
            ResourceKey::global(ResourceKind::Mesh, "default")
        );
        assert_eq!(received.spec.to_value()["routing"]["zoneEgress"], true);
    }
}
