//! The resource types Meridian stores, and the names they go by: the Kuma type
//! name (`MeshTCPRoute`), the REST plural (`meshtcproutes`), and whether they
//! live inside a mesh, are owned by zones, or are targetRef policies.

use std::fmt;
use std::str::FromStr;

/// A type of resource.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ResourceKind {
    /// A mesh: the isolation and mTLS boundary.
    Mesh,
    /// A zone known to the global control plane.
    Zone,
    /// A sidecar data plane proxy (zone-owned).
    Dataplane,
    /// A zone ingress (zone-owned).
    ZoneIngress,
    /// A zone egress (zone-owned).
    ZoneEgress,
    /// Who may talk to whom.
    MeshTrafficPermission,
    /// TCP routing (traffic split, redirection).
    #[serde(rename = "MeshTCPRoute")]
    #[cfg_attr(feature = "openapi", schema(rename = "MeshTCPRoute"))]
    MeshTcpRoute,
    /// Load balancing and locality-aware failover.
    MeshLoadBalancingStrategy,
    /// Connection and idle timeouts.
    MeshTimeout,
    /// Active health checking.
    MeshHealthCheck,
    /// Connection limits and outlier detection.
    MeshCircuitBreaker,
    /// Opaque bytes in a mesh (the mesh CA); internal, not served by the REST API.
    Secret,
}

impl ResourceKind {
    /// Every kind, globals first.
    pub const ALL: [ResourceKind; 12] = [
        Self::Mesh,
        Self::Zone,
        Self::Dataplane,
        Self::ZoneIngress,
        Self::ZoneEgress,
        Self::MeshTrafficPermission,
        Self::MeshTcpRoute,
        Self::MeshLoadBalancingStrategy,
        Self::MeshTimeout,
        Self::MeshHealthCheck,
        Self::MeshCircuitBreaker,
        Self::Secret,
    ];

    /// The Kuma type name, as written in a document's `type` field.
    pub const fn type_name(self) -> &'static str {
        match self {
            Self::Mesh => "Mesh",
            Self::Zone => "Zone",
            Self::Dataplane => "Dataplane",
            Self::ZoneIngress => "ZoneIngress",
            Self::ZoneEgress => "ZoneEgress",
            Self::MeshTrafficPermission => "MeshTrafficPermission",
            Self::MeshTcpRoute => "MeshTCPRoute",
            Self::MeshLoadBalancingStrategy => "MeshLoadBalancingStrategy",
            Self::MeshTimeout => "MeshTimeout",
            Self::MeshHealthCheck => "MeshHealthCheck",
            Self::MeshCircuitBreaker => "MeshCircuitBreaker",
            Self::Secret => "Secret",
        }
    }

    /// The kind with exactly this type name.
    pub fn from_type_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.type_name() == s)
    }

    /// The REST path segment (lower-case type name plus "s"/"es").
    pub const fn plural(self) -> &'static str {
        match self {
            Self::Mesh => "meshes",
            Self::Zone => "zones",
            Self::Dataplane => "dataplanes",
            Self::ZoneIngress => "zoneingresses",
            Self::ZoneEgress => "zoneegresses",
            Self::MeshTrafficPermission => "meshtrafficpermissions",
            Self::MeshTcpRoute => "meshtcproutes",
            Self::MeshLoadBalancingStrategy => "meshloadbalancingstrategies",
            Self::MeshTimeout => "meshtimeouts",
            Self::MeshHealthCheck => "meshhealthchecks",
            Self::MeshCircuitBreaker => "meshcircuitbreakers",
            Self::Secret => "secrets",
        }
    }

    /// The kind with exactly this plural.
    pub fn from_plural(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.plural() == s)
    }

    /// Lives inside a mesh (its documents carry `mesh`).
    pub const fn is_mesh_scoped(self) -> bool {
        matches!(
            self,
            Self::Dataplane
                | Self::Secret
                | Self::MeshTrafficPermission
                | Self::MeshTcpRoute
                | Self::MeshLoadBalancingStrategy
                | Self::MeshTimeout
                | Self::MeshHealthCheck
                | Self::MeshCircuitBreaker
        )
    }

    /// Managed by Meridian itself and never served by the REST API (secrets).
    pub const fn is_internal(self) -> bool {
        matches!(self, Self::Secret)
    }

    /// Created by zone control planes; read-only on global.
    pub const fn is_zone_owned(self) -> bool {
        matches!(self, Self::Dataplane | Self::ZoneIngress | Self::ZoneEgress)
    }

    /// A targetRef policy: its body is under `spec`.
    pub const fn is_policy(self) -> bool {
        matches!(
            self,
            Self::MeshTrafficPermission
                | Self::MeshTcpRoute
                | Self::MeshLoadBalancingStrategy
                | Self::MeshTimeout
                | Self::MeshHealthCheck
                | Self::MeshCircuitBreaker
        )
    }

    /// The known type names, comma-separated (for error messages).
    pub(crate) fn known_type_names() -> String {
        Self::ALL.map(Self::type_name).join(", ")
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name())
    }
}

