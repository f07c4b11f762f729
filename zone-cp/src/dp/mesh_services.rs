//! The MeshService generator: keeps one MeshService per `kuma.io/service` value of
//! the zone's Dataplanes, in every mesh whose `meshServices.mode` is not
//! `Disabled` (absent is `Disabled`, as in Kuma), as Kuma's universal generator
//! (`pkg/core/resources/apis/meshservice/generate`) does.
//!
//! What it writes for service `S` in mesh `M`:
//! - name `S` (only when `S` is a DNS-1035 label, as Kuma requires; other values
//!   are skipped), owned by this zone;
//! - labels `kuma.io/managed-by: meshservice-generator`, `kuma.io/mesh: M`,
//!   `kuma.io/display-name: S`, `kuma.io/env: universal`, `kuma.io/zone`,
//!   `kuma.io/origin: zone` (other labels someone added are kept);
//! - `spec.selector.dataplaneTags: {kuma.io/service: S}`;
//! - `spec.ports`: the union over the Dataplanes of their `S` inbounds' ports, by
//!   port number (the first Dataplane by name, first inbound, wins a port's name
//!   and protocol): `name` = the inbound's `name` or else the port number,
//!   `targetPort` = the inbound port, `appProtocol` = the inbound's `protocol` or
//!   `kuma.io/protocol` tag when it is a protocol Kuma knows, else `tcp`. (Kuma
//!   instead requires every Dataplane to have the same ports and logs a conflict.)
//! - `spec.identities: [{type: ServiceTag, value: S}]`;
//! - `spec.state`: `Available` when at least one of the Dataplanes has every `S`
//!   inbound ready, else `Unavailable`; `status.dataplaneProxies` `total` and
//!   `healthy` counted the same way (`connected` is not tracked).
//!
//! A generated MeshService whose last Dataplane is gone is kept for a grace
//! period, as Kuma does (`--mesh-service-deletion-grace`, Kuma's default 1h):
//! it gets the label `kuma.io/deletion-grace-period-started-at` (RFC 3339, the
//! start), state `Unavailable` and no healthy proxies, so a proxy that
//! reconnects, or a zone CP that restarts, does not make it go and come back
//! everywhere; it is deleted once the period is over, and the label goes when a
//! Dataplane calls for it again. A grace of zero, or the mesh's mode turning
//! `Disabled`, deletes at once. MeshServices without the generator's label, and
//! other zones' MeshServices, are never touched, and a name such a MeshService
//! holds is not generated.
//!
//! It runs in the reconciler ([`super::reconcile`]), off the same change stream
//! as proxy configs: a batch that touches a mesh's Dataplanes, the Mesh, or the
//! zone's MeshServices there ([`Touched::mesh_services`]) recomputes that mesh,
//! and whatever differs is written in one [`Store::apply`] batch, each op
//! conditional on the version it was computed from. An op that loses a race
//! fails the batch; the change that won wakes the reconciler, which computes
//! again.
//!
//! [`Touched::mesh_services`]: super::state::Touched::mesh_services

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use meridian_model::{
    DISPLAY_NAME_LABEL, DataplaneProxies, DataplaneSpec, ENV_LABEL, MANAGED_BY_LABEL, MESH_LABEL,
    MESH_SERVICE_GENERATOR, MeshServiceFields, MeshServiceIdentity, MeshServiceIdentityType,
    MeshServicePort, MeshServiceSelector, MeshServiceSpec, MeshServiceState, MeshServiceStatus,
    MeshServicesMode, MeshSpec, ORIGIN_LABEL, PROTOCOL_TAG, ResourceKind, SERVICE_TAG, Spec,
    SpecBody, TargetPort, ZONE_LABEL,
};
use meridian_store::{NewResource, Precondition, ResourceKey, WriteOp};

use super::state::ZoneState;

/// Kuma's label on a generated MeshService whose Dataplanes are gone: when its
/// deletion grace period started (RFC 3339).
pub const GRACE_LABEL: &str = "kuma.io/deletion-grace-period-started-at";

