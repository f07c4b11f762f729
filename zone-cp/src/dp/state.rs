//! [`ZoneState`]: the zone's resources as config computation reads them, typed
//! once when they arrive and kept up to date change by change.
//!
//! The reconciler feeds it the store's change stream ([`ZoneState::apply`]):
//! each change is parsed once (the store's JSON → the model's typed spec),
//! replaces the previous value of its key, and updates the indexes below. The
//! answer is a [`Touched`]: what the change can make differ in a proxy's
//! config, in the terms the reconciler recomputes by (a mesh, a policy, the
//! endpoints of a service, the zone proxies' tables).
//!
//! Indexes, each kept in O(size of the change):
//! - `instances`: (mesh, service) → this zone's data planes with an inbound of
//!   that service — the local endpoints;
//! - `remote`: (mesh, service) → other zones' ingresses advertising instances
//!   of it — the remote endpoints;
//! - per mesh, [`MeshPolicies`]: policies by the services their targetRefs
//!   name, so a proxy's candidate policies are found without scanning them all;
//! - `available`: this zone's ready instances per (mesh, tags) — what its
//!   ingresses advertise to other zones;
//! - `mesh_services`: every MeshService known here — this zone's own (generated
//!   or not), which the MeshService generator (`mesh_services`) compares with
//!   what the zone's Dataplanes call for, and other zones' (synced through
//!   global), which outbounds and routes to them resolve against;
//! - `multizone`: the MeshMultiZoneServices (global's).
//!
//! Invariant: the state after any sequence of `apply` equals
//! [`ZoneState::from_resources`] of the store's contents at the same revision
//! (the reconciler's equivalence test checks the configs computed from both).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use meridian_model::{
    AvailableService, DISPLAY_NAME_LABEL, DataplaneSpec, MANAGED_BY_LABEL, MESH_SERVICE_GENERATOR,
    MeshMultiZoneServiceFields, MeshServiceFields, MeshSpec, PolicyReach, Resource, ResourceKind,
    ResourceMeta, SERVICE_TAG, Spec, ZoneEgressSpec, ZoneIngressSpec, ZoneSpec,
};
use meridian_store::{Change, ResourceKey, Revision, Store, StoreError, StoredResource};

/// A zone ingress as the zone knows it: its own, or another zone's (via global).
#[derive(Debug, Clone, PartialEq)]
pub struct IngressEntry {
    /// The store name (`<name>.<zone>` for other zones' ingresses).
    pub name: String,
    /// The owning zone.
    pub zone: String,
    /// The spec.
    pub spec: ZoneIngressSpec,
    /// Positions in `spec.available_services` by advertised (mesh, service), so an
    /// endpoint list reads only its own entries of each ingress.
    advertised: HashMap<ServiceKey, Vec<usize>>,
}

impl IngressEntry {
    /// The entry for ingress `name` of `zone`, with its advertised-service index.
    pub fn new(name: String, zone: String, spec: ZoneIngressSpec) -> Self {
        let mut advertised: HashMap<ServiceKey, Vec<usize>> = HashMap::new();
        for (i, s) in spec.available_services.iter().flatten().enumerate() {
            if let Some(service) = s.tags.get(SERVICE_TAG) {
                advertised
                    .entry((s.mesh.clone(), service.clone()))
                    .or_default()
                    .push(i);
            }
        }
        IngressEntry {
            name,
            zone,
            spec,
            advertised,
        }
    }

    /// What the ingress advertises of `service` in `mesh` (every subset of it).
    pub fn advertised(&self, service: &ServiceKey) -> impl Iterator<Item = &AvailableService> {
        let all = self.spec.available_services.as_deref().unwrap_or_default();
        self.advertised
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|&i| all.get(i))
    }
}

/// (mesh, service): the key of an endpoint set.
pub type ServiceKey = (String, String);

/// A policy's key inside its mesh.
pub type PolicyKey = (ResourceKind, String);

