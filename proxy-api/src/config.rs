//! [`ProxyConfig`]: everything a proxy needs to carry traffic, computed by the
//! zone control plane and sent whole on every change.
//!
//! The zone CP resolves policies, endpoints and SNI names; proxies only look
//! things up. A sidecar gets its inbounds (where the app listens, who may
//! connect) and outbounds (backends by weight, each with its endpoints in
//! every zone); a zone ingress or egress gets a table from SNI name to the
//! endpoints behind it.
//!
//! When only endpoint lists change, the zone CP may send just those
//! ([`ProxyConfig::endpoint_changes`], applied with
//! [`ProxyConfig::apply_endpoint_changes`]): clusters — a sidecar's backends,
//! a zone proxy's SNI routes — are keyed by their SNI name, which names
//! exactly one (mesh, service, subset) and so one endpoint list.
//!
//! Policy confs are the model's own types, so the same serde shapes (and Go
//! durations) travel from the REST API to the proxy unchanged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use meridian_model::TrafficPermissionRules;
use meridian_model::{CircuitBreakerConf, HealthCheckConf, LocalityAwareness, TimeoutConf};
use serde::{Deserialize, Serialize};

pub use crate::endpoints::Endpoints;

/// The default `MeshTimeout` `connectionTimeout` when none applies (as Kuma: 5 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default `MeshTimeout` `idleTimeout` when none applies (as Kuma: 1 h).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// The `Hello.features` entry of a proxy that applies endpoint updates.
pub const ENDPOINT_UPDATES: &str = "endpoint-updates";

/// New endpoint lists by cluster (SNI name).
pub type EndpointChanges = BTreeMap<String, Endpoints>;

/// An endpoint update names a cluster the config does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("endpoint update for cluster {0:?}, which the current config does not have")]
pub struct UnknownCluster(pub String);

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
    /// The proxy's own tags, which MeshLoadBalancingStrategy `affinityTags` compare
    /// local endpoints with: per key, the first value (in order) among its
    /// configured inbounds, as Kuma resolves them. Absent from a control plane of
    /// an earlier version: no affinity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
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
    /// MeshRetry's `tcp.maxConnectAttempt`: endpoints a connection tries
    /// before it fails; absent, one (Kuma's, without a MeshRetry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_attempts: Option<u32>,
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
    /// The endpoints, local and remote (shared with every config routing to the
    /// same cluster).
    pub endpoints: Endpoints,
    /// The Kuma 2.x resource the backend stands for; absent for a
    /// `kuma.io/service` (and subset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<BackendResource>,
}

/// A backend that is one port of a MeshService or MeshMultiZoneService.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendResource {
    /// The resource's kind.
    pub kind: BackendResourceKind,
    /// Its name in the zone's store.
    pub name: String,
    /// The port.
    pub port: u32,
}

/// The kinds of [`BackendResource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum BackendResourceKind {
    /// A MeshService (one zone's).
    MeshService,
    /// A MeshMultiZoneService (MeshServices of several zones).
    MeshMultiZoneService,
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
    pub endpoints: Endpoints,
    /// The merged MeshLoadBalancingStrategy `localityAwareness` (egress).
    pub locality: Option<LocalityAwareness>,
}

impl ProxyConfig {
    /// Takes every cluster's endpoint list out, in order, with its SNI name.
    fn take_endpoints(&mut self) -> Vec<(String, Endpoints)> {
        match self {
            ProxyConfig::Sidecar(s) => s
                .outbounds
                .iter_mut()
                .flat_map(|o| &mut o.backends)
                .map(|b| (b.sni.clone(), std::mem::take(&mut b.endpoints)))
                .collect(),
            ProxyConfig::Ingress(z) | ProxyConfig::Egress(z) => z
                .routes
                .iter_mut()
                .map(|r| (r.sni.clone(), std::mem::take(&mut r.endpoints)))
                .collect(),
        }
    }

    /// When `next` differs from this config in endpoint lists only, the lists
    /// that changed; `None` when anything else differs (send `next` whole).
    pub fn endpoint_changes(&self, next: &ProxyConfig) -> Option<EndpointChanges> {
        let (mut old, mut new) = (self.clone(), next.clone());
        let (old_eps, new_eps) = (old.take_endpoints(), new.take_endpoints());
        if old != new {
            return None;
        }
        let mut changes = EndpointChanges::new();
        for ((sni, before), (_, after)) in old_eps.into_iter().zip(new_eps) {
            match changes.get(&sni) {
                // One SNI name is one endpoint list; two differing lists
                // under one name cannot be expressed as an update.
                Some(seen) if *seen != after => return None,
                Some(_) => {}
                None if before != after => {
                    changes.insert(sni, after);
                }
                None => {}
            }
        }
        Some(changes)
    }

