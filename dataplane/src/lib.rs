//! The sidecar data plane (`meridian dp`).
//!
//! A sidecar registers its `Dataplane` with the zone control plane
//! ([`registration`], [`run()`]), receives its [`ProxyConfig`](meridian_proxy_api::ProxyConfig)
//! and workload certificate on two `watch` channels, and carries its app's
//! TCP traffic ([`Sidecar`]):
//!
//! ```text
//!   app ──▶ outbound listener ─ backend by weight ─ endpoint by Balancer ─┐  mTLS (SNI = backend)
//!                                                                        ▼
//!   other sidecar / zone ingress / zone egress ───────────────▶ inbound listener
//!                                      TLS terminated, SPIFFE ID → MeshTrafficPermission ──▶ app
//! ```
//!
//! - [`sidecar`]: the reconcile loop, with one TCP listener per inbound and
//!   outbound address, kept across updates (`listeners.rs`).
//! - [`inbound`]: mTLS termination, permissions, relay to the app.
//! - [`outbound`]: backend and endpoint choice, retries, mTLS origination.
//! - [`health_check`]: MeshHealthCheck TCP probes feeding the balancers.
//! - [`registration`]: the Dataplane document from flags or a file.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`run`](mod@run): all of it as `meridian dp` runs it.
//!
//! Nothing a peer sends can make the sidecar panic: every per-connection
//! failure is logged, counted ([`telemetry`]) and ends that connection only.

pub mod admin;
pub mod error;
pub mod health_check;
pub mod inbound;
mod listeners;
pub mod outbound;
pub mod registration;
pub mod run;
pub mod sidecar;
mod state;
pub mod telemetry;
mod tls;

pub use admin::AdminServer;
pub use error::DataplaneError;
pub use registration::{
    DataplaneFlags, InboundFlag, OutboundFlag, TagFlag, dataplane_from_flags,
    registration_from_file, registration_from_flags,
};
pub use run::{DEFAULT_ZONE_CP, DataplaneSource, DpOptions, RunSettings, Running, run};
pub use sidecar::{Applied, DEFAULT_DRAIN_TIMEOUT, Readiness, Sidecar};
pub use tls::TlsUnavailable;
