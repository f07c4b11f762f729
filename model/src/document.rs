//! The universal-format document: `type`, `name`, `mesh`, `labels`, then
//! either `spec` (the `Mesh*` policies) or the resource's own fields at the
//! top level (`Mesh`, `Zone`, `Dataplane`, `ZoneIngress`, `ZoneEgress`), as
//! Kuma writes them. [`parse_document`] and [`render_document`] convert
//! between that shape and the typed [`ResourceMeta`] + [`Spec`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::dataplane::DataplaneSpec;
use crate::decode::decode_validated;
use crate::error::{Validate, ValidationError, Violations, json_type};
use crate::kind::ResourceKind;
use crate::mesh::MeshSpec;
use crate::mesh_multizone_service::MeshMultiZoneServiceFields;
use crate::mesh_service::{MeshServiceFields, validate_service_name_length};
use crate::name::{validate_label_key, validate_label_value, validate_mesh_name, validate_name};
use crate::policy::{
    MeshCircuitBreakerSpec, MeshHealthCheckSpec, MeshLoadBalancingStrategySpec, MeshRetrySpec,
    MeshTcpRouteSpec, MeshTimeoutSpec, MeshTrafficPermissionSpec, parse_policy,
};
use crate::secret::SecretSpec;
use crate::zone::ZoneSpec;
use crate::zone_proxy::{ZoneEgressSpec, ZoneIngressSpec};

/// The label saying where a resource was created (`global` or `zone`).
pub const ORIGIN_LABEL: &str = "kuma.io/origin";

/// The label naming the zone a zone-owned resource belongs to.
pub const ZONE_LABEL: &str = "kuma.io/zone";

/// The label keeping a synced resource's name as its zone knows it, when global
/// stores it under another name.
pub const DISPLAY_NAME_LABEL: &str = "kuma.io/display-name";

/// Meta fields that are not part of the spec.
const META_FIELDS: [&str; 6] = [
    "type",
    "name",
    "mesh",
    "labels",
    "creationTime",
    "modificationTime",
];

/// Identity and labels of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceMeta {
    /// The resource type.
    pub kind: ResourceKind,
    /// The name, unique per kind (and mesh, for mesh-scoped kinds).
    pub name: String,
    /// The mesh, for mesh-scoped kinds.
    pub mesh: Option<String>,
    /// Labels, e.g. `kuma.io/origin: zone`.
    pub labels: BTreeMap<String, String>,
}

impl ResourceMeta {
    /// Whether the resource was created on a zone (`kuma.io/origin: zone`);
    /// such policies take precedence over global ones of equal specificity.
    pub fn is_zone_origin(&self) -> bool {
        self.labels.get(ORIGIN_LABEL).is_some_and(|o| o == "zone")
    }
}

/// A validated resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Identity and labels.
    pub meta: ResourceMeta,
    /// The typed body.
    pub spec: Spec,
}

/// The typed body of a resource, one variant per kind.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // Specs are built once per write; boxing buys nothing.
pub enum Spec {
    /// A `Mesh`.
    Mesh(MeshSpec),
    /// A `Zone`.
    Zone(ZoneSpec),
    /// A `Dataplane`.
    Dataplane(DataplaneSpec),
    /// A `ZoneIngress`.
    ZoneIngress(ZoneIngressSpec),
    /// A `ZoneEgress`.
    ZoneEgress(ZoneEgressSpec),
    /// A `MeshTrafficPermission`.
    MeshTrafficPermission(MeshTrafficPermissionSpec),
    /// A `MeshTCPRoute`.
    MeshTcpRoute(MeshTcpRouteSpec),
    /// A `MeshLoadBalancingStrategy`.
    MeshLoadBalancingStrategy(MeshLoadBalancingStrategySpec),
    /// A `MeshTimeout`.
    MeshTimeout(MeshTimeoutSpec),
    /// A `MeshHealthCheck`.
    MeshHealthCheck(MeshHealthCheckSpec),
    /// A `MeshCircuitBreaker`.
    MeshCircuitBreaker(MeshCircuitBreakerSpec),
    /// A `MeshRetry`.
    MeshRetry(MeshRetrySpec),
    /// A `Secret`.
    Secret(SecretSpec),
    /// A `MeshService` (its document's `spec` and `status`).
    MeshService(MeshServiceFields),
    /// A `MeshMultiZoneService` (its document's `spec` and `status`).
    MeshMultiZoneService(MeshMultiZoneServiceFields),
}

/// Decodes and validates a top-level-fields resource.
fn parse_plain<T: serde::de::DeserializeOwned + Validate>(
    value: Value,
) -> Result<T, ValidationError> {
    decode_validated(&value, "")
}

