//! Kuma 2.x destinations: one port of a MeshService or of a
//! MeshMultiZoneService, resolved against the zone's store.
//!
//! An outbound names its destination either by tags (the 2.5 model: a
//! `kuma.io/service`, [`Destination::Service`]) or by a `backendRef` to a
//! resource. A route's backend likewise is a service (and subset) or a
//! resource port. This module turns the resource forms into what a proxy
//! needs: which resource (the first by name when labels match several, as
//! Kuma), its endpoints, the SNI name the zone proxies route by, and the
//! identity its proxies present.
//!
//! **Endpoints of MeshService `S`, port `P`, seen from zone Z:**
//! - `S` is Z's own: every ready inbound of Z's data planes its selector picks
//!   (`dataplaneTags` ⊆ the inbound's tags, `dataplaneRef` by name, or
//!   `dataplaneLabels` matching the Dataplane resource's labels) whose
//!   port is `P`'s `targetPort` (a number is the inbound's port, a name its
//!   `name`; absent, `P`'s port);
//! - `S` is zone Y's (synced through global): with mTLS on, Y's ingresses,
//!   weighted by `S`'s `status.dataplaneProxies.healthy` (no status: 1; zero
//!   healthy: no endpoint); with `routing.zoneEgress`, Z's egress instead.
//!
//! A MeshMultiZoneService port is the union of the MeshServices its selector
//! picks that have that port: local ones by their instances, remote ones per
//! zone through that zone's ingresses.
//!
//! Invariant: a destination that does not resolve (no such resource, no such
//! port, a MeshExternalService) yields `None`, never a listener with no way
//! out that looks like a working one (Kuma gives such an outbound no listener).

use std::collections::BTreeMap;

use meridian_model::{
    BackendRef, DataplaneSpec, Destination, MeshServiceIdentityType, MeshServicePort,
    MeshServicesMode, MeshSpec, Outbound, SERVICE_TAG, TargetPort, TargetRefKind,
};
use meridian_proxy_api::{
    BackendConfig, BackendResource, BackendResourceKind, EndpointConfig, Endpoints, SniRoute, Via,
};
use meridian_sni::ResourceSni;

use super::compute::{mtls_on, socket_addr};
use super::state::{MeshServiceEntry, ZoneState, egress_routing};

/// Where one backend of an outbound sends connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendTarget {
    /// A `kuma.io/service`, restricted to a subset of its tags.
    Service {
        /// The service.
        name: String,
        /// The subset (without `kuma.io/service`; empty: all of it).
        subset: BTreeMap<String, String>,
    },
    /// One port of a MeshService or MeshMultiZoneService.
    Resource(BackendResource),
}

impl BackendTarget {
    /// A destination's own backend (no route applies).
    pub fn of(dest: &Destination) -> Self {
        match dest {
            Destination::Service { service, .. } => BackendTarget::Service {
                name: service.clone(),
                subset: BTreeMap::new(),
            },
            Destination::MeshService { name, port, .. } => {
                BackendTarget::Resource(BackendResource {
                    kind: BackendResourceKind::MeshService,
                    name: name.clone(),
                    port: *port,
                })
            }
            Destination::MultiZone { name, port, .. } => BackendTarget::Resource(BackendResource {
                kind: BackendResourceKind::MeshMultiZoneService,
                name: name.clone(),
                port: *port,
            }),
        }
    }
}

/// Whether the mesh's `meshServices.mode` is `Exclusive` (a by-name
/// MeshService ref then means the resource, not the `kuma.io/service`).
fn exclusive(mesh: &MeshSpec) -> bool {
    mesh.mesh_services
        .as_ref()
        .and_then(|m| m.mode)
        .is_some_and(|m| m == MeshServicesMode::Exclusive)
}

/// The port of `entry` a ref asks for: by number, by `sectionName` (the port's
/// name or number as text), or, with neither, its first port.
fn port_of<'a>(
    entry: &'a MeshServiceEntry,
    port: Option<u32>,
    section: Option<&str>,
) -> Option<&'a MeshServicePort> {
    let ports = &entry.fields.spec.ports;
    match (port, section) {
        (Some(n), _) => ports.iter().find(|p| p.port == n),
        (None, Some(s)) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(s) || p.port.to_string() == s),
        (None, None) => ports.first(),
    }
}

