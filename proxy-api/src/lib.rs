//! What a zone control plane tells its proxies, and how proxies listen.
//!
//! - [`config`]: [`ProxyConfig`], the whole configuration of a sidecar, zone
//!   ingress or zone egress, computed by the zone CP (which resolves policies,
//!   endpoints and SNI names) and sent as JSON inside the `meridian.dp.v1`
//!   stream (`proto/dp.proto`). One Rust type on both ends of the stream.
//! - [`client`]: [`ProxyClient`], the proxy side of that stream: registration,
//!   ACK/NACK, certificate requests and rotation, reconnects.

pub mod client;
pub mod config;
pub mod endpoints;

pub use client::{ClientError, ClientSettings, ProxyClient, Registration, WorkloadIdentity};
pub use config::*;
pub use meridian_proto::dp::ProxyKind;