impl Spec {
    /// The kind of this spec.
    pub fn kind(&self) -> ResourceKind {
        match self {
            Self::Mesh(_) => ResourceKind::Mesh,
            Self::Zone(_) => ResourceKind::Zone,
            Self::Dataplane(_) => ResourceKind::Dataplane,
            Self::ZoneIngress(_) => ResourceKind::ZoneIngress,
            Self::ZoneEgress(_) => ResourceKind::ZoneEgress,
            Self::MeshTrafficPermission(_) => ResourceKind::MeshTrafficPermission,
            Self::MeshTcpRoute(_) => ResourceKind::MeshTcpRoute,
            Self::MeshLoadBalancingStrategy(_) => ResourceKind::MeshLoadBalancingStrategy,
            Self::MeshTimeout(_) => ResourceKind::MeshTimeout,
            Self::MeshHealthCheck(_) => ResourceKind::MeshHealthCheck,
            Self::MeshCircuitBreaker(_) => ResourceKind::MeshCircuitBreaker,
            Self::MeshRetry(_) => ResourceKind::MeshRetry,
            Self::Secret(_) => ResourceKind::Secret,
            Self::MeshService(_) => ResourceKind::MeshService,
            Self::MeshMultiZoneService(_) => ResourceKind::MeshMultiZoneService,
        }
    }

    /// Parses and validates the stored spec value of a kind. For policies the
    /// value is the object under the document's `spec`; for Mesh, Zone,
    /// Dataplane, ZoneIngress and ZoneEgress it is the object of the
    /// document's top-level fields other than type/name/mesh/labels/
    /// creationTime/modificationTime (Kuma keeps those at top level). For
    /// MeshService and MeshMultiZoneService it is that object too, which holds
    /// `spec` and `status` (violations read `spec.selector`, as in Kuma).
    ///
    /// Violation paths are as the user sees them in the document:
    /// `spec.to[0].rules[0].default.backendRefs[1].weight` for policies,
    /// `networking.inbound[0].port` or `mtls.enabledBackend` for the others.
    /// Every violation is returned, not just the first: each unknown field,
    /// wrong type and missing field with its own path, and the semantic
    /// violations of the parts that decoded (see `decode`).
    pub fn from_value(kind: ResourceKind, value: Value) -> Result<Spec, ValidationError> {
        Ok(match kind {
            ResourceKind::Mesh => Self::Mesh(parse_plain(value)?),
            ResourceKind::Zone => Self::Zone(parse_plain(value)?),
            ResourceKind::Dataplane => Self::Dataplane(parse_plain(value)?),
            ResourceKind::ZoneIngress => Self::ZoneIngress(parse_plain(value)?),
            ResourceKind::ZoneEgress => Self::ZoneEgress(parse_plain(value)?),
            ResourceKind::MeshTrafficPermission => {
                Self::MeshTrafficPermission(parse_policy(kind, value)?)
            }
            ResourceKind::MeshTcpRoute => Self::MeshTcpRoute(parse_policy(kind, value)?),
            ResourceKind::MeshLoadBalancingStrategy => {
                Self::MeshLoadBalancingStrategy(parse_policy(kind, value)?)
            }
            ResourceKind::MeshTimeout => Self::MeshTimeout(parse_policy(kind, value)?),
            ResourceKind::MeshHealthCheck => Self::MeshHealthCheck(parse_policy(kind, value)?),
            ResourceKind::MeshCircuitBreaker => {
                Self::MeshCircuitBreaker(parse_policy(kind, value)?)
            }
            ResourceKind::MeshRetry => Self::MeshRetry(parse_policy(kind, value)?),
            ResourceKind::Secret => Self::Secret(parse_plain(value)?),
            ResourceKind::MeshService => Self::MeshService(parse_plain(value)?),
            ResourceKind::MeshMultiZoneService => Self::MeshMultiZoneService(parse_plain(value)?),
        })
    }

