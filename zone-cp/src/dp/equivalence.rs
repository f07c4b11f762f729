//! The equivalence test of incremental config computation: random sequences
//! of store changes (policies of every kind, data planes joining, leaving and
//! changing tags or health, ingresses, egresses, meshes, zones disabled and
//! enabled, MeshServices of this zone and others, MeshMultiZoneServices, and
//! outbounds and routes naming them) and proxy connections are fed to an
//! [`Engine`]; after every step
//! each connected proxy's config, and the engine's state with its indexes,
//! must equal a from-scratch computation over the same store contents.
//!
//! The "store" here is a map of the resources as the zone's store would hold
//! them; each step becomes one batch as `changes_since` reports it (the latest
//! state of each key changed, upsert or tombstone), so coalesced changes are
//! exercised too.

use std::collections::BTreeMap;

use meridian_model::{NamedDataplane, ResourceKind, Spec, parse_document};
use meridian_proxy_api::ProxyKind;
use meridian_store::{Change, ResourceKey, StoredResource};
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::engine::{Engine, Reason};
use super::registry::Connection;
use super::state::ZoneState;

const ZONE: &str = "east";
const SERVICES: [&str; 3] = ["web", "backend", "db"];
const MESHES: [&str; 2] = ["default", "other"];

/// A resource as the zone's store holds it.
pub(crate) fn stored(doc: Value, zone: Option<&str>) -> StoredResource {
    let r = parse_document(doc.clone()).unwrap_or_else(|e| panic!("invalid {doc}: {e}"));
    let key = match &r.meta.mesh {
        Some(m) => ResourceKey::in_mesh(r.meta.kind, m.clone(), r.meta.name.clone()),
        None => ResourceKey::global(r.meta.kind, r.meta.name.clone()),
    };
    StoredResource {
        key,
        labels: r.meta.labels.clone(),
        spec: meridian_model::SpecBody::new(r.spec),
        zone: zone.map(str::to_owned),
        version: 1,
        revision: 1,
        created_at: chrono::DateTime::UNIX_EPOCH,
        modified_at: chrono::DateTime::UNIX_EPOCH,
    }
}

/// A targetRef choice: 0 Mesh, 1 MeshSubset, 2 MeshService, 3 MeshServiceSubset.
fn target(kind: u8, service: usize, version: u8) -> Value {
    let service = SERVICES[service % SERVICES.len()];
    let tags = json!({"version": format!("v{}", version % 2 + 1)});
    match kind % 4 {
        0 => json!({"kind": "Mesh"}),
        1 => json!({"kind": "MeshSubset", "tags": tags}),
        2 => json!({"kind": "MeshService", "name": service}),
        _ => json!({"kind": "MeshServiceSubset", "name": service, "tags": tags}),
    }
}

/// A top-level targetRef choice: [`target`]'s four, then 4 Dataplane by name,
/// 5 Dataplane by labels, 6 Mesh for gateways only (selects no sidecar).
fn top_target(kind: u8, service: usize, version: u8) -> Value {
    match kind % 7 {
        4 => {
            json!({"kind": "Dataplane", "name": format!("dp-{}", service + 3 * usize::from(version % 2))})
        }
        5 => json!({"kind": "Dataplane", "labels": {"team": TEAMS[usize::from(version % 2)]}}),
        6 => json!({"kind": "Mesh", "proxyTypes": ["Gateway"]}),
        k => target(k, service, version),
    }
}

/// The `team` label values the generated dataplanes carry (by name parity).
const TEAMS: [&str; 2] = ["a", "b"];

/// One store or registry operation.
#[derive(Debug, Clone)]
enum Op {
    Mesh {
        mesh: usize,
        mtls: bool,
        egress: bool,
    },
    DeleteMesh(usize),
    Policy {
        mesh: usize,
        kind: u8,
        name: u8,
        top: (u8, usize, u8),
        entry: (u8, usize, u8),
        value: u8,
        zone_origin: bool,
    },
    DeletePolicy {
        mesh: usize,
        kind: u8,
        name: u8,
    },
    /// A data plane in the store; `connect` also connects it as a sidecar.
    Dataplane {
        mesh: usize,
        name: u8,
        service: usize,
        version: u8,
        ready: bool,
        outbounds: Vec<usize>,
        connect: bool,
    },
    DeleteDataplane {
        mesh: usize,
        name: u8,
    },
    Ingress {
        zone: u8,
        instances: Vec<(usize, u8, u32)>,
    },
    DeleteIngress(u8),
    Egress(bool),
    Zone {
        zone: u8,
        enabled: bool,
    },
    /// Connect (or disconnect) the zone ingress / egress proxy.
    ZoneProxy {
        egress: bool,
        connected: bool,
    },
    /// A MeshService of `ZONES[zone]` for `SERVICES[service]`, named
    /// `ms-{service}` in its zone.
    MeshService {
        mesh: usize,
        zone: u8,
        service: usize,
        healthy: u32,
        named_port: bool,
    },
    DeleteMeshService {
        mesh: usize,
        zone: u8,
        service: usize,
    },
    /// A MeshMultiZoneService `mz-{service}` over the MeshServices labelled
    /// `app: SERVICES[service]`.
    MultiZone {
        mesh: usize,
        service: usize,
        present: bool,
    },
}

