//! The KDS session engine: the send, ACK and receive loops of both directions, once.
//!
//! ```text
//!  sender (global→zone on global, zone→global on the zone)
//!    Fanout batch ──▶ send_loop: gap/lag? ──yes──▶ Outbound::stream(since) (store)
//!                         │ no: Outbound::from_batch (scope, chunks)
//!                         ▼
//!                     Queue (bounded, send timeout) ──▶ gRPC ──▶ peer
//!    peer ACKs ──▶ ack_loop: Pending (nonce → revision, counts) ──▶ side.acked
//!
//!  receiver (zone→global on global, global→zone on the zone)
//!    gRPC ──▶ receive_loop: Inbound::apply_batch (what arrived together, one
//!             transaction; NACKs per resource) ──▶ an ACK per message via Queue
//! ```
//!
//! Each end supplies a *side* ([`SendSide`], [`AckSide`], [`ReceiveSide`]): its wire
//! wrapping, insights or metrics, and extra checks (global ends a session whose zone
//! was disabled); scopes and transforms come with its [`Outbound`] and [`Inbound`].
//!
//! Invariants:
//! - Every queued message either reaches the peer's transport or the session ends:
//!   a peer that does not take a message within the send timeout is disconnected,
//!   so it never slows another session (each has its own queue).
//! - A sender's position only moves past what it queued; on any doubt about the
//!   fan-out (a gap, a lag) it reads the store from that position.
//! - Nothing received from the peer panics: protocol violations and store failures
//!   end the session with a [`SessionEnd`], bad resources are NACKed.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use meridian_proto::kds;
use meridian_store::Revision;
use tokio::sync::{broadcast, mpsc};

use crate::fanout::Batch;
use crate::{Applied, Inbound, KdsError, Outbound, Scope, Transform, nonce};

/// Messages queued per stream before the sender waits for the peer to read.
pub const QUEUE: usize = 16;
/// A peer that does not take a queued message within this time is disconnected.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    /// The peer or the transport ended it, or a side's check did (e.g. the zone
    /// was disabled): nothing more to tell the peer than the reason.
    #[error("{0}")]
    Closed(String),
    /// This end failed (store, protocol violation by the peer): tell the peer.
    #[error(transparent)]
    Failed(#[from] KdsError),
    /// Receiving failed with this status (the peer's, or the transport's).
    #[error("receive error: {}", .0.message())]
    Transport(tonic::Status),
}

/// A stream's bounded outgoing queue with a send timeout.
pub struct Queue<T> {
    tx: mpsc::Sender<T>,
    peer: &'static str,
    timeout: Duration,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            tx: self.tx.clone(),
            peer: self.peer,
            timeout: self.timeout,
        }
    }
}

impl<T: Send> Queue<T> {
    /// A queue onto `tx` whose reader is `peer` ("zone", "global") in reasons.
    pub fn new(tx: mpsc::Sender<T>, peer: &'static str) -> Self {
        Queue {
            tx,
            peer,
            timeout: SEND_TIMEOUT,
        }
    }

    /// Queues `item`, giving up on a peer that stopped reading.
    pub async fn send(&self, item: T) -> Result<(), SessionEnd> {
        match tokio::time::timeout(self.timeout, self.tx.send(item)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SessionEnd::Closed(format!(
                "the {} closed the stream",
                self.peer
            ))),
            Err(_) => Err(SessionEnd::Closed(format!(
                "the {} did not read its stream in time",
                self.peer
            ))),
        }
    }

    /// Queues `item` if there is room, without waiting (a last word on the way out).
    pub fn try_send(&self, item: T) {
        let _ = self.tx.try_send(item);
    }
}

