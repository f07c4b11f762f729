//! The Raft type configuration and what travels through the Raft log: the
//! [`Command`]s a leader proposes and the [`CommandResponse`]s the state machine
//! answers with.
//!
//! Commands carry [`meridian_store`]'s own values (`WriteOp`, `WriteOutcome`,
//! `StoreError`, …), serialised with the derives that crate's `serde` feature adds —
//! there is no mirror to keep in step. Their JSON is the Raft log's and the snapshot's
//! on-disk format and the replicas' wire format, so it must not change: a test pins it
//! (`the_log_format_is_stable`). A key names its kind by Kuma type name; a kind this
//! version does not know fails to decode (the entry is unreadable here) rather than
//! being applied as a refusal that a newer replica would not have made.
//!
//! A rejected write (precondition, missing mesh, …) is a deterministic result every
//! replica computes identically, so it travels as `CommandResponse::Applied(Err(_))`,
//! never as a Raft error.

use std::io::Cursor;

use chrono::{DateTime, Utc};
use meridian_store::{Revision, StoreError, WriteOp, WriteOutcome};
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
        ops: Vec<WriteOp>,
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
    Applied(Result<Vec<WriteOutcome>, StoreError>),
    /// The horizon after [`Command::Compact`].
    Compacted(Revision),
    /// [`Command::PutZoneInsight`] was stored.
    InsightStored,
    /// The value of the setting after [`Command::SettingOrInsert`].
    Setting(String),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use meridian_model::{ResourceKind, SpecBody};
    use meridian_store::{NewResource, Precondition, PutOutcome, ResourceKey, StoredResource};

    use super::*;

    const GOLDEN_COMMAND: &str = concat!(
        r#"{"Apply":{"ops":[{"Put":[{"key":{"kind":"MeshTCPRoute","mesh":"default","name":"r"},"#,
        r#""labels":{"team":"a"},"spec":{"targetRef":{"kind":"Mesh"},"to":[{"targetRef":{"kind":"MeshService","name":"web"},"rules":[{"default":{"backendRefs":[{"kind":"MeshService","name":"web-v2","weight":1}]}}]}]},"zone":"z"},{"Version":3}]},"#,
        r#"{"Delete":[{"kind":"MeshTCPRoute","mesh":"default","name":"r"},"Absent"]},"#,
        r#"{"Put":[{"key":{"kind":"Mesh","mesh":"","name":"m"},"labels":{},"spec":{},"zone":null},"Any"]},"#,
        r#"{"SetSetting":{"key":"k","value":"v"}}],"now":"2026-01-02T03:04:05Z"}}"#
    );
    const GOLDEN_RESPONSE: &str = concat!(
        r#"{"Applied":{"Ok":[{"Put":["Updated",{"key":{"kind":"MeshTCPRoute","mesh":"default","name":"r"},"#,
        r#""labels":{},"spec":{"targetRef":{"kind":"Mesh"},"to":[{"targetRef":{"kind":"MeshService","name":"web"},"rules":[{"default":{"backendRefs":[{"kind":"MeshService","name":"web-v2","weight":1}]}}]}]},"zone":null,"version":2,"revision":7,"#,
        r#""created_at":"2026-01-02T03:04:05Z","modified_at":"2026-01-02T03:04:05Z"}]},"#,
        r#"{"Deleted":{"keys":[{"kind":"MeshTCPRoute","mesh":"default","name":"r"}],"revision":8}},"#,
        r#""SettingSet"]}}"#
    );
    const GOLDEN_REFUSAL: &str = concat!(
        r#"{"Applied":{"Err":{"Conflict":{"key":{"kind":"MeshTCPRoute","mesh":"default","name":"r"},"#,
        r#""expected":3,"actual":null}}}}"#
    );

    /// The golden MeshTCPRoute's spec, in its canonical form.
    fn route_spec() -> SpecBody {
        SpecBody::parse_json(
            ResourceKind::MeshTcpRoute,
            br#"{"targetRef":{"kind":"Mesh"},"to":[{"targetRef":{"kind":"MeshService","name":"web"},"rules":[{"default":{"backendRefs":[{"kind":"MeshService","name":"web-v2","weight":1}]}}]}]}"#,
        )
        .unwrap()
    }

    fn key() -> ResourceKey {
        ResourceKey::in_mesh(ResourceKind::MeshTcpRoute, "default", "r")
    }

    #[test]
    fn the_log_format_is_stable() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let command = Command::Apply {
            ops: vec![
                WriteOp::Put(
                    NewResource {
                        key: key(),
                        labels: BTreeMap::from([("team".to_owned(), "a".to_owned())]),
                        spec: route_spec(),
                        zone: Some("z".to_owned()),
                    },
                    Precondition::Version(3),
                ),
                WriteOp::Delete(key(), Precondition::Absent),
                WriteOp::Put(
                    NewResource {
                        key: ResourceKey::global(ResourceKind::Mesh, "m"),
                        labels: BTreeMap::new(),
                        spec: SpecBody::parse(ResourceKind::Mesh, serde_json::json!({})).unwrap(),
                        zone: None,
                    },
                    Precondition::Any,
                ),
                WriteOp::SetSetting {
                    key: "k".to_owned(),
                    value: "v".to_owned(),
                },
            ],
            now,
        };
        assert_eq!(serde_json::to_string(&command).unwrap(), GOLDEN_COMMAND);
        let decoded: Command = serde_json::from_str(GOLDEN_COMMAND).unwrap();
        assert_eq!(decoded, command);

        let stored = StoredResource {
            key: key(),
            labels: BTreeMap::new(),
            spec: route_spec(),
            zone: None,
            version: 2,
            revision: 7,
            created_at: now,
            modified_at: now,
        };
        let response = CommandResponse::Applied(Ok(vec![
            WriteOutcome::Put(PutOutcome::Updated, stored),
            WriteOutcome::Deleted {
                keys: vec![key()],
                revision: 8,
            },
            WriteOutcome::SettingSet,
        ]));
        assert_eq!(serde_json::to_string(&response).unwrap(), GOLDEN_RESPONSE);
        let decoded: CommandResponse = serde_json::from_str(GOLDEN_RESPONSE).unwrap();
        assert_eq!(decoded, response);

        let refused = CommandResponse::Applied(Err(StoreError::Conflict {
            key: key(),
            expected: 3,
            actual: None,
        }));
        assert_eq!(serde_json::to_string(&refused).unwrap(), GOLDEN_REFUSAL);
    }

    #[test]
    fn store_errors_round_trip_through_the_wire() {
        let errors = [
            StoreError::NotFound(key()),
            StoreError::AlreadyExists(key()),
            StoreError::Conflict {
                key: key(),
                expected: 3,
                actual: None,
            },
            StoreError::MeshNotFound {
                key: key(),
                mesh: "m".into(),
            },
            StoreError::ZoneNotFound {
                key: key(),
                zone: "z".into(),
            },
            StoreError::Invalid {
                key: key(),
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
            let json = serde_json::to_string(&error).expect("serializes");
            let back: StoreError = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(back, error);
        }
    }

    #[test]
    fn an_unknown_kind_does_not_decode() {
        let json = r#"{"kind":"Nope","mesh":"","name":"x"}"#;
        assert!(serde_json::from_str::<ResourceKey>(json).is_err());
    }
}