/// Whether a resource with `name` and `labels` is the one a ref picks by
/// name (and namespace) or by labels.
fn picked(
    name: &str,
    labels: &BTreeMap<String, String>,
    by_name: Option<&str>,
    by_labels: Option<&BTreeMap<String, String>>,
    namespace: Option<&str>,
) -> bool {
    let namespace_ok = namespace.is_none_or(|ns| {
        labels
            .get(meridian_model::NAMESPACE_LABEL)
            .map(String::as_str)
            == Some(ns)
    });
    namespace_ok
        && match (by_name, by_labels) {
            (Some(n), _) => n == name,
            (None, Some(selector)) => selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            (None, None) => false,
        }
}

/// Whether `inbound` serves MeshService port `port` of a service whose
/// selector asks for `tags`.
fn serves(
    inbound: &meridian_model::Inbound,
    tags: &BTreeMap<String, String>,
    port: &MeshServicePort,
) -> bool {
    let port_ok = match &port.target_port {
        None => inbound.port == port.port,
        Some(TargetPort::Number(n)) => inbound.port == *n,
        Some(TargetPort::Name(name)) => inbound.name.as_deref() == Some(name.as_str()),
    };
    port_ok && tags.iter().all(|(k, v)| inbound.tags.get(k) == Some(v))
}

/// Whether a route's backend ref names a resource port rather than a
/// `kuma.io/service` (see [`ZoneState::route_target`]).
pub fn resource_form(mesh_spec: &MeshSpec, b: &BackendRef) -> bool {
    match b.kind {
        TargetRefKind::MeshService => {
            b.labels.is_some()
                || b.port.is_some()
                || b.section_name.is_some()
                || b.namespace.is_some()
                || exclusive(mesh_spec)
        }
        TargetRefKind::MeshServiceSubset => false,
        _ => true,
    }
}

/// How a ref picks one resource port: by name (and namespace) or labels, then
/// a port by number or `sectionName`.
#[derive(Debug, Clone, Copy)]
struct Pick<'a> {
    name: Option<&'a str>,
    labels: Option<&'a BTreeMap<String, String>>,
    namespace: Option<&'a str>,
    port: Option<u32>,
    section: Option<&'a str>,
}

impl ZoneState {
    /// What outbound `o` of a sidecar in `mesh` dials; `None` when its
    /// `backendRef` names nothing this zone knows.
    pub fn destination_of(&self, mesh: &str, o: &Outbound) -> Option<Destination> {
        let Some(r) = &o.backend_ref else {
            return Some(Destination::of_tags(o));
        };
        let pick = Pick {
            name: r.name.as_deref(),
            labels: r.labels.as_ref(),
            namespace: None,
            // Required for both kinds (validated).
            port: Some(r.port?),
            section: None,
        };
        // A MeshExternalService is not served yet (the validator warns).
        self.pick(mesh, r.kind, pick)
    }

    /// Where a route's backend ref sends connections; `None` when it names
    /// nothing this zone knows. A `MeshServiceSubset`, and a `MeshService` by
    /// name alone outside `Exclusive` mode, keep their 2.5 meaning (a
    /// `kuma.io/service`); a `MeshService` with labels, a port, a
    /// `sectionName` or a namespace is a resource.
    pub fn route_target(
        &self,
        mesh: &str,
        mesh_spec: &MeshSpec,
        b: &BackendRef,
    ) -> Option<BackendTarget> {
        if !resource_form(mesh_spec, b) {
            return Some(service_target(b));
        }
        let pick = Pick {
            name: b.name.as_deref(),
            labels: b.labels.as_ref(),
            namespace: b.namespace.as_deref(),
            port: b.port,
            section: b.section_name.as_deref(),
        };
        self.pick(mesh, b.kind, pick)
            .map(|dest| BackendTarget::of(&dest))
    }

