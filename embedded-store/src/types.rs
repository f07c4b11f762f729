//! The Raft type configuration and what travels through the Raft log: the
//! [`Command`]s a leader proposes and the [`CommandResponse`]s the state machine
//! answers with.
//!
//! [`meridian_store`]'s values (`WriteOp`, `StoredResource`, `StoreError`, …) are not
//! serde types, so this module defines serializable mirrors (`Wire*`) and converts
//! both ways. A rejected write (precondition, missing mesh, …) is a deterministic
//! result every replica computes identically, so it travels as
//! `CommandResponse::Applied(Err(WireStoreError))`, never as a Raft error.

use std::collections::BTreeMap;
use std::io::Cursor;

use chrono::{DateTime, Utc};
use meridian_model::ResourceKind;
use meridian_store::{
    NewResource, Precondition, PutOutcome, ResourceKey, Revision, StoreError, StoredResource,
    WriteOp, WriteOutcome,
};
use serde::{Deserialize, Serialize};

/// A Raft node id. The single-node store is always node [`SINGLE_NODE_ID`].
pub type NodeId = u64;

/// The node id of the single-node group.
pub const SINGLE_NODE_ID: NodeId = 1;

openraft::declare_raft_types!(
    /// The Raft type configuration of the embedded store: [`Command`]s in,
    /// [`CommandResponse`]s out, `u64` node ids, snapshots as in-memory byte buffers.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of the embedded store.
pub type Raft = openraft::Raft<TypeConfig>;

/// One entry of the Raft log, as the embedded store's type config defines it.
pub type Entry = openraft::Entry<TypeConfig>;

/// A state-machine command. Everything that changes replicated state is one of these;
/// each carries whatever time it needs, stamped by the leader before proposing, so
/// every replica applies it identically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// An atomic batch of writes ([`meridian_store::Store::apply`]).
    Apply {
        /// The writes, in order.
        ops: Vec<WireWriteOp>,
        /// The leader's clock, truncated to microseconds.
        now: DateTime<Utc>,
    },
    /// Drop change-log entries up to `through` ([`meridian_store::Store::compact`]).
    Compact {
        /// The requested horizon (clamped to the current revision when applied).
        through: Revision,
    },
    /// Store a zone's insight (status: no revision, no change log).
    PutZoneInsight {
        /// The zone.
        zone: String,
        /// The insight document.
        insight: serde_json::Value,
        /// The leader's clock, kept as the insight's update time.
        now: DateTime<Utc>,
    },
    /// Store a setting unless present; answer the value now stored.
    SettingOrInsert {
        /// The setting's name.
        key: String,
        /// The value to store if none is.
        value: String,
    },
}

/// What the state machine answers for one applied log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// A blank or membership entry: nothing for the application.
    Empty,
    /// The result of [`Command::Apply`]: every outcome, or why nothing was written.
    Applied(Result<Vec<WireWriteOutcome>, WireStoreError>),
    /// The horizon after [`Command::Compact`].
    Compacted(Revision),
    /// [`Command::PutZoneInsight`] was stored.
    InsightStored,
    /// The value of the setting after [`Command::SettingOrInsert`].
    Setting(String),
}

/// Serializable [`ResourceKey`]; the kind travels as its Kuma type name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireKey {
    /// [`ResourceKind::type_name`].
    pub kind: String,
    /// The mesh, `""` for global kinds.
    pub mesh: String,
    /// The name.
    pub name: String,
}

impl From<&ResourceKey> for WireKey {
    fn from(key: &ResourceKey) -> Self {
        WireKey {
            kind: key.kind.type_name().to_owned(),
            mesh: key.mesh.clone(),
            name: key.name.clone(),
        }
    }
}

impl From<ResourceKey> for WireKey {
    fn from(key: ResourceKey) -> Self {
        WireKey {
            kind: key.kind.type_name().to_owned(),
            mesh: key.mesh,
            name: key.name,
        }
    }
}

impl WireKey {
    /// The key, or a [`StoreError::Backend`] naming the unknown kind.
    pub fn to_key(&self) -> Result<ResourceKey, StoreError> {
        Ok(ResourceKey {
            kind: parse_kind(&self.kind)?,
            mesh: self.mesh.clone(),
            name: self.name.clone(),
        })
    }
}