/// One mesh's policies, with the indexes that find a proxy's candidates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeshPolicies {
    /// Every policy of the mesh, by kind and name.
    pub all: BTreeMap<PolicyKey, Resource>,
    /// Policies whose top-level targetRef names services: by service.
    by_top_service: BTreeMap<String, BTreeSet<PolicyKey>>,
    /// Policies targeting every proxy whose entries only name destination
    /// services: by destination service.
    by_to_service: BTreeMap<String, BTreeSet<PolicyKey>>,
    /// The rest: candidates for every proxy of the mesh.
    mesh_wide: BTreeSet<PolicyKey>,
}

impl MeshPolicies {
    fn insert(&mut self, key: PolicyKey, resource: Resource) -> Option<Resource> {
        let old = self.remove(&key);
        match PolicyReach::of(&resource.spec) {
            Some(PolicyReach {
                top_services: Some(services),
                ..
            }) => {
                for s in services {
                    self.by_top_service
                        .entry(s)
                        .or_default()
                        .insert(key.clone());
                }
            }
            Some(PolicyReach {
                to_services: Some(services),
                ..
            }) => {
                for s in services {
                    self.by_to_service.entry(s).or_default().insert(key.clone());
                }
            }
            _ => {
                self.mesh_wide.insert(key.clone());
            }
        }
        self.all.insert(key, resource);
        old
    }

    fn remove(&mut self, key: &PolicyKey) -> Option<Resource> {
        let old = self.all.remove(key)?;
        let unindex = |index: &mut BTreeMap<String, BTreeSet<PolicyKey>>| {
            index.retain(|_, keys| {
                keys.remove(key);
                !keys.is_empty()
            })
        };
        match PolicyReach::of(&old.spec) {
            Some(PolicyReach {
                top_services: Some(_),
                ..
            }) => unindex(&mut self.by_top_service),
            Some(PolicyReach {
                to_services: Some(_),
                ..
            }) => unindex(&mut self.by_to_service),
            _ => {
                self.mesh_wide.remove(key);
            }
        }
        Some(old)
    }

    /// The policies that can select sidecar `dp` whose outbounds resolved to
    /// destinations named `destinations`: a superset of those
    /// [`meridian_model::match_policies_to`] would pick from the whole mesh.
    pub fn candidates<'a>(
        &self,
        dp: &DataplaneSpec,
        destinations: impl Iterator<Item = &'a str>,
    ) -> Vec<&Resource> {
        let mut keys: BTreeSet<&PolicyKey> = self.mesh_wide.iter().collect();
        for inbound in &dp.networking.inbound {
            keys.extend(
                self.by_top_service
                    .get(inbound.service())
                    .into_iter()
                    .flatten(),
            );
        }
        for name in destinations {
            keys.extend(self.by_to_service.get(name).into_iter().flatten());
        }
        keys.into_iter().filter_map(|k| self.all.get(k)).collect()
    }
}

/// What certificate signing reads: each mesh's mTLS settings and CA secrets.
/// Small, so it is republished whole when either changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaView {
    /// Meshes by name.
    pub meshes: BTreeMap<String, MeshSpec>,
    /// Secrets per (mesh, name), decoded.
    pub secrets: BTreeMap<(String, String), Vec<u8>>,
}

impl CaView {
    /// A secret's bytes as UTF-8 text.
    pub fn secret_text(&self, mesh: &str, name: &str) -> Option<&str> {
        self.secrets
            .get(&(mesh.to_owned(), name.to_owned()))
            .and_then(|b| std::str::from_utf8(b).ok())
    }
}

/// A MeshService as this zone knows it: its own, or another zone's.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshServiceEntry {
    /// The zone that owns it.
    pub zone: String,
    /// Its labels (the generator keeps labels it does not manage).
    pub labels: BTreeMap<String, String>,
    /// Its `spec` and `status`.
    pub fields: MeshServiceFields,
    /// Its store version (the generator's writes are conditional on it).
    pub version: i64,
}

