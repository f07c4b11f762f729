//! The KDS gRPC service on global: authenticates each zone, then runs one task per
//! stream on the shared session engine ([`meridian_kds::session`]: separate send and
//! receive loops, bounded queues and send timeouts), so a slow zone never blocks
//! another and never deadlocks its own stream. This file supplies global's sides:
//! insights and metrics per zone, and the disabled-zone check.
//!
//! Every global→zone session reads the one [`Fanout`] of this replica (started with
//! the first stream): a commit is read from the store once, not once per zone.
//!
//! Each stream is admitted by leader term first ([`super::fencing`]): a stream whose
//! term is lower than the highest this replica has seen for its zone is refused with
//! `FAILED_PRECONDITION`, and one with a higher term ends the zone's older streams.
//!
//! A session also ends, with `UNAUTHENTICATED`, when the zone token it was admitted
//! with is taken back: revoked, or signed with a key since rotated. Sessions re-check
//! their token whenever [`ZoneTokens::changes`] wakes them, which happens at once for
//! a change made through this replica and within the refresh interval for one made
//! through another. Refused admissions are counted in
//! `meridian_kds_zone_refused_total{reason}`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use meridian_kds::fanout::Batch;
use meridian_kds::scope::{GlobalToZone, ZoneToGlobal};
use meridian_kds::session::{
    self, AckSide, Pending, QUEUE, Queue, ReceiveSide, SendSide, Sent, SessionEnd,
};
use meridian_kds::transform::FromZone;
use meridian_kds::zone_token::{CheckError, TokenError, ZoneTokens};
use meridian_kds::{Applied, Fanout, Inbound, KdsError, Outbound};
use meridian_model::{ResourceKind, Spec, SpecBody, ZoneSpec};
use meridian_proto::kds::kds_server::Kds;
use meridian_proto::kds::{
    self, GlobalAck, GlobalDelta, ZoneDelta, ZoneToGlobalAck, global_ack, zone_to_global_ack,
};
use meridian_proto::metadata;
use meridian_store::{NewResource, Precondition, ResourceKey, Store, StoreError};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use super::fencing::{self, Direction, ZoneStreams};
use super::insight::Insights;

/// Full snapshots read at once unless [`KdsService::with_full_sync_limit`] says.
pub const DEFAULT_FULL_SYNCS: usize = 4;

/// The zone must subscribe within this time of opening the stream.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The KDS service.
#[derive(Clone)]
pub struct KdsService {
    store: Arc<dyn Store>,
    tokens: ZoneTokens,
    insights: Insights,
    /// Each zone's live streams and highest leader term on this replica.
    streams: ZoneStreams,
    /// Every live stream's task, so shutdown can end and await them.
    sessions: TaskTracker,
    /// Full snapshots read at once, across every zone (admission control after
    /// a restart, when every zone may need one).
    full_syncs: Arc<Semaphore>,
    /// The one change-log reader every global→zone session of this replica reads
    /// from (started with the first stream).
    fanout: Arc<OnceLock<Fanout>>,
    stop: CancellationToken,
}

/// Who is at the other end of a stream. Holds its token: never log or print it.
struct Peer {
    zone: String,
    /// The zone token the stream was admitted with, re-checked on token changes.
    token: String,
    /// Token changes since just before the admission check, so none is missed.
    token_changes: watch::Receiver<u64>,
    version: String,
    features: Vec<String>,
    /// The zone replica's leader term (0 when it sent none).
    term: u64,
}

fn header<'a>(request_metadata: &'a tonic::metadata::MetadataMap, key: &str) -> Option<&'a str> {
    request_metadata.get(key).and_then(|v| v.to_str().ok())
}

