//! Config computation: from a [`ZoneView`] to each proxy's [`ProxyConfig`].
//!
//! Pure functions, no I/O: the policy matching of `meridian-model` decides
//! routes, timeouts, limits and permissions; this module adds endpoints and
//! SNI names.
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

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use meridian_model::{
    AvailableService, DataplaneSpec, Inbound, MeshSpec, OutboundPolicies, PolicyItem, ProxyRef,
    SERVICE_TAG, Spec, match_policies,
};
use meridian_proxy_api::{
    BackendConfig, EndpointConfig, InboundConfig, OutboundConfig, SidecarConfig, SniRoute, Via,
    ZoneProxyConfig,
};
use meridian_sni::SniTarget;

use super::view::ZoneView;

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

fn mtls_on(mesh: &MeshSpec) -> bool {
    mesh.mtls
        .as_ref()
        .is_some_and(|m| m.enabled_backend.is_some())
}

fn egress_routing(mesh: &MeshSpec) -> bool {
    mesh.routing
        .as_ref()
        .and_then(|r| r.zone_egress)
        .unwrap_or(false)
}

fn subset_matches(subset: &BTreeMap<String, String>, tags: &BTreeMap<String, String>) -> bool {
    subset.iter().all(|(k, v)| tags.get(k) == Some(v))
}

