//! The SNI router shared by the zone ingress and the zone egress.
//!
//! Both zone proxies do the same thing with every connection: read the TLS
//! ClientHello without terminating TLS, look its server name up in the table the
//! zone control plane sent, pick an endpoint behind that name and splice the
//! bytes through, unchanged. They differ only in what the table holds:
//!
//! ```text
//!  client ──TLS──▶ SniProxy ── peek ClientHello (meridian-sni) ──▶ server name
//!                     │                                             │
//!                     │        RouteTable: sni → Balancer  ◀────────┘
//!                     │        (rebuilt from each ZoneProxyConfig; health kept)
//!                     ▼
//!              connect (≤ 3 endpoints) ──▶ write the peeked bytes ──▶ splice both ways
//!
//!  ingress routes: sni → the zone's local instances of the service
//!  egress  routes: sni → other zones' ingresses, weighted by their instances
//! ```
//!
//! - [`SniProxy`] ([`proxy`]): the accept loop and the route table it keeps
//!   current from a `watch` of [`meridian_proxy_api::ProxyConfig`].
//! - [`SniProxySettings`] ([`settings`]): peek limits, timeouts, connection limit.
//! - [`AdminServer`] ([`admin`]): `/healthz`, `/readyz`, `/metrics`.
//! - [`serve`] ([`run`]): what `meridian zone-ingress` and `meridian zone-egress`
//!   run: the config client, the proxy and the admin server, until shutdown.
//! - [`telemetry`]: metric names and the reasons a connection is refused.
//!
//! A connection that cannot be routed (no or unknown server name, not TLS, a peek
//! timeout, a hello over the size limit, no reachable endpoint) is closed on its
//! own, logged with the peer address and the reason, and counted in
//! `meridian_zone_proxy_rejected_total{reason}`; nothing a peer sends can panic
//! the proxy or affect other connections.

pub mod admin;
mod connection;
pub mod proxy;
mod routes;
pub mod run;
pub mod settings;
pub mod telemetry;

pub use admin::AdminServer;
pub use proxy::{SniProxy, StartError};
pub use run::{RunError, bind, bind_and_serve, serve};
pub use settings::SniProxySettings;
pub use telemetry::Rejection;
