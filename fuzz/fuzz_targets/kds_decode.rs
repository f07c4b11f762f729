//! Fuzzes KDS message decoding and the receiver's validation layer, without a store.
//!
//! The input is decoded as every KDS protobuf message (`meridian_proto::kds`: the
//! four stream messages, `Changes`, `Resource`, `ResourceKey`, `Nack`, `Ack`). What
//! decodes is re-encoded and decoded again, which must give the same message. Every
//! resource and removal of a decoded `Changes` then goes through what
//! `Inbound::apply` runs before it touches the store: `convert::from_proto` (type,
//! key and spec validation, as for a REST write), then both receivers' transforms,
//! `FromGlobal` (a zone applying global's changes) and `FromZone` (global applying a
//! zone's changes). Checked:
//!
//! - nothing panics;
//! - a validated key meets the naming rules of a REST write (`validate_name`, or
//!   `validate_mesh_name` for a Zone; a valid mesh for mesh-scoped kinds and none
//!   for the others): what a peer sends passes the same validation as a REST write;
//! - a validated spec is canonical: its canonical JSON parses again to the same spec;
//! - `FromZone` only ever yields zone-owned resources owned by, labelled with and
//!   named after the sending zone (`<name>.<zone>`), whatever the message claims;
//! - `FromGlobal` never yields a resource the global→zone scope excludes;
//! - the lag a zone reports after a `GlobalDelta` (`lag_revisions`) is never
//!   negative and never overflows.
//!
//! `kds_apply` drives the same messages through `Inbound::apply` and a real store.
//! Seeds: messages encoded with prost (`examples/seed_corpus.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_kds::convert::{from_proto, key_from_proto};
use meridian_kds::scope::{GlobalToZone, Scope};
use meridian_kds::transform::{FromGlobal, FromZone, ZONE_LABEL};
use meridian_kds::{Transform, convert::Received};
use meridian_model::{ResourceKind, SpecBody, validate_mesh_name, validate_name};
use meridian_proto::kds;
use meridian_store::ResourceKey;
use prost::Message;

/// The zone at the other end of the stream, in both directions.
const ZONE: &str = "zone-1";

/// Decodes `data` as `M`; on success checks that re-encoding round-trips.
fn decode<M: Message + Default + PartialEq>(data: &[u8]) -> Option<M> {
    let message = M::decode(data).ok()?;
    let again =
        M::decode(message.encode_to_vec().as_slice()).expect("a re-encoded message decodes");
    assert!(again == message, "re-encoding changed the message");
    Some(message)
}

fn check_key(key: &ResourceKey) {
    let name = if key.kind == ResourceKind::Zone {
        validate_mesh_name(&key.name)
    } else {
        validate_name(&key.name)
    };
    assert!(name.is_ok(), "accepted {key}: {name:?}");
    if key.kind.is_mesh_scoped() {
        let mesh = validate_mesh_name(&key.mesh);
        assert!(mesh.is_ok(), "accepted {key}: {mesh:?}");
    } else {
        assert!(key.mesh.is_empty(), "accepted {key} with a mesh");
    }
}

fn check_received(received: &Received) {
    check_key(&received.key);
    let again = SpecBody::parse_json(received.key.kind, received.spec.canonical_json().as_bytes())
        .expect("a validated spec validates again");
    assert_eq!(again, received.spec, "the validated spec is not canonical");
    assert_eq!(again.spec(), received.spec.spec(), "the canonical JSON changes the spec");
}

fn check_changes(changes: &kds::Changes) {
    let from_global = FromGlobal { zone: ZONE.into() };
    let from_zone = FromZone { zone: ZONE.into() };
    let down = GlobalToZone { zone: ZONE.into() };
    for resource in &changes.upserts {
        let Ok(received) = from_proto(resource) else {
            continue;
        };
        check_received(&received);
        if let Ok(new) = from_global.resource(received.clone()) {
            assert!(down.includes(&new.key, new.zone.as_deref()), "{new:?}");
        }
        if let Ok(new) = from_zone.resource(received.clone()) {
            assert!(new.key.kind.is_zone_owned(), "{new:?}");
            assert_eq!(new.zone.as_deref(), Some(ZONE));
            assert_eq!(new.labels.get(ZONE_LABEL).map(String::as_str), Some(ZONE));
            assert_eq!(new.key.name, format!("{}.{ZONE}", received.key.name));
        }
    }
    for removal in &changes.removals {
        let Ok(key) = key_from_proto(removal) else {
            continue;
        };
        check_key(&key);
        let _ = from_global.key(key.clone());
        if let Ok(local) = from_zone.key(key.clone()) {
            assert!(local.kind.is_zone_owned());
            assert_eq!(local.name, format!("{}.{ZONE}", key.name));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(changes) = decode::<kds::Changes>(data) {
        check_changes(&changes);
    }
    if let Some(delta) = decode::<kds::GlobalDelta>(data) {
        let changes = delta.changes.unwrap_or_default();
        // What a zone reports as its lag behind global after applying the message.
        assert!(meridian_kds::lag_revisions(delta.global_revision, changes.through_revision) >= 0);
        check_changes(&changes);
    }
    if let Some(delta) = decode::<kds::ZoneDelta>(data) {
        check_changes(&delta.changes.unwrap_or_default());
    }
    if let Some(resource) = decode::<kds::Resource>(data) {
        check_changes(&kds::Changes {
            upserts: vec![resource],
            ..Default::default()
        });
    }
    let _ = decode::<kds::ZoneToGlobalAck>(data);
    let _ = decode::<kds::GlobalAck>(data);
    let _ = decode::<kds::ResourceKey>(data);
    let _ = decode::<kds::Nack>(data);
    let _ = decode::<kds::Ack>(data);
});