/// Kuma's default deletion grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// What the generator must write, and when it must look again.
#[derive(Debug, Default)]
pub struct Plan {
    /// The writes, for one atomic batch.
    pub ops: Vec<WriteOp>,
    /// The earliest end of a running grace period: plan again then.
    pub recheck_at: Option<DateTime<Utc>>,
}

/// Protocols Kuma's `ParseProtocol` knows; anything else is `tcp`.
const KNOWN_PROTOCOLS: [&str; 7] = ["tcp", "tls", "http", "http2", "grpc", "kafka", "mysql"];

/// Whether the mesh generates MeshServices (absent mode = `Disabled`).
pub fn generates(mesh: &MeshSpec) -> bool {
    mesh.mesh_services
        .as_ref()
        .and_then(|m| m.mode)
        .is_some_and(|mode| mode != MeshServicesMode::Disabled)
}

/// Kuma's `NameIsDNS1035Label`: lower-case letters, digits and `-`, starting with
/// a letter, ending with a letter or digit, at most 63 characters.
pub fn is_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// The MeshService body the generator wants for each service of `mesh`, from the
/// zone's Dataplanes there (empty when the mesh does not generate).
pub fn desired(state: &ZoneState, mesh: &str) -> BTreeMap<String, MeshServiceFields> {
    if !state.meshes.get(mesh).is_some_and(generates) {
        return BTreeMap::new();
    }
    #[derive(Default)]
    struct Acc {
        ports: BTreeMap<u32, MeshServicePort>,
        total: u32,
        healthy: u32,
    }
    let mut by_service: BTreeMap<&str, Acc> = BTreeMap::new();
    for (_, dp) in state.dataplanes_in(mesh) {
        for (service, ready) in services_of(dp) {
            if !is_dns1035_label(service) {
                continue;
            }
            let acc = by_service.entry(service).or_default();
            acc.total += 1;
            acc.healthy += u32::from(ready);
            for inbound in dp
                .networking
                .inbound
                .iter()
                .filter(|i| i.service() == service)
            {
                acc.ports.entry(inbound.port).or_insert_with(|| {
                    let protocol = inbound
                        .protocol
                        .as_deref()
                        .or_else(|| inbound.tags.get(PROTOCOL_TAG).map(String::as_str))
                        .map(str::to_ascii_lowercase)
                        .filter(|p| KNOWN_PROTOCOLS.contains(&p.as_str()))
                        .unwrap_or_else(|| "tcp".to_owned());
                    MeshServicePort {
                        name: Some(
                            inbound
                                .name
                                .clone()
                                .filter(|n| !n.is_empty())
                                .unwrap_or_else(|| inbound.port.to_string()),
                        ),
                        port: inbound.port,
                        target_port: Some(TargetPort::Number(inbound.port)),
                        app_protocol: Some(protocol),
                    }
                });
            }
        }
    }
    by_service
        .into_iter()
        .map(|(service, acc)| {
            let fields = MeshServiceFields {
                spec: MeshServiceSpec {
                    state: Some(if acc.healthy > 0 {
                        MeshServiceState::Available
                    } else {
                        MeshServiceState::Unavailable
                    }),
                    selector: Some(MeshServiceSelector {
                        dataplane_tags: Some(BTreeMap::from([(
                            SERVICE_TAG.to_owned(),
                            service.to_owned(),
                        )])),
                        ..MeshServiceSelector::default()
                    }),
                    ports: acc.ports.into_values().collect(),
                    identities: Some(vec![MeshServiceIdentity {
                        kind: MeshServiceIdentityType::ServiceTag,
                        value: service.to_owned(),
                    }]),
                },
                status: Some(MeshServiceStatus {
                    dataplane_proxies: Some(DataplaneProxies {
                        connected: 0,
                        healthy: acc.healthy,
                        total: acc.total,
                    }),
                    ..MeshServiceStatus::default()
                }),
            };
            (service.to_owned(), fields)
        })
        .collect()
}