impl KdsService {
    /// A service over `store`, verifying zone tokens with `tokens`.
    pub fn new(store: Arc<dyn Store>, tokens: ZoneTokens, insights: Insights) -> Self {
        KdsService {
            store,
            tokens,
            insights,
            streams: ZoneStreams::default(),
            sessions: TaskTracker::new(),
            full_syncs: Arc::new(Semaphore::new(DEFAULT_FULL_SYNCS)),
            fanout: Arc::default(),
            stop: CancellationToken::new(),
        }
    }

    /// Lets at most `limit` zones read a full snapshot at once (at least 1).
    pub fn with_full_sync_limit(mut self, limit: usize) -> Self {
        self.full_syncs = Arc::new(Semaphore::new(limit.max(1)));
        self
    }

    /// Ends every stream and waits until each has recorded its zone's last insight,
    /// so nothing touches the store after this returns.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.sessions.close();
        self.sessions.wait().await;
    }

    /// Admits a stream of `peer` by its leader term (see [`fencing`]).
    fn fence(&self, peer: &Peer, direction: Direction) -> Result<fencing::Stream, Status> {
        self.streams
            .open(&peer.zone, peer.term, direction)
            .map_err(|stale| {
                tracing::warn!(zone = %peer.zone, %stale, "refused a stream of an older zone leader");
                Status::failed_precondition(stale.to_string())
            })
    }

    /// Runs one stream's session as a tracked task: insight bookkeeping around it, an
    /// end when a stream of a newer zone leader supersedes it (told to the zone on
    /// `tx`), and an end on shutdown.
    fn spawn_session<T: Send + 'static>(
        &self,
        peer: Peer,
        mut fence: fencing::Stream,
        stream: &'static str,
        tx: Queue<Result<T, Status>>,
        session: impl Future<Output = String> + Send + 'static,
    ) {
        let service = self.clone();
        self.sessions.spawn(async move {
            let zone = peer.zone;
            service
                .insights
                .stream_opened(&zone, &peer.version, peer.features);
            let reason = tokio::select! {
                reason = session => reason,
                term = fence.superseded() => {
                    let reason = format!("superseded by a stream with leader term {term}");
                    tx.try_send(Err(Status::failed_precondition(reason.clone())));
                    reason
                }
                refused = service.token_withdrawn(&peer.token, &zone, peer.token_changes) => {
                    let reason = refused.to_string();
                    tracing::warn!(%zone, reason = refused.label(), "ending a KDS stream: its zone token is no longer valid");
                    tx.try_send(Err(Status::unauthenticated(reason.clone())));
                    reason
                }
                _ = service.stop.cancelled() => "global is shutting down".to_owned(),
            };
            // The stream ends with the last sender; the fence is released with it.
            drop((tx, fence));
            tracing::info!(%zone, term = peer.term, %reason, "{stream} stream ended");
            service.insights.stream_closed(&zone);
            service.insights.flush(service.store.as_ref()).await;
        });
    }

    /// Checks the zone token against the claimed zone and that the zone may sync,
    /// creating its Zone record on first contact.
    async fn admit(&self, request_metadata: &tonic::metadata::MetadataMap) -> Result<Peer, Status> {
        let zone = header(request_metadata, metadata::ZONE).ok_or_else(|| {
            Status::unauthenticated(format!("missing {} metadata", metadata::ZONE))
        })?;
        let token = header(request_metadata, "authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                metrics::counter!("meridian_kds_zone_refused_total", "reason" => "missing_token")
                    .increment(1);
                Status::unauthenticated("missing zone token (authorization: Bearer <token>)")
            })?;
        let token = token.trim();
        let token_changes = self.tokens.changes();
        match self.tokens.check(self.store.as_ref(), token, zone).await {
            Ok(_) => {}
            Err(CheckError::Refused(error)) => {
                metrics::counter!("meridian_kds_zone_refused_total", "reason" => error.label())
                    .increment(1);
                tracing::info!(%zone, reason = error.label(), "refused a zone's KDS stream");
                return Err(match error {
                    TokenError::WrongZone { .. } => Status::permission_denied(error.to_string()),
                    _ => Status::unauthenticated(error.to_string()),
                });
            }
            Err(CheckError::Store(error)) => return Err(store_status(error)),
        }
        let key = ResourceKey::global(ResourceKind::Zone, zone);
        match self.store.get(&key).await.map_err(store_status)? {
            Some(existing) if !zone_spec_enabled(existing.spec.spec()) => {
                metrics::counter!("meridian_kds_zone_refused_total", "reason" => "disabled")
                    .increment(1);
                return Err(Status::permission_denied(format!(
                    "zone {zone} is disabled (Zone.enabled = false)"
                )));
            }
            Some(_) => {}
            None => {
                let zone_resource = NewResource {
                    key,
                    labels: BTreeMap::new(),
                    spec: SpecBody::new(Spec::Zone(ZoneSpec::default())),
                    zone: None,
                };
                match self.store.put(zone_resource, Precondition::Absent).await {
                    Ok(_) => {
                        tracing::info!(%zone, "zone connected for the first time; created its Zone")
                    }
                    Err(StoreError::AlreadyExists(_)) => {}
                    Err(error) => return Err(store_status(error)),
                }
            }
        }
        Ok(Peer {
            zone: zone.to_owned(),
            token: token.to_owned(),
            token_changes,
            version: header(request_metadata, metadata::VERSION)
                .unwrap_or("")
                .to_owned(),
            features: header(request_metadata, metadata::FEATURES)
                .map(|f| {
                    f.split(',')
                        .map(str::trim)
                        .filter(|f| !f.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            term: leader_term(request_metadata)?,
        })
    }

    /// Resolves once `token`, with which a session of `zone` was admitted, is no
    /// longer valid: revoked, or signed with a key since rotated. Re-checks whenever
    /// the zone tokens change; expiry alone does not end a session (it is checked at
    /// admission). A re-check the store cannot answer is retried every second.
    async fn token_withdrawn(
        &self,
        token: &str,
        zone: &str,
        mut changes: watch::Receiver<u64>,
    ) -> TokenError {
        let mut retry = false;
        loop {
            if retry {
                tokio::time::sleep(Duration::from_secs(1)).await;
            } else if changes.changed().await.is_err() {
                // The tokens outlive every session; without them nothing can change.
                std::future::pending::<()>().await;
            }
            retry = false;
            match self.tokens.check(self.store.as_ref(), token, zone).await {
                Ok(_) | Err(CheckError::Refused(TokenError::Expired { .. })) => {}
                Err(CheckError::Refused(error)) => return error,
                Err(CheckError::Store(error)) => {
                    tracing::warn!(%zone, %error, "could not re-check a zone token; retrying");
                    retry = true;
                }
            }
        }
    }

    async fn zone_enabled(&self, zone: &str) -> bool {
        match self
            .store
            .get(&ResourceKey::global(ResourceKind::Zone, zone))
            .await
        {
            Ok(Some(z)) => zone_spec_enabled(z.spec.spec()),
            Ok(None) => false,
            // A store outage is not a reason to drop zones; the send path notices it.
            Err(_) => true,
        }
    }
}

/// The zone replica's leader term from [`metadata::LEADER_TERM`]; absent = 0.
fn leader_term(request_metadata: &tonic::metadata::MetadataMap) -> Result<u64, Status> {
    match request_metadata.get(metadata::LEADER_TERM) {
        None => Ok(0),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "{} must be a non-negative integer",
                    metadata::LEADER_TERM
                ))
            }),
    }
}

