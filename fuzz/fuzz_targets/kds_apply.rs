//! Fuzzes the KDS receiver end to end: `Inbound::apply` (validation, NACKs,
//! transforms, ownership checks, snapshot pruning, the one-transaction commit and
//! its resource-by-resource fallback) on a real embedded store.
//!
//! Input: the first byte picks the receiver, even = a zone (`zone-1`) applying what
//! global sends (`GlobalToZone` scope, `FromGlobal`), odd = global applying what
//! `zone-1` sends (`ZoneToGlobal` scope, `FromZone`); the rest is up to four
//! length-delimited `kds::Changes` messages, applied in order on one stream, as a
//! session would (an error ends the stream). Checked:
//!
//! - nothing panics, and every failure is a NACK or a `KdsError`;
//! - global applying a zone's messages never creates, changes or removes a resource
//!   that zone does not own (a zone can only touch its own resources);
//! - a zone applying global's messages never creates or changes a resource the zone
//!   owns (its dataplanes, ingresses and egresses are its own to report).
//!
//! The store: one `EmbeddedStore` (single-replica Raft over redb, as a zone or
//! global CP runs it) per fuzzing process, in a directory under `/dev/shm` when it
//! exists (fsync there is free, so an input takes well under a millisecond more
//! than the pure path). Every input starts from the same baseline (a mesh, two
//! zones, a policy, dataplanes and an ingress of both zones): after an input that
//! wrote anything, the store is put back to it, so an input's outcome never depends
//! on the inputs before it. `kds_decode` covers decoding and validation alone, much
//! faster.

#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use meridian_embedded_store::EmbeddedStore;
use meridian_kds::scope::{GlobalToZone, ZoneToGlobal};
use meridian_kds::transform::{FromGlobal, FromZone};
use meridian_kds::{Inbound, Scope, Transform};
use meridian_model::{ResourceKind, SpecBody};
use meridian_proto::kds;
use meridian_store::{
    NewResource, Precondition, ResourceKey, Revision, Store, StoredResource, WriteOp,
};
use prost::Message;
use serde_json::json;

/// The zone at the other end of the stream in both directions.
const ZONE: &str = "zone-1";
/// Another zone, whose resources `zone-1` must never touch.
const OTHER_ZONE: &str = "zone-2";
/// Most messages applied per input.
const MAX_MESSAGES: usize = 4;
/// Prefix of the per-process store directories.
const DIR_PREFIX: &str = "meridian-fuzz-kds-";

/// Resets between two compactions of the store's change log.
const COMPACT_EVERY: u64 = 1000;

struct Harness {
    runtime: tokio::runtime::Runtime,
    store: Arc<EmbeddedStore>,
    baseline: BTreeMap<ResourceKey, NewResource>,
    resets: AtomicU64,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime builds");
        let dir = store_dir();
        let store = runtime
            .block_on(EmbeddedStore::open(&dir))
            .expect("the embedded store opens");
        let baseline = baseline().into_iter().map(|r| (r.key.clone(), r)).collect();
        let harness = Harness {
            runtime,
            store: Arc::new(store),
            baseline,
            resets: AtomicU64::new(0),
        };
        harness.runtime.block_on(reset(&harness));
        harness
    })
}

