//! KDS sync logic shared by both ends of both streams.
//!
//! Both directions of KDS do the same two jobs, so they live here once:
//!
//! ```text
//!  sender store ──changes_since(R) / snapshot──▶ Outbound ──Changes msgs──▶ (gRPC)
//!  (gRPC) ──Changes msgs──▶ Inbound: validate (NACK bad ones), transform (stamp the
//!        owner zone, rename), apply in ONE store transaction together with
//!        "sender revision applied = through" ──▶ receiver store
//! ```
//!
//! - global→zone: global is the sender, scope [`scope::GlobalToZone`]; the zone
//!   applies with [`transform::FromGlobal`].
//! - zone→global: the zone is the sender, scope [`scope::ZoneToGlobal`]; global
//!   applies with [`transform::FromZone`], which stamps the zone's name on every
//!   resource, so a zone can only ever touch its own resources.
//!
//! The receiver persists the last sender revision it applied; on reconnect the sender
//! continues from it ([`Outbound::stream`]), falling back to a chunked, scoped full
//! sync only when its change log was compacted past that revision. After a
//! snapshot's last chunk, the receiver deletes what is in scope but was not in it.
//!
//! Around that:
//! - [`fanout`]: one change-log read per commit per process, decoded once and
//!   broadcast to every session (each applies its scope); a session that lags it
//!   reads the store itself.
//! - [`session`]: the send, ACK and receive loops with their bounded queues and send
//!   timeouts, used by global's service and the zone's client alike.
//! - [`zone_token`]: the zone tokens KDS admits zones with (issued through REST).
//!
//! ```text
//!  Store::watch ─▶ Fanout ─Arc<Batch>─▶ session::send_loop ─▶ Queue ─▶ peer
//!                    (lag/gap) └────────▶ Outbound::stream (store) ┘
//!  peer ─▶ session::receive_loop ─▶ Inbound::apply ─▶ store ; ACK ─▶ Queue ─▶ peer
//! ```

pub mod convert;
mod error;
pub mod fanout;
mod inbound;
mod outbound;
pub mod scope;
pub mod session;
pub mod transform;
pub mod zone_token;

pub use error::KdsError;
pub use fanout::Fanout;
pub use inbound::{Applied, Inbound};
pub use outbound::{CatchUp, CatchUpStream, DEFAULT_MAX_MESSAGE_BYTES, Outbound};
pub use scope::Scope;
pub use transform::Transform;

/// A fresh random nonce for a message.
pub fn nonce() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// How many revisions a receiver that applied everything through `applied` is behind
/// a sender at revision `sender`: never negative, and no overflow whatever revisions
/// a peer reports (both come off the wire).
pub fn lag_revisions(sender: meridian_store::Revision, applied: meridian_store::Revision) -> i64 {
    sender.saturating_sub(applied).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_never_overflows() {
        assert_eq!(lag_revisions(10, 7), 3);
        assert_eq!(lag_revisions(7, 10), 0);
        // `global_revision - through` overflowed (a panic in debug builds) on these.
        assert_eq!(lag_revisions(i64::MIN, 1), 0);
        assert_eq!(lag_revisions(i64::MAX, -1), i64::MAX);
        assert_eq!(lag_revisions(i64::MAX, i64::MIN), i64::MAX);
    }
}
