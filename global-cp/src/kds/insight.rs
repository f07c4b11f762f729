//! Zone insights: the truthful status of each zone's KDS streams.
//!
//! A zone is online only while a stream is live and heartbeating; the REST layer
//! reports offline once `lastSeen` is stale (`meridian_api::zones::STALE_AFTER`) even
//! if a crashed global never wrote `online: false`. Insights are kept in memory and flushed to the
//! store (status, not config: no revisions) by [`Insights::run_flusher`].
//!
//! Several global replicas may share the store; each flushes the zones whose streams
//! it serves, and the live sessions' flushes (every second, `lastSeen` moving with
//! every heartbeat) keep their insights current. When a replica's last stream of a
//! zone ends it writes `online: false`, unless the stored insight shows a newer
//! session of that zone, on another replica, is online: a zone that moved on is not
//! marked offline by the replica it left. Insights of a replica that died are
//! expired by the elected replica ([`crate::insight_expiry`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use meridian_store::{Revision, Store, StoreError};
use serde::Serialize;
use serde_json::Value;

/// Per-type counters of one direction.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamStats {
    /// Resources sent (global→zone) or received (zone→global), by type.
    pub sent: BTreeMap<String, u64>,
    /// Resources acknowledged (global→zone) or applied (zone→global), by type.
    pub acked: BTreeMap<String, u64>,
    /// Resources refused, by type.
    pub nacked: BTreeMap<String, u64>,
    /// The last NACK reason, with the resource it concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_nack: Option<String>,
}

/// One zone's status.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneInsight {
    /// Whether a KDS stream is live.
    pub online: bool,
    /// When the current (or last) session started.
    pub connected_at: Option<DateTime<Utc>>,
    /// When the last session ended.
    pub disconnected_at: Option<DateTime<Utc>>,
    /// The last message received from the zone (heartbeats included).
    pub last_seen: Option<DateTime<Utc>>,
    /// The zone CP's product version, as it reported it.
    pub version: String,
    /// The capabilities it announced.
    pub features: Vec<String>,
    /// The global revision the zone has acknowledged applying.
    pub revision_applied: Revision,
    /// Global's revision when last sent to the zone.
    pub global_revision: Revision,
    /// Revisions global is ahead of what the zone acknowledged.
    pub lag_revisions: Revision,
    /// Seconds since the zone was last fully caught up (0 when caught up).
    pub lag_seconds: f64,
    /// The zone revision global has applied from the zone.
    pub zone_revision_applied: Revision,
    /// Global→zone counters.
    pub global_to_zone: StreamStats,
    /// Zone→global counters.
    pub zone_to_global: StreamStats,
    /// Since when the zone has been behind (internal; drives `lag_seconds`).
    #[serde(skip)]
    behind_since: Option<DateTime<Utc>>,
    /// Live streams (internal; online while at least one is open).
    #[serde(skip)]
    streams: usize,
}

impl ZoneInsight {
    /// Records global's position and the zone's acknowledged one, updating lag.
    pub fn set_positions(&mut self, global: Revision, acked: Revision) {
        self.global_revision = global;
        self.revision_applied = acked;
        self.lag_revisions = (global - acked).max(0);
        let now = Utc::now();
        if self.lag_revisions == 0 {
            self.behind_since = None;
            self.lag_seconds = 0.0;
        } else {
            let since = *self.behind_since.get_or_insert(now);
            self.lag_seconds = (now - since).num_milliseconds() as f64 / 1000.0;
        }
    }
}

/// Every zone's insight, shared by the KDS sessions.
#[derive(Clone, Default)]
pub struct Insights {
    inner: Arc<Mutex<State>>,
    /// Held across a flush's snapshot and its writes, so flushes write in the order
    /// they took their snapshots: a periodic flush that read `online: true` cannot
    /// land after a session's final flush that wrote `online: false`.
    flushing: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct State {
    zones: HashMap<String, ZoneInsight>,
    dirty: HashSet<String>,
}

impl Insights {
    /// Changes one zone's insight.
    pub fn update(&self, zone: &str, change: impl FnOnce(&mut ZoneInsight)) {
        let Ok(mut state) = self.inner.lock() else {
            return;
        };
        let insight = state.zones.entry(zone.to_owned()).or_default();
        change(insight);
        metrics::gauge!("meridian_kds_zone_lag_revisions", "zone" => zone.to_owned())
            .set(insight.lag_revisions as f64);
        metrics::gauge!("meridian_kds_zone_online", "zone" => zone.to_owned())
            .set(if insight.online { 1.0 } else { 0.0 });
        state.dirty.insert(zone.to_owned());
    }