impl MeshServiceEntry {
    /// Whether the zone CP's generator made it (`kuma.io/managed-by:
    /// meshservice-generator`); the generator never touches the others.
    pub fn is_generated(&self) -> bool {
        self.labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MESH_SERVICE_GENERATOR)
    }

    /// Its name in its own zone: `kuma.io/display-name`, else `name` (the
    /// name here).
    pub fn display_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.labels
            .get(DISPLAY_NAME_LABEL)
            .map_or(name, String::as_str)
    }
}

/// A MeshMultiZoneService as the zone knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiZoneEntry {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its `spec` and `status`.
    pub fields: MeshMultiZoneServiceFields,
}

/// A policy that changed: its mesh and its value before and after.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyChange {
    /// The mesh.
    pub mesh: String,
    /// Before (absent: created).
    pub old: Option<Resource>,
    /// After (absent: deleted).
    pub new: Option<Resource>,
}

/// What a batch of changes can make differ in proxy configs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Touched {
    /// Meshes whose spec changed, appeared or went: every sidecar of each.
    pub meshes: BTreeSet<String>,
    /// Policies that changed: the sidecars they can select.
    pub policies: Vec<PolicyChange>,
    /// Endpoint sets that may differ: the sidecars with such a backend.
    pub services: BTreeSet<ServiceKey>,
    /// The zone ingresses' and egresses' tables may differ.
    pub zone_proxies: bool,
    /// What this zone's ingresses advertise changed.
    pub available: bool,
    /// Meshes or CA secrets changed (certificate signing).
    pub ca: bool,
    /// Meshes whose generated MeshServices may have to change: a Dataplane, the
    /// Mesh itself or one of this zone's MeshServices changed in them.
    pub mesh_services: BTreeSet<String>,
    /// Meshes where what a MeshService or MeshMultiZoneService destination
    /// resolves to may differ (a MeshService or MeshMultiZoneService, a
    /// Dataplane, an ingress, an egress or a zone changed): every sidecar with
    /// such a destination.
    pub resource_destinations: BTreeSet<String>,
}

impl Touched {
    /// Whether nothing was touched.
    pub fn is_empty(&self) -> bool {
        *self == Touched::default()
    }
}

/// The zone's state, typed and indexed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZoneState {
    /// This zone's name.
    pub zone: String,
    /// The store revision this state is at.
    pub revision: Revision,
    /// Meshes by name.
    pub meshes: BTreeMap<String, MeshSpec>,
    /// Policies per mesh.
    pub policies: BTreeMap<String, MeshPolicies>,
    /// This zone's data planes: (mesh, name) → spec.
    pub dataplanes: BTreeMap<(String, String), DataplaneSpec>,
    /// Their resource labels (what MeshService `dataplaneLabels` selectors match).
    pub dataplane_labels: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// (mesh, service) → names of this zone's data planes with such an inbound.
    instances: BTreeMap<ServiceKey, BTreeSet<String>>,
    /// Every zone ingress known here, by store name.
    pub ingresses: BTreeMap<String, IngressEntry>,
    /// (mesh, service) → other zones' ingresses advertising it.
    remote: BTreeMap<ServiceKey, BTreeSet<String>>,
    /// This zone's egresses by name.
    pub egresses: BTreeMap<String, ZoneEgressSpec>,
    /// Zones with sync disabled (their ingresses are not used).
    pub disabled_zones: BTreeSet<String>,
    /// Meshes and CA secrets, for certificate signing.
    pub ca: Arc<CaView>,
    /// Ready local instances per (mesh, tags).
    available: BTreeMap<(String, BTreeMap<String, String>), u32>,
    /// Every MeshService here, this zone's and other zones': (mesh, name) → entry.
    pub mesh_services: BTreeMap<(String, String), MeshServiceEntry>,
    /// MeshMultiZoneServices: (mesh, name) → entry.
    pub multizone: BTreeMap<(String, String), MultiZoneEntry>,
}

impl ZoneState {
    /// An empty state of `zone`.
    pub fn new(zone: impl Into<String>) -> Self {
        ZoneState {
            zone: zone.into(),
            ..ZoneState::default()
        }
    }