/// Parses a Kuma type name.
pub(crate) fn parse_kind(kind: &str) -> Result<ResourceKind, StoreError> {
    ResourceKind::from_type_name(kind).ok_or_else(|| {
        StoreError::Backend(format!(
            "unknown resource kind {kind:?} in the embedded store"
        ))
    })
}

/// Serializable [`Precondition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WirePrecondition {
    /// [`Precondition::Any`].
    Any,
    /// [`Precondition::Absent`].
    Absent,
    /// [`Precondition::Version`].
    Version(i64),
}

impl From<Precondition> for WirePrecondition {
    fn from(p: Precondition) -> Self {
        match p {
            Precondition::Any => WirePrecondition::Any,
            Precondition::Absent => WirePrecondition::Absent,
            Precondition::Version(v) => WirePrecondition::Version(v),
        }
    }
}

impl From<WirePrecondition> for Precondition {
    fn from(p: WirePrecondition) -> Self {
        match p {
            WirePrecondition::Any => Precondition::Any,
            WirePrecondition::Absent => Precondition::Absent,
            WirePrecondition::Version(v) => Precondition::Version(v),
        }
    }
}

/// Serializable [`NewResource`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireNewResource {
    /// Which resource.
    pub key: WireKey,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its spec.
    pub spec: serde_json::Value,
    /// Its owning zone.
    pub zone: Option<String>,
}

/// Serializable [`WriteOp`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WireWriteOp {
    /// [`WriteOp::Put`].
    Put(WireNewResource, WirePrecondition),
    /// [`WriteOp::Delete`].
    Delete(WireKey, WirePrecondition),
    /// [`WriteOp::SetSetting`].
    SetSetting {
        /// The setting's name.
        key: String,
        /// Its new value.
        value: String,
    },
}

impl From<WriteOp> for WireWriteOp {
    fn from(op: WriteOp) -> Self {
        match op {
            WriteOp::Put(r, p) => WireWriteOp::Put(
                WireNewResource {
                    key: r.key.into(),
                    labels: r.labels,
                    spec: r.spec,
                    zone: r.zone,
                },
                p.into(),
            ),
            WriteOp::Delete(key, p) => WireWriteOp::Delete(key.into(), p.into()),
            WriteOp::SetSetting { key, value } => WireWriteOp::SetSetting { key, value },
        }
    }
}

impl WireWriteOp {
    /// The [`WriteOp`] this mirrors, or a [`StoreError::Backend`] naming an unknown
    /// kind.
    pub fn to_write_op(&self) -> Result<WriteOp, StoreError> {
        Ok(match self {
            WireWriteOp::Put(r, p) => WriteOp::Put(r.to_new_resource()?, (*p).into()),
            WireWriteOp::Delete(key, p) => WriteOp::Delete(key.to_key()?, (*p).into()),
            WireWriteOp::SetSetting { key, value } => WriteOp::SetSetting {
                key: key.clone(),
                value: value.clone(),
            },
        })
    }
}

impl WireNewResource {
    /// The [`NewResource`] this mirrors.
    pub fn to_new_resource(&self) -> Result<NewResource, StoreError> {
        Ok(NewResource {
            key: self.key.to_key()?,
            labels: self.labels.clone(),
            spec: self.spec.clone(),
            zone: self.zone.clone(),
        })
    }
}

/// Serializable [`PutOutcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WirePutOutcome {
    /// [`PutOutcome::Created`].
    Created,
    /// [`PutOutcome::Updated`].
    Updated,
    /// [`PutOutcome::Unchanged`].
    Unchanged,
}

impl From<PutOutcome> for WirePutOutcome {
    fn from(o: PutOutcome) -> Self {
        match o {
            PutOutcome::Created => WirePutOutcome::Created,
            PutOutcome::Updated => WirePutOutcome::Updated,
            PutOutcome::Unchanged => WirePutOutcome::Unchanged,
        }
    }
}

