//! `POST /tokens/zone`: issues a zone token (admin only).

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

/// Tokens live a year unless asked otherwise.
const DEFAULT_VALID_FOR: &str = "8760h";

/// The request body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZoneTokenRequest {
    /// The zone the token identifies.
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
}

/// `POST /tokens/zone`.
pub async fn issue(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ZoneTokenResponse>, Problem> {
    let Some(zone_tokens) = &state.zone_tokens else {
        return Err(Problem::not_found(
            "zone tokens are issued by the global control plane",
        ));
    };
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
    let (token, claims) = zone_tokens.issue(&request.zone, valid_for);
    tracing::info!(zone = %claims.zone, exp = claims.exp, "zone token issued");
    let expires_at =
        chrono::DateTime::from_timestamp(i64::try_from(claims.exp).unwrap_or(i64::MAX), 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
    Ok(Json(ZoneTokenResponse {
        zone: claims.zone,
        token,
        expires_at,
    }))
}
