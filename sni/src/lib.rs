//! SNI for cross-zone traffic: the name format and peeking the TLS ClientHello
//! without terminating it.
//!
//! - [`name`]: [`SniTarget::to_sni`], the server name a sidecar sends so that a
//!   zone ingress or egress can route a connection by mesh, service and subset.
//! - [`peek`]: [`peek_client_hello`], which reads a connection's ClientHello
//!   (parsed by rustls, never by hand), returns its server name and ALPN, and keeps
//!   every byte read so the connection can be passed on unchanged.

pub mod name;
pub mod peek;

pub use name::{ResourceSni, SniTarget, is_valid_dns_name, looks_like_meridian_sni};
pub use peek::{PeekError, PeekLimits, PeekedHello, peek_client_hello};
