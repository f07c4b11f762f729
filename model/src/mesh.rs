//! The `Mesh` resource: the mTLS certificate authority backends and routing
//! switches. Fields sit at the document's top level, as in Kuma
//! (`mtls: {enabledBackend: ca-1, backends: [{name: ca-1, type: builtin}]}`).

use std::collections::{BTreeMap, BTreeSet};

use crate::duration::Duration;
use crate::error::{Validate, Violations, index, join};
use crate::name::{validate_name, validate_tag_key, validate_tag_value};

/// The body of a `Mesh`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshSpec {
    /// Mutual TLS settings; absent means mTLS is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<Mtls>,
    /// Routing switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<Routing>,
    /// Who may join the mesh: checked when a sidecar registers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Constraints>,
    /// Kinds of Kuma's initial policies not to create with a new mesh (`*`:
    /// none); see [`crate::initial_policies`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_creating_initial_policies: Option<Vec<String>>,
    /// Kuma's MeshService generation mode: unless `Disabled` (also when absent, as
    /// in Kuma), each zone CP generates MeshServices from its Dataplanes. Routing
    /// still goes by `kuma.io/service` tags in every mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_services: Option<MeshServices>,
    /// Outbound networking; `passthrough` is accepted and kept (it needs the
    /// transparent proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<MeshNetworking>,
}

/// Kuma's `constraints`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Constraints {
    /// Constraints on data plane proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_proxy: Option<DataplaneProxyConstraints>,
}

/// Which data plane proxies may join: each inbound's tags must match one of the
/// `requirements` (when there are any) and none of the `restrictions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DataplaneProxyConstraints {
    /// Tag sets of which an inbound must match at least one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<TagRule>,
    /// Tag sets no inbound may match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restrictions: Vec<TagRule>,
}

/// Tags to match; the value `*` matches any non-empty value.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TagRule {
    /// The tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl TagRule {
    /// Whether an inbound with `tags` matches every tag of the rule.
    fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        self.tags.iter().all(|(k, want)| match tags.get(k) {
            Some(have) => want == "*" || have == want,
            None => false,
        })
    }
}

/// Kuma's `meshServices`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshServices {
    /// The generation mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MeshServicesMode>,
}

/// Kuma's MeshService modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MeshServicesMode {
    /// Not generated.
    Disabled,
    /// Generated and used everywhere.
    Everywhere,
    /// Generated, used where `reachableBackends` names them.
    ReachableBackends,
    /// Generated and used instead of `kuma.io/service`.
    Exclusive,
}

/// Kuma's mesh `networking`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshNetworking {
    /// Outbound settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<NetworkingOutbound>,
}

/// Kuma's `networking.outbound`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkingOutbound {
    /// Let traffic to unknown destinations through (transparent proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<bool>,
}

/// Why a data plane proxy may not join a mesh (its `constraints`); the message
/// is Kuma's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// An inbound matches none of the requirements.
    #[error(
        "dataplane cannot be a member of mesh {mesh:?} because its tags {tags:?} do not fulfill any requirement defined on the Mesh"
    )]
    NotAllowed {
        /// The mesh.
        mesh: String,
        /// The inbound's tags.
        tags: BTreeMap<String, String>,
    },
    /// An inbound matches a restriction.
    #[error(
        "dataplane cannot be a member of mesh {mesh:?} because its tags {tags:?} match restricted tags {restricted:?} defined on the Mesh"
    )]
    Denied {
        /// The mesh.
        mesh: String,
        /// The inbound's tags.
        tags: BTreeMap<String, String>,
        /// The restriction it matched.
        restricted: BTreeMap<String, String>,
    },
}

impl MeshSpec {
    /// The backend that issues certificates, when mTLS is enabled.
    pub fn enabled_backend(&self) -> Option<&CaBackend> {
        let mtls = self.mtls.as_ref()?;
        let name = mtls.enabled_backend.as_deref()?;
        mtls.backends.iter().find(|b| b.name == name)
    }

    /// mTLS is on: a backend is enabled.
    pub fn mtls_enabled(&self) -> bool {
        self.enabled_backend().is_some()
    }

    /// Cross-zone and external traffic goes through the zone egress.
    pub fn zone_egress_enabled(&self) -> bool {
        self.routing.as_ref().and_then(|r| r.zone_egress) == Some(true)
    }

