//! The `MeshService` resource: a service of one zone, as Kuma 2.x names
//! destinations. Kuma's universal document keeps it under `spec` (selector, ports,
//! identities, state) beside a `status` (addresses, VIPs, TLS, counts of the
//! data plane proxies it selects):
//!
//! ```yaml
//! type: MeshService
//! mesh: default
//! name: redis
//! spec:
//!   selector: {dataplaneTags: {kuma.io/service: redis}}
//!   ports: [{name: "6379", port: 6379, targetPort: 6379, appProtocol: tcp}]
//!   identities: [{type: ServiceTag, value: redis}]
//! status:
//!   dataplaneProxies: {total: 2, healthy: 1}
//! ```
//!
//! A MeshService is zone-owned: each zone CP generates its own from the zone's
//! Dataplanes (`zone-cp/src/dp/mesh_services.rs`); global stores a zone's as
//! `<name>.<zone>` and passes it on to the other zones.
//!
//! Validation is Kuma's (`pkg/core/resources/apis/meshservice/api/v1alpha1/validator.go`):
//! at most one selector, and a name (the `kuma.io/display-name` label when global
//! renamed it) of at most 63 characters; Meridian adds that ports are 1–65535 and
//! `targetPort`, when a name, is not empty. Everything else is only decoded by
//! type (Kuma validates nothing else, see kumahq/kuma#13814).

use std::collections::BTreeMap;

use crate::error::{Validate, Violations, index, join};

/// Kuma's limit on a MeshService's (display) name.
pub const MAX_MESH_SERVICE_NAME: usize = 63;

/// The label a generated MeshService carries, and its value (Kuma's).
pub const MANAGED_BY_LABEL: &str = "kuma.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`] on MeshServices the zone CP generated.
pub const MESH_SERVICE_GENERATOR: &str = "meshservice-generator";
/// The label naming the environment a resource comes from (`universal`).
pub const ENV_LABEL: &str = "kuma.io/env";
/// The label naming a mesh-scoped resource's mesh (Kuma sets it on generated
/// MeshServices).
pub const MESH_LABEL: &str = "kuma.io/mesh";

/// What `Spec::MeshService` holds: the document's `spec` and `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshServiceFields {
    /// The service: which proxies, which ports, which identities. Absent means
    /// empty, as in Kuma (every field of it is optional).
    #[serde(default)]
    pub spec: MeshServiceSpec,
    /// What the control plane observed (Kuma's REST writes may carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MeshServiceStatus>,
}

/// Kuma's MeshService `spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshServiceSpec {
    /// `Available` when at least one selected proxy is healthy, else `Unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<MeshServiceState>,
    /// Which data plane proxies serve it (at most one way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<MeshServiceSelector>,
    /// The service's ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<MeshServicePort>,
    /// The identities its proxies present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identities: Option<Vec<MeshServiceIdentity>>,
}

/// Kuma's MeshService states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MeshServiceState {
    /// At least one healthy endpoint.
    Available,
    /// None.
    Unavailable,
}

/// How a MeshService selects its proxies.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshServiceSelector {
    /// Proxies with an inbound carrying all these tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_tags: Option<BTreeMap<String, String>>,
    /// One proxy, by its Dataplane name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_ref: Option<MeshServiceDataplaneRef>,
    /// Proxies whose Dataplane resource carries these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_labels: Option<LabelSelector>,
}

/// A Dataplane by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshServiceDataplaneRef {
    /// The Dataplane's name (Kuma does not require it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Kuma's `LabelSelector`: every listed label must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabelSelector {
    /// The labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

impl LabelSelector {
    /// Whether `labels` has every label of the selector (an empty selector
    /// matches everything, as Kuma's).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// A port of a MeshService.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshServicePort {
    /// The port's name (the generator writes the inbound's name, else the number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The service port.
    pub port: u32,
    /// The proxies' port: a number, or the name of an inbound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<TargetPort>,
    /// The protocol (`tcp`, `http`, …; Kuma's default is `tcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// Kuma's `intstr.IntOrString` as a target port: a number or a port name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    /// A port number.
    Number(u32),
    /// The name of a port.
    Name(String),
}

impl serde::Serialize for TargetPort {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Number(n) => s.serialize_u32(*n),
            Self::Name(v) => s.serialize_str(v),
        }
    }
}