/// Each service a Dataplane serves, with whether all its inbounds of it are ready.
fn services_of(dp: &DataplaneSpec) -> BTreeMap<&str, bool> {
    let mut out: BTreeMap<&str, bool> = BTreeMap::new();
    for inbound in &dp.networking.inbound {
        let ready = out.entry(inbound.service()).or_insert(true);
        *ready &= inbound.is_ready();
    }
    out
}

/// The labels of a generated MeshService: the generator's, over the `existing`
/// ones it does not manage.
fn labels(
    zone: &str,
    mesh: &str,
    name: &str,
    existing: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut labels = existing.cloned().unwrap_or_default();
    // Called for again: no longer scheduled for deletion.
    labels.remove(GRACE_LABEL);
    for (k, v) in [
        (MANAGED_BY_LABEL, MESH_SERVICE_GENERATOR),
        (MESH_LABEL, mesh),
        (DISPLAY_NAME_LABEL, name),
        (ENV_LABEL, "universal"),
        (ZONE_LABEL, zone),
        (ORIGIN_LABEL, "zone"),
    ] {
        labels.insert(k.to_owned(), v.to_owned());
    }
    labels
}

/// The writes that bring the generated MeshServices of `meshes` to what the
/// zone's Dataplanes call for at `now`, with deletions held back for `grace`
/// (see the module docs); no ops when they are already there.
pub fn plan(
    state: &ZoneState,
    meshes: &BTreeSet<String>,
    now: DateTime<Utc>,
    grace: Duration,
) -> Plan {
    let mut plan = Plan::default();
    for mesh in meshes {
        let generating = state.meshes.get(mesh).is_some_and(generates);
        let mut want = desired(state, mesh);
        for (name, have) in state.mesh_services_in(mesh) {
            let key = ResourceKey::in_mesh(ResourceKind::MeshService, mesh.clone(), name);
            let wanted = want.remove(name);
            if !have.is_generated() {
                // Someone else's MeshService holds the name: leave both alone.
                continue;
            }
            let delete = WriteOp::Delete(key.clone(), Precondition::Version(have.version));
            match wanted {
                None if !generating || grace.is_zero() => plan.ops.push(delete),
                None => match grace_started(have) {
                    Some(started) => {
                        let end = started + grace;
                        if now >= end {
                            plan.ops.push(delete);
                        } else {
                            plan.recheck_at = Some(plan.recheck_at.map_or(end, |r| r.min(end)));
                        }
                    }
                    None => {
                        let mut labels = have.labels.clone();
                        labels.insert(
                            GRACE_LABEL.to_owned(),
                            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        );
                        plan.ops.push(WriteOp::Put(
                            new_resource(state, key, labels, unavailable(&have.fields)),
                            Precondition::Version(have.version),
                        ));
                        let end = now + grace;
                        plan.recheck_at = Some(plan.recheck_at.map_or(end, |r| r.min(end)));
                    }
                },
                Some(fields) => {
                    let labels = labels(&state.zone, mesh, name, Some(&have.labels));
                    if fields != have.fields || labels != have.labels {
                        plan.ops.push(WriteOp::Put(
                            new_resource(state, key, labels, fields),
                            Precondition::Version(have.version),
                        ));
                    }
                }
            }
        }
        for (name, fields) in want {
            let key = ResourceKey::in_mesh(ResourceKind::MeshService, mesh.clone(), name.clone());
            let labels = labels(&state.zone, mesh, &name, None);
            plan.ops.push(WriteOp::Put(
                new_resource(state, key, labels, fields),
                Precondition::Absent,
            ));
        }
    }
    plan
}

/// When a MeshService's grace period started; `None` without the label, or
/// with one that is not a time (then it starts again, as in Kuma).
fn grace_started(entry: &super::state::MeshServiceEntry) -> Option<DateTime<Utc>> {
    let text = entry.labels.get(GRACE_LABEL)?;
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(error) => {
            tracing::info!(label = GRACE_LABEL, value = %text, %error, "not a time; the grace period starts again");
            None
        }
    }
}