    /// The first resource of `kind` by name that `pick` selects and that has
    /// the port it asks for (a MeshMultiZoneService port only by number).
    fn pick(&self, mesh: &str, kind: TargetRefKind, pick: Pick<'_>) -> Option<Destination> {
        let chosen = |n: &str, labels: &BTreeMap<String, String>| {
            picked(n, labels, pick.name, pick.labels, pick.namespace)
        };
        match kind {
            TargetRefKind::MeshService => self
                .all_mesh_services_in(mesh)
                .filter(|(n, e)| chosen(n, &e.labels))
                .find_map(|(n, e)| {
                    let port = port_of(e, pick.port, pick.section)?;
                    Some(Destination::MeshService {
                        name: n.to_owned(),
                        labels: e.labels.clone(),
                        port: port.port,
                        port_name: port.name.clone(),
                    })
                }),
            TargetRefKind::MeshMultiZoneService => self
                .multizone_in(mesh)
                .filter(|(n, e)| chosen(n, &e.labels))
                .find_map(|(n, e)| {
                    let ports = &e.fields.spec.ports;
                    let port = ports.iter().find(|p| Some(p.port) == pick.port)?;
                    Some(Destination::MultiZone {
                        name: n.to_owned(),
                        labels: e.labels.clone(),
                        port: port.port,
                        port_name: port.name.clone(),
                    })
                }),
            _ => None,
        }
    }

    /// The backend config of resource port `r` with route weight `weight`;
    /// `None` when the resource or its port is gone.
    pub fn resource_backend(
        &self,
        mesh: &str,
        mesh_spec: &MeshSpec,
        r: &BackendResource,
        weight: u32,
    ) -> Option<BackendConfig> {
        let (service, sni, endpoints) = match r.kind {
            BackendResourceKind::MeshService => {
                let entry = self.mesh_service(mesh, &r.name)?;
                let port = port_of(entry, Some(r.port), None)?;
                let sni = ResourceSni::MeshService {
                    mesh: mesh.to_owned(),
                    zone: entry.zone.clone(),
                    name: entry.display_name(&r.name).to_owned(),
                    port: r.port,
                };
                let endpoints = if entry.zone == self.zone {
                    self.mesh_service_instances(mesh, entry, port)
                } else {
                    let remote = self.zone_ingress_endpoints(&entry.zone, healthy(entry));
                    self.with_remote(mesh_spec, Vec::new(), remote)
                };
                (identity(&r.name, entry), sni, endpoints)
            }
            BackendResourceKind::MeshMultiZoneService => {
                let entry = self.multizone.get(&(mesh.to_owned(), r.name.clone()))?;
                entry.fields.spec.ports.iter().find(|p| p.port == r.port)?;
                let parts =
                    self.multizone_parts(mesh, &entry.fields.spec.selector.mesh_service, r.port);
                let service = parts
                    .first()
                    .map_or_else(|| r.name.clone(), |(n, e, _)| identity(n, e));
                let (local, remote) = self.split_parts(mesh, &parts);
                let sni = ResourceSni::MultiZone {
                    mesh: mesh.to_owned(),
                    name: r.name.clone(),
                    port: r.port,
                };
                (service, sni, self.with_remote(mesh_spec, local, remote))
            }
        };
        Some(BackendConfig {
            service,
            subset: BTreeMap::new(),
            weight,
            sni: sni.to_sni(),
            endpoints: Endpoints::new(endpoints),
            resource: Some(r.clone()),
        })
    }

    /// MeshService `name` of `mesh`.
    fn mesh_service(&self, mesh: &str, name: &str) -> Option<&MeshServiceEntry> {
        self.mesh_services.get(&(mesh.to_owned(), name.to_owned()))
    }

