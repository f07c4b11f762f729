//! Insight expiry: a duty of the elected replica (see [`crate::duty_election`]).
//!
//! A global replica that dies leaves the insights of its zones saying
//! `online: true`. The REST layer already reads an insight whose `lastSeen` is stale
//! as offline, but the stored record, and anything else that reads it, would keep the
//! dead replica's word. This duty rewrites such insights: `online: false`, and
//! `disconnectedAt` set to the last time the zone was heard from.
//!
//! Why it never expires a live zone: every replica flushes the insights of its live
//! sessions each second, and `lastSeen` moves on every message a zone sends,
//! heartbeats included (every 5 s by default). The bound ([`DEFAULT_AFTER`], 60 s) is
//! far above a heartbeat plus a flush, with room for clock skew between replicas.
//! The rewrite is a compare-and-set ([`Store::replace_zone_insight`]), so an insight
//! a reconnecting zone's session wrote meanwhile is left alone.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use meridian_model::ResourceKind;
use meridian_store::{ListQuery, Store, StoreError, list_all};
use serde_json::Value;

/// An insight still `online` whose zone was last heard from longer ago than this is
/// marked offline: three heartbeats and then some.
pub const DEFAULT_AFTER: Duration = Duration::from_secs(60);

/// Marks offline every `online` insight whose `lastSeen` is older than `after`.
/// Returns the zones it marked.
pub async fn expire_once(store: &dyn Store, after: Duration) -> Result<Vec<String>, StoreError> {
    let cutoff = chrono::TimeDelta::from_std(after)
        .ok()
        .and_then(|after| Utc::now().checked_sub_signed(after))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut expired = Vec::new();
    for zone in list_all(store, ListQuery::all(ResourceKind::Zone)).await? {
        let zone = zone.key.name;
        let Some(current) = store.get_zone_insight(&zone).await? else {
            continue;
        };
        if current.get("online") != Some(&Value::Bool(true)) {
            continue;
        }
        let last_seen = last_seen(&current);
        if last_seen.is_some_and(|t| t >= cutoff) {
            continue;
        }
        let mut offline = current.clone();
        if let Some(object) = offline.as_object_mut() {
            object.insert("online".into(), false.into());
            let disconnected_at = last_seen.unwrap_or_else(Utc::now);
            object.insert(
                "disconnectedAt".into(),
                serde_json::to_value(disconnected_at).unwrap_or(Value::Null),
            );
        }
        if store.replace_zone_insight(&zone, &current, offline).await? {
            tracing::info!(%zone, last_seen = ?last_seen, "zone insight expired: marked offline (its global replica is gone)");
            metrics::counter!("meridian_global_insights_expired_total").increment(1);
            expired.push(zone);
        }
    }
    Ok(expired)
}

fn last_seen(insight: &Value) -> Option<DateTime<Utc>> {
    insight
        .get("lastSeen")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// How often [`run`] looks: a quarter of the bound, between 1 and 15 seconds.
pub fn check_interval(after: Duration) -> Duration {
    (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(15))
}

/// Runs [`expire_once`] every [`check_interval`], forever; errors are logged and
/// retried.
pub async fn run(store: Arc<dyn Store>, after: Duration) {
    let mut ticker = tokio::time::interval(check_interval(after));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(error) = expire_once(store.as_ref(), after).await {
            tracing::warn!(%error, "insight expiry failed; will retry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_interval_follows_the_bound_within_limits() {
        assert_eq!(
            check_interval(Duration::from_secs(60)),
            Duration::from_secs(15)
        );
        assert_eq!(
            check_interval(Duration::from_secs(8)),
            Duration::from_secs(2)
        );
        assert_eq!(
            check_interval(Duration::from_millis(100)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn last_seen_is_read_from_the_insight() {
        let insight = serde_json::json!({"lastSeen": "2026-11-22T10:00:00.5Z"});
        assert_eq!(
            last_seen(&insight).map(|t| t.to_rfc3339()),
            Some("2026-11-22T10:00:00.500+00:00".to_owned())
        );
        assert_eq!(last_seen(&serde_json::json!({})), None);
    }
}
