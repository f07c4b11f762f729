//! The redb tables of the state machine (`state.redb`), their row encodings, and the
//! read helpers both the state machine and the [`crate::EmbeddedStore`] read path use.
//!
//! | table | key | value |
//! |---|---|---|
//! | `resources` | `(type name, mesh, name)` | [`ResourceRow`] (JSON) |
//! | `change_log` | revision (`u64`, ordered numerically) | [`ChangeRow`] (JSON) |
//! | `latest_change` | `(type name, mesh, name)` | revision of the key's newest log entry |
//! | `settings` | key | value |
//! | `zone_insights` | zone | [`InsightRow`] (JSON) |
//! | `sm_meta` | `counters`, `last_applied`, `membership` | JSON |
//! | `snapshot` | `meta`, `data` | the current Raft snapshot (JSON meta, payload bytes) |
//!
//! `latest_change` is derived data (rebuilt from `change_log` when a snapshot is
//! installed): it lets `changes_since` walk the log in revision order and keep only
//! each key's newest entry without buffering the whole tail.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use meridian_model::SpecBody;
use meridian_store::{ResourceKey, Revision, StoredResource};
use redb::{ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::EmbeddedStoreError;

/// Resources by `(type name, mesh, name)`.
pub(crate) const RESOURCES: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("resources");
/// Change-log entries by revision.
pub(crate) const CHANGE_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("change_log");
/// Each key's newest change-log revision.
pub(crate) const LATEST_CHANGE: TableDefinition<(&str, &str, &str), u64> =
    TableDefinition::new("latest_change");
/// Settings.
pub(crate) const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");
/// Zone insights by zone name.
pub(crate) const ZONE_INSIGHTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("zone_insights");
/// State-machine bookkeeping.
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
/// The current Raft snapshot.
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

/// `sm_meta` key of [`Counters`].
pub(crate) const META_COUNTERS: &str = "counters";
/// `sm_meta` key of the last applied log id.
pub(crate) const META_LAST_APPLIED: &str = "last_applied";
/// `sm_meta` key of the last applied membership.
pub(crate) const META_MEMBERSHIP: &str = "membership";
/// `snapshot` key of the snapshot's meta.
pub(crate) const SNAPSHOT_META: &str = "meta";
/// `snapshot` key of the snapshot's payload.
pub(crate) const SNAPSHOT_DATA: &str = "data";

/// The store-wide counters, kept together in one `sm_meta` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counters {
    /// The last revision handed out.
    pub revision: Revision,
    /// The compaction horizon: the log holds only changes after it.
    pub horizon: Revision,
    /// The latest time any applied command carried; applied times never go below it,
    /// so `modified_at` grows with the revision even when proposals race.
    pub clock: Option<DateTime<Utc>>,
}

/// A resource row (the key lives in the table key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ResourceRow {
    /// Owning zone.
    pub zone: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Spec: its canonical JSON, typed again when the row is read.
    pub spec: Box<serde_json::value::RawValue>,
    /// Version.
    pub version: i64,
    /// Revision of its last change.
    pub revision: Revision,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change time.
    pub modified_at: DateTime<Utc>,
}

impl ResourceRow {
    /// The row of `resource` (its key lives in the table key).
    pub fn of(resource: StoredResource) -> Self {
        let StoredResource {
            key: _,
            labels,
            spec,
            zone,
            version,
            revision,
            created_at,
            modified_at,
        } = resource;
        ResourceRow {
            zone,
            labels,
            spec: spec.canonical_raw().to_owned(),
            version,
            revision,
            created_at,
            modified_at,
        }
    }

    /// The stored resource with this row under `key`, its spec typed (the one parse
    /// a read does).
    pub fn into_stored(self, key: ResourceKey) -> Result<StoredResource, EmbeddedStoreError> {
        let spec =
            SpecBody::parse_stored_json(key.kind, self.spec.get().as_bytes()).map_err(|e| {
                EmbeddedStoreError::Unreadable {
                    key: key.clone(),
                    reason: e.to_string(),
                }
            })?;
        Ok(StoredResource {
            key,
            labels: self.labels,
            spec,
            zone: self.zone,
            version: self.version,
            revision: self.revision,
            created_at: self.created_at,
            modified_at: self.modified_at,
        })
    }
}

/// What a change-log entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ChangeOp {
    /// Created or updated.
    Upsert,
    /// Deleted (a tombstone).
    Delete,
}