/// The store name of zone `zone`'s MeshService for `service` (other zones'
/// arrive renamed `name.zone`, as global sends them).
fn mesh_service_name(zone: &str, service: usize) -> String {
    let name = format!("ms-{}", SERVICES[service % SERVICES.len()]);
    if zone == ZONE {
        name
    } else {
        format!("{name}.{zone}")
    }
}

fn policy_doc(
    mesh: &str,
    kind: u8,
    name: u8,
    top: (u8, usize, u8),
    entry: (u8, usize, u8),
    value: u8,
    zone_origin: bool,
) -> Value {
    let (ek, es, ev) = entry;
    let mesh_or_service = if ek == 3 {
        // Kuma 2.x: MeshServices by label, one port by name.
        json!({"kind": "MeshService", "labels": {"app": SERVICES[es % SERVICES.len()]}, "sectionName": "main"})
    } else {
        target(if ek % 2 == 0 { 0 } else { 2 }, es, ev)
    };
    let (kind_name, spec) = match kind % 7 {
        0 => (
            "MeshTimeout",
            if ek % 3 == 2 {
                json!({"from": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": format!("{}s", value + 1)}}]})
            } else {
                json!({"to": [{"targetRef": mesh_or_service, "default": {"idleTimeout": format!("{}s", value + 1)}}]})
            },
        ),
        1 => {
            let service = SERVICES[(es + value as usize) % SERVICES.len()];
            (
                "MeshTCPRoute",
                json!({"to": [{"targetRef": target(2, es, 0), "rules": [{"default": {"backendRefs": [
                    {"kind": "MeshService", "name": service, "weight": 1 + u32::from(value % 3)},
                    {"kind": "MeshServiceSubset", "name": service, "tags": {"version": format!("v{}", ev % 2 + 1)}, "weight": 1},
                    // A resource port, and a multi-zone one (resolved or not).
                    {"kind": "MeshService", "labels": {"app": service}, "port": 8080 + u32::from(ek % 2), "weight": 1},
                    {"kind": "MeshMultiZoneService", "name": format!("mz-{service}"), "port": 8080, "weight": 1}
                ]}}]}]}),
            )
        }
        2 => (
            "MeshTrafficPermission",
            json!({"from": [{"targetRef": target(ek, es, ev), "default": {"action": if value.is_multiple_of(2) { "Allow" } else { "Deny" }}}]}),
        ),
        3 => (
            "MeshLoadBalancingStrategy",
            json!({"to": [{"targetRef": mesh_or_service, "default": {"localityAwareness": {"disabled": value.is_multiple_of(2)}}}]}),
        ),
        4 => (
            "MeshCircuitBreaker",
            json!({"to": [{"targetRef": mesh_or_service, "default": {"connectionLimits": {"maxConnections": u32::from(value) + 1}}}]}),
        ),
        6 => (
            "MeshRetry",
            json!({"to": [{"targetRef": mesh_or_service, "default": {"tcp": {"maxConnectAttempt": u32::from(value) + 1}}}]}),
        ),
        _ => (
            "MeshHealthCheck",
            json!({"to": [{"targetRef": mesh_or_service, "default": {"interval": format!("{}s", value + 1), "timeout": "1s", "unhealthyThreshold": 2, "healthyThreshold": 1, "tcp": {}}}]}),
        ),
    };
    let mut spec = spec;
    spec["targetRef"] = top_target(top.0, top.1, top.2);
    let mut doc =
        json!({"type": kind_name, "mesh": mesh, "name": format!("p-{name}"), "spec": spec});
    if zone_origin {
        doc["labels"] = json!({"kuma.io/origin": "zone"});
    }
    doc
}

fn policy_kind(kind: u8) -> ResourceKind {
    [
        ResourceKind::MeshTimeout,
        ResourceKind::MeshTcpRoute,
        ResourceKind::MeshTrafficPermission,
        ResourceKind::MeshLoadBalancingStrategy,
        ResourceKind::MeshCircuitBreaker,
        ResourceKind::MeshHealthCheck,
        ResourceKind::MeshRetry,
    ][usize::from(kind % 7)]
}

fn dataplane_doc(
    mesh: &str,
    name: u8,
    service: usize,
    version: u8,
    ready: bool,
    outbounds: &[usize],
) -> Value {
    let outbound: Vec<Value> = outbounds
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let service = SERVICES[s % SERVICES.len()];
            match s / SERVICES.len() {
                0 => json!({"port": 15001 + i, "tags": {"kuma.io/service": service}}),
                // Kuma 2.x: a MeshService by label, a MeshMultiZoneService by name.
                1 => json!({"port": 15001 + i, "backendRef": {"kind": "MeshService", "labels": {"app": service}, "port": 8080}}),
                _ => json!({"port": 15001 + i, "backendRef": {"kind": "MeshMultiZoneService", "name": format!("mz-{service}"), "port": 8080}}),
            }
        })
        .collect();
    let mut inbound = vec![json!({"port": 20001,
        "tags": {"kuma.io/service": SERVICES[service % SERVICES.len()],
                 "version": format!("v{}", version % 2 + 1), "kuma.io/zone": ZONE},
        "health": {"ready": ready}})];
    if version >= 2 {
        // From version 2 on, a second inbound in one of Kuma's states: a NotReady
        // one is no endpoint, an Ignored one is neither an endpoint nor
        // configured. (The targeted tests' dataplanes, version 0, have one.)
        inbound.push(json!({"port": 20002, "name": "second",
            "state": STATES[usize::from(version / 2) % STATES.len()],
            "tags": {"kuma.io/service": SERVICES[(service + 1) % SERVICES.len()], "kuma.io/zone": ZONE}}));
    }
    json!({"type": "Dataplane", "mesh": mesh, "name": format!("dp-{name}"),
        "labels": {"team": TEAMS[usize::from(name % 2)]},
        "networking": {"address": format!("10.0.0.{}", name + 1), "inbound": inbound,
            "outbound": outbound}})
}

