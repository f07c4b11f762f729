//! Config computation: from a [`ZoneState`] to each proxy's config.
//!
//! Pure functions, no I/O: the policy matching of `meridian-model` decides
//! routes, timeouts, limits and permissions (over the mesh's candidate
//! policies for the proxy, [`super::state::MeshPolicies::candidates`]); this
//! module adds endpoints (from the state's service indexes) and SNI names.
//!
//! **Endpoints of a service (or subset) seen from zone Z:**
//! - every ready inbound of Z's data planes with that service and tags, at
//!   the inbound's address, weight 1, priority by the load balancer (local);
//! - with mTLS on, every other (enabled) zone's ingress that advertises
//!   instances of it, at the ingress's advertised address, weighted by the
//!   number of matching instances behind it;
//! - with the mesh's `routing.zoneEgress` on, the remote ingresses are
//!   replaced by Z's egress (which then picks the zone); with no egress in Z,
//!   there are no remote endpoints.
//!
//! Without mTLS there is no SNI to route by, so only local endpoints are used.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use meridian_model::{
    DataplaneRef, DataplaneSpec, Destination, Inbound, MeshSpec, OutboundPolicies, PolicyItem,
    ProxyRef, ResourceKind, SERVICE_TAG, Spec, match_policies_to,
};
use meridian_proxy_api::{
    BackendConfig, EndpointConfig, Endpoints, InboundConfig, OutboundConfig, SidecarConfig,
    SniRoute, Via, ZoneProxyConfig,
};
use meridian_sni::SniTarget;

use super::destinations::{BackendTarget, resource_form};
use super::state::{ServiceKey, ZoneState};

/// The pseudo-zone of an egress endpoint: not a valid zone name, so it can
/// never collide with one, and it lands at the remote priority.
pub const EGRESS_ZONE: &str = "(zone-egress)";

/// Why a sidecar's config cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComputeError {
    /// The data plane's mesh does not exist (yet) in this zone.
    #[error("mesh {0:?} does not exist in this zone")]
    NoMesh(String),
    /// An address is not an IP address.
    #[error("{field}: {value:?} is not an IP address")]
    Address {
        /// The field.
        field: String,
        /// The value.
        value: String,
    },
    /// A port is out of range.
    #[error("{field}: {value} is not a valid port")]
    Port {
        /// The field.
        field: String,
        /// The value.
        value: u32,
    },
}

/// The proxy's own tags for MeshLoadBalancingStrategy affinity: per key, the first
/// value in inbound order among its configured inbounds (Kuma takes one value per
/// key; a locality tag should not differ between inbounds).
fn local_tags(dp: &DataplaneSpec) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    for inbound in dp.configured_inbounds() {
        for (key, value) in &inbound.tags {
            tags.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    tags
}

/// The socket address `ip:port`, with field names for the error.
pub fn socket_addr(ip: &str, port: u32, field: &str) -> Result<SocketAddr, ComputeError> {
    let ip: IpAddr = ip.parse().map_err(|_| ComputeError::Address {
        field: field.to_owned(),
        value: ip.to_owned(),
    })?;
    let port = u16::try_from(port).map_err(|_| ComputeError::Port {
        field: field.to_owned(),
        value: port,
    })?;
    Ok(SocketAddr::new(ip, port))
}

/// Where an inbound listens: `inbound.address` or `networking.address`, `:port`.
pub fn inbound_addr(
    dp: &DataplaneSpec,
    i: usize,
    inbound: &Inbound,
) -> Result<SocketAddr, ComputeError> {
    let ip = inbound.address.as_deref().unwrap_or(&dp.networking.address);
    socket_addr(ip, inbound.port, &format!("networking.inbound[{i}].port"))
}

/// Whether the mesh has an enabled mTLS backend.
pub fn mtls_on(mesh: &MeshSpec) -> bool {
    mesh.mtls
        .as_ref()
        .is_some_and(|m| m.enabled_backend.is_some())
}

fn subset_matches(subset: &BTreeMap<String, String>, tags: &BTreeMap<String, String>) -> bool {
    subset.iter().all(|(k, v)| tags.get(k) == Some(v))
}

/// A sidecar's config and what it was computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputedSidecar {
    /// The config.
    pub config: SidecarConfig,
    /// Whether it depends on the mesh's MeshServices or
    /// MeshMultiZoneServices (an outbound's `backendRef`, or a route's
    /// resource backend, resolved or not): then any change to those, or to
    /// what their endpoints are made of, recomputes it.
    pub uses_resources: bool,
}