    /// Whether a data plane proxy whose inbounds carry `inbound_tags` (each
    /// inbound's tags) may join mesh `mesh`, as Kuma's membership check decides.
    pub fn admits<'a>(
        &self,
        mesh: &str,
        inbound_tags: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
    ) -> Result<(), MembershipError> {
        let Some(rules) = self
            .constraints
            .as_ref()
            .and_then(|c| c.dataplane_proxy.as_ref())
        else {
            return Ok(());
        };
        for tags in inbound_tags {
            if !rules.requirements.is_empty() && !rules.requirements.iter().any(|r| r.matches(tags))
            {
                return Err(MembershipError::NotAllowed {
                    mesh: mesh.to_owned(),
                    tags: tags.clone(),
                });
            }
            if let Some(r) = rules.restrictions.iter().find(|r| r.matches(tags)) {
                return Err(MembershipError::Denied {
                    mesh: mesh.to_owned(),
                    tags: tags.clone(),
                    restricted: r.tags.clone(),
                });
            }
        }
        Ok(())
    }

    /// Locality-aware load balancing is on (Kuma's mesh-wide switch).
    pub fn locality_aware_load_balancing(&self) -> bool {
        self.routing
            .as_ref()
            .and_then(|r| r.locality_aware_load_balancing)
            == Some(true)
    }
}

/// Mutual TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Mtls {
    /// Name of the backend in use; absent means mTLS is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_backend: Option<String>,
    /// The configured certificate authority backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<CaBackend>,
}

/// A certificate authority backend.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaBackend {
    /// Unique name within the mesh.
    pub name: String,
    /// Where the CA comes from.
    #[serde(rename = "type")]
    pub type_: CaBackendType,
    /// Whether plaintext is also accepted while migrating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MtlsMode>,
    /// Data plane certificate settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp_cert: Option<DpCert>,
    /// Backend-specific settings: `caCert` for builtin, `cert`/`key` for provided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<CaBackendConf>,
}

/// Kinds of certificate authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CaBackendType {
    /// The control plane generates and keeps the CA.
    Builtin,
    /// The user provides the CA certificate and key.
    Provided,
}

/// mTLS enforcement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum MtlsMode {
    /// Only mTLS traffic is accepted (the default).
    Strict,
    /// Plaintext is accepted too.
    Permissive,
}

/// Data plane certificate settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DpCert {
    /// Certificate lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<DpCertRotation>,
}

/// Data plane certificate lifetime.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DpCertRotation {
    /// How long an issued certificate is valid, e.g. `1d`.
    pub expiration: Duration,
}

/// Backend settings; which fields are allowed depends on the backend type.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaBackendConf {
    /// Builtin: the generated CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<BuiltinCaCert>,
    /// Provided: the CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<DataSource>,
    /// Provided: the CA private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<DataSource>,
}

/// Settings of a generated CA certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuiltinCaCert {
    /// CA lifetime, e.g. `10y`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Duration>,
    /// RSA key size. Kuma spells it `RSAbits`; `rsaBits` is accepted too.
    #[serde(
        rename = "RSAbits",
        alias = "rsaBits",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(rename = "RSAbits"))]
    pub rsa_bits: Option<u32>,
}

/// Where a secret value comes from (exactly one field set).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DataSource {
    /// Name of a secret in the mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Path of a file on the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Base64-encoded content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// Plain content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_string: Option<String>,
}

/// Routing switches.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Routing {
    /// Send cross-zone traffic through the local zone egress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_egress: Option<bool>,
    /// Prefer local endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_aware_load_balancing: Option<bool>,
}

