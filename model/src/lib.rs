//! Meridian's resource model: the Kuma-compatible resources and policies every
//! component shares, their validation, and the targetRef policy-matching
//! algorithm.
//!
//! Layout:
//! - [`kind`]: the resource types and their names (type name, plural, scope).
//! - [`body`]: [`SpecBody`], a validated spec with its canonical JSON, shared by
//!   `Arc` from the edge that parsed it to every consumer.
//! - [`document`]: the universal-format document (`type`, `name`, `mesh`,
//!   `labels`, then `spec` or top-level fields) and the typed [`Spec`].
//! - [`mesh`], [`zone`], [`dataplane`], [`zone_proxy`]: the non-policy resources.
//! - [`mesh_service`], [`mesh_multizone_service`]: Kuma 2.x's service resources
//!   (body under `spec` plus `status`, not targetRef policies).
//! - [`policy`]: the seven `Mesh*` targetRef policies Meridian implements;
//!   [`initial_policies`]: the ones Kuma creates with a new mesh.
//! - [`matching`]: which policies apply to a proxy and the merged result.
//! - `decode` (internal): how a spec value is decoded and validated with every
//!   problem collected (each type error, unknown and missing field, and the
//!   semantic violations of what decoded), each named by its path.
//!
//! Invariant: a [`Spec`] obtained from [`Spec::from_value`] or
//! [`parse_document`] has passed every structural and semantic check, so
//! consumers never re-validate.

#![forbid(unsafe_code)]

pub mod body;
pub mod dataplane;
mod decode;
pub mod document;
pub mod duration;
pub mod error;
pub mod initial_policies;
pub mod kind;
pub mod matching;
pub mod mesh;
pub mod mesh_multizone_service;
pub mod mesh_service;
pub mod name;
pub mod policy;
pub mod secret;
pub mod target_ref;
pub mod warnings;
pub mod zone;
pub mod zone_proxy;

pub use body::{SpecBody, minimal_spec};
pub use dataplane::*;
pub use document::{
    DISPLAY_NAME_LABEL, ORIGIN_LABEL, Resource, ResourceMeta, Spec, ZONE_LABEL, parse_document,
    render_document,
};
pub use duration::{Duration, DurationError};
pub use error::{FieldViolation, ValidationError};
pub use initial_policies::{InitialPolicy, initial_policies};
pub use kind::{ResourceKind, UnknownKindError};
pub use matching::*;
pub use mesh::*;
pub use mesh_multizone_service::*;
pub use mesh_service::*;
pub use name::{validate_mesh_name, validate_name};
pub use policy::*;
pub use secret::{SecretSpec, ca_cert_secret_name, ca_key_secret_name};
pub use target_ref::{NAMESPACE_LABEL, TargetRef, TargetRefKind};
pub use warnings::warnings;
pub use zone::ZoneSpec;
pub use zone_proxy::*;

#[cfg(all(test, feature = "openapi"))]
mod openapi_tests {
    use utoipa::{PartialSchema, ToSchema};

    /// The schema of `T` plus every schema it references, as the REST crate
    /// would register them, and the names referenced by `$ref` anywhere.
    fn collect<T: ToSchema>() -> (Vec<String>, Vec<String>) {
        let mut schemas = vec![(T::name().into_owned(), <T as PartialSchema>::schema())];
        T::schemas(&mut schemas);
        let json = serde_json::to_string(&schemas.iter().map(|(_, s)| s).collect::<Vec<_>>())
            .expect("schemas serialize");
        let refs = json
            .split("\"$ref\":\"#/components/schemas/")
            .skip(1)
            .filter_map(|s| s.split('"').next().map(str::to_owned))
            .collect();
        (schemas.into_iter().map(|(n, _)| n).collect(), refs)
    }

    #[test]
    fn every_reference_resolves() {
        let all = [
            collect::<crate::MeshSpec>(),
            collect::<crate::ZoneSpec>(),
            collect::<crate::DataplaneSpec>(),
            collect::<crate::ZoneIngressSpec>(),
            collect::<crate::ZoneEgressSpec>(),
            collect::<crate::MeshTrafficPermissionSpec>(),
            collect::<crate::MeshTcpRouteSpec>(),
            collect::<crate::MeshLoadBalancingStrategySpec>(),
            collect::<crate::MeshTimeoutSpec>(),
            collect::<crate::MeshHealthCheckSpec>(),
            collect::<crate::MeshCircuitBreakerSpec>(),
            collect::<crate::MeshServiceFields>(),
            collect::<crate::MeshMultiZoneServiceFields>(),
            collect::<crate::FieldViolation>(),
            collect::<crate::ResourceKind>(),
        ];
        let (mesh_names, _) = collect::<crate::MeshSpec>();
        assert!(
            mesh_names.contains(&"Duration".to_owned()),
            "{mesh_names:?}"
        );
        let kind =
            serde_json::to_string(&<crate::ResourceKind as PartialSchema>::schema()).expect("ser");
        assert!(kind.contains("\"MeshTCPRoute\""), "{kind}");
        for (names, refs) in all {
            for r in refs {
                assert!(
                    names.contains(&r),
                    "{r} is referenced but not registered (have {names:?})"
                );
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! What the model's unit tests share.

    use crate::{ResourceKind, Spec};

    /// `field: reason` of every violation of `value` as a `kind` spec, in order
    /// (empty when valid). With `round_trip`, a valid spec must render back to
    /// exactly `value` (its canonical form).
    pub(crate) fn violation_lines(
        kind: ResourceKind,
        value: serde_json::Value,
        round_trip: bool,
    ) -> Vec<String> {
        match Spec::from_value(kind, value.clone()) {
            Ok(spec) => {
                if round_trip {
                    assert_eq!(spec.to_value(), value, "canonical form");
                }
                vec![]
            }
            Err(e) => e
                .violations
                .into_iter()
                .map(|v| format!("{}: {}", v.field, v.reason))
                .collect(),
        }
    }
}
