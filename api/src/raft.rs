//! `/raft`: a zone CP's replica group over REST — who is a member, who leads, how far
//! behind each replica is — and membership changes (add a learner, promote it to
//! voter, remove a member). Served only where [`crate::AppState::raft`] is set; any
//! replica answers, forwarding changes to the leader.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Json;
use axum::extract::State;
use meridian_store::StoreError;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;

use crate::body::parse_document;
use crate::problem::Problem;
use crate::router::ApiPath;

/// A replica group the API can show and change.
#[async_trait]
pub trait RaftAdmin: Send + Sync {
    /// The group as this replica sees it (members, leader, indexes), as JSON.
    fn status(&self) -> serde_json::Value;
    /// Adds `id` at `addr` as a learner; answers the log index of the change once it
    /// has caught up.
    async fn add_learner(&self, id: u64, addr: String) -> Result<u64, StoreError>;
    /// Makes the learner `id` a voter.
    async fn promote(&self, id: u64) -> Result<u64, StoreError>;
    /// Removes `id` from the group.
    async fn remove(&self, id: u64) -> Result<u64, StoreError>;
}

/// The shared handle in [`AppState`].
pub type SharedRaftAdmin = Arc<dyn RaftAdmin>;

fn admin(state: &AppState) -> Result<&SharedRaftAdmin, Problem> {
    state.raft.as_ref().ok_or_else(|| {
        Problem::not_found("this control plane does not run a replica group (no --raft-id)")
    })
}

fn changed(result: Result<u64, StoreError>) -> Result<Json<serde_json::Value>, Problem> {
    match result {
        Ok(index) => Ok(Json(json!({ "logIndex": index }))),
        Err(error) if error.is_retryable() => Err(Problem::unavailable(error.to_string())),
        Err(error) => Err(Problem::conflict(error.to_string())),
    }
}

/// `GET /raft`.
pub async fn status(State(state): State<AppState>) -> Result<Json<serde_json::Value>, Problem> {
    Ok(Json(admin(&state)?.status()))
}

/// The body of `POST /raft/learners`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLearner {
    /// The new replica's `--raft-id`.
    pub id: u64,
    /// Where the other replicas reach its Raft server (`HOST:PORT`).
    pub addr: String,
}

/// `POST /raft/learners`.
pub async fn add_learner(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, Problem> {
    let learner: NewLearner = serde_json::from_value(parse_document(&headers, body)?)
        .map_err(|e| Problem::bad_request(format!("the body is not a learner: {e}")))?;
    if learner.id == 0 {
        return Err(Problem::bad_request("id: must be 1 or more"));
    }
    if !learner.addr.contains(':') {
        return Err(Problem::bad_request(format!(
            "addr: {:?} is not HOST:PORT",
            learner.addr
        )));
    }
    changed(admin(&state)?.add_learner(learner.id, learner.addr).await)
}

/// `POST /raft/voters/{id}`.
pub async fn promote(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<serde_json::Value>, Problem> {
    changed(admin(&state)?.promote(id).await)
}

/// `DELETE /raft/members/{id}`.
pub async fn remove(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<serde_json::Value>, Problem> {
    changed(admin(&state)?.remove(id).await)
}
