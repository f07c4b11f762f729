//! [`Snapshot`]: the sidecar's config turned into what connections use, keyed
//! by listen address.
//!
//! Listeners look up their address in the latest snapshot for every accepted
//! connection, so a config update applies to new connections at once while
//! established ones keep the state they started with.
//!
//! State that must outlive a config update is carried over from the previous
//! snapshot when building the next one:
//! - the [`Balancer`](meridian_lb::Balancer) of each (outbound listen
//!   address, backend SNI), whose passive and active health survive endpoint
//!   changes ([`meridian_lb::carry_over`]: rebuilt only when the
//!   outlier-detection settings change, which a balancer cannot take in
//!   place);
//! - the [`ConnectionLimiter`] of each listen address while its limit is the
//!   same, so connections already open keep counting against it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use meridian_lb::{HealthConfig, Plan, carry_over};
pub(crate) use meridian_lb::{SharedBalancer, lock};
use meridian_proxy_api::{
    BackendConfig, EndpointConfig, InboundConfig, OutboundConfig, SidecarConfig, Via,
};
use meridian_relay::{ConnectionLimiter, RelayConfig};

use crate::tls::TlsCache;

/// What connections to one inbound use.
#[derive(Debug)]
pub(crate) struct InboundState {
    /// The inbound's config.
    pub(crate) config: InboundConfig,
    /// MeshCircuitBreaker `maxConnections`.
    pub(crate) limiter: ConnectionLimiter,
    /// MeshTimeout `idleTimeout`.
    pub(crate) relay: RelayConfig,
}

/// What connections to one outbound use.
#[derive(Debug)]
pub(crate) struct OutboundState {
    /// The outbound's config.
    pub(crate) config: OutboundConfig,
    /// Its backends, in config order.
    pub(crate) backends: Vec<BackendState>,
    /// MeshCircuitBreaker `maxConnections`.
    pub(crate) limiter: ConnectionLimiter,
    /// MeshTimeout `idleTimeout`.
    pub(crate) relay: RelayConfig,
}

/// One backend of an outbound and its balancer.
#[derive(Debug)]
pub(crate) struct BackendState {
    /// The backend's config.
    pub(crate) config: BackendConfig,
    /// Endpoint selection with health.
    pub(crate) balancer: SharedBalancer,
}

/// One applied sidecar config.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// The sidecar's mesh.
    pub(crate) mesh: String,
    /// Whether mTLS is on.
    pub(crate) mtls: bool,
    /// Inbounds by listen address.
    pub(crate) inbounds: HashMap<SocketAddr, Arc<InboundState>>,
    /// Outbounds by listen address.
    pub(crate) outbounds: HashMap<SocketAddr, Arc<OutboundState>>,
}

impl Snapshot {
    /// Every address the snapshot needs a listener on.
    pub(crate) fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.inbounds.keys().chain(self.outbounds.keys()).copied()
    }

    /// Builds the snapshot of `config`, carrying balancers and limiters over
    /// from `previous`. An address used twice keeps its first use (logged).
    pub(crate) fn build(config: &SidecarConfig, previous: &Snapshot) -> Snapshot {
        let mut next = Snapshot {
            mesh: config.mesh.clone(),
            mtls: config.mtls,
            ..Snapshot::default()
        };
        for inbound in &config.inbounds {
            if next.taken(inbound.listen) {
                continue;
            }
            let max = inbound.max_connections();
            let limiter = previous
                .inbounds
                .get(&inbound.listen)
                .map(|p| &p.limiter)
                .or_else(|| previous.outbounds.get(&inbound.listen).map(|p| &p.limiter));
            next.inbounds.insert(
                inbound.listen,
                Arc::new(InboundState {
                    config: inbound.clone(),
                    limiter: reuse_limiter(limiter, max),
                    relay: RelayConfig::with_idle_timeout(inbound.idle_timeout()),
                }),
            );
        }
        for outbound in &config.outbounds {
            if next.taken(outbound.listen) {
                continue;
            }
            let state = build_outbound(config, outbound, previous);
            next.outbounds.insert(outbound.listen, Arc::new(state));
        }
        next
    }

    fn taken(&self, addr: SocketAddr) -> bool {
        let taken = self.inbounds.contains_key(&addr) || self.outbounds.contains_key(&addr);
        if taken {
            tracing::error!(%addr, "two listeners configured on one address; the second is ignored");
        }
        taken
    }
}