/// A string named no resource kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown resource type {input:?}; known types: {known}", known = ResourceKind::known_type_names())]
pub struct UnknownKindError {
    /// What was given.
    pub input: String,
}

impl FromStr for ResourceKind {
    type Err = UnknownKindError;

    /// Accepts the type name or the plural, in any case, and the singular
    /// lower-case form (`meshtcproute`), as a CLI user would type them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.type_name().eq_ignore_ascii_case(s) || k.plural().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownKindError {
                input: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in ResourceKind::ALL {
            assert_eq!(ResourceKind::from_type_name(k.type_name()), Some(k));
            assert_eq!(ResourceKind::from_plural(k.plural()), Some(k));
            assert_eq!(k.plural(), k.plural().to_ascii_lowercase());
            assert!(
                k.plural()
                    .starts_with(&k.type_name().to_ascii_lowercase()[..k.type_name().len() - 1])
            );
            let json = serde_json::to_value(k).expect("serialize");
            assert_eq!(json, serde_json::Value::String(k.type_name().to_owned()));
            assert_eq!(
                serde_json::from_value::<ResourceKind>(json).expect("deserialize"),
                k
            );
        }
    }

    #[test]
    fn from_str_accepts_cli_spellings() {
        let cases = [
            ("MeshTCPRoute", ResourceKind::MeshTcpRoute),
            ("meshtcproute", ResourceKind::MeshTcpRoute),
            ("meshtcproutes", ResourceKind::MeshTcpRoute),
            ("MESHES", ResourceKind::Mesh),
            ("mesh", ResourceKind::Mesh),
            ("zoneingresses", ResourceKind::ZoneIngress),
            (
                "MeshLoadBalancingStrategy",
                ResourceKind::MeshLoadBalancingStrategy,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<ResourceKind>(), Ok(want), "{input}");
        }
        let err = "MeshHTTPRoute"
            .parse::<ResourceKind>()
            .expect_err("unknown");
        assert!(err.to_string().contains("known types: Mesh, Zone"), "{err}");
        assert_eq!(ResourceKind::from_type_name("meshtcproute"), None);
    }

    #[test]
    fn scopes() {
        use ResourceKind::*;
        let cases = [
            // kind, mesh scoped, zone owned, policy
            (Mesh, false, false, false),
            (Zone, false, false, false),
            (Dataplane, true, true, false),
            (ZoneIngress, false, true, false),
            (ZoneEgress, false, true, false),
            (MeshTrafficPermission, true, false, true),
            (MeshTcpRoute, true, false, true),
            (MeshCircuitBreaker, true, false, true),
            (Secret, true, false, false),
        ];
        for (k, scoped, owned, policy) in cases {
            assert_eq!(
                (k.is_mesh_scoped(), k.is_zone_owned(), k.is_policy()),
                (scoped, owned, policy),
                "{k}"
            );
        }
        assert_eq!(ResourceKind::MeshTcpRoute.to_string(), "MeshTCPRoute");
    }
}
