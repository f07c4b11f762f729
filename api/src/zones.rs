//! Zone insights: whether a zone is connected and how far behind it is.
//!
//! Insights are status, kept apart from config. Until a zone has connected over KDS
//! there is no stored insight and the zone is reported offline. A zone is online
//! only while heartbeating: an insight whose `lastSeen` is older than
//! [`STALE_AFTER`] reads as offline, even if the global process that wrote it died
//! before it could say so.

use axum::Json;
use axum::extract::State;
use meridian_model::ResourceKind;
use meridian_store::{ListQuery, ResourceKey, Store};
use serde_json::json;

use crate::problem::Problem;
use crate::resources::{ListResponse, render};
use crate::{ApiPath, AppState};

/// After this long without a message from a zone it is reported offline.
pub const STALE_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

async fn insight_of(store: &dyn Store, zone: &str) -> Result<serde_json::Value, Problem> {
    let Some(mut insight) = store.get_zone_insight(zone).await? else {
        return Ok(json!({"online": false}));
    };
    let last_seen = insight
        .get("lastSeen")
        .and_then(serde_json::Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let fresh =
        last_seen.is_some_and(|t| chrono::Utc::now() - t.with_timezone(&chrono::Utc) < STALE_AFTER);
    if !fresh && let Some(object) = insight.as_object_mut() {
        object.insert("online".into(), false.into());
    }
    Ok(insight)
}

/// `GET /zones/{name}/insight`.
pub async fn insight(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let key = ResourceKey::global(ResourceKind::Zone, name);
    if state.store.get(&key).await?.is_none() {
        return Err(Problem::not_found(format!("{key} not found")));
    }
    Ok(Json(insight_of(state.store.as_ref(), &key.name).await?))
}

/// `GET /zones+insights`: every zone with its insight under `zoneInsight`.
pub async fn list_with_insights(
    State(state): State<AppState>,
) -> Result<Json<ListResponse>, Problem> {
    let page = state
        .store
        .list(&ListQuery::all(ResourceKind::Zone))
        .await?;
    let mut items = Vec::with_capacity(page.items.len());
    for zone in &page.items {
        let mut item = render(zone);
        if let Some(object) = item.as_object_mut() {
            object.insert(
                "zoneInsight".into(),
                insight_of(state.store.as_ref(), &zone.key.name).await?,
            );
        }
        items.push(item);
    }
    Ok(Json(ListResponse {
        total: page.total,
        items,
        next: None,
    }))
}
