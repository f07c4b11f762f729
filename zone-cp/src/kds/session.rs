//! One KDS session: both streams over one connection. The loops themselves are
//! the shared engine ([`meridian_kds::session`]); this file supplies the zone's
//! sides: its metadata, metrics and heartbeats. The session ends when either stream
//! ends; the client reconnects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use meridian_kds::scope::{GlobalToZone, ZoneToGlobal};
use meridian_kds::session::{
    self, AckSide, Pending, Queue, ReceiveSide, SendSide, Sent, SessionEnd,
};
use meridian_kds::transform::FromGlobal;
use meridian_kds::{Applied, Fanout, Inbound, Outbound};
use meridian_proto::kds::kds_client::KdsClient;
use meridian_proto::kds::{
    self, GlobalAck, GlobalDelta, ZoneDelta, ZoneToGlobalAck, global_ack, zone_to_global_ack,
};
use meridian_proto::{features, metadata};
use meridian_store::Store;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;
use tonic::transport::Channel;

use super::client::{ClientError, KdsClientConfig};

/// Where the zone records the last global revision it applied.
pub const GLOBAL_REVISION_SETTING: &str = "kds.global.applied";

/// Set once a session got both streams going, so the next reconnect starts its
/// backoff afresh.
#[derive(Default)]
pub struct Connected(AtomicBool);

impl Connected {
    fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a session connected since the last call.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}

fn with_metadata<T>(message: T, config: &KdsClientConfig) -> Result<Request<T>, ClientError> {
    let mut request = Request::new(message);
    let headers = request.metadata_mut();
    let value = |text: String| {
        text.parse()
            .map_err(|_| ClientError::Config(format!("{text:?} is not a valid gRPC header value")))
    };
    headers.insert(
        "authorization",
        value(format!("Bearer {}", config.token.trim()))?,
    );
    headers.insert(metadata::ZONE, value(config.zone.clone())?);
    headers.insert(
        metadata::VERSION,
        value(env!("CARGO_PKG_VERSION").to_owned())?,
    );
    if config.leader_term > 0 {
        headers.insert(
            metadata::LEADER_TERM,
            value(config.leader_term.to_string())?,
        );
    }
    headers.insert(
        metadata::FEATURES,
        value(format!(
            "{},{}",
            features::DELTA,
            features::CHUNKED_SNAPSHOT
        ))?,
    );
    Ok(request)
}

/// Runs both streams until one ends. `fanout` reads this zone's store once per
/// commit for the zone→global stream (one per process, kept across sessions).
pub async fn run_both(
    client: KdsClient<Channel>,
    config: &KdsClientConfig,
    store: Arc<dyn Store>,
    fanout: &Fanout,
    connected: &Connected,
) -> Result<(), ClientError> {
    let down = global_to_zone(client.clone(), config, store.clone(), connected);
    let up = zone_to_global(client, config, store, fanout);
    tokio::select! {
        result = down => result,
        result = up => result,
    }
}

/// A session end as the client reports it: a stream ending normally is `Ok`.
fn client_result(end: SessionEnd, stream: &'static str) -> Result<(), ClientError> {
    match end {
        SessionEnd::Closed(reason) => {
            tracing::debug!(stream, %reason, "KDS stream ended");
            Ok(())
        }
        SessionEnd::Transport(status) => Err(ClientError::Stream { stream, status }),
        SessionEnd::Failed(error) => Err(ClientError::Sync(error)),
    }
}

/// global→zone on the zone: what the session engine needs.
struct FromGlobalSide;

impl ReceiveSide for FromGlobalSide {
    type Incoming = GlobalDelta;
    type Ack = ZoneToGlobalAck;

    fn unwrap(&self, delta: GlobalDelta) -> (kds::Changes, Option<i64>) {
        (
            delta.changes.unwrap_or_default(),
            Some(delta.global_revision),
        )
    }

    fn wrap_ack(&self, ack: kds::Ack) -> ZoneToGlobalAck {
        ZoneToGlobalAck {
            kind: Some(zone_to_global_ack::Kind::Ack(ack)),
        }
    }