const ZONES: [&str; 3] = ["west", "north", ZONE];

/// Kuma's inbound states, for the generated dataplanes' second inbound.
const STATES: [&str; 3] = ["Ready", "NotReady", "Ignored"];

/// The test world: the store's contents and the connected proxies.
struct World {
    store: BTreeMap<ResourceKey, StoredResource>,
    engine: Engine,
    /// Receivers of the connected proxies' channels (kept so sends succeed).
    channels: BTreeMap<ResourceKey, watch::Receiver<Option<super::registry::VersionedConfig>>>,
    revision: i64,
}

impl World {
    fn new() -> Self {
        World {
            store: BTreeMap::new(),
            engine: Engine::new(ZoneState::new(ZONE)),
            channels: BTreeMap::new(),
            revision: 0,
        }
    }

    fn put(
        &mut self,
        doc: Value,
        zone: Option<&str>,
        changed: &mut BTreeMap<ResourceKey, Option<String>>,
    ) {
        let r = stored(doc, zone);
        changed.insert(r.key.clone(), r.zone.clone());
        self.store.insert(r.key.clone(), r);
    }

    fn remove(&mut self, key: &ResourceKey, changed: &mut BTreeMap<ResourceKey, Option<String>>) {
        if let Some(r) = self.store.remove(key) {
            changed.insert(key.clone(), r.zone);
        }
    }

    fn connect(&mut self, kind: ProxyKind, key: ResourceKey, doc: Option<Value>) {
        let dataplane = doc.map(|d| match parse_document(d) {
            Ok(r) => match r.spec {
                Spec::Dataplane(spec) => std::sync::Arc::new(NamedDataplane {
                    name: r.meta.name,
                    labels: r.meta.labels,
                    spec,
                }),
                other => panic!("not a dataplane: {other:?}"),
            },
            Err(e) => panic!("not a dataplane: {e}"),
        });
        let (config, rx) = watch::channel(None);
        self.channels.insert(key.clone(), rx);
        self.engine.connect(Connection {
            kind,
            key,
            dataplane,
            config,
        });
    }