/// Endpoint lists already computed from one state, by (mesh, service,
/// subset): sidecars calling the same service share one list (one allocation,
/// one JSON encoding however many streams send it). Valid only until the
/// state changes; the engine clears it on every batch.
#[derive(Debug, Default)]
pub struct EndpointMemo(HashMap<(String, String, BTreeMap<String, String>), Endpoints>);

impl EndpointMemo {
    /// Forgets everything (the state changed).
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Adds what `other` computed from the same state (keeping lists already here).
    pub fn merge(&mut self, other: EndpointMemo) {
        for (key, list) in other.0 {
            self.0.entry(key).or_insert(list);
        }
    }
}

impl ZoneState {
    /// The config of sidecar `proxy` in `mesh`.
    pub fn sidecar_config(
        &self,
        mesh: &str,
        proxy: DataplaneRef<'_>,
    ) -> Result<SidecarConfig, ComputeError> {
        self.sidecar_config_with(mesh, proxy, &mut EndpointMemo::default())
            .map(|c| c.config)
    }

    /// [`ZoneState::sidecar_config`], reusing and filling `memo`, with what
    /// the config depends on.
    pub fn sidecar_config_with(
        &self,
        mesh: &str,
        proxy: DataplaneRef<'_>,
        memo: &mut EndpointMemo,
    ) -> Result<ComputedSidecar, ComputeError> {
        let dp = proxy.spec;
        let mesh_spec = self
            .meshes
            .get(mesh)
            .ok_or_else(|| ComputeError::NoMesh(mesh.to_owned()))?;
        let mtls = mtls_on(mesh_spec);
        // Each outbound's destination; `None` for a backendRef naming nothing
        // here (no listener, as in Kuma).
        let destinations: Vec<Option<Destination>> = dp
            .outbounds()
            .iter()
            .map(|o| self.destination_of(mesh, o))
            .collect();
        let resolved: Vec<Destination> = destinations.iter().flatten().cloned().collect();
        let mut uses_resources = dp.outbounds().iter().any(|o| o.backend_ref.is_some());
        let items: Vec<PolicyItem<'_>> = self
            .policies
            .get(mesh)
            .map(|ps| {
                ps.candidates(dp, resolved.iter().map(Destination::name))
                    .into_iter()
                    .map(PolicyItem::from)
                    .collect()
            })
            .unwrap_or_default();
        let matched = match_policies_to(ProxyRef::Dataplane(proxy), mesh_spec, &items, &resolved);

        let mut inbounds = Vec::new();
        for (i, inbound) in dp.networking.inbound.iter().enumerate() {
            if inbound.is_ignored() {
                // Kuma's `Ignored`: no listener, no policies.
                continue;
            }
            let listen = inbound_addr(dp, i, inbound)?;
            let app_ip = inbound.service_address.as_deref().unwrap_or("127.0.0.1");
            let app = socket_addr(
                app_ip,
                inbound.service_port.unwrap_or(inbound.port),
                &format!("networking.inbound[{i}].servicePort"),
            )?;
            let policies = matched
                .inbounds
                .get(&inbound.port)
                .cloned()
                .unwrap_or_default();
            inbounds.push(InboundConfig {
                listen,
                app,
                service: inbound.tags.get(SERVICE_TAG).cloned().unwrap_or_default(),
                permissions: policies.traffic_permissions,
                timeout: policies.timeout,
                circuit_breaker: policies.circuit_breaker,
            });
        }

        let mut outbounds = Vec::new();
        for (i, (outbound, dest)) in dp.outbounds().iter().zip(&destinations).enumerate() {
            let Some(dest) = dest else {
                tracing::debug!(outbound = i, backend_ref = ?outbound.backend_ref,
                    "the outbound's backendRef names nothing in this zone: no listener");
                continue;
            };
            let listen = socket_addr(
                outbound.address.as_deref().unwrap_or("127.0.0.1"),
                outbound.port,
                &format!("networking.outbound[{i}].port"),
            )?;
            let policies: OutboundPolicies =
                matched.outbounds.get(dest).cloned().unwrap_or_default();
            let targets: Vec<(BackendTarget, u32)> = match &policies.route {
                None => vec![(BackendTarget::of(dest), 1)],
                Some(refs) => refs
                    .iter()
                    .filter_map(|b| {
                        uses_resources |= resource_form(mesh_spec, b);
                        let target = self.route_target(mesh, mesh_spec, b);
                        if target.is_none() {
                            tracing::debug!(backend_ref = ?b, "a route's backendRef names nothing in this zone");
                        }
                        Some((target?, b.effective_weight()))
                    })
                    .collect(),
            };
            let backends = targets
                .into_iter()
                .filter_map(|(target, weight)| match target {
                    BackendTarget::Service { name, subset } => {
                        let target = SniTarget {
                            mesh: mesh.to_owned(),
                            service: name.clone(),
                            subset: subset.clone(),
                        };
                        Some(BackendConfig {
                            endpoints: self
                                .memoized_endpoints(memo, mesh, mesh_spec, &name, &subset),
                            sni: target.to_sni(),
                            service: name,
                            weight,
                            subset,
                            resource: None,
                        })
                    }
                    BackendTarget::Resource(r) => {
                        self.resource_backend(mesh, mesh_spec, &r, weight)
                    }
                })
                .collect();
            outbounds.push(OutboundConfig {
                listen,
                service: match dest {
                    Destination::Service { service, .. } => service.clone(),
                    Destination::MeshService { name, .. } | Destination::MultiZone { name, .. } => {
                        name.clone()
                    }
                },
                backends,
                locality: policies
                    .load_balancing
                    .as_ref()
                    .and_then(|lb| lb.locality_awareness.clone()),
                timeout: policies.timeout,
                circuit_breaker: policies.circuit_breaker,
                health_check: policies.health_check,
                connect_attempts: policies
                    .retry
                    .as_ref()
                    .and_then(|r| r.tcp.as_ref())
                    .and_then(|t| t.max_connect_attempt),
            });
        }
        let config = SidecarConfig {
            mesh: mesh.to_owned(),
            tags: local_tags(dp),
            zone: self.zone.clone(),
            mtls,
            inbounds,
            outbounds,
        };
        Ok(ComputedSidecar {
            config,
            uses_resources,
        })
    }