impl<'de> serde::Deserialize<'de> for TargetPort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = TargetPort;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a port number or a port name")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(TargetPort::Number)
                    .map_err(|_| E::custom(format!("port {v} is out of range")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(TargetPort::Number)
                    .map_err(|_| E::custom(format!("port {v} is out of range")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(TargetPort::Name(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for TargetPort {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer))
            .item(ObjectBuilder::new().schema_type(Type::String))
            .description(Some("A port number or the name of a port."))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for TargetPort {}

/// An identity the service's proxies present.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshServiceIdentity {
    /// What `value` is.
    #[serde(rename = "type")]
    pub kind: MeshServiceIdentityType,
    /// A `kuma.io/service` value or a SPIFFE ID.
    pub value: String,
}

/// Kuma's identity types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MeshServiceIdentityType {
    /// A `kuma.io/service` tag value.
    ServiceTag,
    /// A SPIFFE ID.
    SpiffeID,
}

/// Kuma's MeshService `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshServiceStatus {
    /// Host names generated for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// Virtual IPs assigned to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<Vip>,
    /// Whether its proxies have certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
    /// Which host name generators apply, with their conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostname_generators: Vec<HostnameGeneratorStatus>,
    /// Counts of the data plane proxies it selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_proxies: Option<DataplaneProxies>,
}

/// A generated host name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Address {
    /// The host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Who made it (`HostnameGenerator`, `Kubernetes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The generator that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname_generator_ref: Option<HostnameGeneratorRef>,
}

/// A HostnameGenerator by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostnameGeneratorRef {
    /// Its name.
    pub core_name: String,
}

/// A host name generator's status on a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostnameGeneratorStatus {
    /// The generator.
    pub hostname_generator_ref: HostnameGeneratorRef,
    /// Its conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Kuma's (Kubernetes-style) status condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Condition {
    /// What the condition is about.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Why, as one word.
    pub reason: String,
    /// Why, for people.
    pub message: String,
}

/// A virtual IP.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Vip {
    /// The address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// Whether the service's proxies have certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TlsStatus {
    /// `Ready` or `NotReady`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TlsReadiness>,
}

/// Kuma's TLS statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TlsReadiness {
    /// Every proxy has a certificate.
    Ready,
    /// Not (yet).
    NotReady,
}

/// Counts of the proxies a MeshService selects.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DataplaneProxies {
    /// Connected to the zone CP.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub connected: u32,
    /// With every selected inbound healthy.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub healthy: u32,
    /// All of them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u32,
}

// serde's `skip_serializing_if` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Records a violation unless `name` (a MeshService's or MeshMultiZoneService's
/// name as its zone knows it) fits Kuma's limit.
pub(crate) fn validate_service_name_length(name: &str, v: &mut Violations) {
    if name.len() > MAX_MESH_SERVICE_NAME {
        v.add(
            "name",
            format!(
                "must not be longer than {MAX_MESH_SERVICE_NAME} characters (got {})",
                name.len()
            ),
        );
    }
}

/// Records a violation unless `port` is a TCP port.
pub(crate) fn validate_service_port(path: &str, port: u32, v: &mut Violations) {
    if !(1..=65535).contains(&port) {
        v.add(path, format!("must be in the range 1-65535 (got {port})"));
    }
}

impl Validate for MeshServiceFields {
    fn validate(&self, path: &str, v: &mut Violations) {
        let spec = join(path, "spec");
        if let Some(s) = &self.spec.selector {
            let set = [
                s.dataplane_tags.is_some(),
                s.dataplane_ref.is_some(),
                s.dataplane_labels.is_some(),
            ];
            if set.iter().filter(|x| **x).count() > 1 {
                v.add(
                    join(&spec, "selector"),
                    "must specify only one of: dataplaneTags, dataplaneRef, or dataplaneLabels",
                );
            }
        }
        let ports = join(&spec, "ports");
        for (i, p) in self.spec.ports.iter().enumerate() {
            let at = index(&ports, i);
            validate_service_port(&join(&at, "port"), p.port, v);
            match &p.target_port {
                Some(TargetPort::Number(n)) => {
                    validate_service_port(&join(&at, "targetPort"), *n, v)
                }
                Some(TargetPort::Name(n)) if n.is_empty() => {
                    v.add(join(&at, "targetPort"), "must not be empty")
                }
                _ => {}
            }
        }
    }
}