    /// The state of `zone` built from scratch from these resources.
    pub fn from_resources(
        zone: &str,
        revision: Revision,
        resources: impl IntoIterator<Item = StoredResource>,
    ) -> Self {
        let mut state = ZoneState::new(zone);
        for r in resources {
            state.upsert(r, &mut Touched::default());
        }
        state.revision = revision;
        state
    }

    /// Reads the state of `zone` from a consistent snapshot of `store`.
    pub async fn load(store: &dyn Store, zone: &str) -> Result<ZoneState, StoreError> {
        let snapshot = store.snapshot().await?;
        Ok(Self::from_resources(
            zone,
            snapshot.revision,
            snapshot.resources,
        ))
    }

    /// Applies one batch of the change stream (revision order, at most one
    /// change per key) and says what it touched.
    pub fn apply(&mut self, changes: Vec<Change>, through: Revision) -> Touched {
        let mut touched = Touched::default();
        for change in changes {
            match change {
                Change::Upsert(r) => self.upsert(r, &mut touched),
                Change::Delete { key, zone, .. } => {
                    self.delete(&key, zone.as_deref(), &mut touched)
                }
            }
        }
        self.revision = self.revision.max(through);
        touched
    }

    /// Whether a zone-owned resource of another zone (which this zone's store
    /// does not hold for data planes and egresses) is to be ignored.
    fn foreign(&self, kind: ResourceKind, zone: Option<&str>) -> bool {
        matches!(kind, ResourceKind::Dataplane | ResourceKind::ZoneEgress)
            && zone != Some(self.zone.as_str())
    }

    fn upsert(&mut self, stored: StoredResource, touched: &mut Touched) {
        let key = stored.key;
        if self.foreign(key.kind, stored.zone.as_deref()) {
            return;
        }
        // Typed by the store when it read the row: no parse here.
        let spec = stored.spec.into_spec();
        let mesh = key.mesh.clone();
        match spec {
            Spec::MeshService(fields) => {
                let new = MeshServiceEntry {
                    zone: stored.zone.unwrap_or_else(|| self.zone.clone()),
                    labels: stored.labels,
                    fields,
                    version: stored.version,
                };
                let id = (mesh.clone(), key.name);
                if self.mesh_services.get(&id) != Some(&new) {
                    if new.zone == self.zone {
                        touched.mesh_services.insert(mesh.clone());
                    }
                    self.mesh_services.insert(id, new);
                    self.resource_touched(mesh, touched);
                }
            }
            Spec::MeshMultiZoneService(fields) => {
                let new = MultiZoneEntry {
                    labels: stored.labels,
                    fields,
                };
                let id = (mesh.clone(), key.name);
                if self.multizone.get(&id) != Some(&new) {
                    self.multizone.insert(id, new);
                    self.resource_touched(mesh, touched);
                }
            }
            Spec::Mesh(m) => {
                if self.meshes.get(&key.name) != Some(&m) {
                    self.meshes.insert(key.name.clone(), m);
                    self.mesh_touched(key.name, touched);
                }
            }
            Spec::Zone(ZoneSpec { enabled }) => {
                let disabled = enabled == Some(false);
                if disabled != self.disabled_zones.contains(&key.name) {
                    if disabled {
                        self.disabled_zones.insert(key.name.clone());
                    } else {
                        self.disabled_zones.remove(&key.name);
                    }
                    self.zone_touched(&key.name, touched);
                }
            }
            Spec::Dataplane(d) => {
                let id = (mesh, key.name);
                let old = self.dataplanes.remove(&id);
                self.dataplane_changed(&id, old.as_ref(), Some(&d), touched);
                self.dataplanes.insert(id.clone(), d);
                // Labels pick MeshService endpoints (`dataplaneLabels`).
                if self.dataplane_labels.get(&id) != Some(&stored.labels) {
                    self.resource_touched(id.0.clone(), touched);
                    self.dataplane_labels.insert(id, stored.labels);
                }
            }
            Spec::ZoneIngress(spec) => {
                let zone = stored
                    .zone
                    .or_else(|| spec.zone.clone())
                    .unwrap_or_else(|| self.zone.clone());
                let new = IngressEntry::new(key.name.clone(), zone, spec);
                let old = self.ingresses.remove(&key.name);
                self.ingress_changed(old.as_ref(), Some(&new), touched);
                self.ingresses.insert(key.name, new);
            }
            Spec::ZoneEgress(e) => {
                if self.egresses.get(&key.name) != Some(&e) {
                    self.egresses.insert(key.name, e);
                    self.egress_touched(touched);
                }
            }
            Spec::Secret(s) => {
                let id = (mesh, key.name);
                let bytes = s.to_bytes();
                if self.ca.secrets.get(&id) != bytes.as_ref() {
                    let ca = Arc::make_mut(&mut self.ca);
                    match bytes {
                        Some(b) => ca.secrets.insert(id, b),
                        None => ca.secrets.remove(&id),
                    };
                    touched.ca = true;
                }
            }
            policy => {
                let resource = Resource {
                    meta: ResourceMeta {
                        kind: key.kind,
                        name: key.name.clone(),
                        mesh: Some(mesh.clone()),
                        labels: stored.labels,
                    },
                    spec: policy,
                };
                let policies = self.policies.entry(mesh.clone()).or_default();
                let old = policies.insert((key.kind, key.name), resource.clone());
                if old.as_ref() != Some(&resource) {
                    self.policy_touched(mesh, old, Some(resource), touched);
                }
            }
        }
    }

