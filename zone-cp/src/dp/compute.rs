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
//! - with the mesh's `routing.zoneEgress` on and an egress in Z, the remote
//!   ingresses are replaced by Z's egress (which then picks the zone).
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
pub fn inbound_addr(dp: &DataplaneSpec, i: usize, inbound: &Inbound) -> Result<SocketAddr, ComputeError> {
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
    pub fn sidecar_config(&self, mesh: &str, dp: &DataplaneSpec) -> Result<SidecarConfig, ComputeError> {
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
            let policies = matched.inbounds.get(&inbound.port).cloned().unwrap_or_default();
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
        match self.egresses.values().next() {
            Some(egress) if egress_routing(mesh_spec) && !remote.is_empty() => {
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
            _ => endpoints.extend(remote),
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