    /// A spec as a store holds it: decoded into its type, without the write-time
    /// rules. Every stored spec was validated when it was written; re-checking the
    /// rules on read would make a row an earlier version accepted unreadable once a
    /// rule is tightened (as Kuma, rules apply on writes). The shape is still
    /// checked: a row that does not decode is an error naming why. Peer input (KDS,
    /// REST) goes through [`Spec::from_value`].
    pub fn from_stored_value(kind: ResourceKind, value: Value) -> Result<Spec, ValidationError> {
        fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ValidationError> {
            serde_json::from_value(value)
                .map_err(|e| ValidationError::single("(root)", e.to_string()))
        }
        Ok(match kind {
            ResourceKind::Mesh => Self::Mesh(typed(value)?),
            ResourceKind::Zone => Self::Zone(typed(value)?),
            ResourceKind::Dataplane => Self::Dataplane(typed(value)?),
            ResourceKind::ZoneIngress => Self::ZoneIngress(typed(value)?),
            ResourceKind::ZoneEgress => Self::ZoneEgress(typed(value)?),
            ResourceKind::MeshTrafficPermission => Self::MeshTrafficPermission(typed(value)?),
            ResourceKind::MeshTcpRoute => Self::MeshTcpRoute(typed(value)?),
            ResourceKind::MeshLoadBalancingStrategy => {
                Self::MeshLoadBalancingStrategy(typed(value)?)
            }
            ResourceKind::MeshTimeout => Self::MeshTimeout(typed(value)?),
            ResourceKind::MeshHealthCheck => Self::MeshHealthCheck(typed(value)?),
            ResourceKind::MeshCircuitBreaker => Self::MeshCircuitBreaker(typed(value)?),
            ResourceKind::MeshRetry => Self::MeshRetry(typed(value)?),
            ResourceKind::Secret => Self::Secret(typed(value)?),
            ResourceKind::MeshService => Self::MeshService(typed(value)?),
            ResourceKind::MeshMultiZoneService => Self::MeshMultiZoneService(typed(value)?),
        })
    }

    /// The value [`Spec::from_value`] accepts, in canonical form (absent
    /// optionals omitted): `from_value(k, v)?.to_value() == v` for canonical `v`.
    pub fn to_value(&self) -> Value {
        let result = match self {
            Self::Mesh(s) => serde_json::to_value(s),
            Self::Zone(s) => serde_json::to_value(s),
            Self::Dataplane(s) => serde_json::to_value(s),
            Self::ZoneIngress(s) => serde_json::to_value(s),
            Self::ZoneEgress(s) => serde_json::to_value(s),
            Self::Secret(s) => serde_json::to_value(s),
            Self::MeshTrafficPermission(s) => serde_json::to_value(s),
            Self::MeshTcpRoute(s) => serde_json::to_value(s),
            Self::MeshLoadBalancingStrategy(s) => serde_json::to_value(s),
            Self::MeshTimeout(s) => serde_json::to_value(s),
            Self::MeshHealthCheck(s) => serde_json::to_value(s),
            Self::MeshCircuitBreaker(s) => serde_json::to_value(s),
            Self::MeshRetry(s) => serde_json::to_value(s),
            Self::MeshService(s) => serde_json::to_value(s),
            Self::MeshMultiZoneService(s) => serde_json::to_value(s),
        };
        // These types only hold strings, integers, booleans and string-keyed
        // maps, so serialization cannot fail; an empty object is a safe fallback.
        result.unwrap_or_else(|_| Value::Object(Map::new()))
    }
}

