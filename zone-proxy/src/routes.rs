//! The route table: SNI name → the endpoints behind it, with a [`Balancer`] each.
//!
//! A table is immutable once built and shared by the connections accepted while it
//! was current (`Arc<RouteTable>`). A new config builds a new table; the balancer of
//! a name present before is carried over (the same `Arc`) and given the new plan with
//! [`Balancer::set_plan`], so passive health (consecutive failures, ejections) survives
//! config updates and connections still using the old table report into the same
//! state.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use meridian_lb::{Balancer, HealthConfig, Plan};
use meridian_proxy_api::{ProxyConfig, SniRoute, ZoneProxyConfig};

/// How many draws from the balancer before falling back to any untried endpoint.
const PICK_DRAWS: usize = 8;

/// Where the connections of one SNI name go.
#[derive(Debug)]
pub(crate) struct Route {
    /// The route's mesh (for logs).
    pub(crate) mesh: String,
    /// The route's service (for logs).
    pub(crate) service: String,
    /// Shared with the tables built before and after this one (see the module docs).
    balancer: Arc<Mutex<Balancer>>,
}

impl Route {
    fn lock(&self) -> MutexGuard<'_, Balancer> {
        // The balancer holds no invariant a panic elsewhere could break half-way.
        self.balancer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Picks an endpoint not in `tried`: by the balancer (priorities, weights,
    /// health), or, when it keeps drawing tried ones, the first untried endpoint
    /// of weight > 0 in priority order. `None` when there is none.
    pub(crate) fn pick(&self, tried: &[SocketAddr]) -> Option<SocketAddr> {
        let mut balancer = self.lock();
        let mut rng = rand::rng();
        for _ in 0..PICK_DRAWS {
            let addr = balancer.pick(&mut rng)?.address;
            if !tried.contains(&addr) {
                return Some(addr);
            }
        }
        let plan = balancer.plan();
        plan.priorities()
            .iter()
            .flat_map(|p| p.endpoint_indexes())
            .filter_map(|i| plan.endpoints().get(i))
            .filter(|e| e.weight > 0)
            .map(|e| e.address)
            .find(|a| !tried.contains(a))
    }

    /// Records a connection attempt's outcome for passive health.
    pub(crate) fn report(&self, addr: SocketAddr, connected: bool) {
        let now = std::time::Instant::now();
        let mut balancer = self.lock();
        if connected {
            balancer.report_success(addr, now);
        } else if balancer.report_failure(addr, now) {
            tracing::info!(endpoint = %addr, "endpoint ejected after consecutive connection failures");
        }
    }
}

/// SNI name → route, built from one config.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    /// Whether a config has been applied (an empty table then means "no routes").
    configured: bool,
    routes: HashMap<String, Arc<Route>>,
}

impl RouteTable {
    /// The table before any config arrived.
    pub(crate) fn empty() -> Self {
        Self::default()
    }

    /// Whether it was built from a config.
    pub(crate) fn is_configured(&self) -> bool {
        self.configured
    }

    /// The route of `sni` (lowercase).
    pub(crate) fn get(&self, sni: &str) -> Option<&Route> {
        self.routes.get(sni).map(Arc::as_ref)
    }

    /// How many names it routes.
    pub(crate) fn len(&self) -> usize {
        self.routes.len()
    }

    /// The table for `config`, carrying over the balancers of `previous` by name.
    /// A sidecar config (not meant for a zone proxy) gives a configured, empty table.
    pub(crate) fn build(config: &ProxyConfig, previous: &RouteTable) -> Self {
        let zone_config = match config {
            ProxyConfig::Ingress(c) | ProxyConfig::Egress(c) => c,
            ProxyConfig::Sidecar(_) => {
                tracing::warn!("received a sidecar config; a zone proxy routes nothing with it");
                return Self {
                    configured: true,
                    routes: HashMap::new(),
                };
            }
        };
        Self::from_zone_config(zone_config, previous)
    }

    fn from_zone_config(config: &ZoneProxyConfig, previous: &RouteTable) -> Self {
        let mut routes = HashMap::with_capacity(config.routes.len());
        for route in &config.routes {
            let sni = route.sni.to_ascii_lowercase();
            if routes.contains_key(&sni) {
                tracing::warn!(%sni, service = %route.service, "duplicate SNI route; the first one is kept");
                continue;
            }
            let plan = plan_of(&config.zone, route);
            let balancer = match previous.routes.get(&sni) {
                Some(old) => {
                    old.lock().set_plan(plan);
                    Arc::clone(&old.balancer)
                }
                None => Arc::new(Mutex::new(Balancer::new(plan, HealthConfig::default()))),
            };
            let entry = Route {
                mesh: route.mesh.clone(),
                service: route.service.clone(),
                balancer,
            };
            routes.insert(sni, Arc::new(entry));
        }
        Self {
            configured: true,
            routes,
        }
    }
}

