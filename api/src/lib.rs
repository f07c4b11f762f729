//! Meridian's REST API, shared by both kinds of control plane.
//!
//! ```text
//! operator ──REST──▶ router (axum: auth, limits, tracing, metrics)
//!                      ──▶ resources (parse + validate with meridian_model)
//!                      ──▶ Store (PostgreSQL or embedded)
//! ```
//!
//! The [`Role`] in [`AppState`] decides what a server accepts:
//!
//! - [`Role::Global`]: the source of truth. Meshes, policies and zones are written
//!   here; zone-owned kinds (Dataplane, ZoneIngress, ZoneEgress) are read-only
//!   because zones report them. `POST /tokens/zone` issues zone tokens,
//!   `/tokens/zone/revoke` and `/tokens/zone/rotate-key` take them back
//!   ([`tokens`], [`zone_token`]).
//! - [`Role::Zone`]: a zone's copy. Reads are the same paths and shapes as global;
//!   only zone-owned kinds may be written, and are stamped with the zone's name and
//!   `kuma.io/origin: zone`; everything else answers 405.
//!
//! Paths follow CONTRACT.md: `/meshes`, `/meshes/{mesh}`, `/meshes/{mesh}/{plural}`,
//! `/meshes/{mesh}/{plural}/{name}`, `/zones…`, `/zoneingresses…`, `/zoneegresses…`,
//! plus `/healthz`, `/readyz`, `/metrics` and `/openapi.json`, which need no token.
//! [`serve`] binds a router and runs it until shut down. [`auth`] decides who may
//! do what: the admin token everything, read-only tokens GET and HEAD.

pub mod auth;
pub mod body;
pub mod health;
pub mod load_shed;
pub mod openapi;
pub mod problem;
pub mod query;
pub mod raft;
pub mod resources;
pub mod router;
pub mod server;
pub mod telemetry;
pub mod tokens;
/// Zone tokens live beside KDS, which verifies them; the REST layer issues and
/// revokes them through this re-export.
pub use meridian_kds::zone_token;
pub mod zones;

pub use router::{ApiPath, AppState, Role, router};
pub use server::{ApiServer, BindError, serve};