fn store_status(error: StoreError) -> Status {
    if error.is_retryable() {
        Status::unavailable(error.to_string())
    } else {
        Status::internal(error.to_string())
    }
}

fn kds_status(error: KdsError) -> Status {
    match error {
        KdsError::Store(error) => store_status(error),
        KdsError::Protocol(reason) => {
            Status::invalid_argument(format!("protocol violation: {reason}"))
        }
        other => Status::internal(other.to_string()),
    }
}

/// Tells the zone why its stream ends when this end failed; returns the reason.
async fn ended<T: Send>(end: SessionEnd, queue: &Queue<Result<T, Status>>, failed: &str) -> String {
    match end {
        SessionEnd::Closed(reason) => reason,
        SessionEnd::Transport(status) => format!("receive error: {}", status.message()),
        SessionEnd::Failed(error) => {
            let status = kds_status(error);
            let _ = queue.send(Err(status.clone())).await;
            format!("{failed}{}", status.message())
        }
    }
}

/// global→zone for one zone: what the session engine needs from global.
struct ToZone<'a> {
    service: &'a KdsService,
    zone: &'a str,
    /// The zone's own Zone record: a batch touching it may have disabled the zone.
    zone_key: ResourceKey,
    queue: Queue<Result<GlobalDelta, Status>>,
}