/// Parses a whole Kuma universal-format document (YAML callers convert to
/// `serde_json::Value` first).
///
/// Meta fields: `type` (required, a known type name), `name` (required,
/// [`validate_name`]), `mesh` (required for mesh-scoped kinds,
/// [`validate_mesh_name`]; rejected for global kinds), `labels` (optional map
/// of string to string, Kubernetes label syntax, prefixes allowed such as
/// `kuma.io/origin`), `creationTime`/`modificationTime` (accepted, ignored).
/// For policies any top-level field other than `spec` is an unknown field and
/// `spec` is required. Meta and spec violations are reported together.
pub fn parse_document(doc: Value) -> Result<Resource, ValidationError> {
    let Value::Object(mut map) = doc else {
        return Err(ValidationError::single(
            "(root)",
            "must be an object (a resource document)",
        ));
    };
    let mut v = Violations::default();

    let kind = match map.remove("type") {
        None => {
            v.add(
                "type",
                format!("must be set (one of: {})", ResourceKind::known_type_names()),
            );
            None
        }
        Some(Value::String(t)) => {
            let k = ResourceKind::from_type_name(&t);
            if k.is_none() {
                v.add(
                    "type",
                    format!(
                        "unknown type {t:?}; known types: {}",
                        ResourceKind::known_type_names()
                    ),
                );
            }
            k
        }
        Some(other) => {
            v.add(
                "type",
                format!("must be a string, got {}", json_type(&other)),
            );
            None
        }
    };

    let name = match map.remove("name") {
        None => {
            v.add("name", "must be set");
            String::new()
        }
        Some(Value::String(n)) => {
            // Zone names are DNS labels (no dots): global names a zone's synced
            // resources `<name>.<zone>`, which stays unambiguous only that way.
            // Mesh names too: every resource in the mesh names it in `mesh`
            // (checked as a label), and it is the SPIFFE trust domain.
            let valid = if matches!(kind, Some(ResourceKind::Zone | ResourceKind::Mesh)) {
                validate_mesh_name(&n)
            } else {
                validate_name(&n)
            };
            if let Err(e) = valid {
                v.add("name", e);
            }
            n
        }
        Some(other) => {
            v.add(
                "name",
                format!("must be a string, got {}", json_type(&other)),
            );
            String::new()
        }
    };

    let mesh = match map.remove("mesh") {
        None => {
            if kind.is_some_and(ResourceKind::is_mesh_scoped) {
                v.add("mesh", "must be set");
            }
            None
        }
        Some(Value::String(m)) => {
            match kind {
                Some(k) if !k.is_mesh_scoped() => {
                    v.add("mesh", format!("must not be set: {k} is not mesh-scoped"))
                }
                _ => {
                    if let Err(e) = validate_mesh_name(&m) {
                        v.add("mesh", e);
                    }
                }
            }
            Some(m)
        }
        Some(other) => {
            v.add(
                "mesh",
                format!("must be a string, got {}", json_type(&other)),
            );
            None
        }
    };

    let labels = parse_labels(map.remove("labels"), &mut v);
    if matches!(
        kind,
        Some(ResourceKind::MeshService | ResourceKind::MeshMultiZoneService)
    ) {
        // Kuma limits the name as the zone knows it: global's `<name>.<zone>`
        // keeps that in `kuma.io/display-name`.
        let display = labels.get(DISPLAY_NAME_LABEL).unwrap_or(&name);
        validate_service_name_length(display, &mut v);
    }
    map.remove("creationTime");
    map.remove("modificationTime");

    let Some(kind) = kind else {
        return Err(ValidationError { violations: v.0 });
    };
    let spec_value = if kind.is_policy() {
        let spec = map.remove("spec");
        // Report stray top-level fields by name, in a stable (sorted) order.
        for key in map.keys() {
            v.add(
                key.clone(),
                format!("unknown field `{key}`: {kind} keeps its configuration under `spec`"),
            );
        }
        match spec {
            Some(s) => Some(s),
            None => {
                v.add("spec", "must be set");
                None
            }
        }
    } else {
        Some(Value::Object(map))
    };

    let spec = match spec_value.map(|s| Spec::from_value(kind, s)) {
        Some(Ok(spec)) => Some(spec),
        Some(Err(e)) => {
            v.extend(e);
            None
        }
        None => None,
    };
    match spec {
        Some(spec) if v.0.is_empty() => Ok(Resource {
            meta: ResourceMeta {
                kind,
                name,
                mesh,
                labels,
            },
            spec,
        }),
        _ => Err(ValidationError { violations: v.0 }),
    }
}

fn parse_labels(value: Option<Value>, v: &mut Violations) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, val) in m {
                let path = format!("labels[\"{k}\"]");
                if let Err(e) = validate_label_key(&k) {
                    v.add(path.clone(), e);
                }
                match val {
                    Value::String(s) => {
                        if let Err(e) = validate_label_value(&s) {
                            v.add(path, e);
                        }
                        labels.insert(k, s);
                    }
                    other => v.add(path, format!("must be a string, got {}", json_type(&other))),
                }
            }
        }
        Some(other) => v.add(
            "labels",
            format!("must be a map of strings, got {}", json_type(&other)),
        ),
    }
    labels
}

/// The universal-format document of a resource: `type`, `name`, `mesh` (if
/// mesh-scoped), `labels` (only if non-empty), then `spec: spec_value` for
/// policies, or `spec_value`'s fields at the top level for the others.
/// (`serde_json::Map` sorts keys; the order is not significant.)
pub fn render_document(meta: &ResourceMeta, spec_value: &Value) -> Map<String, Value> {
    let mut doc = Map::new();
    if !meta.kind.is_policy()
        && let Value::Object(fields) = spec_value
    {
        for (k, v) in fields {
            // Meta keys always come from `meta`, never from the spec.
            if !META_FIELDS.contains(&k.as_str()) {
                doc.insert(k.clone(), v.clone());
            }
        }
    }
    doc.insert("type".into(), Value::String(meta.kind.type_name().into()));
    if let Some(mesh) = &meta.mesh {
        doc.insert("mesh".into(), Value::String(mesh.clone()));
    }
    doc.insert("name".into(), Value::String(meta.name.clone()));
    if !meta.labels.is_empty() {
        let labels = meta
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        doc.insert("labels".into(), Value::Object(labels));
    }
    if meta.kind.is_policy() {
        doc.insert("spec".into(), spec_value.clone());
    }
    doc
}

impl Resource {
    /// The universal-format document of this resource.
    pub fn to_document(&self) -> Value {
        Value::Object(render_document(&self.meta, &self.spec.to_value()))
    }
}

#[cfg(test)]
mod tests;