    fn delete(&mut self, key: &ResourceKey, zone: Option<&str>, touched: &mut Touched) {
        if self.foreign(key.kind, zone) {
            return;
        }
        match key.kind {
            ResourceKind::Mesh => {
                if self.meshes.remove(&key.name).is_some() {
                    self.mesh_touched(key.name.clone(), touched);
                }
            }
            ResourceKind::Zone => {
                if self.disabled_zones.remove(&key.name) {
                    self.zone_touched(&key.name, touched);
                }
            }
            ResourceKind::Dataplane => {
                let id = (key.mesh.clone(), key.name.clone());
                if let Some(old) = self.dataplanes.remove(&id) {
                    self.dataplane_changed(&id, Some(&old), None, touched);
                }
                self.dataplane_labels.remove(&id);
            }
            ResourceKind::ZoneIngress => {
                if let Some(old) = self.ingresses.remove(&key.name) {
                    self.ingress_changed(Some(&old), None, touched);
                }
            }
            ResourceKind::ZoneEgress => {
                if self.egresses.remove(&key.name).is_some() {
                    self.egress_touched(touched);
                }
            }
            ResourceKind::MeshService => {
                let id = (key.mesh.clone(), key.name.clone());
                if let Some(old) = self.mesh_services.remove(&id) {
                    if old.zone == self.zone {
                        touched.mesh_services.insert(key.mesh.clone());
                    }
                    self.resource_touched(key.mesh.clone(), touched);
                }
            }
            ResourceKind::MeshMultiZoneService => {
                let id = (key.mesh.clone(), key.name.clone());
                if self.multizone.remove(&id).is_some() {
                    self.resource_touched(key.mesh.clone(), touched);
                }
            }
            ResourceKind::Secret => {
                let id = (key.mesh.clone(), key.name.clone());
                if self.ca.secrets.contains_key(&id) {
                    Arc::make_mut(&mut self.ca).secrets.remove(&id);
                    touched.ca = true;
                }
            }
            kind => {
                let old = self
                    .policies
                    .get_mut(&key.mesh)
                    .and_then(|p| p.remove(&(kind, key.name.clone())));
                if self
                    .policies
                    .get(&key.mesh)
                    .is_some_and(|p| p.all.is_empty())
                {
                    self.policies.remove(&key.mesh);
                }
                if old.is_some() {
                    self.policy_touched(key.mesh.clone(), old, None, touched);
                }
            }
        }
    }