fn reuse_limiter(previous: Option<&ConnectionLimiter>, max: Option<usize>) -> ConnectionLimiter {
    match previous {
        Some(p) if p.max() == max => p.clone(),
        _ => ConnectionLimiter::new(max),
    }
}

fn build_outbound(
    sidecar: &SidecarConfig,
    outbound: &OutboundConfig,
    previous: &Snapshot,
) -> OutboundState {
    let old = previous.outbounds.get(&outbound.listen);
    let health = HealthConfig::from_outlier_detection(
        outbound
            .circuit_breaker
            .as_ref()
            .and_then(|cb| cb.outlier_detection.as_ref()),
    );
    let backends = outbound
        .backends
        .iter()
        .map(|backend| {
            let plan = Plan::build(
                &sidecar.zone,
                &sidecar.tags,
                usable_endpoints(&backend.endpoints, sidecar.mtls)
                    .map(EndpointConfig::to_lb)
                    .collect(),
                outbound.locality.as_ref(),
            );
            let previous = old
                .and_then(|o| o.backends.iter().find(|b| b.config.sni == backend.sni))
                .map(|b| &b.balancer);
            BackendState {
                config: backend.clone(),
                balancer: carry_over(previous, plan, &health),
            }
        })
        .collect();
    OutboundState {
        config: outbound.clone(),
        backends,
        limiter: reuse_limiter(old.map(|o| &o.limiter), outbound.max_connections()),
        relay: RelayConfig::with_idle_timeout(outbound.idle_timeout()),
    }
}

/// The endpoints a sidecar can dial: all with mTLS on; without mTLS only
/// other sidecars' inbounds, since ingress and egress route by the SNI of a
/// TLS handshake that plain TCP does not have.
fn usable_endpoints(
    endpoints: &[EndpointConfig],
    mtls: bool,
) -> impl Iterator<Item = &EndpointConfig> {
    endpoints
        .iter()
        .filter(move |e| mtls || e.via == Via::Direct)
}

/// What every listener and connection of one sidecar shares.
pub(crate) struct Shared {
    /// The latest applied config.
    snapshot: RwLock<Arc<Snapshot>>,
    /// TLS configs from the current identity.
    pub(crate) tls: TlsCache,
}

impl Shared {
    /// Shared state with an empty snapshot.
    pub(crate) fn new(tls: TlsCache) -> Self {
        Self {
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            tls,
        }
    }

