//! Meridian's global control plane: the single source of truth for meshes and
//! policies.
//!
//! ```text
//! operator ──REST──▶ meridian_api (Role::Global) ──▶ meridian_model (parse + validate)
//!                                 ──▶ Store (PostgreSQL or embedded): resources,
//!                                     revisions, change log ──▶ zones (KDS, later)
//! ```
//!
//! [`GlobalCp::start`] binds the REST API and KDS on a store and runs the background
//! duties (change-log compaction, mesh CAs, insight expiry) while this replica is
//! elected: several replicas may share one PostgreSQL database, and
//! [`duty_election`] picks the one that runs them. The `meridian global-cp` command
//! is a thin wrapper around it. The REST layer itself lives in `meridian-api`, shared
//! with zone control planes; it is re-exported here as [`api`].

pub mod compaction;
pub mod duty_election;
pub mod insight_expiry;
pub mod kds;
pub mod mesh_ca;
mod server;

pub use duty_election::DutyElection;
pub use meridian_api as api;
pub use meridian_api::{auth, telemetry, zone_token};
pub use server::{GlobalCp, GlobalCpConfig, KdsSettings, StartError};