impl SendSide for ToZone<'_> {
    type Wire = Result<GlobalDelta, Status>;

    fn wrap(&self, changes: kds::Changes, global_revision: i64) -> Self::Wire {
        Ok(GlobalDelta {
            changes: Some(changes),
            global_revision,
        })
    }

    fn sending(&self, counts: &BTreeMap<String, u64>, global_revision: i64) {
        let zone = self.zone;
        self.service.insights.update(zone, |i| {
            for (t, n) in counts {
                *i.global_to_zone.sent.entry(t.clone()).or_insert(0) += n;
                metrics::counter!("meridian_kds_resources_sent_total", "zone" => zone.to_owned(), "type" => t.clone()).increment(*n);
            }
            i.global_revision = global_revision;
        });
    }

    fn caught_up(&self, revision: i64) {
        // Nothing in scope changed: the zone is as current as global.
        self.service
            .insights
            .update(self.zone, |i| i.set_positions(revision, revision));
    }

    async fn check(&self, batch: Option<&Batch>) -> Result<(), SessionEnd> {
        // Only a change to the zone's own record can disable it: no store read per
        // commit per zone.
        if batch.is_some_and(|b| !b.touches(&self.zone_key)) {
            return Ok(());
        }
        if self.service.zone_enabled(self.zone).await {
            return Ok(());
        }
        let status = Status::permission_denied(format!("zone {} was disabled", self.zone));
        let _ = self.queue.send(Err(status)).await;
        Err(SessionEnd::Closed("the zone was disabled".to_owned()))
    }

    fn peer(&self) -> &str {
        self.zone
    }
}

