//! The zone's side of KDS: it dials global, keeps both streams up, and reconnects
//! with exponential backoff and jitter when global is unreachable — while the zone
//! keeps serving from its own store.
//!
//! ```text
//!  global ──GlobalToZone deltas──▶ Inbound(FromGlobal) ──▶ zone store ("kds.global.applied")
//!  zone store ──Outbound(ZoneToGlobal scope)──▶ ZoneToGlobal deltas (+ heartbeats) ──▶ global
//! ```

pub(crate) mod client;
mod session;

pub use client::{KdsClientConfig, run};