/// A MeshService body with no proxy behind it: `Unavailable`, none healthy.
fn unavailable(fields: &MeshServiceFields) -> MeshServiceFields {
    let mut fields = fields.clone();
    fields.spec.state = Some(MeshServiceState::Unavailable);
    fields.status = Some(MeshServiceStatus {
        dataplane_proxies: Some(DataplaneProxies::default()),
        ..fields.status.unwrap_or_default()
    });
    fields
}

fn new_resource(
    state: &ZoneState,
    key: ResourceKey,
    labels: BTreeMap<String, String>,
    fields: MeshServiceFields,
) -> NewResource {
    NewResource {
        key,
        labels,
        spec: SpecBody::new(Spec::MeshService(fields)),
        zone: Some(state.zone.clone()),
    }
}

/// Every mesh the generator may have something to do in: those the zone knows
/// and those holding this zone's MeshServices (a deleted mesh's are gone with it,
/// but the state may not have seen both yet).
pub fn all_meshes(state: &ZoneState) -> BTreeSet<String> {
    state
        .meshes
        .keys()
        .cloned()
        .chain(
            state
                .mesh_services
                .iter()
                .filter(|(_, s)| s.zone == state.zone)
                .map(|((m, _), _)| m.clone()),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use meridian_model::{ResourceKind, SpecBody};
    use meridian_store::{Change, ResourceKey, StoredResource};
    use serde_json::json;

    use super::*;

    fn stored(
        kind: ResourceKind,
        mesh: &str,
        name: &str,
        zone: Option<&str>,
        spec: serde_json::Value,
        labels: &[(&str, &str)],
    ) -> StoredResource {
        StoredResource {
            key: if kind.is_mesh_scoped() {
                ResourceKey::in_mesh(kind, mesh, name)
            } else {
                ResourceKey::global(kind, name)
            },
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            spec: SpecBody::parse(kind, spec).expect("valid spec"),
            zone: zone.map(str::to_owned),
            version: 1,
            revision: 1,
            created_at: chrono::Utc::now(),
            modified_at: chrono::Utc::now(),
        }
    }

    fn mesh(mode: Option<&str>) -> StoredResource {
        let spec = match mode {
            Some(m) => json!({"meshServices": {"mode": m}}),
            None => json!({}),
        };
        stored(ResourceKind::Mesh, "", "default", None, spec, &[])
    }

    fn dp(name: &str, inbounds: serde_json::Value) -> StoredResource {
        stored(
            ResourceKind::Dataplane,
            "default",
            name,
            Some("zone-1"),
            json!({"networking": {"address": "10.0.0.1", "inbound": inbounds}}),
            &[],
        )
    }

    fn state(resources: Vec<StoredResource>) -> ZoneState {
        ZoneState::from_resources("zone-1", 1, resources)
    }

    /// What the generator plans now, with deletions at once.
    fn ops(s: &ZoneState) -> Vec<WriteOp> {
        plan(s, &all_meshes(s), Utc::now(), Duration::ZERO).ops
    }

    /// `op` as the store reports it back: version `version`, revision `revision`.
    fn stored_op(op: WriteOp, version: i64, revision: i64) -> Change {
        let WriteOp::Put(r, _) = op else {
            panic!("a put: {op:?}")
        };
        Change::Upsert(StoredResource {
            key: r.key,
            labels: r.labels,
            spec: r.spec,
            zone: r.zone,
            version,
            revision,
            created_at: chrono::Utc::now(),
            modified_at: chrono::Utc::now(),
        })
    }

    fn puts(ops: &[WriteOp]) -> Vec<(String, serde_json::Value, Precondition)> {
        ops.iter()
            .filter_map(|op| match op {
                WriteOp::Put(r, p) => Some((r.key.name.clone(), r.spec.to_value(), *p)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_mesh_service_per_service_with_the_union_of_ports() {
        let s = state(vec![
            mesh(Some("Exclusive")),
            dp(
                "a-1",
                json!([
                    {"port": 8080, "name": "http", "tags": {"kuma.io/service": "backend", "kuma.io/protocol": "http"}},
                    {"port": 9090, "tags": {"kuma.io/service": "metrics"}, "health": {"ready": false}},
                ]),
            ),
            dp(
                "a-2",
                json!([
                    {"port": 8081, "protocol": "grpc", "tags": {"kuma.io/service": "backend"}},
                    {"port": 8080, "name": "other", "tags": {"kuma.io/service": "backend"}},
                ]),
            ),
            // Not a DNS-1035 label: no MeshService, as in Kuma.
            dp(
                "b-1",
                json!([{"port": 7000, "tags": {"kuma.io/service": "backend_kuma-demo_svc_3001"}}]),
            ),
        ]);
        let want = desired(&s, "default");
        assert_eq!(want.keys().collect::<Vec<_>>(), ["backend", "metrics"]);
        assert_eq!(
            serde_json::to_value(&want["backend"]).expect("ser"),
            json!({"spec": {"state": "Available",
                "selector": {"dataplaneTags": {"kuma.io/service": "backend"}},
                "ports": [
                    {"name": "http", "port": 8080, "targetPort": 8080, "appProtocol": "http"},
                    {"name": "8081", "port": 8081, "targetPort": 8081, "appProtocol": "grpc"}],
                "identities": [{"type": "ServiceTag", "value": "backend"}]},
                "status": {"dataplaneProxies": {"healthy": 2, "total": 2}}})
        );
        let metrics = &want["metrics"];
        assert_eq!(metrics.spec.state, Some(MeshServiceState::Unavailable));
        assert_eq!(metrics.spec.ports[0].app_protocol.as_deref(), Some("tcp"));

        let ops = ops(&s);
        let p = puts(&ops);
        assert_eq!(p.len(), 2, "{ops:?}");
        assert!(p.iter().all(|(_, _, pre)| *pre == Precondition::Absent));
        let WriteOp::Put(r, _) = &ops[0] else {
            panic!("a put")
        };
        assert_eq!(r.zone.as_deref(), Some("zone-1"));
        for (k, v) in [
            ("kuma.io/managed-by", "meshservice-generator"),
            ("kuma.io/display-name", "backend"),
            ("kuma.io/mesh", "default"),
            ("kuma.io/env", "universal"),
            ("kuma.io/zone", "zone-1"),
            ("kuma.io/origin", "zone"),
        ] {
            assert_eq!(r.labels.get(k).map(String::as_str), Some(v), "{k}");
        }
    }

    #[test]
    fn disabled_or_unset_mode_generates_nothing() {
        for mode in [None, Some("Disabled")] {
            let s = state(vec![
                mesh(mode),
                dp(
                    "a-1",
                    json!([{"port": 8080, "tags": {"kuma.io/service": "backend"}}]),
                ),
            ]);
            assert!(desired(&s, "default").is_empty(), "{mode:?}");
            assert!(ops(&s).is_empty(), "{mode:?}");
        }
        for mode in ["Everywhere", "ReachableBackends", "Exclusive"] {
            let s = state(vec![
                mesh(Some(mode)),
                dp(
                    "a-1",
                    json!([{"port": 8080, "tags": {"kuma.io/service": "backend"}}]),
                ),
            ]);
            assert_eq!(desired(&s, "default").len(), 1, "{mode}");
        }
    }

    #[test]
    fn unchanged_is_left_alone_stale_is_deleted_and_others_are_not_touched() {
        let mut s = state(vec![
            mesh(Some("Everywhere")),
            dp(
                "a-1",
                json!([{"port": 8080, "tags": {"kuma.io/service": "backend"}}]),
            ),
        ]);
        // Apply what the generator plans, as the store would report it back.
        let changes = ops(&s).into_iter().map(|op| stored_op(op, 1, 2)).collect();
        let touched = s.apply(changes, 2);
        assert!(touched.mesh_services.contains("default"));
        assert!(ops(&s).is_empty(), "nothing left to do");

        // Someone's own MeshService, and another zone's, are never touched.
        let theirs = stored(
            ResourceKind::MeshService,
            "default",
            "manual",
            Some("zone-1"),
            json!({"spec": {}}),
            &[("kuma.io/origin", "zone")],
        );
        let remote = stored(
            ResourceKind::MeshService,
            "default",
            "backend.zone-2",
            Some("zone-2"),
            json!({"spec": {}}),
            &[("kuma.io/managed-by", "meshservice-generator")],
        );
        s.apply(vec![Change::Upsert(theirs), Change::Upsert(remote)], 3);
        assert!(ops(&s).is_empty());

        // The last Dataplane goes: with no grace, the generated one is
        // deleted, conditionally.
        s.apply(
            vec![Change::Delete {
                key: ResourceKey::in_mesh(ResourceKind::Dataplane, "default", "a-1"),
                zone: Some("zone-1".into()),
                revision: 4,
            }],
            4,
        );
        let now_ops = ops(&s);
        assert_eq!(now_ops.len(), 1, "{now_ops:?}");
        assert!(
            matches!(&now_ops[0], WriteOp::Delete(k, Precondition::Version(1)) if k.name == "backend")
        );
    }

    #[test]
    fn a_mesh_service_without_dataplanes_waits_out_its_grace_period() {
        let grace = Duration::from_secs(3600);
        let t0 = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let minutes = |m: i64| t0 + chrono::Duration::minutes(m);
        let backend = || {
            dp(
                "a-1",
                json!([{"port": 8080, "tags": {"kuma.io/service": "backend"}}]),
            )
        };
        let mut s = state(vec![mesh(Some("Everywhere")), backend()]);
        let meshes = all_meshes(&s);
        let created = plan(&s, &meshes, t0, grace).ops;
        s.apply(
            created.into_iter().map(|op| stored_op(op, 1, 2)).collect(),
            2,
        );
        let gone = |revision| Change::Delete {
            key: ResourceKey::in_mesh(ResourceKind::Dataplane, "default", "a-1"),
            zone: Some("zone-1".into()),
            revision,
        };
        s.apply(vec![gone(3)], 3);

        // The grace period starts: labelled, Unavailable, nobody healthy.
        let started = plan(&s, &meshes, t0, grace);
        assert_eq!(started.recheck_at, Some(minutes(60)));
        let [WriteOp::Put(r, Precondition::Version(1))] = started.ops.as_slice() else {
            panic!("one conditional put: {:?}", started.ops)
        };
        assert_eq!(r.labels[GRACE_LABEL], "2026-12-03T10:00:00Z");
        let Spec::MeshService(f) = r.spec.spec() else {
            panic!("a MeshService")
        };
        assert_eq!(f.spec.state, Some(MeshServiceState::Unavailable));
        assert_eq!(
            f.status
                .as_ref()
                .and_then(|st| st.dataplane_proxies.as_ref()),
            Some(&DataplaneProxies::default())
        );
        assert!(!f.spec.ports.is_empty(), "the ports stay for clients");
        let labelled = started
            .ops
            .into_iter()
            .map(|op| stored_op(op, 2, 4))
            .collect();
        s.apply(labelled, 4);

        // Within the period nothing is written; at its end it is deleted.
        let waiting = plan(&s, &meshes, minutes(30), grace);
        assert!(waiting.ops.is_empty(), "{:?}", waiting.ops);
        assert_eq!(waiting.recheck_at, Some(minutes(60)));
        let expired = plan(&s, &meshes, minutes(61), grace);
        assert!(
            matches!(expired.ops.as_slice(), [WriteOp::Delete(k, Precondition::Version(2))] if k.name == "backend"),
            "{:?}",
            expired.ops
        );

        // A Dataplane back within the period: available again, label gone.
        s.apply(vec![Change::Upsert(backend())], 5);
        let back = plan(&s, &meshes, minutes(30), grace);
        assert_eq!(back.recheck_at, None);
        let [WriteOp::Put(r, Precondition::Version(2))] = back.ops.as_slice() else {
            panic!("one conditional put: {:?}", back.ops)
        };
        assert!(!r.labels.contains_key(GRACE_LABEL));
    }
}