impl AckSide for ToZone<'_> {
    type Incoming = ZoneToGlobalAck;

    fn ack(&self, message: ZoneToGlobalAck) -> Result<Option<kds::Ack>, String> {
        match message.kind {
            Some(zone_to_global_ack::Kind::Ack(ack)) => Ok(Some(ack)),
            _ => Err("a second Subscribe".to_owned()),
        }
    }

    fn seen(&self) {
        self.service.insights.seen(self.zone);
    }

    fn acked(&self, sent: Option<Sent>, ack: &kds::Ack) {
        let zone = self.zone;
        let Some(Sent {
            through,
            counts: mut sent_counts,
        }) = sent
        else {
            tracing::warn!(%zone, nonce = %ack.nonce, "ACK for an unknown nonce");
            return;
        };
        self.service.insights.update(zone, |i| {
            for nack in &ack.nacks {
                let key = nack.key.clone().unwrap_or_default();
                *i.global_to_zone.nacked.entry(key.r#type.clone()).or_insert(0) += 1;
                if let Some(n) = sent_counts.get_mut(&key.r#type) {
                    *n = n.saturating_sub(1);
                }
                metrics::counter!("meridian_kds_resources_nacked_total", "zone" => zone.to_owned(), "type" => key.r#type.clone()).increment(1);
                tracing::warn!(%zone, resource = %format!("{} {}/{}", key.r#type, key.mesh, key.name), reason = %nack.reason, "zone NACKed a resource");
                i.global_to_zone.last_nack = Some(format!("{} {}/{}: {}", key.r#type, key.mesh, key.name, nack.reason));
            }
            for (t, n) in &sent_counts {
                *i.global_to_zone.acked.entry(t.clone()).or_insert(0) += n;
            }
            // Lag is measured against the revision this session last sent, which
            // the send loop keeps current: no store query per ACK.
            if through > 0 {
                i.set_positions(i.global_revision, through.max(i.revision_applied));
            }
        });
    }

    fn peer(&self) -> &'static str {
        "zone"
    }
}

/// zone→global for one zone: what the session engine needs from global.
struct FromZoneSide<'a> {
    service: &'a KdsService,
    zone: &'a str,
}

impl ReceiveSide for FromZoneSide<'_> {
    type Incoming = ZoneDelta;
    type Ack = Result<GlobalAck, Status>;

    fn unwrap(&self, delta: ZoneDelta) -> (kds::Changes, Option<i64>) {
        (delta.changes.unwrap_or_default(), None)
    }

    fn wrap_ack(&self, ack: kds::Ack) -> Self::Ack {
        Ok(GlobalAck {
            kind: Some(global_ack::Kind::Ack(ack)),
        })
    }

    fn seen(&self) {
        // A heartbeat ends here: in memory, flushed with the insight; no store write.
        self.service.insights.seen(self.zone);
    }

    fn applied(&self, received: &BTreeMap<String, u64>, applied: &Applied, _: Option<i64>) {
        let zone = self.zone;
        self.service.insights.update(zone, |i| {
            for (t, n) in received {
                *i.zone_to_global.sent.entry(t.clone()).or_insert(0) += n;
            }
            let mut ok = received.clone();
            for nack in &applied.nacks {
                let key = nack.key.clone().unwrap_or_default();
                *i.zone_to_global
                    .nacked
                    .entry(key.r#type.clone())
                    .or_insert(0) += 1;
                if let Some(n) = ok.get_mut(&key.r#type) {
                    *n = n.saturating_sub(1);
                }
                i.zone_to_global.last_nack = Some(format!(
                    "{} {}/{}: {}",
                    key.r#type, key.mesh, key.name, nack.reason
                ));
            }
            for (t, n) in ok {
                *i.zone_to_global.acked.entry(t).or_insert(0) += n;
            }
            if let Some(through) = applied.through {
                i.zone_revision_applied = through;
            }
        });
        for nack in &applied.nacks {
            let key = nack.key.clone().unwrap_or_default();
            tracing::warn!(%zone, resource = %format!("{} {}/{}", key.r#type, key.mesh, key.name), reason = %nack.reason, "NACKed a zone resource");
        }
    }

    fn peer(&self) -> &'static str {
        "zone"
    }
}

#[tonic::async_trait]
impl Kds for KdsService {
    type GlobalToZoneStream = ResponseStream<GlobalDelta>;
    type ZoneToGlobalStream = ResponseStream<GlobalAck>;

    async fn global_to_zone(
        &self,
        request: Request<Streaming<ZoneToGlobalAck>>,
    ) -> Result<Response<Self::GlobalToZoneStream>, Status> {
        let peer = self.admit(request.metadata()).await?;
        let fence = self.fence(&peer, Direction::GlobalToZone)?;
        let mut acks = request.into_inner();
        let first = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, acks.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Subscribe within 30 s"))??;
        let since = match first.and_then(|m| m.kind) {
            Some(zone_to_global_ack::Kind::Subscribe(subscribe)) => subscribe.since_revision,
            _ => {
                return Err(Status::invalid_argument(
                    "protocol violation: the first message must be a Subscribe",
                ));
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        tracing::info!(zone = %peer.zone, term = peer.term, since, "zone subscribed (global→zone)");
        let queue = Queue::new(tx, "zone");
        let (service, zone, session_queue) = (self.clone(), peer.zone.clone(), queue.clone());
        self.spawn_session(peer, fence, "global→zone", queue, async move {
            service
                .run_global_to_zone(&zone, since, acks, session_queue)
                .await
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn zone_to_global(
        &self,
        request: Request<Streaming<ZoneDelta>>,
    ) -> Result<Response<Self::ZoneToGlobalStream>, Status> {
        let peer = self.admit(request.metadata()).await?;
        let fence = self.fence(&peer, Direction::ZoneToGlobal)?;
        let deltas = request.into_inner();
        let (tx, rx) = mpsc::channel(QUEUE);
        let queue = Queue::new(tx, "zone");
        let (service, zone, session_queue) = (self.clone(), peer.zone.clone(), queue.clone());
        self.spawn_session(peer, fence, "zone→global", queue, async move {
            service
                .run_zone_to_global(&zone, deltas, session_queue)
                .await
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

impl KdsService {
    /// The process's one change-log reader, started with the first stream.
    fn fanout(&self) -> &Fanout {
        self.fanout
            .get_or_init(|| Fanout::start(self.store.clone()))
    }

    /// global→zone: send what the zone lacks, then every commit as it lands (from
    /// the shared fan-out). Returns why the stream ended.
    async fn run_global_to_zone(
        &self,
        zone: &str,
        since: i64,
        mut acks: Streaming<ZoneToGlobalAck>,
        queue: Queue<Result<GlobalDelta, Status>>,
    ) -> String {
        let outbound = Outbound::new(
            self.store.clone(),
            GlobalToZone {
                zone: zone.to_owned(),
            },
        )
        .with_snapshot_permits(self.full_syncs.clone());
        // Subscribed before the first store read, so no commit after it is missed.
        let feed = self.fanout().subscribe();
        let pending = Pending::default();
        let side = ToZone {
            service: self,
            zone,
            zone_key: ResourceKey::global(ResourceKind::Zone, zone),
            queue: queue.clone(),
        };
        let end = tokio::select! {
            end = session::send_loop(&outbound, feed, since, &queue, &pending, &side) => end,
            end = session::ack_loop(&mut acks, &pending, &side) => end,
        };
        ended(end, &queue, "could not read changes: ").await
    }

    /// zone→global: tell the zone where to resume, then apply what it sends.
    async fn run_zone_to_global(
        &self,
        zone: &str,
        mut deltas: Streaming<ZoneDelta>,
        queue: Queue<Result<GlobalAck, Status>>,
    ) -> String {
        let scope = ZoneToGlobal {
            zone: zone.to_owned(),
        };
        let transform = FromZone {
            zone: zone.to_owned(),
        };
        let mut inbound = Inbound::new(
            self.store.clone(),
            format!("kds.zone.{zone}.applied"),
            scope,
            transform,
        );
        let since = match inbound.applied_revision().await {
            Ok(since) => since,
            Err(error) => {
                let _ = queue.send(Err(kds_status(error))).await;
                return "could not read the resume point".to_owned();
            }
        };
        let resume = GlobalAck {
            kind: Some(global_ack::Kind::Resume(kds::Resume {
                since_revision: since,
            })),
        };
        if let Err(end) = queue.send(Ok(resume)).await {
            return end.to_string();
        }
        tracing::info!(%zone, since, "zone→global stream resumed");
        let side = FromZoneSide {
            service: self,
            zone,
        };
        let end = session::receive_loop(&mut inbound, &mut deltas, &queue, &side).await;
        ended(end, &queue, "").await
    }
}

/// Whether a stored Zone lets its zone sync (absent `enabled` means yes, as in Kuma).
fn zone_spec_enabled(spec: &Spec) -> bool {
    match spec {
        Spec::Zone(zone) => zone.is_enabled(),
        _ => true,
    }
}