    fn applied(
        &self,
        received: &BTreeMap<String, u64>,
        applied: &Applied,
        global_revision: Option<i64>,
    ) {
        let received: u64 = received.values().sum();
        metrics::counter!("meridian_kds_resources_received_total").increment(received);
        metrics::counter!("meridian_kds_resources_nacked_total")
            .increment(applied.nacks.len() as u64);
        if let Some(through) = applied.through {
            metrics::gauge!("meridian_kds_global_revision_applied").set(through as f64);
            metrics::gauge!("meridian_kds_lag_revisions")
                .set(
                    meridian_kds::lag_revisions(global_revision.unwrap_or(through), through) as f64,
                );
        }
        for nack in &applied.nacks {
            let key = nack.key.clone().unwrap_or_default();
            tracing::warn!(resource = %format!("{} {}/{}", key.r#type, key.mesh, key.name), reason = %nack.reason, "NACKed a resource from global");
        }
        tracing::debug!(received, pruned = applied.pruned, through = ?applied.through, "applied changes from global");
    }

    fn peer(&self) -> &'static str {
        "global"
    }
}

/// global→zone: subscribe from the last applied revision, apply and ACK every message.
async fn global_to_zone(
    mut client: KdsClient<Channel>,
    config: &KdsClientConfig,
    store: Arc<dyn Store>,
    connected: &Connected,
) -> Result<(), ClientError> {
    let zone = config.zone.clone();
    let mut inbound = Inbound::new(
        store,
        GLOBAL_REVISION_SETTING,
        GlobalToZone { zone: zone.clone() },
        FromGlobal { zone: zone.clone() },
    );
    let since = inbound.applied_revision().await?;
    let (acks, acks_rx) = mpsc::channel(session::QUEUE);
    let subscribe = ZoneToGlobalAck {
        kind: Some(zone_to_global_ack::Kind::Subscribe(kds::Subscribe {
            since_revision: since,
        })),
    };
    // The queue is empty and its receiver alive: the first send cannot fail.
    let _ = acks.send(subscribe).await;
    let stream_error = |status| ClientError::Stream {
        stream: "global→zone",
        status,
    };
    let mut deltas = client
        .global_to_zone(with_metadata(ReceiverStream::new(acks_rx), config)?)
        .await
        .map_err(stream_error)?
        .into_inner();
    connected.mark();
    metrics::gauge!("meridian_kds_connected").set(1.0);
    tracing::info!(since, "subscribed to global");
    let queue = Queue::new(acks, "global");
    let end = session::receive_loop(&mut inbound, &mut deltas, &queue, &FromGlobalSide).await;
    client_result(end, "global→zone")
}

/// zone→global on the zone: what the session engine needs.
struct ToGlobalSide {
    heartbeat: Duration,
}

impl SendSide for ToGlobalSide {
    type Wire = ZoneDelta;

    fn wrap(&self, changes: kds::Changes, _: i64) -> ZoneDelta {
        ZoneDelta {
            changes: Some(changes),
        }
    }

    fn heartbeat(&self) -> Option<Duration> {
        Some(self.heartbeat)
    }

    fn peer(&self) -> &str {
        "global"
    }
}

impl AckSide for ToGlobalSide {
    type Incoming = GlobalAck;

    fn ack(&self, message: GlobalAck) -> Result<Option<kds::Ack>, String> {
        Ok(match message.kind {
            Some(global_ack::Kind::Ack(ack)) => Some(ack),
            _ => None,
        })
    }

    fn acked(&self, _: Option<Sent>, ack: &kds::Ack) {
        for nack in &ack.nacks {
            let key = nack.key.clone().unwrap_or_default();
            tracing::warn!(resource = %format!("{} {}/{}", key.r#type, key.mesh, key.name), reason = %nack.reason, "global NACKed a resource of this zone");
        }
    }

    fn peer(&self) -> &'static str {
        "global"
    }
}

/// zone→global: learn where global wants us to resume, then send our resources and
/// every change to them, with heartbeats while idle.
async fn zone_to_global(
    mut client: KdsClient<Channel>,
    config: &KdsClientConfig,
    store: Arc<dyn Store>,
    fanout: &Fanout,
) -> Result<(), ClientError> {
    let zone = config.zone.clone();
    let (deltas, deltas_rx) = mpsc::channel(session::QUEUE);
    let stream_error = |status| ClientError::Stream {
        stream: "zone→global",
        status,
    };
    let mut acks = client
        .zone_to_global(with_metadata(ReceiverStream::new(deltas_rx), config)?)
        .await
        .map_err(stream_error)?
        .into_inner();
    // Subscribed before the first store read, so no commit after it is missed.
    let feed = fanout.subscribe();
    let since = match acks
        .message()
        .await
        .map_err(stream_error)?
        .and_then(|m| m.kind)
    {
        Some(global_ack::Kind::Resume(resume)) => resume.since_revision,
        _ => {
            return Err(ClientError::Stream {
                stream: "zone→global",
                status: tonic::Status::invalid_argument("global did not start with Resume"),
            });
        }
    };
    tracing::info!(
        since,
        "global resumes our resources from this zone revision"
    );
    let outbound = Outbound::new(store, ZoneToGlobal { zone });
    let queue = Queue::new(deltas, "global");
    let pending = Pending::default();
    let side = ToGlobalSide {
        heartbeat: config.heartbeat,
    };
    let end = tokio::select! {
        end = session::send_loop(&outbound, feed, since, &queue, &pending, &side) => end,
        end = session::ack_loop(&mut acks, &pending, &side) => end,
    };
    client_result(end, "zone→global")
}