impl Validate for MeshSpec {
    fn validate(&self, path: &str, v: &mut Violations) {
        if let Some(rules) = self
            .constraints
            .as_ref()
            .and_then(|c| c.dataplane_proxy.as_ref())
        {
            let cp = join(&join(path, "constraints"), "dataplaneProxy");
            for (field, list) in [
                ("requirements", &rules.requirements),
                ("restrictions", &rules.restrictions),
            ] {
                for (i, rule) in list.iter().enumerate() {
                    let tp = join(&index(&join(&cp, field), i), "tags");
                    if rule.tags.is_empty() {
                        v.add(tp.clone(), "must have at least one tag");
                    }
                    for (key, value) in &rule.tags {
                        let at = format!("{tp}[{key:?}]");
                        if let Err(e) = validate_tag_key(key) {
                            v.add(at.clone(), e);
                        }
                        if value != "*"
                            && let Err(e) = validate_tag_value(value)
                        {
                            v.add(at, e);
                        }
                    }
                }
            }
        }
        let Some(mtls) = &self.mtls else { return };
        let mtls_path = join(path, "mtls");
        let backends_path = join(&mtls_path, "backends");
        let mut seen = BTreeSet::new();
        for (i, b) in mtls.backends.iter().enumerate() {
            let bp = index(&backends_path, i);
            if let Err(e) = validate_name(&b.name) {
                v.add(join(&bp, "name"), e);
            } else if !seen.insert(b.name.as_str()) {
                v.add(
                    join(&bp, "name"),
                    format!("duplicate backend name {:?}", b.name),
                );
            }
            validate_conf(&join(&bp, "conf"), b.type_, b.conf.as_ref(), v);
        }
        if let Some(enabled) = &mtls.enabled_backend
            && !mtls.backends.iter().any(|b| &b.name == enabled)
        {
            v.add(
                join(&mtls_path, "enabledBackend"),
                format!("must name one of the backends (no backend named {enabled:?})"),
            );
        }
    }
}