    /// The latest snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Makes `next` the snapshot new connections use.
    pub(crate) fn publish(&self, next: Arc<Snapshot>) {
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Instant;

    fn endpoint(addr: &str, via: Via) -> EndpointConfig {
        EndpointConfig {
            address: addr.parse().unwrap(),
            zone: "z1".into(),
            weight: 1,
            tags: BTreeMap::new(),
            via,
        }
    }

    fn sidecar(mtls: bool, endpoints: Vec<EndpointConfig>) -> SidecarConfig {
        SidecarConfig {
            tags: Default::default(),
            mesh: "default".into(),
            zone: "z1".into(),
            mtls,
            inbounds: vec![],
            outbounds: vec![OutboundConfig {
                listen: "127.0.0.1:4000".parse().unwrap(),
                service: "backend".into(),
                backends: vec![BackendConfig {
                    service: "backend".into(),
                    subset: BTreeMap::new(),
                    weight: 100,
                    sni: "backend.default.mesh".into(),
                    endpoints: endpoints.into(),
                    resource: None,
                }],
                timeout: None,
                circuit_breaker: None,
                health_check: None,
                connect_attempts: None,
                locality: None,
            }],
        }
    }

    fn balancer(s: &Snapshot) -> SharedBalancer {
        let listen: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        Arc::clone(&s.outbounds[&listen].backends[0].balancer)
    }

    #[test]
    fn affinity_tags_group_local_endpoints_by_the_proxys_own_tags() {
        let tagged = |addr: &str, az: &str| EndpointConfig {
            tags: BTreeMap::from([("az".to_owned(), az.to_owned())]),
            ..endpoint(addr, Via::Direct)
        };
        let mut config = sidecar(
            true,
            vec![tagged("10.0.0.1:80", "a2"), tagged("10.0.0.2:80", "a1")],
        );
        config.tags = BTreeMap::from([("az".to_owned(), "a1".to_owned())]);
        config.outbounds[0].locality = Some(
            serde_json::from_value(
                serde_json::json!({"localZone": {"affinityTags": [{"key": "az"}]}}),
            )
            .unwrap(),
        );
        let s = Snapshot::build(&config, &Snapshot::default());
        let lb = balancer(&s);
        let lb = lock(&lb);
        let plan = lb.plan();
        let first = &plan.priorities()[0].groups()[0];
        assert_eq!(first.tag(), Some("az"));
        let members: Vec<String> = first
            .members()
            .iter()
            .map(|&i| plan.endpoints()[i].address.to_string())
            .collect();
        assert_eq!(
            members,
            ["10.0.0.2:80"],
            "the endpoint sharing az=a1 comes first"
        );
    }

    #[test]
    fn health_survives_an_update_that_keeps_the_endpoint() {
        let a = endpoint("10.0.0.1:80", Via::Direct);
        let b = endpoint("10.0.0.2:80", Via::Direct);
        let first = Snapshot::build(&sidecar(true, vec![a.clone()]), &Snapshot::default());
        let now = Instant::now();
        for _ in 0..3 {
            lock(&balancer(&first)).report_failure(a.address, now);
        }
        assert!(!lock(&balancer(&first)).is_healthy(a.address, now));
        let second = Snapshot::build(&sidecar(true, vec![a.clone(), b.clone()]), &first);
        assert!(Arc::ptr_eq(&balancer(&first), &balancer(&second)));
        let lb = balancer(&second);
        let lb = lock(&lb);
        assert!(!lb.is_healthy(a.address, now), "ejection kept");
        assert!(lb.is_healthy(b.address, now));
        assert_eq!(lb.plan().endpoints().len(), 2);
    }

    #[test]
    fn without_mtls_only_direct_endpoints_are_used() {
        let config = sidecar(
            false,
            vec![
                endpoint("10.0.0.1:80", Via::Direct),
                endpoint("10.0.0.2:80", Via::Ingress),
                endpoint("10.0.0.3:80", Via::Egress),
            ],
        );
        let s = Snapshot::build(&config, &Snapshot::default());
        let lb = balancer(&s);
        let addrs: Vec<String> = lock(&lb)
            .plan()
            .endpoints()
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(addrs, ["10.0.0.1:80"]);
        let config = SidecarConfig {
            mtls: true,
            ..config
        };
        let s = Snapshot::build(&config, &s);
        assert_eq!(lock(&balancer(&s)).plan().endpoints().len(), 3);
    }

    #[test]
    fn a_duplicate_address_keeps_its_first_use() {
        let mut config = sidecar(true, vec![]);
        let mut second = config.outbounds[0].clone();
        second.service = "other".into();
        config.outbounds.push(second);
        let s = Snapshot::build(&config, &Snapshot::default());
        assert_eq!(s.outbounds.len(), 1);
        assert_eq!(
            s.outbounds.values().next().unwrap().config.service,
            "backend"
        );
    }
}
