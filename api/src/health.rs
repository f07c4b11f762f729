//! Liveness, readiness and metrics endpoints.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::json;

use crate::AppState;
use crate::problem::Problem;

/// How long readiness waits for the store before calling it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /`: what this server is (and, on a zone control plane, which zone).
pub async fn index(State(state): State<AppState>) -> Json<serde_json::Value> {
    let mut about = json!({
        "product": "Meridian",
        "component": state.role.component(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let (Some(zone), Some(object)) = (state.role.zone(), about.as_object_mut()) {
        object.insert("zone".into(), zone.into());
    }
    Json(about)
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "alive"}))
}

/// `GET /readyz`: 200 while the store answers, 503 with the reason while it does not.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, Problem> {
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({"status": "ready"}))),
        Ok(Err(error)) => Err(Problem::unavailable(format!(
            "the store is not reachable: {error}"
        ))),
        Err(_) => Err(Problem::unavailable(format!(
            "the store did not answer within {READY_TIMEOUT:?}"
        ))),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    meridian_telemetry::metrics_response(&state.metrics)
}