impl MeshServiceFields {
    /// The `kuma.io/service` value its selector names, when it selects by that tag.
    pub fn service_tag(&self) -> Option<&str> {
        self.spec
            .selector
            .as_ref()?
            .dataplane_tags
            .as_ref()?
            .get(crate::dataplane::SERVICE_TAG)
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{ResourceKind, Spec};

    fn errors(value: serde_json::Value) -> Vec<String> {
        crate::test_support::violation_lines(ResourceKind::MeshService, value, true)
    }

    #[test]
    fn valid_documents_round_trip() {
        let cases = [
            json!({"spec": {}}),
            json!({"spec": {"selector": {"dataplaneTags": {"kuma.io/service": "redis"}},
                "ports": [{"name": "main", "port": 6379, "targetPort": 6379, "appProtocol": "tcp"},
                          {"port": 8080, "targetPort": "http-port"}],
                "identities": [{"type": "ServiceTag", "value": "redis"},
                               {"type": "SpiffeID", "value": "spiffe://default/redis"}],
                "state": "Available"}}),
            json!({"spec": {"selector": {"dataplaneRef": {"name": "redis-01"}}}}),
            json!({"spec": {"selector": {"dataplaneLabels": {"matchLabels": {"app": "redis"}}}},
                "status": {"addresses": [{"hostname": "redis.mesh", "origin": "HostnameGenerator",
                    "hostnameGeneratorRef": {"coreName": "local"}}],
                  "vips": [{"ip": "241.0.0.1"}], "tls": {"status": "Ready"},
                  "hostnameGenerators": [{"hostnameGeneratorRef": {"coreName": "local"},
                    "conditions": [{"type": "Generated", "status": "True", "reason": "Ok", "message": ""}]}],
                  "dataplaneProxies": {"connected": 1, "healthy": 1, "total": 2}}}),
        ];
        for value in cases {
            assert_eq!(errors(value.clone()), Vec::<String>::new(), "{value}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_its_path() {
        let got = errors(json!({"spec": {
            "selector": {"dataplaneTags": {"app": "redis"}, "dataplaneRef": {"name": "r"}},
            "ports": [{"port": 0}, {"port": 80, "targetPort": ""}, {"port": 81, "targetPort": 70000}],
            "identities": [{"type": "Nope", "value": "x"}],
            "state": "Sleeping"},
            "other": 1}));
        let want = [
            "spec.identities[0].type",
            "spec.state",
            "other",
            "spec.selector: must specify only one of",
            "spec.ports[0].port: must be in the range 1-65535",
            "spec.ports[1].targetPort: must not be empty",
            "spec.ports[2].targetPort: must be in the range 1-65535",
        ];
        for w in want {
            assert!(got.iter().any(|g| g.starts_with(w)), "{w} not in {got:?}");
        }
        assert_eq!(got.len(), want.len(), "{got:?}");
    }

    #[test]
    fn documents_keep_spec_and_status_at_top_level() {
        let doc = json!({"type": "MeshService", "mesh": "default", "name": "redis",
            "labels": {"kuma.io/origin": "zone"},
            "spec": {"selector": {"dataplaneTags": {"kuma.io/service": "redis"}},
                     "ports": [{"port": 6379}]},
            "status": {"dataplaneProxies": {"total": 1}}});
        let r = crate::parse_document(doc.clone()).expect("valid");
        assert_eq!(r.meta.kind, ResourceKind::MeshService);
        let Spec::MeshService(f) = &r.spec else {
            panic!("a MeshService spec: {:?}", r.spec)
        };
        assert_eq!(f.service_tag(), Some("redis"));
        assert_eq!(r.to_document(), doc);
        // Absent `spec` is an empty one, as in Kuma.
        let bare = crate::parse_document(
            json!({"type": "MeshService", "mesh": "default", "name": "redis"}),
        )
        .expect("valid");
        assert_eq!(bare.to_document()["spec"], json!({}));
        // A MeshService needs its mesh, like every mesh-scoped kind.
        let e = crate::parse_document(json!({"type": "MeshService", "name": "redis"}))
            .expect_err("no mesh");
        assert!(e.to_string().contains("mesh: must be set"), "{e}");
    }

    #[test]
    fn the_name_limit_applies_to_the_zone_name() {
        let long = "meshservice-too-long-too-long-too-long-too-long-too-long-too-long";
        let e =
            crate::parse_document(json!({"type": "MeshService", "mesh": "default", "name": long}))
                .expect_err("too long");
        assert!(
            e.to_string()
                .contains("name: must not be longer than 63 characters"),
            "{e}"
        );
        // Global's `<name>.<zone>` may pass 63: the zone's name is what counts.
        let synced = "redis-abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefg.zone-1";
        assert!(synced.len() > 63);
        crate::parse_document(json!({"type": "MeshService", "mesh": "default", "name": synced,
            "labels": {"kuma.io/display-name": "redis-abcdefghij-abcdefghij-abcdefghij-abcdefghij-abcdefg"}}))
        .expect("the display name fits");
    }

    #[test]
    fn label_selector_matches_every_label() {
        let s: super::LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"a": "1", "b": "2"}})).expect("parse");
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(s.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
        assert!(!s.matches(&labels(&[("a", "1")])));
        assert!(super::LabelSelector::default().matches(&labels(&[])));
    }
}