impl From<WirePutOutcome> for PutOutcome {
    fn from(o: WirePutOutcome) -> Self {
        match o {
            WirePutOutcome::Created => PutOutcome::Created,
            WirePutOutcome::Updated => PutOutcome::Updated,
            WirePutOutcome::Unchanged => PutOutcome::Unchanged,
        }
    }
}

/// Serializable [`StoredResource`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireStoredResource {
    /// Which resource.
    pub key: WireKey,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its spec.
    pub spec: serde_json::Value,
    /// Its owning zone.
    pub zone: Option<String>,
    /// Its version.
    pub version: i64,
    /// The revision of its last change.
    pub revision: Revision,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change time.
    pub modified_at: DateTime<Utc>,
}

impl From<&StoredResource> for WireStoredResource {
    fn from(r: &StoredResource) -> Self {
        WireStoredResource {
            key: (&r.key).into(),
            labels: r.labels.clone(),
            spec: r.spec.clone(),
            zone: r.zone.clone(),
            version: r.version,
            revision: r.revision,
            created_at: r.created_at,
            modified_at: r.modified_at,
        }
    }
}

impl TryFrom<WireStoredResource> for StoredResource {
    type Error = StoreError;

    fn try_from(r: WireStoredResource) -> Result<Self, StoreError> {
        Ok(StoredResource {
            key: r.key.to_key()?,
            labels: r.labels,
            spec: r.spec,
            zone: r.zone,
            version: r.version,
            revision: r.revision,
            created_at: r.created_at,
            modified_at: r.modified_at,
        })
    }
}

/// Serializable [`WriteOutcome`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WireWriteOutcome {
    /// [`WriteOutcome::Put`].
    Put(WirePutOutcome, Box<WireStoredResource>),
    /// [`WriteOutcome::Deleted`].
    Deleted {
        /// Keys removed, target first.
        keys: Vec<WireKey>,
        /// Revision of the target's tombstone.
        revision: Revision,
    },
    /// [`WriteOutcome::SettingSet`].
    SettingSet,
}

impl From<&WriteOutcome> for WireWriteOutcome {
    fn from(o: &WriteOutcome) -> Self {
        match o {
            WriteOutcome::Put(outcome, stored) => {
                WireWriteOutcome::Put((*outcome).into(), Box::new(stored.into()))
            }
            WriteOutcome::Deleted { keys, revision } => WireWriteOutcome::Deleted {
                keys: keys.iter().map(WireKey::from).collect(),
                revision: *revision,
            },
            WriteOutcome::SettingSet => WireWriteOutcome::SettingSet,
        }
    }
}

impl TryFrom<WireWriteOutcome> for WriteOutcome {
    type Error = StoreError;

    fn try_from(o: WireWriteOutcome) -> Result<Self, StoreError> {
        Ok(match o {
            WireWriteOutcome::Put(outcome, stored) => {
                WriteOutcome::Put(outcome.into(), (*stored).try_into()?)
            }
            WireWriteOutcome::Deleted { keys, revision } => WriteOutcome::Deleted {
                keys: keys.iter().map(WireKey::to_key).collect::<Result<_, _>>()?,
                revision,
            },
            WireWriteOutcome::SettingSet => WriteOutcome::SettingSet,
        })
    }
}

/// Serializable [`StoreError`]: the deterministic rejections a batch can end with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireStoreError {
    /// [`StoreError::NotFound`].
    NotFound(WireKey),
    /// [`StoreError::AlreadyExists`].
    AlreadyExists(WireKey),
    /// [`StoreError::Conflict`].
    Conflict {
        /// The resource written.
        key: WireKey,
        /// The version the caller expected.
        expected: i64,
        /// The version stored.
        actual: Option<i64>,
    },
    /// [`StoreError::MeshNotFound`].
    MeshNotFound {
        /// The resource written.
        key: WireKey,
        /// The missing mesh.
        mesh: String,
    },
    /// [`StoreError::ZoneNotFound`].
    ZoneNotFound {
        /// The resource written.
        key: WireKey,
        /// The missing zone.
        zone: String,
    },
    /// [`StoreError::Invalid`].
    Invalid {
        /// The resource concerned.
        key: WireKey,
        /// Why.
        reason: String,
    },
    /// [`StoreError::Compacted`].
    Compacted {
        /// The revision asked for.
        since: Revision,
        /// The horizon.
        horizon: Revision,
    },
    /// [`StoreError::Unavailable`].
    Unavailable(String),
    /// [`StoreError::Backend`].
    Backend(String),
}