/// The route's endpoints by priority as seen from `zone`: the local zone first
/// (ingress), other zones after it or as the failover rules say (egress).
fn plan_of(zone: &str, route: &SniRoute) -> Plan {
    Plan::build(
        zone,
        &BTreeMap::new(),
        route.endpoints.iter().map(|e| e.to_lb()).collect(),
        route.locality.as_ref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_proxy_api::{EndpointConfig, Via};

    fn endpoint(addr: &str, zone: &str, weight: u32) -> EndpointConfig {
        EndpointConfig {
            address: addr.parse().unwrap(),
            zone: zone.to_owned(),
            weight,
            tags: BTreeMap::new(),
            via: Via::Direct,
        }
    }

    fn config(routes: Vec<(&str, Vec<EndpointConfig>)>) -> ProxyConfig {
        ProxyConfig::Ingress(ZoneProxyConfig {
            zone: "z1".to_owned(),
            routes: routes
                .into_iter()
                .map(|(sni, endpoints)| SniRoute {
                    sni: sni.to_owned(),
                    mesh: "default".to_owned(),
                    service: "web".to_owned(),
                    subset: BTreeMap::new(),
                    endpoints,
                    locality: None,
                })
                .collect(),
        })
    }

    #[test]
    fn names_are_lowercased_and_the_first_duplicate_wins() {
        let table = RouteTable::build(
            &config(vec![
                (
                    "Web.Default.Mesh.Meridian",
                    vec![endpoint("127.0.0.1:1", "z1", 1)],
                ),
                (
                    "web.default.mesh.meridian",
                    vec![endpoint("127.0.0.1:2", "z1", 1)],
                ),
            ]),
            &RouteTable::empty(),
        );
        assert!(table.is_configured());
        assert_eq!(table.len(), 1);
        let route = table.get("web.default.mesh.meridian").unwrap();
        assert_eq!(route.pick(&[]), Some("127.0.0.1:1".parse().unwrap()));
    }

    #[test]
    fn health_survives_a_config_update() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let first = RouteTable::build(
            &config(vec![(
                "s",
                vec![
                    endpoint("127.0.0.1:1", "z1", 1),
                    endpoint("127.0.0.1:2", "z1", 1),
                ],
            )]),
            &RouteTable::empty(),
        );
        for _ in 0..3 {
            first.get("s").unwrap().report(a, false);
        }
        // Same endpoints, new weights: `a` stays ejected.
        let second = RouteTable::build(
            &config(vec![(
                "s",
                vec![
                    endpoint("127.0.0.1:1", "z1", 5),
                    endpoint("127.0.0.1:2", "z1", 1),
                ],
            )]),
            &first,
        );
        let route = second.get("s").unwrap();
        for _ in 0..50 {
            assert_eq!(route.pick(&[]), Some(b));
        }
        // A table built from nothing has no memory of the failures.
        let fresh = RouteTable::build(
            &config(vec![("s", vec![endpoint("127.0.0.1:1", "z1", 1)])]),
            &RouteTable::empty(),
        );
        assert_eq!(fresh.get("s").unwrap().pick(&[]), Some(a));
    }

    #[test]
    fn pick_skips_tried_endpoints_and_ends_when_all_are_tried() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let table = RouteTable::build(
            &config(vec![(
                "s",
                vec![
                    endpoint("127.0.0.1:1", "z1", 1000),
                    endpoint("127.0.0.1:2", "z1", 1),
                ],
            )]),
            &RouteTable::empty(),
        );
        let route = table.get("s").unwrap();
        // Even though `a` takes ~all the weight, excluding it yields `b`.
        for _ in 0..20 {
            assert_eq!(route.pick(&[a]), Some(b));
        }
        assert_eq!(route.pick(&[a, b]), None);
    }

    #[test]
    fn a_route_without_endpoints_picks_nothing() {
        let table = RouteTable::build(&config(vec![("s", vec![])]), &RouteTable::empty());
        assert_eq!(table.get("s").unwrap().pick(&[]), None);
        assert!(table.get("other").is_none());
    }
}
