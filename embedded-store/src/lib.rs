//! Meridian's embedded store: the [`meridian_store::Store`] trait on an openraft
//! state machine persisted in redb — the zero-dependency default for `meridian up`
//! and for zone control planes.
//!
//! Today the Raft group has one node (id 1); a later issue makes it three nodes over
//! gRPC, which only replaces [`network`] and adds the read barriers marked `HA:` in
//! [`store`].
//!
//! # Data flow
//!
//! ```text
//!  Store::apply(ops) ─┐  leader stamps `now`             ┌──────────────────────────┐
//!  compact, insight,  ├─▶ Command ─▶ raft.client_write ─▶│ openraft (node 1)        │
//!  setting_or_insert ─┘     (types.rs)                   │  ├─ LogStore  (log_store)│──▶ raft-log.redb
//!                                                        │  │   log, vote, committed,│     log, log_meta
//!                                                        │  │   last purged         │
//!                                                        │  ├─ StateMachine         │──▶ state.redb
//!                                                        │  │   one redb txn / entry │     resources, change_log,
//!                                                        │  │   snapshots (build,    │     latest_change, settings,
//!                                                        │  │   install, current)   │     zone_insights, sm_meta,
//!                                                        │  └─ SingleNodeNetwork    │     snapshot
//!                                                        │      (network.rs)        │
//!                                                        └───────────┬──────────────┘
//!  CommandResponse (Ok outcomes | StoreError)     ◀── client_write ──┘
//!                                                        │ after each batch that used revisions
//!                                                        ▼
//!  Store::watch() ◀── watch::Sender<Revision> (never moves back)
//!
//!  Store::get / list / changes_since / snapshot / … ─▶ redb read txn on state.redb
//! ```
//!
//! # Files
//!
//! Two redb files in the data directory: [`LOG_FILE`] for the Raft log and
//! [`STATE_FILE`] for the state machine. They are separate because their lifecycles
//! differ (the log is appended and purged, the state is rewritten by snapshot
//! installs) and so a log append never waits on the state machine's writer.
//!
//! # Semantics
//!
//! Identical to the PostgreSQL backend (the conformance suite checks): revisions,
//! change log with tombstones, cascade deletes of what a Mesh or Zone owns (owned
//! tombstones first, in `(type name, mesh, name)` order), unchanged puts use no
//! revision, a refused batch writes nothing. Zone insights are replicated state, kept in
//! the state machine and written through Raft with their own command that never touches
//! the revision counter: deleting a Zone deletes its insight in the same applied entry,
//! and every replica of the future three-node group serves the same insight.
//!
//! # Snapshots
//!
//! A Raft snapshot is every state table as one JSON document plus openraft's meta
//! (last applied log id, membership); built after
//! [`EmbeddedStoreOptions::snapshot_logs_since_last`] entries, after which the log is
//! purged up to [`EmbeddedStoreOptions::max_in_snapshot_log_to_keep`] entries behind it.

mod blocking;
pub mod cluster;
mod error;
pub mod forward;
pub mod group_status;
pub mod log_store;
pub mod network;
pub mod raft_service;
pub mod state_machine;
pub mod store;
mod tables;
pub mod types;

pub use cluster::{RaftCluster, RaftTiming, RaftTls};
pub use error::EmbeddedStoreError;
pub use group_status::GroupStatus;
pub use log_store::LogStore;
pub use state_machine::StateMachine;
pub use store::{EmbeddedStore, EmbeddedStoreOptions, LOG_FILE, STATE_FILE};
pub use types::{Command, CommandResponse, TypeConfig};
