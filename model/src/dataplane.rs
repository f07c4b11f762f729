//! The `Dataplane` resource: a sidecar proxy's address, the inbounds it
//! serves (each belonging to the service named by its `kuma.io/service` tag)
//! and the outbounds its application may call. Fields sit at the document's
//! top level (`networking: {...}`), as in Kuma.

use std::collections::{BTreeMap, BTreeSet};

use crate::duration::Duration;
use crate::error::{Validate, Violations, index, join};
use crate::name::{validate_host, validate_port};
use crate::target_ref::{TargetRefKind, validate_tags};

/// The tag naming the service an inbound or outbound belongs to.
pub const SERVICE_TAG: &str = "kuma.io/service";
/// The tag naming a service's protocol (`tcp`, `http`, ...).
pub const PROTOCOL_TAG: &str = "kuma.io/protocol";
/// The tag naming the zone a workload runs in.
pub const ZONE_TAG: &str = "kuma.io/zone";

/// The body of a `Dataplane`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DataplaneSpec {
    /// Addresses, inbounds and outbounds.
    pub networking: DataplaneNetworking,
}

/// A dataplane's network configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DataplaneNetworking {
    /// Where other proxies reach this one (IP or DNS name).
    pub address: String,
    /// The address to advertise instead, e.g. behind NAT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_address: Option<String>,
    /// The services this proxy serves; at least one.
    #[serde(default)]
    pub inbound: Vec<Inbound>,
    /// The services this proxy's application calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<Vec<Outbound>>,
    /// The proxy's admin listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<Admin>,
    /// Transparent proxying (stored; not applied yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transparent_proxying: Option<TransparentProxying>,
}

/// A service this proxy serves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Inbound {
    /// The port the proxy listens on for mesh traffic.
    pub port: u32,
    /// The application's port (defaults to `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_port: Option<u32>,
    /// The application's address (defaults to 127.0.0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_address: Option<String>,
    /// The address to listen on (defaults to `networking.address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Tags; `kuma.io/service` is required.
    pub tags: BTreeMap<String, String>,
    /// Readiness reported by the data plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// A name for this inbound, unique in the dataplane (Kuma 2.x; what a
    /// `sectionName` can refer to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Kuma's inbound state: `Ready` (default), `NotReady` (no traffic is sent to
    /// it), `Ignored` (not an endpoint and not configured; its tags still go into
    /// the proxy's certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<InboundState>,
    /// Probing of the application next to the sidecar (Kuma universal); accepted
    /// and validated. Meridian's readiness comes from the sidecar itself (see the
    /// README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_probe: Option<ServiceProbe>,
    /// The inbound's protocol (Kuma 2.x; the same values as `kuma.io/protocol`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// Kuma's inbound states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum InboundState {
    /// Serves traffic.
    Ready,
    /// Does not serve traffic yet: not an endpoint.
    NotReady,
    /// Neither an endpoint nor configured.
    Ignored,
}

/// Kuma's `serviceProbe`: how often and how to probe the application.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceProbe {
    /// Between probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How long one probe may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Failures before the inbound is unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// Successes before it is healthy again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// A TCP connect probe (the only kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
}

/// The TCP probe: connecting is success. No fields.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TcpProbe {}

/// Kuma's protocol names (`kuma.io/protocol`, inbound `protocol`).
pub const PROTOCOLS: [&str; 6] = ["tcp", "tls", "http", "http2", "grpc", "kafka"];

impl Inbound {
    /// The service (`kuma.io/service` tag).
    pub fn service(&self) -> &str {
        self.tags.get(SERVICE_TAG).map_or("", String::as_str)
    }

    /// Whether the inbound takes traffic: its state is `Ready` (the default) and
    /// its reported health, if any, is ready.
    pub fn is_ready(&self) -> bool {
        self.state.is_none_or(|s| s == InboundState::Ready)
            && self.health.as_ref().is_none_or(|h| h.ready)
    }

    /// Whether the inbound is `Ignored`: not configured, not an endpoint.
    pub fn is_ignored(&self) -> bool {
        self.state == Some(InboundState::Ignored)
    }

    /// The application's port.
    pub fn effective_service_port(&self) -> u32 {
        self.service_port.unwrap_or(self.port)
    }
}