/// Per-type resource counts of a message.
pub fn counts(changes: &kds::Changes) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for t in changes
        .upserts
        .iter()
        .map(|r| &r.r#type)
        .chain(changes.removals.iter().map(|k| &k.r#type))
    {
        *counts.entry(t.clone()).or_insert(0) += 1;
    }
    counts
}

/// What a message sent carried, until its ACK.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// The revision the receiver records once it applied the message (0 inside a
    /// snapshot).
    pub through: Revision,
    /// Resources by type.
    pub counts: BTreeMap<String, u64>,
}

/// Messages sent and not yet acknowledged, by nonce. Clones share one map.
#[derive(Debug, Clone, Default)]
pub struct Pending(Arc<Mutex<HashMap<String, Sent>>>);

impl Pending {
    fn insert(&self, nonce: String, sent: Sent) {
        if let Ok(mut pending) = self.0.lock() {
            pending.insert(nonce, sent);
        }
    }

    /// Takes what the message with `nonce` carried, if it is pending.
    pub fn take(&self, nonce: &str) -> Option<Sent> {
        self.0.lock().ok().and_then(|mut p| p.remove(nonce))
    }
}

/// What a sending end adds to [`send_loop`].
pub trait SendSide: Send + Sync {
    /// The wire message carrying [`kds::Changes`].
    type Wire: Send;

    /// Wraps a message; `sender_revision` is this end's latest revision.
    fn wrap(&self, changes: kds::Changes, sender_revision: Revision) -> Self::Wire;

    /// A message carrying `counts` resources is being queued.
    fn sending(&self, _counts: &BTreeMap<String, u64>, _sender_revision: Revision) {}

    /// The receiver is as current as `revision` (nothing in its scope was sent).
    fn caught_up(&self, _revision: Revision) {}

    /// Runs before anything from `batch` (or, with `None`, from a store read after
    /// the first) is sent; an `Err` ends the session.
    fn check(&self, _batch: Option<&Batch>) -> impl Future<Output = Result<(), SessionEnd>> + Send {
        async { Ok(()) }
    }

    /// The session left the fan-out for one store read: `"gap"` or `"lagged"`.
    fn fell_back(&self, _reason: &'static str) {}

    /// How often to send an empty message while idle, if at all.
    fn heartbeat(&self) -> Option<Duration> {
        None
    }

    /// Names the peer in logs.
    fn peer(&self) -> &str;
}

/// Sends what the receiver at `since` lacks, then every fan-out batch as it comes;
/// returns why the session ended (it never ends on its own). `feed` must have been
/// subscribed before this is called.
pub async fn send_loop<S: Scope, H: SendSide>(
    outbound: &Outbound<S>,
    mut feed: broadcast::Receiver<Arc<Batch>>,
    mut since: Revision,
    queue: &Queue<H::Wire>,
    pending: &Pending,
    side: &H,
) -> SessionEnd {
    let result: Result<std::convert::Infallible, SessionEnd> = async {
        since = from_store(outbound, since, queue, pending, side, true).await?;
        let mut heartbeat = side.heartbeat().map(tokio::time::interval);
        loop {
            let next = tokio::select! {
                next = feed.recv() => next,
                _ = tick(&mut heartbeat) => {
                    let beat = kds::Changes { nonce: nonce(), ..Default::default() };
                    queue.send(side.wrap(beat, outbound.known_revision())).await?;
                    continue;
                }
            };
            match next {
                Ok(batch) => {
                    if batch.through <= since {
                        continue;
                    }
                    if batch.from > since {
                        metrics::counter!("meridian_kds_fanout_fallbacks_total", "reason" => "gap")
                            .increment(1);
                        side.fell_back("gap");
                        since = from_store(outbound, since, queue, pending, side, false).await?;
                        continue;
                    }
                    side.check(Some(&batch)).await?;
                    let catch_up = outbound.from_batch(&batch, since);
                    for error in &catch_up.oversized {
                        tracing::error!(peer = side.peer(), %error, "resource not sent");
                    }
                    if catch_up.messages.is_empty() {
                        side.caught_up(batch.through);
                    }
                    let revision = outbound.known_revision().max(batch.through);
                    for message in catch_up.messages {
                        send_one(message, revision, queue, pending, side).await?;
                    }
                    since = batch.through;
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(
                        peer = side.peer(),
                        skipped,
                        "lagged the KDS fan-out; reading the store"
                    );
                    metrics::counter!("meridian_kds_fanout_fallbacks_total", "reason" => "lagged")
                        .increment(1);
                    side.fell_back("lagged");
                    since = from_store(outbound, since, queue, pending, side, false).await?;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(SessionEnd::Closed("the change feed closed".to_owned()));
                }
            }
        }
    }
    .await;
    match result {
        Ok(never) => match never {},
        Err(end) => end,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Streams a catch-up from the store; returns the revision reached.
async fn from_store<S: Scope, H: SendSide>(
    outbound: &Outbound<S>,
    since: Revision,
    queue: &Queue<H::Wire>,
    pending: &Pending,
    side: &H,
    first: bool,
) -> Result<Revision, SessionEnd> {
    if !first {
        side.check(None).await?;
    }
    let mut stream = outbound.stream(since).await?;
    let mut sent = 0usize;
    let mut resources = 0usize;
    while let Some(message) = stream.next().await? {
        for error in stream.take_oversized() {
            tracing::error!(peer = side.peer(), %error, "resource not sent");
        }
        resources += message.upserts.len() + message.removals.len();
        sent += 1;
        let revision = outbound.known_revision().max(message.through_revision);
        send_one(message, revision, queue, pending, side).await?;
    }
    for error in stream.take_oversized() {
        tracing::error!(peer = side.peer(), %error, "resource not sent");
    }
    let through = stream.through();
    if sent == 0 {
        side.caught_up(through);
    }
    if stream.is_snapshot() {
        tracing::info!(
            peer = side.peer(),
            revision = through,
            resources,
            messages = sent,
            "sent a full snapshot"
        );
    }
    Ok(through)
}

async fn send_one<H: SendSide>(
    message: kds::Changes,
    sender_revision: Revision,
    queue: &Queue<H::Wire>,
    pending: &Pending,
    side: &H,
) -> Result<(), SessionEnd> {
    let message_counts = counts(&message);
    side.sending(&message_counts, sender_revision);
    pending.insert(
        message.nonce.clone(),
        Sent {
            through: message.through_revision,
            counts: message_counts,
        },
    );
    queue.send(side.wrap(message, sender_revision)).await
}

/// What a sending end does with the ACKs it reads.
pub trait AckSide: Send + Sync {
    /// The wire message carrying an ACK.
    type Incoming: Send;

    /// The ACK in a message (`None`: a message to skip); `Err` (a protocol
    /// violation) ends the session.
    fn ack(&self, message: Self::Incoming) -> Result<Option<kds::Ack>, String>;

    /// Any message arrived (liveness).
    fn seen(&self) {}

    /// `ack` acknowledged a message that carried `sent` (`None`: a nonce this
    /// session did not send, or no longer knows, such as a heartbeat's).
    fn acked(&self, sent: Option<Sent>, ack: &kds::Ack);

    /// Names the peer in reasons.
    fn peer(&self) -> &'static str;
}

/// The peer's next message, or why the stream ended.
async fn next<M>(incoming: &mut tonic::Streaming<M>, peer: &str) -> Result<M, SessionEnd> {
    received(incoming.message().await, peer)
}

/// What a read from the peer's stream means for the session.
fn received<M>(read: Result<Option<M>, tonic::Status>, peer: &str) -> Result<M, SessionEnd> {
    match read {
        Ok(Some(message)) => Ok(message),
        Ok(None) => Err(SessionEnd::Closed(format!("the {peer} closed the stream"))),
        Err(status) => Err(SessionEnd::Transport(status)),
    }
}

/// Reads the peer's ACKs until the stream ends; returns why.
pub async fn ack_loop<A: AckSide>(
    incoming: &mut tonic::Streaming<A::Incoming>,
    pending: &Pending,
    side: &A,
) -> SessionEnd {
    loop {
        let message = match next(incoming, side.peer()).await {
            Ok(message) => message,
            Err(end) => return end,
        };
        side.seen();
        match side.ack(message) {
            Ok(Some(ack)) => side.acked(pending.take(&ack.nonce), &ack),
            Ok(None) => {}
            Err(reason) => return SessionEnd::Closed(format!("protocol violation: {reason}")),
        }
    }
}

/// What a receiving end adds to [`receive_loop`].
pub trait ReceiveSide: Send + Sync {
    /// The wire message carrying [`kds::Changes`].
    type Incoming: Send;
    /// The wire message carrying an ACK.
    type Ack: Send;

    /// The changes of a message, and the sender's revision if it reports one.
    fn unwrap(&self, message: Self::Incoming) -> (kds::Changes, Option<Revision>);

    /// Wraps an ACK.
    fn wrap_ack(&self, ack: kds::Ack) -> Self::Ack;

    /// Any message arrived (liveness; heartbeats included).
    fn seen(&self) {}

    /// A message carrying `received` resources was applied.
    fn applied(
        &self,
        received: &BTreeMap<String, u64>,
        applied: &Applied,
        sender_revision: Option<Revision>,
    );

    /// Names the peer in reasons.
    fn peer(&self) -> &'static str;
}

/// Most messages applied in one store transaction by [`receive_loop`].
pub const MAX_BATCH: usize = 64;

/// Applies every message from the peer and ACKs it (with its NACKs) until the
/// stream ends; returns why. Messages that arrived while the previous ones were
/// being applied are applied together ([`Inbound::apply_batch`]): one commit for
/// the lot, so a receiver that fell behind catches up instead of falling further.
pub async fn receive_loop<S: Scope, T: Transform, R: ReceiveSide>(
    inbound: &mut Inbound<S, T>,
    incoming: &mut tonic::Streaming<R::Incoming>,
    queue: &Queue<R::Ack>,
    side: &R,
) -> SessionEnd {
    loop {
        let first = match next(incoming, side.peer()).await {
            Ok(message) => message,
            Err(end) => return end,
        };
        let mut messages = vec![first];
        // What is already here, without waiting (`message()` keeps its state in
        // the stream, so dropping a pending call loses nothing). An end seen here
        // is returned once the messages before it are applied.
        let mut ended = None;
        while messages.len() < MAX_BATCH {
            match incoming
                .message()
                .now_or_never()
                .map(|read| received(read, side.peer()))
            {
                None => break,
                Some(Ok(message)) => messages.push(message),
                Some(Err(end)) => {
                    ended = Some(end);
                    break;
                }
            }
        }
        let mut changes = Vec::with_capacity(messages.len());
        let mut sender_revisions = Vec::with_capacity(messages.len());
        for message in messages {
            side.seen();
            let (message_changes, sender_revision) = side.unwrap(message);
            changes.push(message_changes);
            sender_revisions.push(sender_revision);
        }
        let applied = match inbound.apply_batch(&changes).await {
            Ok(applied) => applied,
            Err(error) => return SessionEnd::Failed(error),
        };
        metrics::histogram!("meridian_kds_apply_batch_messages").record(changes.len() as f64);
        for ((changes, applied), sender_revision) in
            changes.into_iter().zip(applied).zip(sender_revisions)
        {
            side.applied(&counts(&changes), &applied, sender_revision);
            let ack = kds::Ack {
                nonce: changes.nonce,
                nacks: applied.nacks,
            };
            if let Err(end) = queue.send(side.wrap_ack(ack)).await {
                return end;
            }
        }
        if let Some(end) = ended {
            return end;
        }
    }
}
