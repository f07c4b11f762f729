//! Zone tokens on global's REST API, all admin only:
//!
//! - `POST /tokens/zone` issues one (answering its `id`);
//! - `POST /tokens/zone/revoke` `{"id"}` revokes one, for every global replica; the
//!   zone's live KDS streams end and its reconnects are refused;
//! - `POST /tokens/zone/rotate-key` replaces the signing key, which invalidates
//!   **every** zone token: issue new ones afterwards.
//!
//! See [`crate::zone_token`] for the token format and how replicas learn of changes.
//! Neither tokens nor the key are logged; the key is never answered.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use meridian_model::{FieldViolation, validate_mesh_name};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::body;
use crate::problem::Problem;
use crate::zone_token::{RevokeError, ZoneTokens};

/// Tokens live a year unless asked otherwise.
const DEFAULT_VALID_FOR: &str = "8760h";

/// The request body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZoneTokenRequest {
    /// The zone the token identifies (a DNS-1123 label).
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
    )]
    pub zone: String,
    /// How long the token is valid, as a Go duration (`24h`, `8760h`); default a year.
    pub valid_for: Option<String>,
}

/// The issued token.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneTokenResponse {
    /// The zone.
    pub zone: String,
    /// The token: pass it to `meridian zone-cp --zone-token FILE`.
    pub token: String,
    /// Expiry, RFC 3339.
    pub expires_at: String,
    /// The token's id (32 hex digits): what `POST /tokens/zone/revoke` takes.
    pub id: String,
}

/// The body of `POST /tokens/zone/revoke`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeZoneTokenRequest {
    /// The id of the token to revoke, as `POST /tokens/zone` answered it.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub id: String,
}

/// The answer of `POST /tokens/zone/revoke`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RevokeZoneTokenResponse {
    /// The revoked token's id.
    pub id: String,
    /// Always true: the token is refused from now on (revoking twice is harmless).
    pub revoked: bool,
}

/// The answer of `POST /tokens/zone/rotate-key`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RotateKeyResponse {
    /// Always true: a new signing key is in use.
    pub rotated: bool,
    /// What the operator must do next.
    pub note: String,
}

fn zone_tokens(state: &AppState) -> Result<&ZoneTokens, Problem> {
    state
        .zone_tokens
        .as_ref()
        .ok_or_else(|| Problem::not_found("zone tokens are issued by the global control plane"))
}

/// `POST /tokens/zone`.
pub async fn issue(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ZoneTokenResponse>, Problem> {
    let zone_tokens = zone_tokens(&state)?;
    let document = body::parse_document(&headers, body)?;
    let request: ZoneTokenRequest = serde_json::from_value(document)
        .map_err(|e| Problem::bad_request(format!("invalid zone token request: {e}")))?;
    let mut violations = Vec::new();
    if let Err(reason) = validate_mesh_name(&request.zone) {
        violations.push(FieldViolation {
            field: "zone".into(),
            reason,
        });
    }
    let valid_for_text = request.valid_for.as_deref().unwrap_or(DEFAULT_VALID_FOR);
    let valid_for = match meridian_model::Duration::parse(valid_for_text) {
        Ok(d) if !d.as_duration().is_zero() => Some(d.as_duration()),
        Ok(_) => {
            violations.push(FieldViolation {
                field: "validFor".into(),
                reason: "must be longer than zero".into(),
            });
            None
        }
        Err(e) => {
            violations.push(FieldViolation {
                field: "validFor".into(),
                reason: e.to_string(),
            });
            None
        }
    };
    let Some(valid_for) = valid_for.filter(|_| violations.is_empty()) else {
        return Err(Problem::invalid(violations));
    };
    // Sign with the current key even if another replica rotated it a moment ago.
    zone_tokens.refresh(state.store.as_ref()).await?;
    let (token, claims) = zone_tokens.issue(&request.zone, valid_for);
    tracing::info!(zone = %claims.zone, id = %claims.jti, exp = claims.exp, "zone token issued");
    let expires_at =
        chrono::DateTime::from_timestamp(i64::try_from(claims.exp).unwrap_or(i64::MAX), 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
    Ok(Json(ZoneTokenResponse {
        zone: claims.zone,
        token,
        expires_at,
        id: claims.jti,
    }))
}

/// `POST /tokens/zone/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RevokeZoneTokenResponse>, Problem> {
    let zone_tokens = zone_tokens(&state)?;
    let document = body::parse_document(&headers, body)?;
    let request: RevokeZoneTokenRequest = serde_json::from_value(document)
        .map_err(|e| Problem::bad_request(format!("invalid revocation request: {e}")))?;
    match zone_tokens.revoke(state.store.as_ref(), &request.id).await {
        Ok(()) => {}
        Err(RevokeError::InvalidId(error)) => {
            return Err(Problem::invalid(vec![FieldViolation {
                field: "id".into(),
                reason: error.to_string(),
            }]));
        }
        Err(RevokeError::Store(error)) => return Err(error.into()),
    }
    tracing::warn!(id = %request.id, "zone token revoked");
    Ok(Json(RevokeZoneTokenResponse {
        id: request.id,
        revoked: true,
    }))
}

/// `POST /tokens/zone/rotate-key` (no body).
pub async fn rotate_key(State(state): State<AppState>) -> Result<Json<RotateKeyResponse>, Problem> {
    zone_tokens(&state)?
        .rotate_key(state.store.as_ref())
        .await?;
    tracing::warn!("zone token signing key rotated: every zone token issued before is refused");
    Ok(Json(RotateKeyResponse {
        rotated: true,
        note: "every zone token issued before is now refused and the zones using one are \
               disconnected: issue new tokens with POST /tokens/zone"
            .to_owned(),
    }))
}