    /// A stream of `zone` opened.
    pub fn stream_opened(&self, zone: &str, version: &str, features: Vec<String>) {
        self.update(zone, |i| {
            if i.streams == 0 {
                i.connected_at = Some(Utc::now());
            }
            i.streams += 1;
            i.online = true;
            i.last_seen = Some(Utc::now());
            i.version = version.to_owned();
            i.features = features;
        });
    }

    /// A stream of `zone` closed.
    pub fn stream_closed(&self, zone: &str) {
        self.update(zone, |i| {
            i.streams = i.streams.saturating_sub(1);
            if i.streams == 0 {
                i.online = false;
                i.disconnected_at = Some(Utc::now());
            }
        });
    }

    /// The zone said something (a message or heartbeat).
    pub fn seen(&self, zone: &str) {
        self.update(zone, |i| i.last_seen = Some(Utc::now()));
    }

    /// Writes changed insights to the store every `interval`, forever.
    pub async fn run_flusher(self, store: Arc<dyn Store>, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            self.flush(store.as_ref()).await;
        }
    }

    /// Writes changed insights to the store now.
    pub async fn flush(&self, store: &dyn Store) {
        let _in_order = self.flushing.lock().await;
        let pending: Vec<(String, serde_json::Value)> = {
            let Ok(mut state) = self.inner.lock() else {
                return;
            };
            let dirty: Vec<String> = state.dirty.drain().collect();
            dirty
                .into_iter()
                .filter_map(|zone| {
                    let insight = state.zones.get(&zone)?;
                    Some((zone, serde_json::to_value(insight).ok()?))
                })
                .collect()
        };
        for (zone, insight) in pending {
            let written = if insight.get("online") == Some(&Value::Bool(false)) {
                write_offline(store, &zone, insight).await
            } else {
                store.put_zone_insight(&zone, insight).await
            };
            if let Err(error) = written {
                tracing::warn!(%zone, %error, "could not store the zone insight; will retry");
                if let Ok(mut state) = self.inner.lock() {
                    state.dirty.insert(zone);
                }
            }
        }
    }
}

/// Writes an insight saying this replica's sessions of `zone` ended, unless the stored
/// insight shows a newer session, on another replica, holds the zone.
async fn write_offline(store: &dyn Store, zone: &str, insight: Value) -> Result<(), StoreError> {
    // Compare-and-set, retried while other writers get in between.
    for _ in 0..3 {
        let Some(stored) = store.get_zone_insight(zone).await? else {
            return store.put_zone_insight(zone, insight).await;
        };
        if held_by_newer_session(&stored, &insight) {
            tracing::debug!(%zone, "not marking the zone offline: a newer session on another replica holds it");
            return Ok(());
        }
        if store
            .replace_zone_insight(zone, &stored, insight.clone())
            .await?
        {
            return Ok(());
        }
    }
    // Someone kept writing it: a live session elsewhere, whose word stands.
    Ok(())
}

/// Whether `stored` is an online insight of a session that started after `ours`.
fn held_by_newer_session(stored: &Value, ours: &Value) -> bool {
    let connected_at = |insight: &Value| {
        insight
            .get("connectedAt")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    };
    stored.get("online") == Some(&Value::Bool(true)) && connected_at(stored) > connected_at(ours)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_a_newer_online_session_keeps_its_insight() {
        let ours = json!({"online": false, "connectedAt": "2026-11-22T10:00:00Z"});
        let newer_online = json!({"online": true, "connectedAt": "2026-11-22T10:00:05Z"});
        let newer_offline = json!({"online": false, "connectedAt": "2026-11-22T10:00:05Z"});
        let ours_online = json!({"online": true, "connectedAt": "2026-11-22T10:00:00Z"});
        assert!(held_by_newer_session(&newer_online, &ours));
        assert!(!held_by_newer_session(&newer_offline, &ours));
        assert!(!held_by_newer_session(&ours_online, &ours));
    }
}