    /// The MeshServices of `mesh` a MeshMultiZoneService selector picks that
    /// have `port`: (name, entry, that port).
    fn multizone_parts<'a>(
        &'a self,
        mesh: &'a str,
        selector: &meridian_model::LabelSelector,
        port: u32,
    ) -> Vec<(&'a str, &'a MeshServiceEntry, &'a MeshServicePort)> {
        self.all_mesh_services_in(mesh)
            .filter(|(_, e)| selector.matches(&e.labels))
            .filter_map(|(n, e)| Some((n, e, port_of(e, Some(port), None)?)))
            .collect()
    }

    /// Local instances and remote zones' ingresses of multi-zone parts.
    fn split_parts(
        &self,
        mesh: &str,
        parts: &[(&str, &MeshServiceEntry, &MeshServicePort)],
    ) -> (Vec<EndpointConfig>, Vec<EndpointConfig>) {
        let mut local = Vec::new();
        let mut per_zone: BTreeMap<&str, u32> = BTreeMap::new();
        for (_, entry, port) in parts {
            if entry.zone == self.zone {
                local.extend(self.mesh_service_instances(mesh, entry, port));
            } else {
                *per_zone.entry(entry.zone.as_str()).or_default() += healthy(entry);
            }
        }
        let remote = per_zone
            .into_iter()
            .flat_map(|(zone, weight)| self.zone_ingress_endpoints(zone, weight))
            .collect();
        (local, remote)
    }

    /// This zone's ready inbounds serving `port` of local MeshService `entry`.
    fn mesh_service_instances(
        &self,
        mesh: &str,
        entry: &MeshServiceEntry,
        port: &MeshServicePort,
    ) -> Vec<EndpointConfig> {
        let Some(selector) = &entry.fields.spec.selector else {
            return Vec::new();
        };
        let no_tags = BTreeMap::new();
        let tags = selector.dataplane_tags.as_ref().unwrap_or(&no_tags);
        let by_name = selector
            .dataplane_ref
            .as_ref()
            .and_then(|r| r.name.as_deref());
        let by_labels = selector.dataplane_labels.as_ref();
        let mut out = Vec::new();
        let dataplanes: Vec<(&str, &DataplaneSpec)> = match (by_name, tags.get(SERVICE_TAG)) {
            _ if selector.dataplane_tags.is_none() && by_name.is_none() && by_labels.is_none() => {
                Vec::new()
            }
            (None, None) if let Some(selector) = by_labels => self
                .dataplanes
                .range((mesh.to_owned(), String::new())..)
                .take_while(|((m, _), _)| m == mesh)
                .filter(|(id, _)| {
                    self.dataplane_labels
                        .get(*id)
                        .is_some_and(|labels| selector.matches(labels))
                })
                .map(|((_, n), dp)| (n.as_str(), dp))
                .collect(),
            (Some(name), _) => self
                .dataplanes
                .get(&(mesh.to_owned(), name.to_owned()))
                .map(|dp| (name, dp))
                .into_iter()
                .collect(),
            (None, Some(service)) => self
                .instances_of(mesh, service)
                .filter_map(|n| Some((n, self.dataplanes.get(&(mesh.to_owned(), n.to_owned()))?)))
                .collect(),
            (None, None) => self
                .dataplanes
                .range((mesh.to_owned(), String::new())..)
                .take_while(|((m, _), _)| m == mesh)
                .map(|((_, n), dp)| (n.as_str(), dp))
                .collect(),
        };
        for (_, dp) in dataplanes {
            out.extend(self.direct_endpoints(dp, |inbound| serves(inbound, tags, port)));
        }
        out
    }

    /// Zone `zone`'s ingresses, each with `weight` (none for this zone, a
    /// disabled zone or a zero weight).
    fn zone_ingress_endpoints(&self, zone: &str, weight: u32) -> Vec<EndpointConfig> {
        if zone == self.zone || weight == 0 || self.disabled_zones.contains(zone) {
            return Vec::new();
        }
        self.ingresses
            .values()
            .filter(|i| i.zone == zone)
            .filter_map(|i| {
                let net = &i.spec.networking;
                let ip = net.advertised_address.as_deref().unwrap_or(&net.address);
                let port = net.advertised_port.unwrap_or(net.port);
                let address = socket_addr(ip, port, "networking.advertisedPort").ok()?;
                Some(EndpointConfig {
                    address,
                    zone: zone.to_owned(),
                    weight,
                    tags: BTreeMap::new(),
                    via: Via::Ingress,
                })
            })
            .collect()
    }

    /// The SNI routes of MeshService and MeshMultiZoneService ports for this
    /// zone's ingresses (`local`: its own instances) or egresses (other
    /// zones' ingresses), in every mTLS mesh.
    pub fn resource_routes(&self, local: bool) -> Vec<SniRoute> {
        let mut routes = Vec::new();
        for (mesh, spec) in &self.meshes {
            if !mtls_on(spec) {
                continue;
            }
            for (name, entry) in self.all_mesh_services_in(mesh) {
                if (entry.zone == self.zone) != local {
                    continue;
                }
                for port in &entry.fields.spec.ports {
                    let endpoints = if local {
                        self.mesh_service_instances(mesh, entry, port)
                    } else {
                        self.zone_ingress_endpoints(&entry.zone, healthy(entry))
                    };
                    let sni = ResourceSni::MeshService {
                        mesh: mesh.clone(),
                        zone: entry.zone.clone(),
                        name: entry.display_name(name).to_owned(),
                        port: port.port,
                    };
                    push_route(&mut routes, mesh, identity(name, entry), sni, endpoints);
                }
            }
            for (name, entry) in self.multizone_in(mesh) {
                for port in &entry.fields.spec.ports {
                    let parts = self.multizone_parts(
                        mesh,
                        &entry.fields.spec.selector.mesh_service,
                        port.port,
                    );
                    let (mine, others) = self.split_parts(mesh, &parts);
                    let service = parts
                        .first()
                        .map_or_else(|| name.to_owned(), |(n, e, _)| identity(n, e));
                    let sni = ResourceSni::MultiZone {
                        mesh: mesh.clone(),
                        name: name.to_owned(),
                        port: port.port,
                    };
                    let endpoints = if local { mine } else { others };
                    push_route(&mut routes, mesh, service, sni, endpoints);
                }
            }
        }
        routes
    }

    /// `local` and, with mTLS on, `remote` endpoints, with the remote ones
    /// replaced by this zone's egress when the mesh routes through egresses
    /// (without an egress there is then no way out of the zone, as in Kuma,
    /// rather than a silent bypass of the control point).
    pub fn with_remote(
        &self,
        mesh_spec: &MeshSpec,
        mut local: Vec<EndpointConfig>,
        remote: Vec<EndpointConfig>,
    ) -> Vec<EndpointConfig> {
        if !mtls_on(mesh_spec) || remote.is_empty() {
            return local;
        }
        if !egress_routing(mesh_spec) {
            local.extend(remote);
            return local;
        }
        if let Some(egress) = self.egresses.values().next() {
            let weight = remote.iter().map(|e| e.weight).sum();
            let address = socket_addr(
                &egress.networking.address,
                egress.networking.port,
                "networking.port",
            );
            if let Ok(address) = address {
                local.push(EndpointConfig {
                    address,
                    zone: super::compute::EGRESS_ZONE.to_owned(),
                    weight,
                    tags: BTreeMap::new(),
                    via: Via::Egress,
                });
            }
        }
        local
    }
}

