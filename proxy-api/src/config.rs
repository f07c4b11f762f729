//! [`ProxyConfig`]: everything a proxy needs to carry traffic, computed by the
//! zone control plane and sent whole on every change.
//!
//! The zone CP resolves policies, endpoints and SNI names; proxies only look
//! things up. A sidecar gets its inbounds (where the app listens, who may
//! connect) and outbounds (backends by weight, each with its endpoints in
//! every zone); a zone ingress or egress gets a table from SNI name to the
//! endpoints behind it.
//!
//! Policy confs are the model's own types, so the same serde shapes (and Go
//! durations) travel from the REST API to the proxy unchanged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use meridian_model::TrafficPermissionRules;
use meridian_model::{CircuitBreakerConf, HealthCheckConf, LocalityAwareness, TimeoutConf};
use serde::{Deserialize, Serialize};

/// The default `MeshTimeout` `connectionTimeout` when none applies (as Kuma: 5 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default `MeshTimeout` `idleTimeout` when none applies (as Kuma: 1 h).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// The whole configuration of one proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ProxyConfig {
    /// A sidecar data plane.
    Sidecar(SidecarConfig),
    /// A zone ingress: SNI → local endpoints.
    Ingress(ZoneProxyConfig),
    /// A zone egress: SNI → other zones' ingresses.
    Egress(ZoneProxyConfig),
}

/// A sidecar's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarConfig {
    /// The sidecar's mesh.
    pub mesh: String,
    /// The zone it runs in (priority 0 of load balancing).
    pub zone: String,
    /// Whether the mesh has mTLS on. Off: inbounds accept plain TCP, outbounds
    /// reach local endpoints only (cross-zone traffic needs mTLS for SNI).
    pub mtls: bool,
    /// The proxy's inbounds.
    pub inbounds: Vec<InboundConfig>,
    /// The proxy's outbounds.
    pub outbounds: Vec<OutboundConfig>,
}

/// One inbound: a public port terminating mesh mTLS in front of the app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundConfig {
    /// Where the inbound listens (`networking.address` : `inbound.port`).
    pub listen: SocketAddr,
    /// Where the app listens (`serviceAddress` : `servicePort`).
    pub app: SocketAddr,
    /// The inbound's service.
    pub service: String,
    /// MeshTrafficPermission rules, evaluated on the client certificate's service.
    pub permissions: TrafficPermissionRules,
    /// MeshTimeout `from` conf.
    pub timeout: Option<TimeoutConf>,
    /// MeshCircuitBreaker `from` conf.
    pub circuit_breaker: Option<CircuitBreakerConf>,
}

/// One outbound: a local port the app connects to for a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundConfig {
    /// Where the outbound listens.
    pub listen: SocketAddr,
    /// The destination service the app asked for.
    pub service: String,
    /// Where its connections go (MeshTCPRoute backends, or the service itself),
    /// chosen by weight per connection.
    pub backends: Vec<BackendConfig>,
    /// MeshTimeout `to` conf.
    pub timeout: Option<TimeoutConf>,
    /// MeshCircuitBreaker `to` conf (connection limit, outlier detection).
    pub circuit_breaker: Option<CircuitBreakerConf>,
    /// MeshHealthCheck conf (active TCP checks of the endpoints).
    pub health_check: Option<HealthCheckConf>,
    /// The merged MeshLoadBalancingStrategy `localityAwareness`.
    pub locality: Option<LocalityAwareness>,
}

/// One backend of an outbound: a service (or a subset of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendConfig {
    /// The backend's service.
    pub service: String,
    /// The subset's tags (empty: the whole service).
    pub subset: BTreeMap<String, String>,
    /// The route weight (0 never receives traffic).
    pub weight: u32,
    /// The TLS server name to originate mTLS with (see `meridian-sni`).
    pub sni: String,
    /// The endpoints, local and remote.
    pub endpoints: Vec<EndpointConfig>,
}

/// One address a connection can go to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConfig {
    /// The address to dial.
    pub address: SocketAddr,
    /// The zone the endpoint stands for (for an ingress or egress: the zone
    /// of the instances behind it).
    pub zone: String,
    /// The load-balancing weight (for a remote zone: its healthy instances).
    pub weight: u32,
    /// The instance's tags (local endpoints; for affinity).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// What is at the address.
    pub via: Via,
}

/// What is listening at an endpoint's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Via {
    /// The destination sidecar's inbound itself.
    Direct,
    /// The destination zone's ingress.
    Ingress,
    /// The local zone egress (which then picks the zone).
    Egress,
}

/// A zone ingress's or egress's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneProxyConfig {
    /// The proxy's zone.
    pub zone: String,
    /// What each SNI name routes to.
    pub routes: Vec<SniRoute>,
}

/// Where connections for one SNI name go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SniRoute {
    /// The server name, lowercase.
    pub sni: String,
    /// The mesh.
    pub mesh: String,
    /// The service.
    pub service: String,
    /// The subset's tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subset: BTreeMap<String, String>,
    /// Ingress: the local instances. Egress: the ingresses of the zones that
    /// have instances, weighted by how many.
    pub endpoints: Vec<EndpointConfig>,
    /// The merged MeshLoadBalancingStrategy `localityAwareness` (egress).
    pub locality: Option<LocalityAwareness>,
}

impl EndpointConfig {
    /// The endpoint as the load balancer sees it.
    pub fn to_lb(&self) -> meridian_lb::Endpoint {
        let mut e = meridian_lb::Endpoint::new(self.address, self.zone.clone(), self.weight);
        e.tags = self.tags.clone();
        e
    }
}

impl OutboundConfig {
    /// The connection timeout: MeshTimeout's `connectionTimeout` or 5 s.
    pub fn connect_timeout(&self) -> Duration {
        timeout_or(
            self.timeout
                .as_ref()
                .and_then(|t| t.connection_timeout.as_ref()),
            DEFAULT_CONNECT_TIMEOUT,
        )
    }

    /// The idle timeout: MeshTimeout's `idleTimeout` or 1 h; `0s` disables it.
    pub fn idle_timeout(&self) -> Option<Duration> {
        idle_of(self.timeout.as_ref())
    }

    /// MeshCircuitBreaker's `connectionLimits.maxConnections`, if any.
    pub fn max_connections(&self) -> Option<usize> {
        max_connections_of(self.circuit_breaker.as_ref())
    }
}

impl InboundConfig {
    /// The idle timeout: MeshTimeout's `idleTimeout` or 1 h; `0s` disables it.
    pub fn idle_timeout(&self) -> Option<Duration> {
        idle_of(self.timeout.as_ref())
    }

    /// MeshCircuitBreaker's `connectionLimits.maxConnections`, if any.
    pub fn max_connections(&self) -> Option<usize> {
        max_connections_of(self.circuit_breaker.as_ref())
    }
}

fn timeout_or(d: Option<&meridian_model::Duration>, default: Duration) -> Duration {
    d.map_or(default, meridian_model::Duration::as_duration)
}

fn idle_of(t: Option<&TimeoutConf>) -> Option<Duration> {
    let idle = timeout_or(
        t.and_then(|t| t.idle_timeout.as_ref()),
        DEFAULT_IDLE_TIMEOUT,
    );
    (!idle.is_zero()).then_some(idle)
}

fn max_connections_of(cb: Option<&CircuitBreakerConf>) -> Option<usize> {
    cb.and_then(|c| c.connection_limits.as_ref())
        .and_then(|l| l.max_connections)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}