impl From<&StoreError> for WireStoreError {
    fn from(e: &StoreError) -> Self {
        match e {
            StoreError::NotFound(k) => WireStoreError::NotFound(k.into()),
            StoreError::AlreadyExists(k) => WireStoreError::AlreadyExists(k.into()),
            StoreError::Conflict {
                key,
                expected,
                actual,
            } => WireStoreError::Conflict {
                key: key.into(),
                expected: *expected,
                actual: *actual,
            },
            StoreError::MeshNotFound { key, mesh } => WireStoreError::MeshNotFound {
                key: key.into(),
                mesh: mesh.clone(),
            },
            StoreError::ZoneNotFound { key, zone } => WireStoreError::ZoneNotFound {
                key: key.into(),
                zone: zone.clone(),
            },
            StoreError::Invalid { key, reason } => WireStoreError::Invalid {
                key: key.into(),
                reason: reason.clone(),
            },
            StoreError::Compacted { since, horizon } => WireStoreError::Compacted {
                since: *since,
                horizon: *horizon,
            },
            StoreError::Unavailable(m) => WireStoreError::Unavailable(m.clone()),
            StoreError::Backend(m) => WireStoreError::Backend(m.clone()),
        }
    }
}

impl From<WireStoreError> for StoreError {
    fn from(e: WireStoreError) -> Self {
        // A key whose kind no longer parses cannot be rebuilt: say so instead.
        let key = |k: WireKey| k.to_key();
        let converted = match e {
            WireStoreError::NotFound(k) => key(k).map(StoreError::NotFound),
            WireStoreError::AlreadyExists(k) => key(k).map(StoreError::AlreadyExists),
            WireStoreError::Conflict {
                key: k,
                expected,
                actual,
            } => key(k).map(|key| StoreError::Conflict {
                key,
                expected,
                actual,
            }),
            WireStoreError::MeshNotFound { key: k, mesh } => {
                key(k).map(|key| StoreError::MeshNotFound { key, mesh })
            }
            WireStoreError::ZoneNotFound { key: k, zone } => {
                key(k).map(|key| StoreError::ZoneNotFound { key, zone })
            }
            WireStoreError::Invalid { key: k, reason } => {
                key(k).map(|key| StoreError::Invalid { key, reason })
            }
            WireStoreError::Compacted { since, horizon } => {
                Ok(StoreError::Compacted { since, horizon })
            }
            WireStoreError::Unavailable(m) => Ok(StoreError::Unavailable(m)),
            WireStoreError::Backend(m) => Ok(StoreError::Backend(m)),
        };
        converted.unwrap_or_else(|e| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_round_trip_through_the_wire() {
        let key = ResourceKey::in_mesh(ResourceKind::MeshTcpRoute, "default", "r");
        let errors = [
            StoreError::NotFound(key.clone()),
            StoreError::AlreadyExists(key.clone()),
            StoreError::Conflict {
                key: key.clone(),
                expected: 3,
                actual: None,
            },
            StoreError::MeshNotFound {
                key: key.clone(),
                mesh: "m".into(),
            },
            StoreError::ZoneNotFound {
                key: key.clone(),
                zone: "z".into(),
            },
            StoreError::Invalid {
                key,
                reason: "why".into(),
            },
            StoreError::Compacted {
                since: 1,
                horizon: 2,
            },
            StoreError::Unavailable("u".into()),
            StoreError::Backend("b".into()),
        ];
        for error in errors {
            let wire = WireStoreError::from(&error);
            let json = serde_json::to_string(&wire).expect("serializes");
            let back: WireStoreError = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(StoreError::from(back).to_string(), error.to_string());
        }
    }

    #[test]
    fn unknown_kind_is_a_backend_error() {
        let wire = WireKey {
            kind: "Nope".into(),
            mesh: String::new(),
            name: "x".into(),
        };
        assert!(matches!(wire.to_key(), Err(StoreError::Backend(_))));
    }
}