/// Readiness of an inbound.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Whether the inbound accepts traffic.
    pub ready: bool,
}

/// A service this proxy's application calls.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Outbound {
    /// The local port the application connects to.
    pub port: u32,
    /// The local address (defaults to 127.0.0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Tags of the destination (2.5 model); `kuma.io/service` is required
    /// unless `backendRef` is set, and refused beside it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The destination as a resource (Kuma 2.x): a MeshService or
    /// MeshMultiZoneService port, by name or labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_ref: Option<OutboundBackendRef>,
}

impl Outbound {
    /// The destination service (`kuma.io/service` tag); empty for a `backendRef`.
    pub fn service(&self) -> &str {
        self.tags.get(SERVICE_TAG).map_or("", String::as_str)
    }
}

/// An outbound's `backendRef`: which resource the local port reaches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutboundBackendRef {
    /// `MeshService`, `MeshMultiZoneService` or `MeshExternalService`.
    pub kind: TargetRefKind,
    /// The resource's name in this zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The resource's port (required except for MeshExternalService).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Labels selecting one resource (the first by name when several match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Kinds an outbound `backendRef` may name (Kuma's `allowedKinds`).
pub const OUTBOUND_BACKEND_KINDS: [TargetRefKind; 3] = [
    TargetRefKind::MeshExternalService,
    TargetRefKind::MeshMultiZoneService,
    TargetRefKind::MeshService,
];

/// Transparent proxying settings (Kuma's `networking.transparentProxying`):
/// accepted and stored; Meridian's sidecar does not redirect traffic yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransparentProxying {
    /// The port inbound traffic is redirected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_port_inbound: Option<u32>,
    /// The port outbound traffic is redirected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_port_outbound: Option<u32>,
    /// Services reached directly, bypassing the mesh (`*` for all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_access_services: Option<Vec<String>>,
    /// The only services this proxy gets outbounds for (`kuma.io/service` values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable_services: Option<Vec<String>>,
    /// `IPv4` or `DualStack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_mode: Option<String>,
    /// The only resources this proxy gets outbounds for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable_backends: Option<ReachableBackends>,
}

/// `transparentProxying.reachableBackends`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReachableBackends {
    /// The resources.
    #[serde(default)]
    pub refs: Vec<ReachableBackendRef>,
}

/// One reachable resource.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReachableBackendRef {
    /// `MeshService`, `MeshMultiZoneService` or `MeshExternalService`.
    pub kind: TargetRefKind,
    /// By name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// With `name`: the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// One port only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// By labels (not with `name`/`namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// An admin listener.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Admin {
    /// The admin port.
    pub port: u32,
}

impl DataplaneSpec {
    /// The distinct services this proxy serves, sorted.
    pub fn services(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self
            .networking
            .inbound
            .iter()
            .map(Inbound::service)
            .collect();
        set.into_iter().collect()
    }

    /// The tags of the inbounds, each inbound's tags in turn.
    pub fn inbound_tags(&self) -> impl Iterator<Item = &BTreeMap<String, String>> {
        self.networking.inbound.iter().map(|i| &i.tags)
    }

    /// The inbounds that are configured: all but the `Ignored` ones, which
    /// policies cannot target (as in Kuma).
    pub fn configured_inbounds(&self) -> impl Iterator<Item = &Inbound> {
        self.networking.inbound.iter().filter(|i| !i.is_ignored())
    }

    /// Whether some configured inbound carries `key: value`. Kuma's `MeshSubset`
    /// matches a dataplane on the union of its inbounds' tags.
    pub fn has_tag(&self, key: &str, value: &str) -> bool {
        self.configured_inbounds()
            .any(|i| i.tags.get(key).is_some_and(|v| v == value))
    }

    /// The outbounds (empty when none are declared).
    pub fn outbounds(&self) -> &[Outbound] {
        self.networking.outbound.as_deref().unwrap_or_default()
    }
}

