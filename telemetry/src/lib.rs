//! Telemetry every Meridian process shares: the process-wide Prometheus recorder
//! and the HTTP plumbing to expose it.
//!
//! ```text
//!  metrics::counter!/gauge!/histogram! ──▶ recorder (installed once per process)
//!                                               │ render()
//!      control planes: REST API /metrics ◀──────┤
//!      proxies: admin server  /metrics ◀────────┘   + /healthz, /readyz
//! ```
//!
//! - [`prometheus`] ([`recorder`]): the recorder's handle, installing it on first
//!   use; several servers in one process (tests, `meridian up`) share it.
//! - [`serve`] ([`server`]): bind a router, serve it until [`HttpServer::shutdown`],
//!   then drain in-flight requests. The REST API and the admin server both run on it.
//! - [`admin`]: the admin routes of the proxies (`/healthz`, `/readyz` from a
//!   [`ReadinessCheck`], `/metrics`) and [`admin::start`].
//!
//! Invariant: this crate depends on neither a store nor a database driver, so a
//! proxy links it without linking sqlx.

pub mod admin;
pub mod recorder;
pub mod server;

pub use admin::ReadinessCheck;
pub use recorder::{metrics_response, prometheus};
pub use server::{BindError, HttpServer, serve};
