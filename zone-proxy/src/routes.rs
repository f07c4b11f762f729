//! The route table: SNI name → the endpoints behind it, with a [`Balancer`] each.
//!
//! A table is immutable once built and shared by the connections accepted while it
//! was current (`Arc<RouteTable>`). A new config builds a new table; the balancer of
//! a name present before is carried over (the same `Arc`, [`meridian_lb::carry_over`])
//! with the new plan, so passive health (consecutive failures, ejections) survives
//! config updates and connections still using the old table report into the same
//! state. Picking and health are `meridian-lb`'s; this module only keys them by name.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use meridian_lb::{HealthConfig, Plan, SharedBalancer, carry_over, lock};
use meridian_proxy_api::{ProxyConfig, SniRoute, ZoneProxyConfig};

/// Where the connections of one SNI name go.
#[derive(Debug)]
pub(crate) struct Route {
    /// The route's mesh (for logs).
    pub(crate) mesh: String,
    /// The route's service (for logs).
    pub(crate) service: String,
    /// Shared with the tables built before and after this one (see the module docs).
    balancer: SharedBalancer,
}

impl Route {
    /// Picks an endpoint not in `tried`
    /// ([`Balancer::pick_untried`](meridian_lb::Balancer::pick_untried)): by the
    /// balancer (priorities, weights, health), or, when it keeps drawing tried
    /// ones, an untried endpoint of weight > 0 from the lowest priority. `None`
    /// when there is none.
    pub(crate) fn pick(&self, tried: &[SocketAddr]) -> Option<SocketAddr> {
        lock(&self.balancer)
            .pick_untried(tried, &mut rand::rng())
            .map(|e| e.address)
    }

    /// Records a connection attempt's outcome for passive health.
    pub(crate) fn report(&self, addr: SocketAddr, connected: bool) {
        let now = std::time::Instant::now();
        if lock(&self.balancer).report(addr, connected, now) {
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
            let previous = previous.routes.get(&sni).map(|old| &old.balancer);
            let plan = plan_of(&config.zone, route);
            let entry = Route {
                mesh: route.mesh.clone(),
                service: route.service.clone(),
                balancer: carry_over(previous, plan, &HealthConfig::default()),
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
                    endpoints: endpoints.into(),
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
