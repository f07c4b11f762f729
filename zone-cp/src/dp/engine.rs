//! [`Engine`]: incremental config computation — the zone's [`ZoneState`], the
//! connected proxies with the config each was last given, and the indexes
//! that say which proxies a change reaches.
//!
//! ```text
//!  store change ──ZoneState::apply──▶ Touched ──┬─ mesh ─────────▶ every sidecar of the mesh   (full)
//!                                               ├─ policy ───────▶ sidecars it may select      (full)
//!                                               ├─ service eps ──▶ sidecars with that backend  (endpoints only)
//!                                               └─ zone proxies ─▶ ingresses and egresses      (full)
//! ```
//!
//! - A **policy** reaches the sidecars its top-level targetRef can select,
//!   found through `by_inbound` (a `MeshService` target), `by_outbound` (a
//!   `Mesh` target whose entries only name destinations) or `by_mesh`, then
//!   filtered exactly with [`meridian_model::may_affect`].
//! - An **endpoint set** (a data plane joining, leaving or changing health; an
//!   ingress's availability; an egress; a zone disabled) reaches the sidecars
//!   whose config has a backend of that service (`by_backend`, kept from the
//!   computed configs): only their endpoints are recomputed and patched in.
//!
//! The engine is synchronous and does no I/O: the reconciler feeds it and
//! owns it (a single writer, so no lock is held while computing). A batch of
//! several whole configs is split over the machine's cores
//! with scoped threads that only read the state. Configs are published on each
//! proxy's watch channel, as soon as each is computed, only when they differ
//! from what it has. Invariant (tested against [`Engine::from_scratch`] by the equivalence
//! test): after any sequence of changes and connections, every proxy's config
//! equals what a from-scratch computation of the same state gives.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use meridian_model::{DataplaneSpec, NamedDataplane, may_affect};
use meridian_proxy_api::{ProxyConfig, ProxyKind};
use meridian_store::{Change, ResourceKey, Revision};
use tokio::sync::watch;

use super::compute::EndpointMemo;
use super::registry::{Connection, VersionedConfig, publish};
use super::state::{PolicyChange, ServiceKey, Touched, ZoneState};
use super::stats::DpStats;

/// Why a proxy's config was computed (the `reason` of
/// `meridian_dp_config_computations_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The proxy connected.
    Connect,
    /// Its mesh changed.
    Mesh,
    /// A policy that may select it changed.
    Policy,
    /// Endpoints of one of its backends changed (endpoints recomputed only).
    Endpoints,
    /// A zone ingress or egress table input changed.
    ZoneProxy,
    /// The state was reloaded whole (start, or the change log was compacted).
    Resync,
    /// What one of its MeshService or MeshMultiZoneService destinations
    /// resolves to may have changed.
    MeshService,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 7] = [
        Reason::Connect,
        Reason::Mesh,
        Reason::Policy,
        Reason::Endpoints,
        Reason::ZoneProxy,
        Reason::Resync,
        Reason::MeshService,
    ];

    /// The metric label.
    pub const fn label(self) -> &'static str {
        match self {
            Reason::Connect => "connect",
            Reason::Mesh => "mesh",
            Reason::Policy => "policy",
            Reason::Endpoints => "endpoints",
            Reason::ZoneProxy => "zone_proxy",
            Reason::Resync => "resync",
            Reason::MeshService => "mesh_service",
        }
    }
}

/// One connected proxy as the engine tracks it.
#[derive(Debug)]
struct Proxy {
    kind: ProxyKind,
    /// Sidecars: the Dataplane it registered (its own config is computed from it).
    dataplane: Option<Arc<NamedDataplane>>,
    config: watch::Sender<Option<VersionedConfig>>,
    /// The last computed config (`None`: not computable yet, e.g. no mesh).
    computed: Option<Arc<ProxyConfig>>,
    /// Backend services of `computed` (the `by_backend` entries it holds).
    backends: BTreeSet<ServiceKey>,
    /// Whether `computed` depends on MeshServices or MeshMultiZoneServices.
    uses_resources: bool,
}

