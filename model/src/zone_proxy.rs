//! `ZoneIngress` and `ZoneEgress`: the per-zone proxies that carry cross-zone
//! traffic. A zone ingress also advertises a per-service summary
//! (`availableServices`), which is what other zones route by.

use std::collections::BTreeMap;

use crate::dataplane::{Admin, validate_service_tags};
use crate::error::{Validate, Violations, index, join};
use crate::name::{validate_host, validate_mesh_name, validate_name, validate_port};

/// The body of a `ZoneIngress`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ZoneIngressSpec {
    /// The zone the ingress belongs to (set by the zone control plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Where the ingress listens and is reached.
    pub networking: ZoneIngressNetworking,
    /// The services reachable through this ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_services: Option<Vec<AvailableService>>,
}

/// A zone ingress's addresses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ZoneIngressNetworking {
    /// The local listen address.
    pub address: String,
    /// The local listen port.
    pub port: u32,
    /// The address other zones dial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_address: Option<String>,
    /// The port other zones dial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_port: Option<u32>,
    /// The admin listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<Admin>,
}

/// A service reachable through a zone ingress, with its instance count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AvailableService {
    /// The subset's tags; `kuma.io/service` is required.
    pub tags: BTreeMap<String, String>,
    /// How many (healthy) instances serve it.
    pub instances: u32,
    /// The mesh of the service.
    pub mesh: String,
    /// Whether it is an external service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_service: Option<bool>,
}

impl ZoneIngressSpec {
    /// The address and port other zones dial (advertised, else local).
    pub fn public_endpoint(&self) -> (&str, u32) {
        let n = &self.networking;
        (
            n.advertised_address.as_deref().unwrap_or(&n.address),
            n.advertised_port.unwrap_or(n.port),
        )
    }

    /// The advertised services (empty when none).
    pub fn services(&self) -> &[AvailableService] {
        self.available_services.as_deref().unwrap_or_default()
    }
}

/// The body of a `ZoneEgress`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ZoneEgressSpec {
    /// The zone the egress belongs to (set by the zone control plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Where the egress listens.
    pub networking: ZoneEgressNetworking,
}

/// A zone egress's addresses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ZoneEgressNetworking {
    /// The listen address.
    pub address: String,
    /// The listen port.
    pub port: u32,
    /// The admin listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<Admin>,
}

fn validate_zone(path: &str, zone: Option<&str>, v: &mut Violations) {
    if let Some(z) = zone
        && let Err(e) = validate_name(z)
    {
        v.add(join(path, "zone"), e);
    }
}

fn validate_endpoint(
    path: &str,
    address: &str,
    port: u32,
    admin: Option<&Admin>,
    v: &mut Violations,
) {
    if let Err(e) = validate_host(address) {
        v.add(join(path, "address"), e);
    }
    if let Err(e) = validate_port(port) {
        v.add(join(path, "port"), e);
    }
    if let Some(a) = admin
        && let Err(e) = validate_port(a.port)
    {
        v.add(join(&join(path, "admin"), "port"), e);
    }
}

impl Validate for ZoneIngressSpec {
    fn validate(&self, path: &str, v: &mut Violations) {
        validate_zone(path, self.zone.as_deref(), v);
        let np = join(path, "networking");
        let n = &self.networking;
        validate_endpoint(&np, &n.address, n.port, n.admin.as_ref(), v);
        if let Some(a) = &n.advertised_address
            && let Err(e) = validate_host(a)
        {
            v.add(join(&np, "advertisedAddress"), e);
        }
        if let Some(p) = n.advertised_port
            && let Err(e) = validate_port(p)
        {
            v.add(join(&np, "advertisedPort"), e);
        }
        let sp = join(path, "availableServices");
        for (i, s) in self.services().iter().enumerate() {
            let p = index(&sp, i);
            validate_service_tags(&join(&p, "tags"), &s.tags, v);
            if let Err(e) = validate_mesh_name(&s.mesh) {
                v.add(join(&p, "mesh"), e);
            }
        }
    }
}

impl Validate for ZoneEgressSpec {
    fn validate(&self, path: &str, v: &mut Violations) {
        validate_zone(path, self.zone.as_deref(), v);
        let n = &self.networking;
        validate_endpoint(
            &join(path, "networking"),
            &n.address,
            n.port,
            n.admin.as_ref(),
            v,
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::{ResourceKind, Spec};
    use serde_json::json;

    fn errors(kind: ResourceKind, value: serde_json::Value) -> Vec<String> {
        match Spec::from_value(kind, value) {
            Ok(spec) => {
                assert_eq!(spec.kind(), kind);
                vec![]
            }
            Err(e) => e
                .violations
                .into_iter()
                .map(|v| format!("{}: {}", v.field, v.reason))
                .collect(),
        }
    }

    #[test]
    fn zone_proxies() {
        use ResourceKind::{ZoneEgress, ZoneIngress};
        let cases: Vec<(ResourceKind, serde_json::Value, Vec<&str>)> = vec![
            (
                ZoneIngress,
                json!({"zone": "zone-1", "networking": {"address": "10.0.0.1", "port": 10001, "advertisedAddress": "1.2.3.4", "advertisedPort": 443},
                       "availableServices": [{"tags": {"kuma.io/service": "web", "version": "v1"}, "instances": 2, "mesh": "default"}]}),
                vec![],
            ),
            (
                ZoneIngress,
                json!({"networking": {"address": "10.0.0.1", "port": 0},
                       "availableServices": [{"tags": {"app": "web"}, "instances": 2, "mesh": "Default"}]}),
                vec![
                    "networking.port: must be in 1..=65535 (got 0)",
                    "availableServices[0].tags: must contain the \"kuma.io/service\" tag",
                    "availableServices[0].mesh: invalid first or last character: a mesh name must consist of lower-case alphanumeric characters or '-', and start and end with an alphanumeric character",
                ],
            ),
            (
                ZoneEgress,
                json!({"networking": {"address": "0.0.0.0", "port": 10002, "admin": {"port": 9902}}}),
                vec![],
            ),
            (
                ZoneEgress,
                json!({"zone": "Bad_Zone", "networking": {"address": "0.0.0.0", "port": 10002}}),
                vec![
                    "zone: invalid first or last character: a name must consist of lower-case alphanumeric characters, '-' or '.', and start and end with an alphanumeric character",
                ],
            ),
            (
                ZoneEgress,
                json!({"networking": {"address": "0.0.0.0"}}),
                vec!["networking: missing field `port`"],
            ),
        ];
        for (kind, value, want) in cases {
            assert_eq!(errors(kind, value.clone()), want, "{value}");
        }
    }

    #[test]
    fn public_endpoint() {
        let spec: crate::ZoneIngressSpec =
            serde_json::from_value(json!({"networking": {"address": "10.0.0.1", "port": 10001}}))
                .expect("parse");
        assert_eq!(spec.public_endpoint(), ("10.0.0.1", 10001));
        assert!(spec.services().is_empty());
    }
}