impl ZoneView {
    /// The config of sidecar `dp` in `mesh`.
    pub fn sidecar_config(
        &self,
        mesh: &str,
        dp: &DataplaneSpec,
    ) -> Result<SidecarConfig, ComputeError> {
        let mesh_spec = self
            .meshes
            .get(mesh)
            .ok_or_else(|| ComputeError::NoMesh(mesh.to_owned()))?;
        let mtls = mtls_on(mesh_spec);
        let items: Vec<PolicyItem<'_>> = self
            .policies
            .get(mesh)
            .map(|ps| ps.iter().map(PolicyItem::from).collect())
            .unwrap_or_default();
        let matched = match_policies(ProxyRef::Dataplane(dp), mesh_spec, &items);

        let mut inbounds = Vec::new();
        for (i, inbound) in dp.networking.inbound.iter().enumerate() {
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
        for (i, outbound) in dp.networking.outbound.iter().flatten().enumerate() {
            let service = outbound.tags.get(SERVICE_TAG).cloned().unwrap_or_default();
            let listen = socket_addr(
                outbound.address.as_deref().unwrap_or("127.0.0.1"),
                outbound.port,
                &format!("networking.outbound[{i}].port"),
            )?;
            let policies: OutboundPolicies =
                matched.outbounds.get(&service).cloned().unwrap_or_default();
            let backends = policies
                .backends(&service)
                .into_iter()
                .map(|b| {
                    let name = b.name.clone().unwrap_or_else(|| service.clone());
                    let mut subset = b.tags.clone().unwrap_or_default();
                    subset.remove(SERVICE_TAG);
                    let target = SniTarget {
                        mesh: mesh.to_owned(),
                        service: name.clone(),
                        subset: subset.clone(),
                    };
                    BackendConfig {
                        endpoints: self.endpoints(mesh, mesh_spec, &name, &subset),
                        sni: target.to_sni(),
                        service: name,
                        weight: b.effective_weight(),
                        subset,
                    }
                })
                .collect();
            outbounds.push(OutboundConfig {
                listen,
                service,
                backends,
                locality: policies
                    .load_balancing
                    .as_ref()
                    .and_then(|lb| lb.locality_awareness.clone()),
                timeout: policies.timeout,
                circuit_breaker: policies.circuit_breaker,
                health_check: policies.health_check,
            });
        }
        Ok(SidecarConfig {
            mesh: mesh.to_owned(),
            zone: self.zone.clone(),
            mtls,
            inbounds,
            outbounds,
        })
    }

    /// Every endpoint of `service` (restricted to `subset`) in `mesh`.
    fn endpoints(
        &self,
        mesh: &str,
        mesh_spec: &MeshSpec,
        service: &str,
        subset: &BTreeMap<String, String>,
    ) -> Vec<EndpointConfig> {
        let mut endpoints = self.local_endpoints(mesh, service, subset);
        if !mtls_on(mesh_spec) {
            return endpoints;
        }
        let remote = self.remote_endpoints(mesh, service, subset);
        if !egress_routing(mesh_spec) {
            endpoints.extend(remote);
            return endpoints;
        }
        // Through the egress only: without one, cross-zone traffic has no way
        // out (as in Kuma), rather than silently bypassing the control point.
        match self.egresses.values().next() {
            Some(egress) if !remote.is_empty() => {
                let weight = remote.iter().map(|e| e.weight).sum();
                let address = socket_addr(
                    &egress.networking.address,
                    egress.networking.port,
                    "networking.port",
                );
                if let Ok(address) = address {
                    endpoints.push(EndpointConfig {
                        address,
                        zone: EGRESS_ZONE.to_owned(),
                        weight,
                        tags: BTreeMap::new(),
                        via: Via::Egress,
                    });
                }
            }
            _ => {}
        }
        endpoints
    }

    /// This zone's ready instances of `service` matching `subset`.
    pub fn local_endpoints(
        &self,
        mesh: &str,
        service: &str,
        subset: &BTreeMap<String, String>,
    ) -> Vec<EndpointConfig> {
        let mut out = Vec::new();
        for ((dp_mesh, _), dp) in &self.dataplanes {
            if dp_mesh != mesh {
                continue;
            }
            for (i, inbound) in dp.networking.inbound.iter().enumerate() {
                let ready = inbound.health.as_ref().is_none_or(|h| h.ready);
                if !ready
                    || inbound.tags.get(SERVICE_TAG).map(String::as_str) != Some(service)
                    || !subset_matches(subset, &inbound.tags)
                {
                    continue;
                }
                if let Ok(address) = inbound_addr(dp, i, inbound) {
                    out.push(EndpointConfig {
                        address,
                        zone: self.zone.clone(),
                        weight: 1,
                        tags: inbound.tags.clone(),
                        via: Via::Direct,
                    });
                }
            }
        }
        out
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
        for ingress in &self.ingresses {
            if ingress.zone == self.zone || self.disabled_zones.contains(&ingress.zone) {
                continue;
            }
            let instances: u32 = ingress
                .spec
                .available_services
                .iter()
                .flatten()
                .filter(|s| {
                    s.mesh == mesh
                        && s.tags.get(SERVICE_TAG).map(String::as_str) == Some(service)
                        && subset_matches(subset, &s.tags)
                })
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

    /// The subsets of `service` routes in `mesh` may ask for, plus the whole
    /// service: the SNI names an ingress or egress must know.
    fn subsets(&self, mesh: &str, service: &str) -> BTreeSet<BTreeMap<String, String>> {
        let mut subsets = BTreeSet::from([BTreeMap::new()]);
        for policy in self.policies.get(mesh).into_iter().flatten() {
            let Spec::MeshTcpRoute(route) = &policy.spec else {
                continue;
            };
            for to in route.to.iter().flatten() {
                for rule in &to.rules {
                    for b in &rule.default.backend_refs {
                        if b.name.as_deref() == Some(service) {
                            let mut tags = b.tags.clone().unwrap_or_default();
                            tags.remove(SERVICE_TAG);
                            subsets.insert(tags);
                        }
                    }
                }
            }
        }
        subsets
    }

    fn sni_routes(
        &self,
        services: &BTreeSet<(String, String)>,
        endpoints: impl Fn(&str, &str, &BTreeMap<String, String>) -> Vec<EndpointConfig>,
    ) -> Vec<SniRoute> {
        let mut routes = Vec::new();
        for (mesh, service) in services {
            if !self.meshes.get(mesh).is_some_and(mtls_on) {
                continue;
            }
            for subset in self.subsets(mesh, service) {
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
                    endpoints,
                    locality: None,
                });
            }
        }
        routes
    }

    /// The config of this zone's ingresses: every local service (and routed
    /// subset) of every mTLS mesh → its local instances.
    pub fn ingress_config(&self) -> ZoneProxyConfig {
        let services: BTreeSet<(String, String)> = self
            .dataplanes
            .iter()
            .flat_map(|((mesh, _), dp)| {
                dp.networking
                    .inbound
                    .iter()
                    .filter_map(|i| i.tags.get(SERVICE_TAG))
                    .map(|s| (mesh.clone(), s.clone()))
            })
            .collect();
        ZoneProxyConfig {
            zone: self.zone.clone(),
            routes: self.sni_routes(&services, |m, s, t| self.local_endpoints(m, s, t)),
        }
    }

    /// The config of this zone's egresses: every service other zones offer
    /// (and routed subset) → those zones' ingresses.
    pub fn egress_config(&self) -> ZoneProxyConfig {
        let services: BTreeSet<(String, String)> = self
            .ingresses
            .iter()
            .filter(|i| i.zone != self.zone)
            .flat_map(|i| i.spec.available_services.iter().flatten())
            .filter_map(|s| Some((s.mesh.clone(), s.tags.get(SERVICE_TAG)?.clone())))
            .collect();
        ZoneProxyConfig {
            zone: self.zone.clone(),
            routes: self.sni_routes(&services, |m, s, t| self.remote_endpoints(m, s, t)),
        }
    }

    /// What this zone's ingresses advertise to other zones: ready local
    /// instances, counted per mesh and full tag set.
    pub fn available_services(&self) -> Vec<AvailableService> {
        let mut counts: BTreeMap<(String, BTreeMap<String, String>), u32> = BTreeMap::new();
        for ((mesh, _), dp) in &self.dataplanes {
            for inbound in &dp.networking.inbound {
                if inbound.health.as_ref().is_some_and(|h| !h.ready) {
                    continue;
                }
                *counts
                    .entry((mesh.clone(), inbound.tags.clone()))
                    .or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|((mesh, tags), instances)| AvailableService {
                tags,
                instances,
                mesh,
                external_service: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::view::IngressEntry;
    use meridian_model::{Resource, parse_document};
    use serde_json::json;

    fn dataplane(doc: serde_json::Value) -> DataplaneSpec {
        match parse_document(doc).expect("valid dataplane").spec {
            Spec::Dataplane(d) => d,
            other => panic!("not a dataplane: {other:?}"),
        }
    }

    fn sidecar(name: &str, ip: &str, service: &str, version: &str) -> DataplaneSpec {
        dataplane(json!({"type": "Dataplane", "mesh": "default", "name": name,
            "networking": {"address": ip, "inbound": [{"port": 20001, "servicePort": 8080,
                "tags": {"kuma.io/service": service, "version": version}}],
                "outbound": [{"port": 15001, "tags": {"kuma.io/service": "backend"}}]}}))
    }

    fn ingress(zone: &str, ip: &str, instances: &[(&str, u32)]) -> IngressEntry {
        let available = instances
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
        IngressEntry {
            name: format!("ingress.{zone}"),
            zone: zone.into(),
            spec: meridian_model::ZoneIngressSpec {
                zone: Some(zone.into()),
                networking: meridian_model::ZoneIngressNetworking {
                    address: ip.into(),
                    port: 10001,
                    advertised_address: Some(ip.into()),
                    advertised_port: Some(10001),
                    admin: None,
                },
                available_services: Some(available),
            },
        }
    }

    fn mesh(mtls: bool, egress: bool) -> MeshSpec {
        let mut doc = json!({"type": "Mesh", "name": "default"});
        if mtls {
            doc["mtls"] = json!({"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]});
        }
        if egress {
            doc["routing"] = json!({"zoneEgress": true});
        }
        match parse_document(doc).expect("valid mesh").spec {
            Spec::Mesh(m) => m,
            other => panic!("not a mesh: {other:?}"),
        }
    }

    fn policy(doc: serde_json::Value) -> Resource {
        parse_document(doc).expect("valid policy")
    }

    fn view(mtls: bool) -> ZoneView {
        let mut v = ZoneView {
            zone: "east".into(),
            ..ZoneView::default()
        };
        v.meshes.insert("default".into(), mesh(mtls, false));
        v.dataplanes.insert(
            ("default".into(), "web-1".into()),
            sidecar("web-1", "10.0.0.1", "web", "v1"),
        );
        v.dataplanes.insert(
            ("default".into(), "backend-1".into()),
            sidecar("backend-1", "10.0.0.2", "backend", "v1"),
        );
        v.ingresses
            .push(ingress("west", "10.1.0.1", &[("v1", 2), ("v2", 4)]));
        v.ingresses.push(ingress("north", "10.2.0.1", &[("v2", 1)]));
        v.ingresses.push(ingress("east", "10.0.0.9", &[("v1", 1)]));
        v
    }

    fn backend_endpoints(v: &ZoneView) -> Vec<(String, u32, Via)> {
        let web = v.dataplanes[&("default".to_owned(), "web-1".to_owned())].clone();
        let cfg = v.sidecar_config("default", &web).expect("config");
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
            vec![
                ("east".into(), 1, Via::Direct),
                ("west".into(), 6, Via::Ingress),
                ("north".into(), 1, Via::Ingress),
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
        v.disabled_zones.insert("west".into());
        let zones: Vec<String> = backend_endpoints(&v).into_iter().map(|e| e.0).collect();
        assert_eq!(zones, vec!["east", "north"]);
    }

    #[test]
    fn egress_routing_replaces_remote_ingresses() {
        let mut v = view(true);
        v.meshes.insert("default".into(), mesh(true, true));
        v.egresses.insert(
            "egress".into(),
            meridian_model::ZoneEgressSpec {
                zone: Some("east".into()),
                networking: meridian_model::ZoneEgressNetworking {
                    address: "10.0.0.8".into(),
                    port: 10002,
                    admin: None,
                },
            },
        );
        assert_eq!(
            backend_endpoints(&v),
            vec![
                ("east".into(), 1, Via::Direct),
                (EGRESS_ZONE.into(), 7, Via::Egress)
            ]
        );
        v.egresses.clear();
        assert_eq!(
            backend_endpoints(&v),
            vec![("east".into(), 1, Via::Direct)],
            "no egress: no way out of the zone, and no bypass"
        );
    }

    #[test]
    fn route_split_gives_subset_backends_with_their_own_sni() {
        let mut v = view(true);
        v.policies.entry("default".into()).or_default().push(policy(json!({
            "type": "MeshTCPRoute", "name": "split", "mesh": "default",
            "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                "rules": [{"default": {"backendRefs": [
                    {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v1"}, "weight": 90},
                    {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v2"}, "weight": 10}]}}]}]}})));
        let web = v.dataplanes[&("default".to_owned(), "web-1".to_owned())].clone();
        let cfg = v.sidecar_config("default", &web).expect("config");
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
        assert_eq!(weights(1), vec![("west".into(), 4), ("north".into(), 1)]);
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

    #[test]
    fn unknown_mesh_and_bad_addresses_are_errors() {
        let v = view(true);
        let web = v.dataplanes[&("default".to_owned(), "web-1".to_owned())].clone();
        assert_eq!(
            v.sidecar_config("other", &web),
            Err(ComputeError::NoMesh("other".into()))
        );
        let bad = sidecar("x", "not-an-ip", "web", "v1");
        assert!(matches!(
            v.sidecar_config("default", &bad),
            Err(ComputeError::Address { .. })
        ));
    }
}
