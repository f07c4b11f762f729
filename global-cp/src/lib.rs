//! Meridian's global control plane: the single source of truth for meshes and
//! policies.
//!
//! ```text
//! operator ──REST──▶ api (axum) ──▶ meridian_model (parse + validate every field)
//!                                 ──▶ Store (PostgreSQL or embedded): resources,
//!                                     revisions, change log ──▶ zones (KDS, later)
//! ```
//!
//! [`GlobalCp::start`] binds the REST API on a store and runs the background duties
//! (change-log compaction, the revision gauge). The `meridian global-cp` command is a
//! thin wrapper around it.

pub mod api;
pub mod auth;
pub mod compaction;
mod server;
pub mod telemetry;
pub mod zone_token;

pub use server::{GlobalCp, GlobalCpConfig, StartError};