    /// [`ZoneState::endpoints`] through `memo`.
    pub fn memoized_endpoints(
        &self,
        memo: &mut EndpointMemo,
        mesh: &str,
        mesh_spec: &MeshSpec,
        service: &str,
        subset: &BTreeMap<String, String>,
    ) -> Endpoints {
        memo.0
            .entry((mesh.to_owned(), service.to_owned(), subset.clone()))
            .or_insert_with(|| Endpoints::new(self.endpoints(mesh, mesh_spec, service, subset)))
            .clone()
    }

    /// Every endpoint of `service` (restricted to `subset`) in `mesh`.
    pub fn endpoints(
        &self,
        mesh: &str,
        mesh_spec: &MeshSpec,
        service: &str,
        subset: &BTreeMap<String, String>,
    ) -> Vec<EndpointConfig> {
        let local = self.local_endpoints(mesh, service, subset);
        let remote = if mtls_on(mesh_spec) {
            self.remote_endpoints(mesh, service, subset)
        } else {
            Vec::new()
        };
        self.with_remote(mesh_spec, local, remote)
    }

    /// This zone's ready instances of `service` matching `subset`.
    pub fn local_endpoints(
        &self,
        mesh: &str,
        service: &str,
        subset: &BTreeMap<String, String>,
    ) -> Vec<EndpointConfig> {
        let mut out = Vec::new();
        for name in self.instances_of(mesh, service) {
            let Some(dp) = self.dataplanes.get(&(mesh.to_owned(), name.to_owned())) else {
                continue;
            };
            out.extend(self.direct_endpoints(dp, |inbound| {
                inbound.tags.get(SERVICE_TAG).map(String::as_str) == Some(service)
                    && subset_matches(subset, &inbound.tags)
            }));
        }
        out
    }