    fn mesh_touched(&mut self, mesh: String, touched: &mut Touched) {
        let ca = Arc::make_mut(&mut self.ca);
        match self.meshes.get(&mesh) {
            Some(spec) => ca.meshes.insert(mesh.clone(), spec.clone()),
            None => ca.meshes.remove(&mesh),
        };
        touched.ca = true;
        touched.zone_proxies = true;
        touched.mesh_services.insert(mesh.clone());
        touched.meshes.insert(mesh);
    }

    fn policy_touched(
        &mut self,
        mesh: String,
        old: Option<Resource>,
        new: Option<Resource>,
        touched: &mut Touched,
    ) {
        let routes = |r: &Option<Resource>| {
            r.as_ref()
                .is_some_and(|r| r.meta.kind == ResourceKind::MeshTcpRoute)
        };
        // Routes name the subsets the zone proxies must know.
        touched.zone_proxies |= routes(&old) || routes(&new);
        touched.policies.push(PolicyChange { mesh, old, new });
    }

    /// Every endpoint set another zone's ingresses feed.
    fn zone_touched(&mut self, zone: &str, touched: &mut Touched) {
        for ingress in self.ingresses.values().filter(|i| i.zone == zone) {
            touched.services.extend(advertised(ingress));
        }
        touched.zone_proxies = true;
        self.every_resource_touched(touched);
    }

    /// A MeshService or MeshMultiZoneService of `mesh` changed: the zone
    /// proxies route them, sidecars may dial them.
    fn resource_touched(&self, mesh: String, touched: &mut Touched) {
        touched.zone_proxies = true;
        touched.resource_destinations.insert(mesh);
    }

    /// Something every mesh's resource destinations may resolve through
    /// changed (an ingress, an egress, a zone).
    fn every_resource_touched(&self, touched: &mut Touched) {
        touched
            .resource_destinations
            .extend(self.meshes.keys().cloned());
    }

    /// Egresses stand in for remote endpoints in meshes routed through them.
    fn egress_touched(&mut self, touched: &mut Touched) {
        self.every_resource_touched(touched);
        for (mesh, service) in self.remote.keys() {
            if self.meshes.get(mesh).is_some_and(egress_routing) {
                touched.services.insert((mesh.clone(), service.clone()));
            }
        }
    }

    fn dataplane_changed(
        &mut self,
        (mesh, name): &(String, String),
        old: Option<&DataplaneSpec>,
        new: Option<&DataplaneSpec>,
        touched: &mut Touched,
    ) {
        if old == new {
            return;
        }
        touched.mesh_services.insert(mesh.clone());
        touched.resource_destinations.insert(mesh.clone());
        for (dp, sign) in [(old, -1i64), (new, 1)] {
            let Some(dp) = dp else { continue };
            for inbound in &dp.networking.inbound {
                let key = (mesh.clone(), inbound.service().to_owned());
                if sign > 0 {
                    self.instances
                        .entry(key.clone())
                        .or_default()
                        .insert(name.clone());
                } else if let Some(names) = self.instances.get_mut(&key) {
                    names.remove(name);
                    if names.is_empty() {
                        self.instances.remove(&key);
                    }
                }
                touched.services.insert(key);
                if !inbound.is_ready() {
                    continue;
                }
                let count = self
                    .available
                    .entry((mesh.clone(), inbound.tags.clone()))
                    .or_default();
                *count = count.saturating_add_signed(sign as i32);
                if *count == 0 {
                    self.available.remove(&(mesh.clone(), inbound.tags.clone()));
                }
                touched.available = true;
            }
        }
        // The ingress routes this zone's services to their instances.
        touched.zone_proxies = true;
    }

    fn ingress_changed(
        &mut self,
        old: Option<&IngressEntry>,
        new: Option<&IngressEntry>,
        touched: &mut Touched,
    ) {
        if old == new {
            return;
        }
        self.every_resource_touched(touched);
        // This zone's own ingress must advertise what this zone has.
        if new.is_some_and(|n| {
            n.zone == self.zone
                && n.spec.available_services.as_ref() != Some(&self.available_services())
        }) {
            touched.available = true;
        }
        for (entry, add) in [(old, false), (new, true)] {
            let Some(entry) = entry.filter(|e| e.zone != self.zone) else {
                continue;
            };
            for key in advertised(entry) {
                if add {
                    self.remote
                        .entry(key.clone())
                        .or_default()
                        .insert(entry.name.clone());
                } else if let Some(names) = self.remote.get_mut(&key) {
                    names.remove(&entry.name);
                    if names.is_empty() {
                        self.remote.remove(&key);
                    }
                }
                touched.services.insert(key);
            }
            // The egress routes other zones' services to their ingresses.
            touched.zone_proxies = true;
        }
    }