/// Batches of at least this many whole configs are computed on several threads:
/// a sidecar's config takes milliseconds at 10,000 policies, a scoped thread tens
/// of microseconds to start.
const PARALLEL_MIN: usize = 4;

/// The incremental engine (see the module docs).
#[derive(Debug)]
pub struct Engine {
    state: ZoneState,
    proxies: HashMap<ResourceKey, Proxy>,
    by_mesh: BTreeMap<String, BTreeSet<ResourceKey>>,
    by_inbound: BTreeMap<ServiceKey, BTreeSet<ResourceKey>>,
    by_outbound: BTreeMap<ServiceKey, BTreeSet<ResourceKey>>,
    by_backend: BTreeMap<ServiceKey, BTreeSet<ResourceKey>>,
    zone_proxies: BTreeSet<ResourceKey>,
    stats: Arc<DpStats>,
    /// Endpoint lists computed since the state last changed.
    memo: EndpointMemo,
}

/// The keys of a sidecar's inbound and outbound services.
fn services(mesh: &str, dp: &DataplaneSpec) -> (BTreeSet<ServiceKey>, BTreeSet<ServiceKey>) {
    let key = |s: &str| (mesh.to_owned(), s.to_owned());
    (
        dp.networking
            .inbound
            .iter()
            .map(|i| key(i.service()))
            .collect(),
        dp.outbounds().iter().map(|o| key(o.service())).collect(),
    )
}

fn index_add(
    index: &mut BTreeMap<ServiceKey, BTreeSet<ResourceKey>>,
    keys: &BTreeSet<ServiceKey>,
    proxy: &ResourceKey,
) {
    for k in keys {
        index.entry(k.clone()).or_default().insert(proxy.clone());
    }
}

fn index_remove(
    index: &mut BTreeMap<ServiceKey, BTreeSet<ResourceKey>>,
    keys: &BTreeSet<ServiceKey>,
    proxy: &ResourceKey,
) {
    for k in keys {
        if let Some(set) = index.get_mut(k) {
            set.remove(proxy);
            if set.is_empty() {
                index.remove(k);
            }
        }
    }
}

