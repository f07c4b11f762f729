//! The `MeshMultiZoneService` resource: one service made of the MeshServices of
//! several zones, picked by their labels. It is created on global and flows to
//! every zone, like a policy. Kuma's universal document keeps it under `spec`
//! beside a `status`:
//!
//! ```yaml
//! type: MeshMultiZoneService
//! mesh: default
//! name: redis
//! spec:
//!   selector: {meshService: {matchLabels: {kuma.io/display-name: redis}}}
//!   ports: [{port: 6379, appProtocol: tcp}]
//! ```
//!
//! Validation is Kuma's (`pkg/core/resources/apis/meshmultizoneservice/api/v1alpha1/validator.go`):
//! `selector.meshService.matchLabels` and `ports` must not be empty, a port's
//! `name` when given must not be empty, and `appProtocol` is one of Kuma's
//! supported protocols. An absent `appProtocol` means `tcp` (Kuma's declared
//! default); Meridian adds that ports are 1–65535.

use crate::error::{Validate, Violations, index, join};
use crate::mesh_service::{Address, Condition, HostnameGeneratorStatus, LabelSelector, Vip};

/// Kuma's `SupportedProtocols`, the values `appProtocol` may take.
pub const SUPPORTED_PROTOCOLS: [&str; 5] = ["grpc", "http", "http2", "kafka", "tcp"];

/// What `Spec::MeshMultiZoneService` holds: the document's `spec` and `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshMultiZoneServiceFields {
    /// The service. Absent decodes as empty, which validation then refuses with
    /// Kuma's messages (an empty selector, no ports).
    #[serde(default)]
    pub spec: MeshMultiZoneServiceSpec,
    /// What the control plane observed (Kuma's REST writes may carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MeshMultiZoneServiceStatus>,
}

/// Kuma's MeshMultiZoneService `spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshMultiZoneServiceSpec {
    /// Which MeshServices it is made of.
    #[serde(default)]
    pub selector: MultiZoneSelector,
    /// Its ports; at least one.
    #[serde(default)]
    pub ports: Vec<MultiZonePort>,
}

/// Which MeshServices a MeshMultiZoneService is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MultiZoneSelector {
    /// MeshServices by their labels (`matchLabels` must not be empty).
    #[serde(default)]
    pub mesh_service: LabelSelector,
}

/// A port of a MeshMultiZoneService.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MultiZonePort {
    /// The port's name; not empty when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port of the selected MeshServices.
    pub port: u32,
    /// One of [`SUPPORTED_PROTOCOLS`]; absent means `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// Kuma's MeshMultiZoneService `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshMultiZoneServiceStatus {
    /// Host names generated for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// Virtual IPs assigned to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<Vip>,
    /// The MeshServices the selector matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mesh_services: Vec<MatchedMeshService>,
    /// Which host name generators apply, with their conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostname_generators: Vec<HostnameGeneratorStatus>,
    /// Conditions (`MeshServicesMatched`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A MeshService a MeshMultiZoneService's selector matched.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MatchedMeshService {
    /// Its name as its zone knows it.
    pub name: String,
    /// Its Kubernetes namespace (empty on universal).
    #[serde(default)]
    pub namespace: String,
    /// Its zone.
    pub zone: String,
    /// Its mesh.
    pub mesh: String,
}

impl Validate for MeshMultiZoneServiceFields {
    fn validate(&self, path: &str, v: &mut Violations) {
        let spec = join(path, "spec");
        if self
            .spec
            .selector
            .mesh_service
            .match_labels
            .as_ref()
            .is_none_or(|m| m.is_empty())
        {
            v.add(
                join(&spec, "selector.meshService.matchLabels"),
                "cannot be empty",
            );
        }
        let ports = join(&spec, "ports");
        if self.spec.ports.is_empty() {
            v.add(ports.clone(), "cannot be empty");
        }
        for (i, p) in self.spec.ports.iter().enumerate() {
            let at = index(&ports, i);
            if p.name.as_deref() == Some("") {
                v.add(join(&at, "name"), "must not be empty");
            }
            crate::mesh_service::validate_service_port(&join(&at, "port"), p.port, v);
            if let Some(proto) = &p.app_protocol
                && !SUPPORTED_PROTOCOLS.contains(&proto.as_str())
            {
                v.add(
                    join(&at, "appProtocol"),
                    format!(
                        "appProtocol must be one of: {}",
                        SUPPORTED_PROTOCOLS.join(", ")
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::ResourceKind;

    fn errors(value: serde_json::Value) -> Vec<String> {
        crate::test_support::violation_lines(ResourceKind::MeshMultiZoneService, value, true)
    }

    #[test]
    fn kumas_rules() {
        let ok = json!({"spec": {"selector": {"meshService": {"matchLabels": {"app": "xyz"}}},
            "ports": [{"port": 123, "appProtocol": "tcp"}, {"name": "b", "port": 124}]},
            "status": {"meshServices": [{"name": "xyz", "namespace": "", "zone": "zone-1", "mesh": "default"}],
                "conditions": [{"type": "MeshServicesMatched", "status": "True", "reason": "MatchesFound", "message": ""}]}});
        assert_eq!(errors(ok), Vec::<String>::new());
        assert_eq!(
            errors(json!({})),
            [
                "spec.selector.meshService.matchLabels: cannot be empty",
                "spec.ports: cannot be empty"
            ]
        );
        assert_eq!(
            errors(
                json!({"spec": {"selector": {"meshService": {"matchLabels": {"a": "b"}}},
                "ports": [{"port": 1, "name": ""}, {"port": 0, "appProtocol": "udp"}]}})
            ),
            [
                "spec.ports[0].name: must not be empty",
                "spec.ports[1].port: must be in the range 1-65535 (got 0)",
                "spec.ports[1].appProtocol: appProtocol must be one of: grpc, http, http2, kafka, tcp"
            ]
        );
    }
}