    /// This zone's data planes in `mesh`, by name.
    pub fn dataplanes_in<'a>(
        &'a self,
        mesh: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a DataplaneSpec)> + 'a {
        self.dataplanes
            .range((mesh.to_owned(), String::new())..)
            .take_while(move |((m, _), _)| m == mesh)
            .map(|((_, name), spec)| (name.as_str(), spec))
    }

    /// This zone's own MeshServices in `mesh`, by name.
    pub fn mesh_services_in<'a>(
        &'a self,
        mesh: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a MeshServiceEntry)> + 'a {
        self.all_mesh_services_in(mesh)
            .filter(|(_, s)| s.zone == self.zone)
    }

    /// Every MeshService in `mesh` (this zone's and other zones'), by name.
    pub fn all_mesh_services_in<'a>(
        &'a self,
        mesh: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a MeshServiceEntry)> + 'a {
        self.mesh_services
            .range((mesh.to_owned(), String::new())..)
            .take_while(move |((m, _), _)| m == mesh)
            .map(|((_, name), s)| (name.as_str(), s))
    }

    /// The MeshMultiZoneServices of `mesh`, by name.
    pub fn multizone_in<'a>(
        &'a self,
        mesh: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a MultiZoneEntry)> + 'a {
        self.multizone
            .range((mesh.to_owned(), String::new())..)
            .take_while(move |((m, _), _)| m == mesh)
            .map(|((_, name), s)| (name.as_str(), s))
    }

    /// Names of this zone's data planes in `mesh` with an inbound of `service`.
    pub fn instances_of(&self, mesh: &str, service: &str) -> impl Iterator<Item = &str> {
        self.instances
            .get(&(mesh.to_owned(), service.to_owned()))
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Other zones' ingresses (store names) advertising `service` of `mesh`.
    pub fn ingresses_of(&self, mesh: &str, service: &str) -> impl Iterator<Item = &IngressEntry> {
        self.remote
            .get(&(mesh.to_owned(), service.to_owned()))
            .into_iter()
            .flatten()
            .filter_map(|name| self.ingresses.get(name))
    }

    /// The (mesh, service) pairs of this zone's data planes.
    pub fn local_services(&self) -> impl Iterator<Item = &ServiceKey> {
        self.instances.keys()
    }

    /// The (mesh, service) pairs other zones' ingresses advertise.
    pub fn remote_services(&self) -> impl Iterator<Item = &ServiceKey> {
        self.remote.keys()
    }

    /// What this zone's ingresses advertise to other zones: ready local
    /// instances, counted per mesh and full tag set.
    pub fn available_services(&self) -> Vec<AvailableService> {
        self.available
            .iter()
            .map(|((mesh, tags), instances)| AvailableService {
                tags: tags.clone(),
                instances: *instances,
                mesh: mesh.clone(),
                external_service: None,
            })
            .collect()
    }
}

/// The (mesh, service) pairs an ingress advertises.
fn advertised(entry: &IngressEntry) -> impl Iterator<Item = ServiceKey> + '_ {
    entry.spec.available_services.iter().flatten().map(|s| {
        (
            s.mesh.clone(),
            s.tags
                .get(meridian_model::SERVICE_TAG)
                .cloned()
                .unwrap_or_default(),
        )
    })
}

/// Whether `mesh` sends cross-zone traffic through the zone egress.
pub fn egress_routing(mesh: &MeshSpec) -> bool {
    mesh.routing
        .as_ref()
        .and_then(|r| r.zone_egress)
        .unwrap_or(false)
}
