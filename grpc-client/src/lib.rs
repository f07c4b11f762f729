//! What every Meridian gRPC client shares: how long to wait before reconnecting,
//! and how to dial.
//!
//! ```text
//!  zone CP ──KDS client──▶ global        proxy ──config stream──▶ zone CP
//!  Raft replica ──RPCs──▶ peer replica
//!        │                                   │
//!        └──── ChannelConfig (TLS or plain, timeouts, keep-alive) ──▶ tonic Channel
//!        └──── Backoff: 100 ms, 200 ms, … 10 s, full jitter, reset on success
//! ```
//!
//! - [`Backoff`] ([`backoff`]): exponential backoff with full jitter. Pure: the
//!   caller sleeps (so it can also wait for shutdown) and passes the randomness.
//! - [`ChannelConfig`] ([`channel`]): an `https://` URL gets TLS trusting the given
//!   CA (or the web PKI roots) and optionally a client identity; an `http://` URL is
//!   dialled in plain HTTP/2. [`check_url`] is the rule for URLs an operator gives:
//!   plain HTTP only to a loopback address.
//!
//! - [`nodelay_incoming`] ([`accept`]): the servers' accepted connections, with
//!   `TCP_NODELAY` as the clients have it (the gRPC servers accept on listeners
//!   they bound themselves, which tonic's own option does not reach).
//!
//! Invariant: nothing here panics on what a peer or an operator supplies; bad URLs
//! and TLS material are [`ChannelError`]s.

pub mod accept;
pub mod backoff;
pub mod channel;

pub use accept::nodelay_incoming;
pub use backoff::{Backoff, INITIAL_BACKOFF, MAX_BACKOFF};
pub use channel::{ChannelConfig, ChannelError, check_url};