    fn disconnect(&mut self, key: &ResourceKey) {
        self.channels.remove(key);
        self.engine.disconnect(key);
    }

    fn op(&mut self, op: &Op, changed: &mut BTreeMap<ResourceKey, Option<String>>) {
        match op {
            Op::Mesh { mesh, mtls, egress } => {
                let mut doc = json!({"type": "Mesh", "name": MESHES[*mesh]});
                if *mtls {
                    doc["mtls"] = json!({"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]});
                }
                if *egress {
                    doc["routing"] = json!({"zoneEgress": true});
                }
                self.put(doc, None, changed);
            }
            Op::DeleteMesh(mesh) => {
                // As the store does: the mesh and everything in it.
                let mesh = MESHES[*mesh];
                let owned: Vec<ResourceKey> = self
                    .store
                    .keys()
                    .filter(|k| k.mesh == mesh || (k.kind == ResourceKind::Mesh && k.name == mesh))
                    .cloned()
                    .collect();
                // Connected sidecars stay connected, without a mesh.
                for key in owned {
                    self.remove(&key, changed);
                }
            }
            Op::Policy {
                mesh,
                kind,
                name,
                top,
                entry,
                value,
                zone_origin,
            } => {
                if self
                    .store
                    .contains_key(&ResourceKey::global(ResourceKind::Mesh, MESHES[*mesh]))
                {
                    let doc = policy_doc(
                        MESHES[*mesh],
                        *kind,
                        *name,
                        *top,
                        *entry,
                        *value,
                        *zone_origin,
                    );
                    self.put(doc, None, changed);
                }
            }
            Op::DeletePolicy { mesh, kind, name } => {
                let key =
                    ResourceKey::in_mesh(policy_kind(*kind), MESHES[*mesh], format!("p-{name}"));
                self.remove(&key, changed);
            }
            Op::Dataplane {
                mesh,
                name,
                service,
                version,
                ready,
                outbounds,
                connect,
            } => {
                let mesh = MESHES[*mesh];
                if !self
                    .store
                    .contains_key(&ResourceKey::global(ResourceKind::Mesh, mesh))
                {
                    return;
                }
                let doc = dataplane_doc(mesh, *name, *service, *version, *ready, outbounds);
                let key = ResourceKey::in_mesh(ResourceKind::Dataplane, mesh, format!("dp-{name}"));
                // A reconnect with another registration: a new stream.
                if self.channels.contains_key(&key) {
                    self.disconnect(&key);
                }
                if *connect {
                    self.connect(ProxyKind::Sidecar, key, Some(doc.clone()));
                }
                self.put(doc, Some(ZONE), changed);
            }
            Op::DeleteDataplane { mesh, name } => {
                let key = ResourceKey::in_mesh(
                    ResourceKind::Dataplane,
                    MESHES[*mesh],
                    format!("dp-{name}"),
                );
                if self.channels.contains_key(&key) {
                    self.disconnect(&key);
                }
                self.remove(&key, changed);
            }
            Op::Ingress { zone, instances } => {
                let zone = ZONES[usize::from(*zone) % ZONES.len()];
                let available: Vec<Value> = instances
                    .iter()
                    .map(|(s, v, n)| json!({"mesh": "default", "instances": n,
                        "tags": {"kuma.io/service": SERVICES[s % SERVICES.len()], "version": format!("v{}", v % 2 + 1)}}))
                    .collect();
                let name = if zone == ZONE {
                    "ingress".to_owned()
                } else {
                    format!("ingress.{zone}")
                };
                let doc = json!({"type": "ZoneIngress", "name": name, "zone": zone,
                    "networking": {"address": "10.9.0.1", "port": 10001,
                        "advertisedAddress": format!("10.9.0.{}", instances.len() + 1), "advertisedPort": 10001},
                    "availableServices": available});
                self.put(doc, Some(zone), changed);
            }
            Op::DeleteIngress(zone) => {
                let zone = ZONES[usize::from(*zone) % ZONES.len()];
                let name = if zone == ZONE {
                    "ingress".to_owned()
                } else {
                    format!("ingress.{zone}")
                };
                self.remove(
                    &ResourceKey::global(ResourceKind::ZoneIngress, name),
                    changed,
                );
            }
            Op::Egress(present) => {
                let key = ResourceKey::global(ResourceKind::ZoneEgress, "egress");
                if *present {
                    let doc = json!({"type": "ZoneEgress", "name": "egress", "zone": ZONE,
                        "networking": {"address": "10.0.0.200", "port": 10002}});
                    self.put(doc, Some(ZONE), changed);
                } else {
                    self.remove(&key, changed);
                }
            }
            Op::Zone { zone, enabled } => {
                let zone = ZONES[usize::from(*zone) % 2];
                self.put(
                    json!({"type": "Zone", "name": zone, "enabled": enabled}),
                    None,
                    changed,
                );
            }
            Op::ZoneProxy { egress, connected } => {
                let (kind, name) = if *egress {
                    (ProxyKind::Egress, "egress-proxy")
                } else {
                    (ProxyKind::Ingress, "ingress-proxy")
                };
                let key = ResourceKey::global(
                    if *egress {
                        ResourceKind::ZoneEgress
                    } else {
                        ResourceKind::ZoneIngress
                    },
                    name,
                );
                if self.channels.contains_key(&key) {
                    self.disconnect(&key);
                }
                if *connected {
                    self.connect(kind, key, None);
                }
            }
            Op::MeshService {
                mesh,
                zone,
                service,
                healthy,
                named_port,
            } => {
                let zone = ZONES[usize::from(*zone) % ZONES.len()];
                let svc = SERVICES[service % SERVICES.len()];
                let target_port = if *named_port {
                    json!("second")
                } else {
                    json!(20001)
                };
                // Two healthy: selected by the Dataplanes' labels instead of tags.
                let selector = if *healthy == 2 {
                    json!({"dataplaneLabels": {"matchLabels": {"team": TEAMS[service % 2]}}})
                } else {
                    json!({"dataplaneTags": {"kuma.io/service": svc}})
                };
                let doc = json!({"type": "MeshService", "mesh": MESHES[*mesh],
                    "name": mesh_service_name(zone, *service),
                    "labels": {"app": svc, "kuma.io/zone": zone, "kuma.io/display-name": format!("ms-{svc}")},
                    "spec": {"selector": selector,
                        "ports": [{"port": 8080, "name": "main", "targetPort": target_port}]},
                    "status": {"dataplaneProxies": {"healthy": healthy, "total": 2}}});
                if self
                    .store
                    .contains_key(&ResourceKey::global(ResourceKind::Mesh, MESHES[*mesh]))
                {
                    self.put(doc, Some(zone), changed);
                }
            }
            Op::DeleteMeshService {
                mesh,
                zone,
                service,
            } => {
                let zone = ZONES[usize::from(*zone) % ZONES.len()];
                let key = ResourceKey::in_mesh(
                    ResourceKind::MeshService,
                    MESHES[*mesh],
                    mesh_service_name(zone, *service),
                );
                self.remove(&key, changed);
            }
            Op::MultiZone {
                mesh,
                service,
                present,
            } => {
                let svc = SERVICES[service % SERVICES.len()];
                let key = ResourceKey::in_mesh(
                    ResourceKind::MeshMultiZoneService,
                    MESHES[*mesh],
                    format!("mz-{svc}"),
                );
                let mesh_exists = self
                    .store
                    .contains_key(&ResourceKey::global(ResourceKind::Mesh, MESHES[*mesh]));
                if *present && mesh_exists {
                    let doc = json!({"type": "MeshMultiZoneService", "mesh": MESHES[*mesh],
                        "name": format!("mz-{svc}"),
                        "spec": {"selector": {"meshService": {"matchLabels": {"app": svc}}},
                            "ports": [{"port": 8080}]}});
                    self.put(doc, None, changed);
                } else {
                    self.remove(&key, changed);
                }
            }
        }
    }

    /// Applies `ops` as one batch of the change stream.
    fn step(&mut self, ops: &[Op]) {
        let mut changed = BTreeMap::new();
        for op in ops {
            self.op(op, &mut changed);
        }
        if changed.is_empty() {
            return;
        }
        let mut batch = Vec::new();
        for (key, zone) in changed {
            self.revision += 1;
            batch.push(match self.store.get_mut(&key) {
                Some(r) => {
                    r.revision = self.revision;
                    Change::Upsert(r.clone())
                }
                None => Change::Delete {
                    zone,
                    key,
                    revision: self.revision,
                },
            });
        }
        self.engine.apply(batch, self.revision);
    }

    /// Every connected proxy's config, and the state, equal a from-scratch
    /// computation of the store's contents.
    fn check(&self) -> Result<(), TestCaseError> {
        let fresh = ZoneState::from_resources(ZONE, self.revision, self.store.values().cloned());
        prop_assert_eq!(self.engine.state(), &fresh, "state and indexes");
        for (key, want) in self.engine.from_scratch(&fresh) {
            let got = self.engine.config(&key).cloned();
            prop_assert_eq!(&got, &want, "config of {}", key);
            let published = self.channels[&key]
                .borrow()
                .as_ref()
                .map(|v| (*v.config).clone());
            if let Some(want) = want {
                prop_assert_eq!(published, Some(want), "published config of {}", key);
            }
        }
        Ok(())
    }
}

fn op() -> impl Strategy<Value = Op> {
    let target = (0u8..4, 0usize..3, 0u8..2);
    // Top-level refs also take Kuma 2.x's Dataplane and proxyTypes forms.
    prop_oneof![
        (0usize..2, any::<bool>(), any::<bool>()).prop_map(|(mesh, mtls, egress)| Op::Mesh {
            mesh,
            mtls,
            egress
        }),
        (0usize..2).prop_map(Op::DeleteMesh),
        (
            0usize..2,
            0u8..7,
            0u8..4,
            (0u8..7, 0usize..3, 0u8..2),
            target,
            0u8..4,
            any::<bool>()
        )
            .prop_map(
                |(mesh, kind, name, top, entry, value, zone_origin)| Op::Policy {
                    mesh,
                    kind,
                    name,
                    top,
                    entry,
                    value,
                    zone_origin
                }
            ),
        (0usize..2, 0u8..7, 0u8..4).prop_map(|(mesh, kind, name)| Op::DeletePolicy {
            mesh,
            kind,
            name
        }),
        (
            0usize..2,
            0u8..6,
            0usize..3,
            // v1/v2 tags by parity; 2 and up add a second inbound (`dataplane_doc`).
            0u8..8,
            any::<bool>(),
            // 0–2 by tag, 3–5 a MeshService backendRef, 6–8 a multi-zone one.
            prop::collection::vec(0usize..9, 0..3),
            any::<bool>()
        )
            .prop_map(
                |(mesh, name, service, version, ready, outbounds, connect)| Op::Dataplane {
                    mesh,
                    name,
                    service,
                    version,
                    ready,
                    outbounds,
                    connect
                }
            ),
        (0usize..2, 0u8..6).prop_map(|(mesh, name)| Op::DeleteDataplane { mesh, name }),
        (
            0u8..3,
            prop::collection::vec((0usize..3, 0u8..2, 0u32..3), 0..4)
        )
            .prop_map(|(zone, instances)| Op::Ingress { zone, instances }),
        (0u8..3).prop_map(Op::DeleteIngress),
        any::<bool>().prop_map(Op::Egress),
        (0u8..2, any::<bool>()).prop_map(|(zone, enabled)| Op::Zone { zone, enabled }),
        (any::<bool>(), any::<bool>())
            .prop_map(|(egress, connected)| Op::ZoneProxy { egress, connected }),
        (0usize..2, 0u8..3, 0usize..3, 0u32..3, any::<bool>()).prop_map(
            |(mesh, zone, service, healthy, named_port)| Op::MeshService {
                mesh,
                zone,
                service,
                healthy,
                named_port
            }
        ),
        (0usize..2, 0u8..3, 0usize..3).prop_map(|(mesh, zone, service)| Op::DeleteMeshService {
            mesh,
            zone,
            service
        }),
        (0usize..2, 0usize..3, any::<bool>()).prop_map(|(mesh, service, present)| {
            Op::MultiZone {
                mesh,
                service,
                present,
            }
        }),
    ]
}

proptest! {
    // Bounded for CI: each case is up to 40 batches of up to 3 changes.
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_from_scratch(steps in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..40)) {
        let mut world = World::new();
        // Start from a mesh with mTLS and both zone proxies connected, so
        // short sequences already reach every kind of config.
        world.step(&[mesh_op(true)]);
        world.step(&[Op::ZoneProxy { egress: false, connected: true }]);
        world.step(&[Op::ZoneProxy { egress: true, connected: true }]);
        for ops in &steps {
            world.step(ops);
            world.check()?;
        }
    }
}

fn mesh_op(mtls: bool) -> Op {
    Op::Mesh {
        mesh: 0,
        mtls,
        egress: false,
    }
}

/// A global-origin policy op (see [`policy_doc`] for the arguments).
fn policy_op(
    mesh: usize,
    kind: u8,
    name: u8,
    top: (u8, usize, u8),
    entry: (u8, usize, u8),
    value: u8,
) -> Op {
    Op::Policy {
        mesh,
        kind,
        name,
        top,
        entry,
        value,
        zone_origin: false,
    }
}

fn dataplane_op(name: u8, service: usize, outbounds: Vec<usize>) -> Op {
    Op::Dataplane {
        mesh: 0,
        name,
        service,
        version: 0,
        ready: true,
        outbounds,
        connect: true,
    }
}

/// Counts of computations made while `f` runs.
fn counted(world: &mut World, f: impl FnOnce(&mut World)) -> BTreeMap<Reason, u64> {
    let counts = |w: &World| Reason::ALL.map(|r| w.engine.stats().computations(r));
    let before = counts(world);
    f(world);
    let after = counts(world);
    Reason::ALL
        .into_iter()
        .zip(after.into_iter().zip(before))
        .filter(|(_, (a, b))| a > b)
        .map(|(r, (a, b))| (r, a - b))
        .collect()
}

#[test]
fn an_unrelated_change_recomputes_nothing() {
    let mut world = World::new();
    world.step(&[mesh_op(true)]);
    // web-0 calls backend; db-1 calls nothing.
    world.step(&[dataplane_op(0, 0, vec![1]), dataplane_op(1, 2, vec![])]);
    // A policy only for the clients of db (nobody), in another mesh, then a
    // secret: no sidecar is reachable by any of them.
    let delta = counted(&mut world, |w| {
        w.step(&[Op::Mesh {
            mesh: 1,
            mtls: false,
            egress: false,
        }]);
        w.step(&[policy_op(1, 0, 0, (0, 0, 0), (0, 0, 0), 1)]);
        // MeshTimeout targeting MeshService web, `to` MeshService db: web-0
        // has no outbound to db.
        w.step(&[policy_op(0, 0, 1, (2, 0, 0), (1, 2, 0), 1)]);
        let secret = json!({"type": "Secret", "mesh": "default", "name": "s", "data": "aGVsbG8="});
        let mut changed = BTreeMap::new();
        w.put(secret, None, &mut changed);
        w.revision += 1;
        let batch = changed
            .keys()
            .map(|k| Change::Upsert(w.store[k].clone()))
            .collect();
        w.engine.apply(batch, w.revision);
    });
    assert_eq!(delta, BTreeMap::new(), "nothing recomputed");
    world.check().expect("still equivalent");
}

#[test]
fn a_policy_recomputes_only_the_proxies_it_selects() {
    let mut world = World::new();
    world.step(&[mesh_op(true)]);
    world.step(&[
        dataplane_op(0, 0, vec![1]), // web → backend
        dataplane_op(1, 0, vec![1]), // web → backend
        dataplane_op(2, 1, vec![2]), // backend → db
        dataplane_op(3, 2, vec![]),  // db
    ]);
    // MeshTimeout on the clients of backend (top MeshService web, to backend).
    let delta = counted(&mut world, |w| {
        w.step(&[policy_op(0, 0, 0, (2, 0, 0), (1, 1, 0), 3)])
    });
    assert_eq!(delta, BTreeMap::from([(Reason::Policy, 2)]));
    world.check().expect("equivalent");
}

#[test]
fn an_instance_joining_updates_only_its_clients_endpoints() {
    let mut world = World::new();
    world.step(&[mesh_op(true)]);
    world.step(&[
        dataplane_op(0, 0, vec![1]), // web → backend
        dataplane_op(1, 2, vec![2]), // db → db
        dataplane_op(2, 1, vec![]),  // backend
    ]);
    let web = ResourceKey::in_mesh(ResourceKind::Dataplane, "default", "dp-0");
    let version = |w: &World| w.channels[&web].borrow().as_ref().map(|v| v.version);
    let before = version(&world);
    // A second backend instance, registered but not connected here.
    let delta = counted(&mut world, |w| {
        w.step(&[Op::Dataplane {
            mesh: 0,
            name: 5,
            service: 1,
            version: 1,
            ready: true,
            outbounds: vec![],
            connect: false,
        }])
    });
    assert_eq!(
        delta,
        BTreeMap::from([(Reason::Endpoints, 1)]),
        "only web-0's endpoints"
    );
    assert_eq!(
        version(&world),
        before.map(|v| v + 1),
        "web-0 got one new config"
    );
    world.check().expect("equivalent");
}

#[test]
fn a_route_change_reaches_the_zone_proxies() {
    let mut world = World::new();
    world.step(&[mesh_op(true)]);
    world.step(&[Op::ZoneProxy {
        egress: false,
        connected: true,
    }]);
    world.step(&[Op::Dataplane {
        mesh: 0,
        name: 0,
        service: 1,
        version: 0,
        ready: true,
        outbounds: vec![],
        connect: false,
    }]);
    // A route to backend's v1 subset: the ingress must learn its SNI name.
    let delta = counted(&mut world, |w| {
        w.step(&[policy_op(0, 1, 0, (0, 0, 0), (0, 1, 0), 0)])
    });
    assert_eq!(delta, BTreeMap::from([(Reason::ZoneProxy, 1)]));
    world.check().expect("equivalent");
    let ingress = ResourceKey::global(ResourceKind::ZoneIngress, "ingress-proxy");
    let Some(meridian_proxy_api::ProxyConfig::Ingress(cfg)) = world.engine.config(&ingress) else {
        panic!("no ingress config");
    };
    assert_eq!(
        cfg.routes.len(),
        2,
        "the service and its v1 subset: {cfg:?}"
    );
}

#[test]
fn a_mesh_wide_change_over_many_sidecars_computes_each_once_and_equivalently() {
    let mut world = World::new();
    world.step(&[mesh_op(true)]);
    // More sidecars than `PARALLEL_MIN`, so whole-mesh batches run on several threads.
    let sidecars: Vec<Op> = (0..100u8)
        .map(|i| dataplane_op(i, usize::from(i) % 3, vec![(usize::from(i) + 1) % 3]))
        .collect();
    world.step(&sidecars);
    world.check().expect("equivalent after connecting");
    // A MeshTimeout `targetRef: Mesh`, `to: Mesh`: every sidecar, in one batch.
    let delta = counted(&mut world, |w| {
        w.step(&[policy_op(0, 0, 0, (0, 0, 0), (0, 0, 0), 2)])
    });
    assert_eq!(delta, BTreeMap::from([(Reason::Policy, 100)]));
    world.check().expect("equivalent after the policy");
    // The mesh itself (mTLS off): every sidecar again.
    let delta = counted(&mut world, |w| w.step(&[mesh_op(false)]));
    assert_eq!(delta, BTreeMap::from([(Reason::Mesh, 100)]));
    world.check().expect("equivalent after the mesh change");
}

#[test]
fn mesh_services_appearing_later_reach_the_routes_and_outbounds_naming_them() {
    let mut world = World::new();
    world.step(&[mesh_op(true)]);
    // web-0 calls backend by tag, routed (among others) to the MeshService
    // labelled `app: backend`, port 8080; web-2 names it by backendRef.
    world.step(&[
        dataplane_op(0, 0, vec![1]),
        dataplane_op(2, 0, vec![4]),
        policy_op(0, 1, 0, (0, 0, 0), (0, 1, 0), 0),
    ]);
    world.check().expect("equivalent");
    let resource_backends = |w: &World, dp: &str| -> Vec<usize> {
        let key = ResourceKey::in_mesh(ResourceKind::Dataplane, "default", dp);
        match w.engine.config(&key) {
            Some(meridian_proxy_api::ProxyConfig::Sidecar(s)) => s
                .outbounds
                .iter()
                .flat_map(|o| &o.backends)
                .filter(|b| b.resource.is_some())
                .map(|b| b.endpoints.len())
                .collect(),
            other => panic!("no sidecar config for {dp}: {other:?}"),
        }
    };
    assert!(
        resource_backends(&world, "dp-0").is_empty(),
        "nothing to resolve yet"
    );
    assert!(
        resource_backends(&world, "dp-2").is_empty(),
        "no outbound yet"
    );
    // The MeshService appears, then an instance of it.
    world.step(&[Op::MeshService {
        mesh: 0,
        zone: 2,
        service: 1,
        healthy: 1,
        named_port: false,
    }]);
    world.check().expect("equivalent");
    assert_eq!(resource_backends(&world, "dp-0"), vec![0]);
    assert_eq!(resource_backends(&world, "dp-2"), vec![0]);
    world.step(&[dataplane_op(1, 1, vec![])]);
    world.check().expect("equivalent");
    assert_eq!(resource_backends(&world, "dp-0"), vec![1]);
    assert_eq!(resource_backends(&world, "dp-2"), vec![1]);
}