impl Validate for DataplaneSpec {
    fn validate(&self, path: &str, v: &mut Violations) {
        let np = join(path, "networking");
        let n = &self.networking;
        if let Err(e) = validate_host(&n.address) {
            v.add(join(&np, "address"), e);
        }
        if let Some(a) = &n.advertised_address
            && let Err(e) = validate_host(a)
        {
            v.add(join(&np, "advertisedAddress"), e);
        }
        let ip = join(&np, "inbound");
        if n.inbound.is_empty() {
            v.add(ip.clone(), "must have at least one inbound");
        }
        let mut ports = BTreeSet::new();
        let mut names = BTreeSet::new();
        for (i, inb) in n.inbound.iter().enumerate() {
            let p = index(&ip, i);
            if let Some(name) = &inb.name {
                if name.is_empty() {
                    v.add(join(&p, "name"), "must not be empty");
                } else if !names.insert(name.as_str()) {
                    v.add(
                        join(&p, "name"),
                        format!("name {name:?} must be unique across inbounds"),
                    );
                }
            }
            if let Some(protocol) = &inb.protocol
                && !PROTOCOLS.contains(&protocol.as_str())
            {
                v.add(
                    join(&p, "protocol"),
                    format!(
                        "has an invalid value {protocol:?}; allowed: {}",
                        PROTOCOLS.join(", ")
                    ),
                );
            }
            if let Some(probe) = &inb.service_probe {
                let pp = join(&p, "serviceProbe");
                for (field, d) in [("interval", &probe.interval), ("timeout", &probe.timeout)] {
                    if d.as_ref().is_some_and(|d| d.as_duration().is_zero()) {
                        v.add(join(&pp, field), "must be greater than 0s");
                    }
                }
                for (field, t) in [
                    ("unhealthyThreshold", probe.unhealthy_threshold),
                    ("healthyThreshold", probe.healthy_threshold),
                ] {
                    if t == Some(0) {
                        v.add(join(&pp, field), "must be greater than 0");
                    }
                }
            }
            if let Err(e) = validate_port(inb.port) {
                v.add(join(&p, "port"), e);
            } else if !ports.insert((inb.address.as_deref(), inb.port)) {
                v.add(
                    join(&p, "port"),
                    format!("duplicate inbound port {}", inb.port),
                );
            }
            if let Some(sp) = inb.service_port
                && let Err(e) = validate_port(sp)
            {
                v.add(join(&p, "servicePort"), e);
            }
            for (field, addr) in [
                ("serviceAddress", &inb.service_address),
                ("address", &inb.address),
            ] {
                if let Some(a) = addr
                    && let Err(e) = validate_host(a)
                {
                    v.add(join(&p, field), e);
                }
            }
            validate_service_tags(&join(&p, "tags"), &inb.tags, v);
        }
        if let Some(outbound) = &n.outbound {
            let op = join(&np, "outbound");
            for (i, out) in outbound.iter().enumerate() {
                let p = index(&op, i);
                if let Err(e) = validate_port(out.port) {
                    v.add(join(&p, "port"), e);
                }
                if let Some(a) = &out.address
                    && let Err(e) = validate_host(a)
                {
                    v.add(join(&p, "address"), e);
                }
                match &out.backend_ref {
                    Some(b) => validate_outbound_backend_ref(&p, b, !out.tags.is_empty(), v),
                    None => validate_service_tags(&join(&p, "tags"), &out.tags, v),
                }
            }
        }
        if let Some(tp) = &n.transparent_proxying {
            validate_transparent_proxying(&join(&np, "transparentProxying"), tp, v);
        }
        if let Some(admin) = &n.admin
            && let Err(e) = validate_port(admin.port)
        {
            v.add(join(&join(&np, "admin"), "port"), e);
        }
    }
}

/// Kuma's rules for an outbound's `backendRef` (at `path`, the outbound).
fn validate_outbound_backend_ref(
    path: &str,
    b: &OutboundBackendRef,
    has_tags: bool,
    v: &mut Violations,
) {
    let bp = join(path, "backendRef");
    if !OUTBOUND_BACKEND_KINDS.contains(&b.kind) {
        v.add(
            join(&bp, "kind"),
            format!(
                "invalid value {:?}; allowed: {}",
                b.kind.as_str(),
                kinds_list(&OUTBOUND_BACKEND_KINDS)
            ),
        );
    }
    let has_labels = b.labels.as_ref().is_some_and(|l| !l.is_empty());
    if b.name.as_deref().is_none_or(str::is_empty) && !has_labels {
        v.add(bp.clone(), "either 'name' or 'labels' must be set");
    }
    if b.kind != TargetRefKind::MeshExternalService {
        match b.port {
            None => v.add(join(&bp, "port"), "must be set"),
            Some(port) => {
                if let Err(e) = validate_port(port) {
                    v.add(join(&bp, "port"), e);
                }
            }
        }
    }
    if has_tags {
        v.add(bp, "both backendRef and tags cannot be set");
    }
}

