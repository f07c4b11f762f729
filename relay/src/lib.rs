//! The L4 relay loop shared by the sidecar, zone ingress and zone egress.
//!
//! A proxy that has accepted a client connection and chosen an upstream hands both
//! streams to this crate, which copies bytes both ways until both directions have
//! ended:
//!
//! - [`relay`] works on any pair of `AsyncRead + AsyncWrite` streams (plain TCP, or
//!   TLS streams the proxy terminates or originates). It allocates one fixed buffer
//!   per direction when the connection starts and nothing per read.
//! - [`relay_tcp`] is the zero-copy path for TCP ↔ TCP when the proxy does not touch
//!   the bytes (zone ingress and egress forward mTLS they do not terminate). On Linux
//!   it moves bytes with `splice(2)` through a pipe per direction, never copying them
//!   into user space; elsewhere it is [`relay`].
//! - [`connect`] dials an upstream with the `MeshTimeout` connection timeout and sets
//!   `TCP_NODELAY`.
//! - [`ConnectionLimiter`] enforces `MeshCircuitBreaker`
//!   `connectionLimits.maxConnections`.
//!
//! **Half-close.** When one side reaches end of stream, the relay shuts down the write
//! half of the other side (so the other side sees end of stream too) and keeps copying
//! the opposite direction until it also ends. A client that writes a request, shuts
//! down its write half and then reads the whole response therefore works.
//!
//! **Idle timeout.** With [`RelayConfig::idle_timeout`] set, a connection over which no
//! byte has moved in either direction for that long ends with [`RelayError::Idle`].
//! The timer is one `tokio::time::Sleep` per connection, re-armed lazily from the time
//! of the last activity, so moving bytes does not touch the timer wheel.
//!
//! **Errors.** A failure in either direction ends the whole relay with a
//! [`RelayError`] naming the side, the operation and (when known) the peer address;
//! dropping the streams then closes both connections. No peer behaviour panics.
//!
//! **Metrics** (the `metrics` crate; names in [`telemetry`]): connections opened and
//! closed, bytes each way (counted as they move), idle timeouts, errors, connect
//! failures and timeouts, and connections refused by a limiter.

mod config;
mod connect;
mod copy;
mod error;
mod idle;
mod limit;
mod splice;
pub mod telemetry;

pub use config::{DEFAULT_BUFFER_SIZE, RelayConfig};
pub use connect::connect;
pub use copy::{RelayStats, Side, relay};
pub use error::{Direction, IoOp, RelayError};
pub use limit::{ConnectionLimiter, ConnectionPermit};
pub use splice::{SPLICE_SUPPORTED, relay_tcp};