fn validate_conf(path: &str, ty: CaBackendType, conf: Option<&CaBackendConf>, v: &mut Violations) {
    match ty {
        CaBackendType::Builtin => {
            let Some(conf) = conf else { return };
            for (field, set) in [("cert", conf.cert.is_some()), ("key", conf.key.is_some())] {
                if set {
                    v.add(join(path, field), "must not be set for a builtin backend");
                }
            }
            if let Some(bits) = conf.ca_cert.as_ref().and_then(|c| c.rsa_bits)
                && !(2048..=8192).contains(&bits)
            {
                v.add(
                    join(&join(path, "caCert"), "RSAbits"),
                    "must be in 2048..=8192",
                );
            }
        }
        CaBackendType::Provided => {
            let Some(conf) = conf else {
                v.add(path, "must be set for a provided backend (cert and key)");
                return;
            };
            if conf.ca_cert.is_some() {
                v.add(
                    join(path, "caCert"),
                    "must not be set for a provided backend",
                );
            }
            for (field, src) in [("cert", &conf.cert), ("key", &conf.key)] {
                let p = join(path, field);
                match src {
                    None => v.add(p, "must be set for a provided backend"),
                    Some(ds) => {
                        let set = [&ds.secret, &ds.file, &ds.inline, &ds.inline_string]
                            .iter()
                            .filter(|s| s.is_some())
                            .count();
                        if set != 1 {
                            v.add(
                                p,
                                "exactly one of secret, file, inline, inlineString must be set",
                            );
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{ResourceKind, Spec};
    use serde_json::json;

    fn errors(value: serde_json::Value) -> Vec<String> {
        crate::test_support::violation_lines(ResourceKind::Mesh, value, false)
    }

    #[test]
    fn valid_meshes_round_trip() {
        let cases = [
            json!({}),
            json!({"mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}, "routing": {"zoneEgress": true}}),
            json!({"mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin", "mode": "PERMISSIVE",
                "dpCert": {"rotation": {"expiration": "1d"}}, "conf": {"caCert": {"RSAbits": 2048, "expiration": "10y"}}}]}}),
            json!({"mtls": {"backends": [{"name": "p", "type": "provided",
                "conf": {"cert": {"secret": "c"}, "key": {"file": "/k.pem"}}}]}}),
            json!({"routing": {"localityAwareLoadBalancing": false}}),
            // Kuma 2.x fields.
            json!({"meshServices": {"mode": "Exclusive"}, "networking": {"outbound": {"passthrough": false}},
                "skipCreatingInitialPolicies": ["*"],
                "constraints": {"dataplaneProxy": {"requirements": [{"tags": {"team": "*"}}],
                                                   "restrictions": [{"tags": {"kuma.io/zone": "east"}}]}}}),
        ];
        for value in cases {
            let spec = Spec::from_value(ResourceKind::Mesh, value.clone())
                .unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(spec.to_value(), value);
        }
    }

    #[test]
    fn invalid_meshes() {
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (
                json!({"mtls": {"enabledBackend": "ca-2", "backends": [{"name": "ca-1", "type": "builtin"}, {"name": "ca-1", "type": "builtin"}]}}),
                vec![
                    "mtls.backends[1].name: duplicate backend name \"ca-1\"",
                    "mtls.enabledBackend: must name one of the backends (no backend named \"ca-2\")",
                ],
            ),
            (
                json!({"mtls": {"backends": [{"name": "p", "type": "provided"}]}}),
                vec!["mtls.backends[0].conf: must be set for a provided backend (cert and key)"],
            ),
            (
                json!({"mtls": {"backends": [{"name": "p", "type": "provided", "conf": {"cert": {}, "caCert": {}}}]}}),
                vec![
                    "mtls.backends[0].conf.caCert: must not be set for a provided backend",
                    "mtls.backends[0].conf.cert: exactly one of secret, file, inline, inlineString must be set",
                    "mtls.backends[0].conf.key: must be set for a provided backend",
                ],
            ),
            (
                json!({"mtls": {"backends": [{"name": "ca", "type": "vault"}]}}),
                vec![
                    "mtls.backends[0].type: unknown variant `vault`, expected `builtin` or `provided`",
                ],
            ),
            (
                json!({"mtls": {"backends": [{"name": "ca", "type": "builtin", "dpCert": {"rotation": {"expiration": "1x"}}}]}}),
                vec![
                    "mtls.backends[0].dpCert.rotation.expiration: invalid duration \"1x\": unknown unit (expected a Go duration such as \"10s\", \"1m30s\" or \"500ms\")",
                ],
            ),
            (
                json!({"logging": {}}),
                vec![
                    "logging: unknown field `logging`, expected one of `mtls`, `routing`, `constraints`, `skipCreatingInitialPolicies`, `meshServices`, `networking`",
                ],
            ),
        ];
        for (value, want) in cases {
            assert_eq!(errors(value.clone()), want, "{value}");
        }
    }

    #[test]
    fn helpers() {
        let spec: crate::MeshSpec = serde_json::from_value(json!({
            "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
            "routing": {"zoneEgress": true}
        }))
        .expect("parse");
        assert!(spec.mtls_enabled());
        assert!(spec.zone_egress_enabled());
        assert!(!spec.locality_aware_load_balancing());
        assert!(!crate::MeshSpec::default().mtls_enabled());
    }

    #[test]
    fn constraints_are_validated_and_decide_membership() {
        assert_eq!(
            errors(json!({"constraints": {"dataplaneProxy": {
                "requirements": [{"tags": {}}], "restrictions": [{"tags": {"bad key": "x"}}]}},
                "meshServices": {"mode": "Sometimes"}})),
            vec![
                "meshServices.mode: unknown variant `Sometimes`, expected one of `Disabled`, `Everywhere`, `ReachableBackends`, `Exclusive`",
                "constraints.dataplaneProxy.requirements[0].tags: must have at least one tag",
                "constraints.dataplaneProxy.restrictions[0].tags[\"bad key\"]: invalid tag key \"bad key\": may only contain alphanumerics, '.', '-', '_', ':' or '/'",
            ]
        );
        let Ok(Spec::Mesh(mesh)) = Spec::from_value(
            ResourceKind::Mesh,
            json!({"constraints": {"dataplaneProxy": {"requirements": [{"tags": {"team": "*"}}],
                "restrictions": [{"tags": {"version": "v0"}}]}}}),
        ) else {
            panic!("valid mesh")
        };
        let tags = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(
            mesh.admits("m", [&tags(&[("team", "a"), ("version", "v1")])])
                .is_ok()
        );
        // Every inbound must qualify: one without a team is refused.
        assert!(matches!(
            mesh.admits("m", [&tags(&[("team", "a")]), &tags(&[("version", "v1")])]),
            Err(crate::MembershipError::NotAllowed { .. })
        ));
        assert!(matches!(
            mesh.admits("m", [&tags(&[("team", "a"), ("version", "v0")])]),
            Err(crate::MembershipError::Denied { .. })
        ));
        assert!(crate::MeshSpec::default().admits("m", [&tags(&[])]).is_ok());
    }
}