/// Kuma's rules for `transparentProxying.reachableBackends`.
fn validate_transparent_proxying(path: &str, tp: &TransparentProxying, v: &mut Violations) {
    for (field, port) in [
        ("redirectPortInbound", tp.redirect_port_inbound),
        ("redirectPortOutbound", tp.redirect_port_outbound),
    ] {
        if let Some(port) = port
            && let Err(e) = validate_port(port)
        {
            v.add(join(path, field), e);
        }
    }
    if let Some(mode) = &tp.ip_family_mode
        && !["IPv4", "DualStack"].contains(&mode.as_str())
    {
        v.add(
            join(path, "ipFamilyMode"),
            format!("invalid value {mode:?}; allowed: IPv4, DualStack"),
        );
    }
    let refs = join(&join(path, "reachableBackends"), "refs");
    for (i, r) in tp
        .reachable_backends
        .iter()
        .flat_map(|b| &b.refs)
        .enumerate()
    {
        let p = index(&refs, i);
        if !OUTBOUND_BACKEND_KINDS.contains(&r.kind) {
            v.add(
                join(&p, "kind"),
                format!(
                    "invalid value {:?}; allowed: {}",
                    r.kind.as_str(),
                    kinds_list(&OUTBOUND_BACKEND_KINDS)
                ),
            );
        }
        let has_labels = r.labels.as_ref().is_some_and(|l| !l.is_empty());
        let name = r.name.as_deref().filter(|n| !n.is_empty());
        let namespace = r.namespace.as_deref().filter(|n| !n.is_empty());
        if let Some(name) = name
            && let Err(e) = crate::name::validate_name(name)
        {
            v.add(join(&p, "name"), e);
        }
        if name.is_none() && namespace.is_none() && !has_labels {
            v.add(join(&p, "name"), "name or labels are required");
        }
        if name.is_none() && namespace.is_some() {
            v.add(join(&p, "name"), "name is required when namespace is set");
        }
        if (name.is_some() || namespace.is_some()) && has_labels {
            v.add(
                join(&p, "labels"),
                "labels cannot be set when name is specified",
            );
        }
    }
}

