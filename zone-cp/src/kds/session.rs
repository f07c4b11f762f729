//! One KDS session: both streams over one connection, each with its own send and
//! receive loop. The session ends when either stream ends; the client reconnects.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use meridian_kds::scope::{GlobalToZone, ZoneToGlobal};
use meridian_kds::transform::FromGlobal;
use meridian_kds::{Inbound, Outbound};
use meridian_proto::kds::kds_client::KdsClient;
use meridian_proto::kds::{self, ZoneDelta, ZoneToGlobalAck, global_ack, zone_to_global_ack};
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

/// Runs both streams until one ends.
pub async fn run_both(
    client: KdsClient<Channel>,
    config: &KdsClientConfig,
    store: Arc<dyn Store>,
    connected: &Connected,
) -> Result<(), ClientError> {
    let down = global_to_zone(client.clone(), config, store.clone(), connected);
    let up = zone_to_global(client, config, store);
    tokio::select! {
        result = down => result,
        result = up => result,
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
    let (acks, acks_rx) = mpsc::channel(16);
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
    while let Some(delta) = deltas.message().await.map_err(stream_error)? {
        let changes = delta.changes.unwrap_or_default();
        let applied = inbound.apply(&changes).await?;
        let received = changes.upserts.len() + changes.removals.len();
        metrics::counter!("meridian_kds_resources_received_total").increment(received as u64);
        metrics::counter!("meridian_kds_resources_nacked_total")
            .increment(applied.nacks.len() as u64);
        if let Some(through) = applied.through {
            metrics::gauge!("meridian_kds_global_revision_applied").set(through as f64);
            metrics::gauge!("meridian_kds_lag_revisions")
                .set(meridian_kds::lag_revisions(delta.global_revision, through) as f64);
        }
        for nack in &applied.nacks {
            let key = nack.key.clone().unwrap_or_default();
            tracing::warn!(resource = %format!("{} {}/{}", key.r#type, key.mesh, key.name), reason = %nack.reason, "NACKed a resource from global");
        }
        tracing::debug!(received, pruned = applied.pruned, through = ?applied.through, "applied changes from global");
        let ack = ZoneToGlobalAck {
            kind: Some(zone_to_global_ack::Kind::Ack(kds::Ack {
                nonce: changes.nonce,
                nacks: applied.nacks,
            })),
        };
        if acks.send(ack).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// zone→global: learn where global wants us to resume, then send our resources and
/// every change to them, with heartbeats while idle.
async fn zone_to_global(
    mut client: KdsClient<Channel>,
    config: &KdsClientConfig,
    store: Arc<dyn Store>,
) -> Result<(), ClientError> {
    let zone = config.zone.clone();
    let (deltas, deltas_rx) = mpsc::channel(16);
    let stream_error = |status| ClientError::Stream {
        stream: "zone→global",
        status,
    };
    let mut acks = client
        .zone_to_global(with_metadata(ReceiverStream::new(deltas_rx), config)?)
        .await
        .map_err(stream_error)?
        .into_inner();
    let mut since = match acks
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
    let mut ack_reader = tokio::spawn(async move {
        loop {
            match acks.message().await {
                Ok(Some(message)) => {
                    if let Some(global_ack::Kind::Ack(ack)) = message.kind {
                        for nack in ack.nacks {
                            let key = nack.key.unwrap_or_default();
                            tracing::warn!(resource = %format!("{} {}/{}", key.r#type, key.mesh, key.name), reason = %nack.reason, "global NACKed a resource of this zone");
                        }
                    }
                }
                Ok(None) => return Ok(()),
                Err(status) => {
                    return Err(ClientError::Stream {
                        stream: "zone→global",
                        status,
                    });
                }
            }
        }
    });
    let outbound = Outbound::new(store.clone(), ZoneToGlobal { zone });
    let mut commits = store.watch();
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    loop {
        commits.borrow_and_update();
        let catch_up = outbound.catch_up(since).await?;
        for error in &catch_up.oversized {
            tracing::error!(%error, "resource not sent to global");
        }
        for changes in catch_up.messages {
            if deltas
                .send(ZoneDelta {
                    changes: Some(changes),
                })
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        since = catch_up.through;
        tokio::select! {
            changed = commits.changed() => if changed.is_err() { return Ok(()) },
            _ = heartbeat.tick() => {
                let beat = ZoneDelta { changes: Some(kds::Changes { nonce: meridian_kds::nonce(), ..Default::default() }) };
                if deltas.send(beat).await.is_err() {
                    return Ok(());
                }
            }
            ended = &mut ack_reader => {
                return match ended {
                    Ok(result) => result,
                    Err(_) => Ok(()),
                };
            }
        }
    }
}