/// A fresh directory for this process's store; removes those of processes that are gone
/// (libFuzzer exits without running destructors, so nothing else would).
fn store_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let root = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(DIR_PREFIX)
                && !PathBuf::from(format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = root.join(format!("{DIR_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn resource(
    kind: ResourceKind,
    mesh: &str,
    name: &str,
    zone: Option<&str>,
    labels: &[(&str, &str)],
    spec: serde_json::Value,
) -> NewResource {
    let spec = SpecBody::parse(kind, spec)
        .unwrap_or_else(|e| panic!("baseline {kind} {name}: {e}"));
    NewResource {
        key: ResourceKey {
            kind,
            mesh: mesh.into(),
            name: name.into(),
        },
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        spec,
        zone: zone.map(str::to_owned),
    }
}

/// What the store holds before every input, in an order that applies (owners first).
fn baseline() -> Vec<NewResource> {
    let dataplane = |service: &str| {
        json!({"networking": {"address": "10.0.0.1", "inbound": [
            {"port": 10001, "servicePort": 8080, "tags": {"kuma.io/service": service}}
        ]}})
    };
    let zone_labels = |zone| vec![("kuma.io/zone", zone), ("kuma.io/origin", "zone")];
    vec![
        resource(ResourceKind::Mesh, "", "default", None, &[], json!({})),
        resource(ResourceKind::Zone, "", ZONE, None, &[], json!({})),
        resource(ResourceKind::Zone, "", OTHER_ZONE, None, &[], json!({})),
        resource(
            ResourceKind::MeshTimeout,
            "default",
            "timeout-1",
            None,
            &[],
            json!({"targetRef": {"kind": "Mesh"}, "to": [
                {"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "30s"}}
            ]}),
        ),
        // As a zone names its own dataplane, and as global names it.
        resource(
            ResourceKind::Dataplane,
            "default",
            "web-1",
            Some(ZONE),
            &zone_labels(ZONE),
            dataplane("web"),
        ),
        resource(
            ResourceKind::Dataplane,
            "default",
            "web-1.zone-1",
            Some(ZONE),
            &zone_labels(ZONE),
            dataplane("web"),
        ),
        resource(
            ResourceKind::Dataplane,
            "default",
            "backend-1.zone-2",
            Some(OTHER_ZONE),
            &zone_labels(OTHER_ZONE),
            dataplane("backend"),
        ),
        resource(
            ResourceKind::ZoneIngress,
            "",
            "ingress-1.zone-2",
            Some(OTHER_ZONE),
            &zone_labels(OTHER_ZONE),
            json!({"zone": OTHER_ZONE, "networking": {"address": "10.0.0.2", "port": 10001}}),
        ),
        resource(
            ResourceKind::ZoneEgress,
            "",
            "egress-1",
            Some(ZONE),
            &zone_labels(ZONE),
            json!({"networking": {"address": "10.0.0.3", "port": 10002}}),
        ),
    ]
}

fn same(stored: &StoredResource, new: &NewResource) -> bool {
    stored.labels == new.labels && stored.spec == new.spec && stored.zone == new.zone
}

fn is_owner_kind(kind: ResourceKind) -> bool {
    matches!(kind, ResourceKind::Mesh | ResourceKind::Zone)
}

/// Puts the store back to the baseline: removes everything else (owned resources
/// before their owners) and rewrites what differs (owners first), in one batch.
async fn reset(harness: &Harness) {
    let snapshot = harness.store.snapshot().await.expect("snapshot");
    let mut extra: Vec<ResourceKey> = snapshot
        .resources
        .iter()
        .filter(|r| !harness.baseline.contains_key(&r.key))
        .map(|r| r.key.clone())
        .collect();
    extra.sort_by_key(|key| is_owner_kind(key.kind));
    let current: BTreeMap<&ResourceKey, &StoredResource> =
        snapshot.resources.iter().map(|r| (&r.key, r)).collect();
    let mut ops: Vec<WriteOp> = extra
        .into_iter()
        .map(|key| WriteOp::Delete(key, Precondition::Any))
        .collect();
    for wanted in baseline() {
        if !current.get(&wanted.key).is_some_and(|r| same(r, &wanted)) {
            ops.push(WriteOp::Put(wanted, Precondition::Any));
        }
    }
    if !ops.is_empty() {
        harness
            .store
            .apply(ops.clone())
            .await
            .unwrap_or_else(|e| panic!("resetting the store failed: {e}; {ops:#?}"));
    }
    // The change log grows with every write and nothing here reads it: drop it now
    // and then, as a control plane does, so a long run's memory stays flat.
    let resets = harness.resets.fetch_add(1, Ordering::Relaxed) + 1;
    if resets.is_multiple_of(COMPACT_EVERY) {
        harness
            .store
            .compact(Revision::MAX)
            .await
            .unwrap_or_else(|e| panic!("compacting the store failed: {e}"));
    }
}

/// Up to [`MAX_MESSAGES`] length-delimited messages; stops at the first that does not decode.
fn messages(mut data: &[u8]) -> Vec<kds::Changes> {
    let mut out = Vec::new();
    while !data.is_empty() && out.len() < MAX_MESSAGES {
        match kds::Changes::decode_length_delimited(&mut data) {
            Ok(changes) => out.push(changes),
            Err(_) => break,
        }
    }
    out
}

async fn run<S: Scope, T: Transform>(
    store: Arc<dyn Store>,
    scope: S,
    transform: T,
    messages: &[kds::Changes],
) {
    let mut inbound = Inbound::new(store, "kds.fuzz.applied", scope, transform);
    for changes in messages {
        match inbound.apply(changes).await {
            Ok(applied) => {
                for nack in &applied.nacks {
                    assert!(!nack.reason.is_empty(), "a NACK without a reason");
                }
            }
            // The session ends the stream, as on a protocol violation or store failure.
            Err(error) => {
                let _ = error.to_string();
                break;
            }
        }
    }
}

fn by_key(resources: &[StoredResource]) -> BTreeMap<&ResourceKey, &StoredResource> {
    resources.iter().map(|r| (&r.key, r)).collect()
}

fn unchanged(a: &StoredResource, b: &StoredResource) -> bool {
    a.labels == b.labels && a.spec == b.spec && a.zone == b.zone && a.version == b.version
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let messages = messages(rest);
    if messages.is_empty() {
        return;
    }
    let harness = harness();
    harness.runtime.block_on(async {
        let store: Arc<dyn Store> = harness.store.clone();
        let before = store.snapshot().await.expect("snapshot");
        let from_zone = selector % 2 == 1;
        if from_zone {
            let scope = ZoneToGlobal { zone: ZONE.into() };
            let transform = FromZone { zone: ZONE.into() };
            run(store.clone(), scope, transform, &messages).await;
        } else {
            let scope = GlobalToZone { zone: ZONE.into() };
            let transform = FromGlobal { zone: ZONE.into() };
            run(store.clone(), scope, transform, &messages).await;
        }
        let after = store.snapshot().await.expect("snapshot");
        let (old, new) = (by_key(&before.resources), by_key(&after.resources));
        if from_zone {
            // Nothing zone-1 does reaches what it does not own.
            for (key, r) in &old {
                if r.zone.as_deref() != Some(ZONE) {
                    let kept = new.get(key).is_some_and(|n| unchanged(r, n));
                    assert!(kept, "zone {ZONE} changed or removed {key}");
                }
            }
            for (key, r) in &new {
                if !old.contains_key(key) {
                    assert_eq!(
                        r.zone.as_deref(),
                        Some(ZONE),
                        "{key} created for zone {ZONE}"
                    );
                    assert!(key.name.ends_with(".zone-1"), "{key}");
                }
            }
        } else {
            // Global never writes what zone-1 owns.
            for (key, r) in &new {
                if r.zone.as_deref() == Some(ZONE) {
                    let kept = old.get(key).is_some_and(|o| unchanged(o, r));
                    assert!(kept, "global created or changed {key} of zone {ZONE}");
                }
            }
        }
        if after.revision != before.revision {
            reset(harness).await;
        }
    });
});