fn kinds_list(kinds: &[TargetRefKind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Tags that must name a service.
pub(crate) fn validate_service_tags(
    path: &str,
    tags: &BTreeMap<String, String>,
    v: &mut Violations,
) {
    if !tags.contains_key(SERVICE_TAG) {
        v.add(path, format!("must contain the {SERVICE_TAG:?} tag"));
    }
    validate_tags(path, tags, v);
}

#[cfg(test)]
mod tests {
    use crate::{ResourceKind, Spec};
    use serde_json::json;

    fn errors(value: serde_json::Value) -> Vec<String> {
        crate::test_support::violation_lines(ResourceKind::Dataplane, value, false)
    }

    fn sample() -> serde_json::Value {
        json!({"networking": {
            "address": "10.0.0.1",
            "inbound": [
                {"port": 10001, "servicePort": 8080, "tags": {"kuma.io/service": "web", "app": "frontend", "kuma.io/protocol": "tcp"}},
                {"port": 10002, "tags": {"kuma.io/service": "metrics"}, "health": {"ready": false}}
            ],
            "outbound": [{"port": 33033, "tags": {"kuma.io/service": "backend"}}],
            "admin": {"port": 9901}
        }})
    }

    #[test]
    fn valid_round_trip_and_helpers() {
        let value = sample();
        let Spec::Dataplane(dp) =
            Spec::from_value(ResourceKind::Dataplane, value.clone()).expect("valid")
        else {
            panic!("wrong kind")
        };
        assert_eq!(serde_json::to_value(&dp).expect("ser"), value);
        assert_eq!(dp.services(), vec!["metrics", "web"]);
        assert!(dp.has_tag("app", "frontend"));
        assert!(!dp.has_tag("app", "backend"));
        assert_eq!(dp.outbounds()[0].service(), "backend");
        assert!(dp.networking.inbound[0].is_ready());
        assert!(!dp.networking.inbound[1].is_ready());
        assert_eq!(dp.networking.inbound[1].effective_service_port(), 10002);
    }

    #[test]
    fn invalid_dataplanes() {
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (
                json!({"networking": {"address": "10.0.0.1"}}),
                vec!["networking.inbound: must have at least one inbound"],
            ),
            (
                json!({"networking": {"address": "not an address", "inbound": [
                    {"port": 0, "servicePort": 70000, "tags": {"app": "x"}},
                ]}}),
                vec![
                    "networking.address: must be an IP address or a DNS name: invalid character: a name must consist of lower-case alphanumeric characters, '-' or '.', and start and end with an alphanumeric character",
                    "networking.inbound[0].port: must be in 1..=65535 (got 0)",
                    "networking.inbound[0].servicePort: must be in 1..=65535 (got 70000)",
                    "networking.inbound[0].tags: must contain the \"kuma.io/service\" tag",
                ],
            ),
            (
                json!({"networking": {"address": "10.0.0.1", "inbound": [
                    {"port": 1, "tags": {"kuma.io/service": "a"}},
                    {"port": 1, "tags": {"kuma.io/service": "b/c"}},
                ], "outbound": [{"port": 2, "tags": {}}]}}),
                vec![
                    "networking.inbound[1].port: duplicate inbound port 1",
                    "networking.inbound[1].tags[\"kuma.io/service\"]: invalid tag value \"b/c\": may only contain alphanumerics, '.', '-', '_' or ':'",
                    "networking.outbound[0].tags: must contain the \"kuma.io/service\" tag",
                ],
            ),
            (
                json!({"networking": {"address": "10.0.0.1", "inbound": [{"port": "80", "tags": {}}]}}),
                vec!["networking.inbound[0].port: invalid type: string \"80\", expected u32"],
            ),
            (
                json!({"networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {}, "servce": 1}]}}),
                vec![
                    "networking.inbound[0].servce: unknown field `servce`, expected one of `port`, `servicePort`, `serviceAddress`, `address`, `tags`, `health`, `name`, `state`, `serviceProbe`, `protocol`",
                    // The fields that did decode are still checked.
                    "networking.inbound[0].tags: must contain the \"kuma.io/service\" tag",
                ],
            ),
        ];
        for (value, want) in cases {
            assert_eq!(errors(value.clone()), want, "{value}");
        }
    }

    #[test]
    fn kuma_2_inbound_fields_parse_validate_and_decide_readiness() {
        let dp = |inbound: serde_json::Value| json!({"networking": {"address": "10.0.0.1", "inbound": inbound}});
        let parsed = match Spec::from_value(
            ResourceKind::Dataplane,
            dp(json!([
                {"port": 1, "name": "main", "protocol": "tcp", "tags": {"kuma.io/service": "a"},
                 "serviceProbe": {"interval": "10s", "timeout": "2s", "unhealthyThreshold": 3,
                                  "healthyThreshold": 1, "tcp": {}}},
                {"port": 2, "state": "NotReady", "tags": {"kuma.io/service": "b"}},
                {"port": 3, "state": "Ignored", "tags": {"kuma.io/service": "c", "team": "x"}}
            ])),
        ) {
            Ok(Spec::Dataplane(dp)) => dp,
            other => panic!("{other:?}"),
        };
        let inbound = &parsed.networking.inbound;
        assert!(inbound[0].is_ready() && !inbound[1].is_ready() && !inbound[2].is_ready());
        assert!(inbound[2].is_ignored() && !inbound[1].is_ignored());
        // An Ignored inbound is not configured: policies cannot select by it.
        assert_eq!(parsed.configured_inbounds().count(), 2);
        assert!(!parsed.has_tag("team", "x"));

        assert_eq!(
            errors(dp(json!([
                {"port": 1, "name": "main", "protocol": "udp", "tags": {"kuma.io/service": "a"},
                 "serviceProbe": {"interval": "0s", "healthyThreshold": 0}},
                {"port": 2, "name": "main", "state": "Maybe", "tags": {"kuma.io/service": "b"}}
            ]))),
            vec![
                "networking.inbound[1].state: unknown variant `Maybe`, expected one of `Ready`, `NotReady`, `Ignored`",
                "networking.inbound[0].protocol: has an invalid value \"udp\"; allowed: tcp, tls, http, http2, grpc, kafka",
                "networking.inbound[0].serviceProbe.interval: must be greater than 0s",
                "networking.inbound[0].serviceProbe.healthyThreshold: must be greater than 0",
                "networking.inbound[1].name: name \"main\" must be unique across inbounds",
            ]
        );
        assert_eq!(
            errors(dp(json!([
                {"port": 1, "name": "main", "tags": {"kuma.io/service": "a"}},
                {"port": 2, "name": "main", "tags": {"kuma.io/service": "b"}}
            ]))),
            vec!["networking.inbound[1].name: name \"main\" must be unique across inbounds"]
        );
    }

    #[test]
    fn outbound_backend_refs_and_transparent_proxying_as_kuma_2_writes_them() {
        let dp = |networking: serde_json::Value| {
            let mut n = json!({"address": "10.0.0.1",
                "inbound": [{"port": 1, "tags": {"kuma.io/service": "a"}}]});
            for (k, v) in networking.as_object().expect("object") {
                n[k] = v.clone();
            }
            json!({"networking": n})
        };
        let valid = dp(json!({
            "outbound": [
                {"port": 15001, "backendRef": {"kind": "MeshService", "name": "backend", "port": 8080}},
                {"port": 15002, "backendRef": {"kind": "MeshMultiZoneService", "labels": {"app": "db"}, "port": 5432}},
                {"port": 15003, "backendRef": {"kind": "MeshExternalService", "name": "httpbin"}}
            ],
            "transparentProxying": {"redirectPortInbound": 15006, "redirectPortOutbound": 15001,
                "ipFamilyMode": "DualStack",
                "reachableBackends": {"refs": [{"kind": "MeshService", "name": "backend", "namespace": "kuma-demo", "port": 8080},
                                               {"kind": "MeshService", "labels": {"app": "db"}}]}}
        }));
        let parsed = Spec::from_value(ResourceKind::Dataplane, valid.clone()).expect("valid");
        assert_eq!(parsed.to_value(), valid, "round trip");
        let Spec::Dataplane(d) = parsed else {
            panic!("wrong kind")
        };
        assert!(
            d.outbounds()
                .iter()
                .all(|o| o.tags.is_empty() && o.backend_ref.is_some())
        );

        assert_eq!(
            errors(dp(json!({
                "outbound": [
                    {"port": 15001, "backendRef": {"kind": "Mesh", "name": "x", "port": 1}},
                    {"port": 15002, "backendRef": {"kind": "MeshService"}},
                    {"port": 15003, "tags": {"kuma.io/service": "b"},
                     "backendRef": {"kind": "MeshService", "name": "b", "port": 70000}}
                ],
                "transparentProxying": {"redirectPortInbound": 0, "ipFamilyMode": "IPv6",
                    "reachableBackends": {"refs": [{"kind": "MeshGateway", "name": "g"},
                                                   {"kind": "MeshService", "namespace": "ns"}]}}
            }))),
            vec![
                "networking.outbound[0].backendRef.kind: invalid value \"Mesh\"; allowed: MeshExternalService, MeshMultiZoneService, MeshService",
                "networking.outbound[1].backendRef: either 'name' or 'labels' must be set",
                "networking.outbound[1].backendRef.port: must be set",
                "networking.outbound[2].backendRef.port: must be in 1..=65535 (got 70000)",
                "networking.outbound[2].backendRef: both backendRef and tags cannot be set",
                "networking.transparentProxying.redirectPortInbound: must be in 1..=65535 (got 0)",
                "networking.transparentProxying.ipFamilyMode: invalid value \"IPv6\"; allowed: IPv4, DualStack",
                "networking.transparentProxying.reachableBackends.refs[0].kind: invalid value \"MeshGateway\"; allowed: MeshExternalService, MeshMultiZoneService, MeshService",
                "networking.transparentProxying.reachableBackends.refs[1].name: name is required when namespace is set",
            ]
        );
    }
}