/// The `kuma.io/service` backends of a computed config (resource backends are
/// recomputed whole on [`Touched::resource_destinations`] instead).
fn backend_services(config: Option<&ProxyConfig>) -> BTreeSet<ServiceKey> {
    match config {
        Some(ProxyConfig::Sidecar(s)) => s
            .outbounds
            .iter()
            .flat_map(|o| &o.backends)
            .filter(|b| b.resource.is_none())
            .map(|b| (s.mesh.clone(), b.service.clone()))
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// Whether a sidecar's config depends on the mesh's MeshServices or
/// MeshMultiZoneServices: an outbound names one by `backendRef` (known before
/// its config could be computed), or its last computation said so.
fn uses_resources(p: &Proxy) -> bool {
    p.uses_resources
        || p.dataplane
            .as_deref()
            .is_some_and(|dp| dp.spec.outbounds().iter().any(|o| o.backend_ref.is_some()))
}

impl Engine {
    /// An engine over `state`, with no proxy connected.
    pub fn new(state: ZoneState) -> Self {
        Engine {
            state,
            proxies: HashMap::new(),
            by_mesh: BTreeMap::new(),
            by_inbound: BTreeMap::new(),
            by_outbound: BTreeMap::new(),
            by_backend: BTreeMap::new(),
            zone_proxies: BTreeSet::new(),
            stats: Arc::default(),
            memo: EndpointMemo::default(),
        }
    }

    /// Counts into `stats` (shared with the sessions and the server's owner).
    pub fn with_stats(mut self, stats: Arc<DpStats>) -> Self {
        self.stats = stats;
        self
    }

    /// The zone state.
    pub fn state(&self) -> &ZoneState {
        &self.state
    }

    /// The store revision the state is at.
    pub fn revision(&self) -> Revision {
        self.state.revision
    }

    /// What the engine has computed so far.
    pub fn stats(&self) -> &DpStats {
        &self.stats
    }

    /// The config last computed for `key`.
    pub fn config(&self, key: &ResourceKey) -> Option<&ProxyConfig> {
        self.proxies.get(key)?.computed.as_deref()
    }

    /// The keys of the connected proxies.
    pub fn proxies(&self) -> impl Iterator<Item = &ResourceKey> {
        self.proxies.keys()
    }

    /// The config of every connected proxy computed from scratch over `state`
    /// (the reference the incremental path must equal).
    pub fn from_scratch(&self, state: &ZoneState) -> BTreeMap<ResourceKey, Option<ProxyConfig>> {
        self.proxies
            .iter()
            .map(|(key, p)| {
                (
                    key.clone(),
                    compute(state, key, p, &mut EndpointMemo::default()).map(|(c, _)| c),
                )
            })
            .collect()
    }

    /// A proxy connected: index it and compute its config.
    pub fn connect(&mut self, c: Connection) {
        let key = c.key.clone();
        self.disconnect(&key);
        if let Some(dp) = &c.dataplane {
            let (inbound, outbound) = services(&key.mesh, &dp.spec);
            index_add(&mut self.by_inbound, &inbound, &key);
            index_add(&mut self.by_outbound, &outbound, &key);
            self.by_mesh
                .entry(key.mesh.clone())
                .or_default()
                .insert(key.clone());
        } else {
            self.zone_proxies.insert(key.clone());
        }
        self.proxies.insert(
            key.clone(),
            Proxy {
                kind: c.kind,
                dataplane: c.dataplane,
                config: c.config,
                computed: None,
                backends: BTreeSet::new(),
                uses_resources: false,
            },
        );
        self.recompute(&key, Reason::Connect);
    }

    /// A proxy's stream ended: forget it.
    pub fn disconnect(&mut self, key: &ResourceKey) {
        let Some(p) = self.proxies.remove(key) else {
            return;
        };
        if let Some(dp) = &p.dataplane {
            let (inbound, outbound) = services(&key.mesh, &dp.spec);
            index_remove(&mut self.by_inbound, &inbound, key);
            index_remove(&mut self.by_outbound, &outbound, key);
            if let Some(set) = self.by_mesh.get_mut(&key.mesh) {
                set.remove(key);
                if set.is_empty() {
                    self.by_mesh.remove(&key.mesh);
                }
            }
        }
        index_remove(&mut self.by_backend, &p.backends, key);
        self.zone_proxies.remove(key);
    }

    /// Replaces the whole state (start, or a compacted change log) and
    /// recomputes every proxy.
    pub fn reset(&mut self, state: ZoneState) {
        self.state = state;
        self.memo.clear();
        let all = self
            .proxies
            .keys()
            .map(|key| (key.clone(), Reason::Resync))
            .collect();
        self.recompute_all(&all);
    }

    /// Applies a batch of the store's change stream and recomputes what it
    /// reaches; returns what it touched (the reconciler refreshes the
    /// ingresses' availability and the CA view from it).
    pub fn apply(&mut self, changes: Vec<Change>, through: Revision) -> Touched {
        let touched = self.state.apply(changes, through);
        if touched.is_empty() {
            return touched;
        }
        self.memo.clear();
        let mut full: BTreeMap<ResourceKey, Reason> = BTreeMap::new();
        for mesh in &touched.meshes {
            for key in self.by_mesh.get(mesh).into_iter().flatten() {
                full.entry(key.clone()).or_insert(Reason::Mesh);
            }
        }
        for change in &touched.policies {
            for key in self.reached_by(change) {
                full.entry(key).or_insert(Reason::Policy);
            }
        }
        for mesh in &touched.resource_destinations {
            for key in self.by_mesh.get(mesh).into_iter().flatten() {
                if self.proxies.get(key).is_some_and(uses_resources) {
                    full.entry(key.clone()).or_insert(Reason::MeshService);
                }
            }
        }
        if touched.zone_proxies {
            for key in &self.zone_proxies {
                full.entry(key.clone()).or_insert(Reason::ZoneProxy);
            }
        }
        self.recompute_all(&full);
        self.patch_endpoints(&touched.services, &full);
        touched
    }

    /// Computes the whole config of every proxy in `full`, publishing each as soon
    /// as it is computed. A batch of [`PARALLEL_MIN`] or more is split over the
    /// machine's cores: the configs only read the state, each
    /// proxy is in one chunk, and its channel takes the config from whichever
    /// thread computed it. Each thread has its own endpoint memo (they merge
    /// afterwards), so a list may be computed once per thread rather than once.
    fn recompute_all(&mut self, full: &BTreeMap<ResourceKey, Reason>) {
        let jobs: Vec<(&ResourceKey, &Proxy, Reason)> = full
            .iter()
            .filter_map(|(key, reason)| {
                self.proxies
                    .get_key_value(key)
                    .map(|(key, p)| (key, p, *reason))
            })
            .collect();
        let threads = if jobs.len() >= PARALLEL_MIN {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            1
        };
        let state = &self.state;
        let run = |part: &[(&ResourceKey, &Proxy, Reason)], memo: &mut EndpointMemo| {
            part.iter()
                .map(|(key, p, reason)| {
                    let computed = compute(state, key, p, memo);
                    let uses_resources = computed.as_ref().is_some_and(|(_, u)| *u);
                    let computed = computed.map(|(c, _)| Arc::new(c));
                    if let Some(config) = &computed {
                        publish(&p.config, config.clone());
                    }
                    ((*key).clone(), *reason, computed, uses_resources)
                })
                .collect::<Vec<_>>()
        };
        let results = if threads <= 1 {
            run(&jobs, &mut self.memo)
        } else {
            let chunk = jobs.len().div_ceil(threads);
            let memo = &mut self.memo;
            std::thread::scope(|scope| {
                let mut parts = jobs.chunks(chunk);
                let first = parts.next().unwrap_or_default();
                let workers: Vec<_> = parts
                    .map(|part| {
                        scope.spawn(move || {
                            let mut own = EndpointMemo::default();
                            let results = run(part, &mut own);
                            (results, own)
                        })
                    })
                    .collect();
                let mut results = run(first, memo);
                for worker in workers {
                    match worker.join() {
                        Ok((part, own)) => {
                            results.extend(part);
                            memo.merge(own);
                        }
                        // The configs of that chunk stay as they were; the next
                        // change reaching them computes them again.
                        Err(_) => tracing::error!("a config computation thread panicked"),
                    }
                }
                results
            })
        };
        for (key, reason, computed, uses_resources) in results {
            self.count(reason);
            if let Some(p) = self.proxies.get_mut(&key) {
                p.uses_resources = uses_resources;
            }
            self.record(&key, computed);
        }
    }

    /// The sidecars a policy change may reach.
    fn reached_by(&self, change: &PolicyChange) -> BTreeSet<ResourceKey> {
        let mut reached = BTreeSet::new();
        for policy in [&change.old, &change.new].into_iter().flatten() {
            let Some(reach) = meridian_model::PolicyReach::of(&policy.spec) else {
                continue;
            };
            let key = |s: &String| (change.mesh.clone(), s.clone());
            let candidates: Vec<&ResourceKey> = match (&reach.top_services, &reach.to_services) {
                (Some(top), _) => top
                    .iter()
                    .filter_map(|s| self.by_inbound.get(&key(s)))
                    .flatten()
                    .collect(),
                // By destination name; a backendRef outbound's destination
                // is known only once resolved, so those sidecars are all
                // candidates.
                (None, Some(to)) => to
                    .iter()
                    .filter_map(|s| self.by_outbound.get(&key(s)))
                    .flatten()
                    .chain(
                        self.by_mesh
                            .get(&change.mesh)
                            .into_iter()
                            .flatten()
                            .filter(|k| self.proxies.get(*k).is_some_and(uses_resources)),
                    )
                    .collect(),
                (None, None) => self
                    .by_mesh
                    .get(&change.mesh)
                    .into_iter()
                    .flatten()
                    .collect(),
            };
            for proxy in candidates {
                let dp = self.proxies.get(proxy).and_then(|p| p.dataplane.as_deref());
                if dp.is_some_and(|dp| may_affect(&policy.spec, dp.view())) {
                    reached.insert(proxy.clone());
                }
            }
        }
        reached
    }

    /// Computes `key`'s whole config and publishes it if it changed.
    fn recompute(&mut self, key: &ResourceKey, reason: Reason) {
        self.recompute_all(&BTreeMap::from([(key.clone(), reason)]));
    }

    /// Records `computed` (already published) as `key`'s config.
    fn record(&mut self, key: &ResourceKey, computed: Option<Arc<ProxyConfig>>) {
        let Some(p) = self.proxies.get_mut(key) else {
            return;
        };
        let backends = backend_services(computed.as_deref());
        if backends != p.backends {
            let old = std::mem::replace(&mut p.backends, backends);
            index_remove(&mut self.by_backend, &old, key);
            index_add(&mut self.by_backend, &p.backends, key);
        }
        p.computed = computed;
    }

    /// Recomputes the endpoints of `services` in the sidecars that route to
    /// them (except those in `done`, computed whole this round).
    fn patch_endpoints(
        &mut self,
        services: &BTreeSet<ServiceKey>,
        done: &BTreeMap<ResourceKey, Reason>,
    ) {
        let mut reached = BTreeSet::new();
        for service in services {
            for key in self.by_backend.get(service).into_iter().flatten() {
                if !done.contains_key(key) {
                    reached.insert(key.clone());
                }
            }
        }
        for key in reached {
            let Some(Some(ProxyConfig::Sidecar(current))) =
                self.proxies.get(&key).map(|p| p.computed.as_deref())
            else {
                continue;
            };
            let Some(mesh_spec) = self.state.meshes.get(&current.mesh) else {
                continue;
            };
            let mut next = current.clone();
            for backend in next.outbounds.iter_mut().flat_map(|o| &mut o.backends) {
                let id = (next.mesh.clone(), backend.service.clone());
                if !services.contains(&id) {
                    continue;
                }
                backend.endpoints = self.state.memoized_endpoints(
                    &mut self.memo,
                    &next.mesh,
                    mesh_spec,
                    &backend.service,
                    &backend.subset,
                );
            }
            let changed = &next != current;
            self.count(Reason::Endpoints);
            if changed {
                let next = Arc::new(ProxyConfig::Sidecar(next));
                if let Some(p) = self.proxies.get(&key) {
                    publish(&p.config, next.clone());
                }
                self.record(&key, Some(next));
            }
        }
    }

    fn count(&mut self, reason: Reason) {
        self.stats.computed(reason);
    }
}

/// One proxy's config from `state`, and whether it depends on MeshServices
/// or MeshMultiZoneServices; `None` when it cannot be computed (its mesh is
/// not here yet, or its addresses are unusable: logged).
fn compute(
    state: &ZoneState,
    key: &ResourceKey,
    p: &Proxy,
    memo: &mut EndpointMemo,
) -> Option<(ProxyConfig, bool)> {
    match (p.kind, &p.dataplane) {
        (ProxyKind::Sidecar, Some(dp)) => {
            match state.sidecar_config_with(&key.mesh, dp.view(), memo) {
                Ok(c) => Some((ProxyConfig::Sidecar(c.config), c.uses_resources)),
                Err(error) => {
                    tracing::debug!(proxy = %key, %error, "cannot compute the sidecar's config yet");
                    None
                }
            }
        }
        (ProxyKind::Ingress, _) => Some((ProxyConfig::Ingress(state.ingress_config()), false)),
        (ProxyKind::Egress, _) => Some((ProxyConfig::Egress(state.egress_config()), false)),
        _ => None,
    }
}