    /// Replaces the endpoint lists of the clusters `changes` names.
    ///
    /// # Errors
    /// [`UnknownCluster`] when a name matches no cluster; nothing is changed.
    pub fn apply_endpoint_changes(
        &mut self,
        changes: &EndpointChanges,
    ) -> Result<(), UnknownCluster> {
        let mut next = self.clone();
        let mut seen = std::collections::BTreeSet::new();
        let clusters: Vec<(&str, &mut Endpoints)> = match &mut next {
            ProxyConfig::Sidecar(s) => s
                .outbounds
                .iter_mut()
                .flat_map(|o| &mut o.backends)
                .map(|b| (b.sni.as_str(), &mut b.endpoints))
                .collect(),
            ProxyConfig::Ingress(z) | ProxyConfig::Egress(z) => z
                .routes
                .iter_mut()
                .map(|r| (r.sni.as_str(), &mut r.endpoints))
                .collect(),
        };
        for (sni, endpoints) in clusters {
            if let Some(update) = changes.get(sni) {
                endpoints.clone_from(update);
                seen.insert(sni.to_owned());
            }
        }
        if let Some(missing) = changes.keys().find(|k| !seen.contains(*k)) {
            return Err(UnknownCluster(missing.clone()));
        }
        *self = next;
        Ok(())
    }
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
        connect_of(self.timeout.as_ref())
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
    /// How long dialling the app may take: MeshTimeout `from`'s
    /// `connectionTimeout` or 5 s.
    pub fn connect_timeout(&self) -> Duration {
        connect_of(self.timeout.as_ref())
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

/// A MeshTimeout conf's `connectionTimeout`, or the default.
fn connect_of(timeout: Option<&TimeoutConf>) -> Duration {
    timeout_or(
        timeout.and_then(|t| t.connection_timeout.as_ref()),
        DEFAULT_CONNECT_TIMEOUT,
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(port: u16) -> EndpointConfig {
        EndpointConfig {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            zone: "east".into(),
            weight: 1,
            tags: BTreeMap::new(),
            via: Via::Direct,
        }
    }

    fn backend(sni: &str, ports: &[u16]) -> BackendConfig {
        BackendConfig {
            service: sni.into(),
            subset: BTreeMap::new(),
            weight: 1,
            sni: sni.into(),
            endpoints: ports.iter().copied().map(endpoint).collect(),
            resource: None,
        }
    }

    fn sidecar(backends: Vec<BackendConfig>) -> ProxyConfig {
        ProxyConfig::Sidecar(SidecarConfig {
            mesh: "default".into(),
            tags: Default::default(),
            zone: "east".into(),
            mtls: true,
            inbounds: vec![],
            outbounds: vec![OutboundConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 15001)),
                service: "a".into(),
                backends,
                timeout: None,
                circuit_breaker: None,
                health_check: None,
                connect_attempts: None,
                locality: None,
            }],
        })
    }

    #[test]
    fn endpoint_only_changes_round_trip() {
        let old = sidecar(vec![backend("a", &[1]), backend("b", &[2])]);
        let new = sidecar(vec![backend("a", &[1, 3]), backend("b", &[2])]);
        let changes = old.endpoint_changes(&new).expect("endpoints only");
        assert_eq!(changes.keys().collect::<Vec<_>>(), ["a"]);
        let mut patched = old.clone();
        patched.apply_endpoint_changes(&changes).expect("applies");
        assert_eq!(patched, new);
        assert_eq!(old.endpoint_changes(&old), Some(EndpointChanges::new()));
    }

    #[test]
    fn other_changes_need_the_whole_config() {
        let old = sidecar(vec![backend("a", &[1])]);
        let mut weight = sidecar(vec![backend("a", &[1])]);
        if let ProxyConfig::Sidecar(s) = &mut weight {
            s.outbounds[0].backends[0].weight = 2;
        }
        assert_eq!(old.endpoint_changes(&weight), None);
        let more = sidecar(vec![backend("a", &[1]), backend("b", &[2])]);
        assert_eq!(old.endpoint_changes(&more), None);
    }

    #[test]
    fn an_unknown_cluster_changes_nothing() {
        let mut config = sidecar(vec![backend("a", &[1])]);
        let before = config.clone();
        let changes = EndpointChanges::from([
            ("a".to_owned(), Endpoints::new(vec![endpoint(9)])),
            ("zzz".to_owned(), Endpoints::default()),
        ]);
        assert_eq!(
            config.apply_endpoint_changes(&changes),
            Err(UnknownCluster("zzz".into()))
        );
        assert_eq!(config, before);
    }

    #[test]
    fn meshtimeout_connection_timeout_applies_to_outbounds_and_to_dialling_the_app() {
        let conf: TimeoutConf =
            serde_json::from_value(serde_json::json!({"connectionTimeout": "250ms"})).unwrap();
        let inbound = InboundConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1)),
            app: SocketAddr::from(([127, 0, 0, 1], 2)),
            service: "web".into(),
            permissions: TrafficPermissionRules::default(),
            timeout: Some(conf.clone()),
            circuit_breaker: None,
        };
        assert_eq!(inbound.connect_timeout(), Duration::from_millis(250));
        let untimed = InboundConfig {
            timeout: None,
            ..inbound
        };
        assert_eq!(untimed.connect_timeout(), DEFAULT_CONNECT_TIMEOUT);
        let ProxyConfig::Sidecar(mut sidecar) = sidecar(vec![]) else {
            unreachable!()
        };
        assert_eq!(
            sidecar.outbounds[0].connect_timeout(),
            DEFAULT_CONNECT_TIMEOUT
        );
        sidecar.outbounds[0].timeout = Some(conf);
        assert_eq!(
            sidecar.outbounds[0].connect_timeout(),
            Duration::from_millis(250)
        );
    }
}