/// A change-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChangeRow {
    /// Type name.
    pub kind: String,
    /// Mesh.
    pub mesh: String,
    /// Name.
    pub name: String,
    /// The zone owning the resource at the time.
    pub zone: Option<String>,
    /// Upsert or tombstone.
    pub op: ChangeOp,
}

/// A zone insight with the (leader-stamped) time it was stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InsightRow {
    /// The insight document.
    pub insight: serde_json::Value,
    /// When it was stored.
    pub updated_at: DateTime<Utc>,
}

/// JSON-encodes `value`.
pub(crate) fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, EmbeddedStoreError> {
    serde_json::to_vec(value).map_err(|e| EmbeddedStoreError::codec(what, e))
}

/// JSON-decodes `bytes`.
pub(crate) fn decode<T: DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, EmbeddedStoreError> {
    serde_json::from_slice(bytes).map_err(|e| EmbeddedStoreError::codec(what, e))
}

/// A revision as a `change_log` key.
pub(crate) fn revision_key(revision: Revision) -> Result<u64, EmbeddedStoreError> {
    u64::try_from(revision)
        .map_err(|_| EmbeddedStoreError::Corrupt(format!("negative revision {revision}")))
}

/// A `change_log` key as a revision.
pub(crate) fn key_revision(key: u64) -> Result<Revision, EmbeddedStoreError> {
    Revision::try_from(key)
        .map_err(|_| EmbeddedStoreError::Corrupt(format!("revision {key} out of range")))
}

/// Parses a Kuma type name.
pub(crate) fn parse_kind(
    kind: &str,
) -> Result<meridian_model::ResourceKind, meridian_store::StoreError> {
    meridian_model::ResourceKind::from_type_name(kind).ok_or_else(|| {
        meridian_store::StoreError::Backend(format!(
            "unknown resource kind {kind:?} in the embedded store"
        ))
    })
}

/// Parses a stored type name.
pub(crate) fn stored_key(
    kind: &str,
    mesh: &str,
    name: &str,
) -> Result<ResourceKey, EmbeddedStoreError> {
    Ok(ResourceKey {
        kind: parse_kind(kind).map_err(|e| EmbeddedStoreError::Corrupt(e.to_string()))?,
        mesh: mesh.to_owned(),
        name: name.to_owned(),
    })
}

/// Reads [`Counters`] (zeros in a fresh store).
pub(crate) fn read_counters(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Counters, EmbeddedStoreError> {
    match meta.get(META_COUNTERS)? {
        Some(bytes) => decode("counters", bytes.value()),
        None => Ok(Counters::default()),
    }
}

/// Reads one resource.
pub(crate) fn read_resource(
    resources: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    key: &ResourceKey,
) -> Result<Option<StoredResource>, EmbeddedStoreError> {
    let Some(bytes) =
        resources.get((key.kind.type_name(), key.mesh.as_str(), key.name.as_str()))?
    else {
        return Ok(None);
    };
    let row: ResourceRow = decode("resource", bytes.value())?;
    Ok(Some(row.into_stored(key.clone())?))
}

/// Every resource of `kind` (only in `mesh`, if given), ordered by mesh then name.
pub(crate) fn resources_of_kind(
    resources: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    kind: meridian_model::ResourceKind,
    mesh: Option<&str>,
) -> Result<Vec<StoredResource>, EmbeddedStoreError> {
    let type_name = kind.type_name();
    let mut out = Vec::new();
    for item in resources.range((type_name, mesh.unwrap_or(""), "")..)? {
        let (key, value) = item?;
        let (k, m, n) = key.value();
        if k != type_name || mesh.is_some_and(|mesh| mesh != m) {
            break;
        }
        let row: ResourceRow = decode("resource", value.value())?;
        out.push(row.into_stored(ResourceKey {
            kind,
            mesh: m.to_owned(),
            name: n.to_owned(),
        })?);
    }
    Ok(out)
}

/// Every resource, ordered by type name, mesh and name.
pub(crate) fn all_resources(
    resources: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
) -> Result<Vec<StoredResource>, EmbeddedStoreError> {
    let mut out = Vec::new();
    for item in resources.iter()? {
        let (key, value) = item?;
        let (k, m, n) = key.value();
        let row: ResourceRow = decode("resource", value.value())?;
        out.push(row.into_stored(stored_key(k, m, n)?)?);
    }
    Ok(out)
}