    /// The ready inbounds of this zone's data plane `dp` that `wanted` picks,
    /// as endpoints dialled directly (weight 1; an unusable address is skipped).
    pub fn direct_endpoints<'a>(
        &'a self,
        dp: &'a DataplaneSpec,
        wanted: impl Fn(&Inbound) -> bool + 'a,
    ) -> impl Iterator<Item = EndpointConfig> + 'a {
        dp.networking
            .inbound
            .iter()
            .enumerate()
            .filter(move |(_, inbound)| inbound.is_ready() && wanted(inbound))
            .filter_map(move |(i, inbound)| {
                Some(EndpointConfig {
                    address: inbound_addr(dp, i, inbound).ok()?,
                    zone: self.zone.clone(),
                    weight: 1,
                    tags: inbound.tags.clone(),
                    via: Via::Direct,
                })
            })
    }

    /// Other zones' ingresses with instances of `service` matching `subset`,
    /// each weighted by how many.
    pub fn remote_endpoints(
        &self,
        mesh: &str,
        service: &str,
        subset: &BTreeMap<String, String>,
    ) -> Vec<EndpointConfig> {
        let mut out = Vec::new();
        let id = (mesh.to_owned(), service.to_owned());
        for ingress in self.ingresses_of(mesh, service) {
            if ingress.zone == self.zone || self.disabled_zones.contains(&ingress.zone) {
                continue;
            }
            let instances: u32 = ingress
                .advertised(&id)
                .filter(|s| subset_matches(subset, &s.tags))
                .map(|s| s.instances)
                .sum();
            if instances == 0 {
                continue;
            }
            let net = &ingress.spec.networking;
            let ip = net.advertised_address.as_deref().unwrap_or(&net.address);
            let port = net.advertised_port.unwrap_or(net.port);
            if let Ok(address) = socket_addr(ip, port, "networking.advertisedPort") {
                out.push(EndpointConfig {
                    address,
                    zone: ingress.zone.clone(),
                    weight: instances,
                    tags: BTreeMap::new(),
                    via: Via::Ingress,
                });
            }
        }
        out
    }

    /// Per service of `mesh`, the subsets its MeshTCPRoutes may ask for: with
    /// the whole service, the SNI names an ingress or egress must know.
    fn route_subsets(&self, mesh: &str) -> BTreeMap<&str, BTreeSet<BTreeMap<String, String>>> {
        let mut subsets: BTreeMap<&str, BTreeSet<_>> = BTreeMap::new();
        let routes = self.policies.get(mesh).into_iter().flat_map(|p| {
            p.all
                .range((ResourceKind::MeshTcpRoute, String::new())..)
                .take_while(|((kind, _), _)| *kind == ResourceKind::MeshTcpRoute)
        });
        for (_, policy) in routes {
            let Spec::MeshTcpRoute(route) = &policy.spec else {
                continue;
            };
            for to in route.to.iter().flatten() {
                for rule in &to.rules {
                    for b in &rule.default.backend_refs {
                        if let Some(service) = b.name.as_deref() {
                            let mut tags = b.tags.clone().unwrap_or_default();
                            tags.remove(SERVICE_TAG);
                            subsets.entry(service).or_default().insert(tags);
                        }
                    }
                }
            }
        }
        subsets
    }

    fn sni_routes<'a>(
        &self,
        services: impl Iterator<Item = &'a ServiceKey>,
        endpoints: impl Fn(&str, &str, &BTreeMap<String, String>) -> Vec<EndpointConfig>,
    ) -> Vec<SniRoute> {
        let mut routes = Vec::new();
        let mut subsets_of = BTreeMap::new();
        for (mesh, service) in services {
            if !self.meshes.get(mesh).is_some_and(mtls_on) {
                continue;
            }
            let routed = subsets_of
                .entry(mesh.as_str())
                .or_insert_with(|| self.route_subsets(mesh));
            let mut subsets = BTreeSet::from([BTreeMap::new()]);
            subsets.extend(routed.get(service.as_str()).into_iter().flatten().cloned());
            for subset in subsets {
                let endpoints = endpoints(mesh, service, &subset);
                if endpoints.is_empty() {
                    continue;
                }
                let target = SniTarget {
                    mesh: mesh.clone(),
                    service: service.clone(),
                    subset: subset.clone(),
                };
                routes.push(SniRoute {
                    sni: target.to_sni(),
                    mesh: mesh.clone(),
                    service: service.clone(),
                    subset,
                    endpoints: Endpoints::new(endpoints),
                    locality: None,
                });
            }
        }
        routes
    }

    /// The config of this zone's ingresses: every local service (and routed
    /// subset) of every mTLS mesh → its local instances; every port of this
    /// zone's MeshServices and of the MeshMultiZoneServices → its local part.
    pub fn ingress_config(&self) -> ZoneProxyConfig {
        ZoneProxyConfig {
            zone: self.zone.clone(),
            routes: {
                let mut routes = self.sni_routes(self.local_services(), |m, s, t| {
                    self.local_endpoints(m, s, t)
                });
                routes.extend(self.resource_routes(true));
                routes
            },
        }
    }

    /// The config of this zone's egresses: every service other zones offer
    /// (and routed subset), other zones' MeshService ports and the
    /// MeshMultiZoneServices' remote parts → those zones' ingresses.
    pub fn egress_config(&self) -> ZoneProxyConfig {
        ZoneProxyConfig {
            zone: self.zone.clone(),
            routes: {
                let mut routes = self.sni_routes(self.remote_services(), |m, s, t| {
                    self.remote_endpoints(m, s, t)
                });
                routes.extend(self.resource_routes(false));
                routes
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No labels, for [`proxy`].
    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

    /// A test dataplane as matching sees it.
    fn proxy(spec: &DataplaneSpec) -> DataplaneRef<'_> {
        DataplaneRef {
            name: "web-1",
            labels: &NO_LABELS,
            spec,
        }
    }
    use crate::dp::equivalence::stored;
    use meridian_model::{AvailableService, parse_document};
    use meridian_proxy_api::BackendResourceKind;
    use meridian_sni::ResourceSni;
    use meridian_store::{Change, ResourceKey};
    use serde_json::json;

    fn put(v: &mut ZoneState, doc: serde_json::Value, zone: Option<&str>) {
        let r = v.revision + 1;
        v.apply(vec![Change::Upsert(stored(doc, zone))], r);
    }

    fn dataplane(doc: serde_json::Value) -> DataplaneSpec {
        match parse_document(doc).expect("valid dataplane").spec {
            Spec::Dataplane(d) => d,
            other => panic!("not a dataplane: {other:?}"),
        }
    }

    fn sidecar(name: &str, ip: &str, service: &str, version: &str) -> DataplaneSpec {
        dataplane(sidecar_doc(name, ip, service, version))
    }

    fn ingress(zone: &str, ip: &str, instances: &[(&str, u32)]) -> serde_json::Value {
        let available: Vec<AvailableService> = instances
            .iter()
            .map(|(version, n)| AvailableService {
                tags: [("kuma.io/service", "backend"), ("version", *version)]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                instances: *n,
                mesh: "default".into(),
                external_service: None,
            })
            .collect();
        json!({"type": "ZoneIngress", "name": format!("ingress.{zone}"), "zone": zone,
            "networking": {"address": ip, "port": 10001, "advertisedAddress": ip, "advertisedPort": 10001},
            "availableServices": available})
    }

    fn mesh_doc(mtls: bool, egress: bool) -> serde_json::Value {
        let mut doc = json!({"type": "Mesh", "name": "default"});
        if mtls {
            doc["mtls"] = json!({"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]});
        }
        if egress {
            doc["routing"] = json!({"zoneEgress": true});
        }
        doc
    }

    fn sidecar_doc(name: &str, ip: &str, service: &str, version: &str) -> serde_json::Value {
        json!({"type": "Dataplane", "mesh": "default", "name": name,
            "networking": {"address": ip, "inbound": [{"port": 20001, "servicePort": 8080,
                "tags": {"kuma.io/service": service, "version": version}}],
                "outbound": [{"port": 15001, "tags": {"kuma.io/service": "backend"}}]}})
    }

    fn view(mtls: bool) -> ZoneState {
        let docs = [
            (mesh_doc(mtls, false), None),
            (sidecar_doc("web-1", "10.0.0.1", "web", "v1"), Some("east")),
            (
                sidecar_doc("backend-1", "10.0.0.2", "backend", "v1"),
                Some("east"),
            ),
            (
                ingress("west", "10.1.0.1", &[("v1", 2), ("v2", 4)]),
                Some("west"),
            ),
            (ingress("north", "10.2.0.1", &[("v2", 1)]), Some("north")),
            (ingress("east", "10.0.0.9", &[("v1", 1)]), Some("east")),
        ];
        ZoneState::from_resources("east", 1, docs.into_iter().map(|(d, z)| stored(d, z)))
    }

    fn backend_endpoints(v: &ZoneState) -> Vec<(String, u32, Via)> {
        let web = v.dataplanes[&("default".to_owned(), "web-1".to_owned())].clone();
        let cfg = v.sidecar_config("default", proxy(&web)).expect("config");
        cfg.outbounds[0].backends[0]
            .endpoints
            .iter()
            .map(|e| (e.zone.clone(), e.weight, e.via))
            .collect()
    }

    #[test]
    fn local_endpoints_then_remote_zones_weighted_by_instances() {
        let v = view(true);
        assert_eq!(
            backend_endpoints(&v),
            // Remote zones in the order of their ingresses' store names.
            vec![
                ("east".into(), 1, Via::Direct),
                ("north".into(), 1, Via::Ingress),
                ("west".into(), 6, Via::Ingress),
            ]
        );
    }

    #[test]
    fn without_mtls_only_local_endpoints() {
        assert_eq!(
            backend_endpoints(&view(false)),
            vec![("east".into(), 1, Via::Direct)]
        );
    }

    #[test]
    fn disabled_zones_are_not_used() {
        let mut v = view(true);
        put(
            &mut v,
            json!({"type": "Zone", "name": "west", "enabled": false}),
            None,
        );
        let zones: Vec<String> = backend_endpoints(&v).into_iter().map(|e| e.0).collect();
        assert_eq!(zones, vec!["east", "north"]);
    }

    #[test]
    fn egress_routing_replaces_remote_ingresses() {
        let mut v = view(true);
        put(&mut v, mesh_doc(true, true), None);
        let egress = json!({"type": "ZoneEgress", "name": "egress", "zone": "east",
            "networking": {"address": "10.0.0.8", "port": 10002}});
        put(&mut v, egress, Some("east"));
        assert_eq!(
            backend_endpoints(&v),
            vec![
                ("east".into(), 1, Via::Direct),
                (EGRESS_ZONE.into(), 7, Via::Egress)
            ]
        );
        let gone = ResourceKey::global(meridian_model::ResourceKind::ZoneEgress, "egress");
        let r = v.revision + 1;
        v.apply(
            vec![Change::Delete {
                key: gone,
                zone: Some("east".into()),
                revision: r,
            }],
            r,
        );
        assert_eq!(
            backend_endpoints(&v),
            vec![("east".into(), 1, Via::Direct)],
            "no egress: no way out of the zone, and no bypass"
        );
    }

    #[test]
    fn route_split_gives_subset_backends_with_their_own_sni() {
        let mut v = view(true);
        put(
            &mut v,
            json!({
            "type": "MeshTCPRoute", "name": "split", "mesh": "default",
            "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                "rules": [{"default": {"backendRefs": [
                    {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v1"}, "weight": 90},
                    {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v2"}, "weight": 10}]}}]}]}}),
            None,
        );
        let web = v.dataplanes[&("default".to_owned(), "web-1".to_owned())].clone();
        let cfg = v.sidecar_config("default", proxy(&web)).expect("config");
        let backends = &cfg.outbounds[0].backends;
        assert_eq!(backends.len(), 2);
        assert_eq!((backends[0].weight, backends[1].weight), (90, 10));
        assert_ne!(backends[0].sni, backends[1].sni);
        // v1: the local instance and west's 2; v2: west's 4 and north's 1.
        let weights = |i: usize| -> Vec<(String, u32)> {
            backends[i]
                .endpoints
                .iter()
                .map(|e| (e.zone.clone(), e.weight))
                .collect()
        };
        assert_eq!(weights(0), vec![("east".into(), 1), ("west".into(), 2)]);
        assert_eq!(weights(1), vec![("north".into(), 1), ("west".into(), 4)]);
        // The egress knows both subset names and the whole service.
        let egress = v.egress_config();
        let snis: Vec<&str> = egress.routes.iter().map(|r| r.sni.as_str()).collect();
        assert!(
            snis.contains(&backends[0].sni.as_str()) && snis.contains(&backends[1].sni.as_str())
        );
        assert!(snis.contains(&SniTarget::new("default", "backend").to_sni().as_str()));
    }

    #[test]
    fn ingress_routes_local_services_and_advertises_counts() {
        let v = view(true);
        let cfg = v.ingress_config();
        let backend = cfg
            .routes
            .iter()
            .find(|r| r.sni == SniTarget::new("default", "backend").to_sni())
            .expect("backend route");
        assert_eq!(backend.endpoints.len(), 1);
        assert_eq!(
            backend.endpoints[0].address,
            "10.0.0.2:20001".parse().unwrap()
        );
        let available = v.available_services();
        assert_eq!(available.len(), 2);
        assert!(
            available
                .iter()
                .all(|s| s.instances == 1 && s.mesh == "default")
        );
    }

    /// `view(true)` plus backend's MeshServices in east (own) and west
    /// (synced, 3 healthy), and a MeshMultiZoneService over both.
    fn view_with_resources() -> ZoneState {
        let mut v = view(true);
        let ms = |name: &str, zone: &str, healthy: u32| {
            json!({"type": "MeshService", "mesh": "default", "name": name,
                "labels": {"app": "backend", "kuma.io/zone": zone, "kuma.io/display-name": "backend"},
                "spec": {"selector": {"dataplaneTags": {"kuma.io/service": "backend"}},
                    "ports": [{"port": 8080, "name": "http", "targetPort": 20001}]},
                "status": {"dataplaneProxies": {"healthy": healthy, "total": 3}}})
        };
        put(&mut v, ms("backend", "east", 1), Some("east"));
        put(&mut v, ms("backend.west", "west", 3), Some("west"));
        put(
            &mut v,
            json!({"type": "MeshMultiZoneService", "mesh": "default", "name": "backend-all",
                "spec": {"selector": {"meshService": {"matchLabels": {"app": "backend"}}},
                    "ports": [{"port": 8080}]}}),
            None,
        );
        v
    }

    fn client(backend_ref: serde_json::Value) -> DataplaneSpec {
        dataplane(
            json!({"type": "Dataplane", "mesh": "default", "name": "web-1",
            "networking": {"address": "10.0.0.1", "inbound": [{"port": 20001,
                "tags": {"kuma.io/service": "web"}}],
                "outbound": [{"port": 15001, "backendRef": backend_ref}]}}),
        )
    }

    #[test]
    fn backend_refs_resolve_to_mesh_service_ports_across_zones() {
        let v = view_with_resources();
        let endpoints = |b: &BackendConfig| -> Vec<(String, u32, Via)> {
            b.endpoints
                .iter()
                .map(|e| (e.zone.clone(), e.weight, e.via))
                .collect()
        };
        // The multi-zone service: east's instance, and west's ingress weighted
        // by its 3 healthy proxies; one SNI name for both.
        let dp =
            client(json!({"kind": "MeshMultiZoneService", "name": "backend-all", "port": 8080}));
        let cfg = v.sidecar_config("default", proxy(&dp)).expect("config");
        let b = &cfg.outbounds[0].backends[0];
        assert_eq!(
            endpoints(b),
            vec![
                ("east".into(), 1, Via::Direct),
                ("west".into(), 3, Via::Ingress)
            ]
        );
        assert_eq!((b.service.as_str(), b.subset.is_empty()), ("backend", true));
        let mzs = ResourceSni::MultiZone {
            mesh: "default".into(),
            name: "backend-all".into(),
            port: 8080,
        }
        .to_sni();
        assert_eq!(b.sni, mzs);
        // West's MeshService by labels: only west's ingress, with west's SNI.
        let dp = client(
            json!({"kind": "MeshService", "labels": {"kuma.io/zone": "west"}, "port": 8080}),
        );
        let cfg = v.sidecar_config("default", proxy(&dp)).expect("config");
        let b = &cfg.outbounds[0].backends[0];
        assert_eq!(endpoints(b), vec![("west".into(), 3, Via::Ingress)]);
        let west_sni = ResourceSni::MeshService {
            mesh: "default".into(),
            zone: "west".into(),
            name: "backend".into(),
            port: 8080,
        }
        .to_sni();
        assert_eq!(b.sni, west_sni);
        // No such port, or no such service: no listener at all.
        for missing in [
            json!({"kind": "MeshService", "name": "backend", "port": 9090}),
            json!({"kind": "MeshMultiZoneService", "name": "nope", "port": 8080}),
        ] {
            let dp = client(missing);
            let cfg = v.sidecar_config("default", proxy(&dp)).expect("config");
            assert!(cfg.outbounds.is_empty());
        }
        // East's ingress routes east's MeshService and the multi-zone
        // service's east part; east's egress the west parts.
        let ingress = v.ingress_config();
        let east_sni = ResourceSni::MeshService {
            mesh: "default".into(),
            zone: "east".into(),
            name: "backend".into(),
            port: 8080,
        }
        .to_sni();
        let route = |cfg: &ZoneProxyConfig, sni: &str| -> Option<Vec<String>> {
            cfg.routes
                .iter()
                .find(|r| r.sni == sni)
                .map(|r| r.endpoints.iter().map(|e| e.address.to_string()).collect())
        };
        assert_eq!(
            route(&ingress, &east_sni),
            Some(vec!["10.0.0.2:20001".into()])
        );
        assert_eq!(route(&ingress, &mzs), Some(vec!["10.0.0.2:20001".into()]));
        assert_eq!(route(&ingress, &west_sni), None);
        let egress = v.egress_config();
        assert_eq!(
            route(&egress, &west_sni),
            Some(vec!["10.1.0.1:10001".into()])
        );
        assert_eq!(route(&egress, &mzs), Some(vec!["10.1.0.1:10001".into()]));
        assert_eq!(route(&egress, &east_sni), None);
    }

    #[test]
    fn routes_to_resources_keep_the_2_5_meaning_of_a_bare_name() {
        let mut v = view_with_resources();
        put(
            &mut v,
            json!({"type": "MeshTCPRoute", "name": "r", "mesh": "default",
                "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                    "rules": [{"default": {"backendRefs": [
                        {"kind": "MeshService", "name": "backend", "weight": 1},
                        {"kind": "MeshService", "name": "backend.west", "port": 8080, "weight": 2}]}}]}]}}),
            None,
        );
        let web = v.dataplanes[&("default".to_owned(), "web-1".to_owned())].clone();
        let cfg = v.sidecar_config("default", proxy(&web)).expect("config");
        let kinds: Vec<(Option<BackendResourceKind>, u32)> = cfg.outbounds[0]
            .backends
            .iter()
            .map(|b| (b.resource.as_ref().map(|r| r.kind), b.weight))
            .collect();
        // A bare name is the `kuma.io/service`; with a port, the resource.
        assert_eq!(
            kinds,
            vec![(None, 1), (Some(BackendResourceKind::MeshService), 2)]
        );
        // In Exclusive mode a bare name is the resource too.
        let mut mesh = mesh_doc(true, false);
        mesh["meshServices"] = json!({"mode": "Exclusive"});
        put(&mut v, mesh, None);
        let cfg = v.sidecar_config("default", proxy(&web)).expect("config");
        assert!(
            cfg.outbounds[0]
                .backends
                .iter()
                .all(|b| b.resource.is_some())
        );
    }

    #[test]
    fn a_mesh_service_selects_its_instances_by_dataplane_labels() {
        let mut v = view(true);
        let mut labelled = sidecar_doc("api-1", "10.0.0.5", "api", "v1");
        labelled["labels"] = json!({"team": "payments"});
        put(&mut v, labelled, Some("east"));
        put(
            &mut v,
            json!({"type": "MeshService", "mesh": "default", "name": "payments",
                "spec": {"selector": {"dataplaneLabels": {"matchLabels": {"team": "payments"}}},
                    "ports": [{"port": 80, "targetPort": 20001}]}}),
            Some("east"),
        );
        let dp = client(json!({"kind": "MeshService", "name": "payments", "port": 80}));
        let cfg = v.sidecar_config("default", proxy(&dp)).expect("config");
        let addresses: Vec<String> = cfg.outbounds[0].backends[0]
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(addresses, ["10.0.0.5:20001"]);
        // The label goes: so does the endpoint.
        put(
            &mut v,
            sidecar_doc("api-1", "10.0.0.5", "api", "v1"),
            Some("east"),
        );
        let cfg = v.sidecar_config("default", proxy(&dp)).expect("config");
        assert!(cfg.outbounds[0].backends[0].endpoints.is_empty());
    }

    #[test]
    fn mesh_retry_sets_the_connect_attempts() {
        let mut v = view(true);
        let web = v.dataplanes[&("default".to_owned(), "web-1".to_owned())].clone();
        let attempts = |v: &ZoneState| {
            v.sidecar_config("default", proxy(&web))
                .expect("config")
                .outbounds[0]
                .connect_attempts
        };
        assert_eq!(
            attempts(&v),
            None,
            "no MeshRetry: the proxy's default (one)"
        );
        put(
            &mut v,
            json!({"type": "MeshRetry", "name": "r", "mesh": "default",
                "spec": {"targetRef": {"kind": "Mesh"}, "to": [
                    {"targetRef": {"kind": "Mesh"}, "default": {"tcp": {"maxConnectAttempt": 5}}},
                    {"targetRef": {"kind": "MeshService", "name": "backend"},
                     "default": {"tcp": {"maxConnectAttempt": 2}, "http": {"numRetries": 3}}}]}}),
            None,
        );
        // The more specific entry wins.
        assert_eq!(attempts(&v), Some(2));
    }

    #[test]
    fn unknown_mesh_and_bad_addresses_are_errors() {
        let v = view(true);
        let web = v.dataplanes[&("default".to_owned(), "web-1".to_owned())].clone();
        assert_eq!(
            v.sidecar_config("other", proxy(&web)),
            Err(ComputeError::NoMesh("other".into()))
        );
        let bad = sidecar("x", "not-an-ip", "web", "v1");
        assert!(matches!(
            v.sidecar_config("default", proxy(&bad)),
            Err(ComputeError::Address { .. })
        ));
    }
}