fn push_route(
    routes: &mut Vec<SniRoute>,
    mesh: &str,
    service: String,
    sni: ResourceSni,
    endpoints: Vec<EndpointConfig>,
) {
    if endpoints.is_empty() {
        return;
    }
    routes.push(SniRoute {
        sni: sni.to_sni(),
        mesh: mesh.to_owned(),
        service,
        subset: BTreeMap::new(),
        endpoints: Endpoints::new(endpoints),
        locality: None,
    });
}

/// A 2.5-model backend: the service and subset of a ref.
fn service_target(b: &BackendRef) -> BackendTarget {
    let mut subset = b.subset_tags();
    subset.remove(SERVICE_TAG);
    BackendTarget::Service {
        name: b.service().to_owned(),
        subset,
    }
}

/// How many of a remote MeshService's proxies are healthy, as its zone
/// reported: the weight of that zone's ingress for it (no status: 1).
fn healthy(entry: &MeshServiceEntry) -> u32 {
    entry
        .fields
        .status
        .as_ref()
        .and_then(|s| s.dataplane_proxies.as_ref())
        .map_or(1, |p| p.healthy)
}

/// The `kuma.io/service` a MeshService's proxies present in their
/// certificates (what a client verifies): its first `ServiceTag` identity,
/// else its selector's `kuma.io/service`, else its name in its own zone.
fn identity(name: &str, entry: &MeshServiceEntry) -> String {
    let spec = &entry.fields.spec;
    spec.identities
        .iter()
        .flatten()
        .find(|i| i.kind == MeshServiceIdentityType::ServiceTag)
        .map(|i| i.value.clone())
        .or_else(|| {
            spec.selector
                .as_ref()
                .and_then(|s| s.dataplane_tags.as_ref())
                .and_then(|t| t.get(SERVICE_TAG).cloned())
        })
        .unwrap_or_else(|| entry.display_name(name).to_owned())
}
