//! RFC 7807 problem details: the one error shape every API failure takes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meridian_model::{FieldViolation, ValidationError};
use meridian_store::StoreError;
use serde::Serialize;

/// An API error, rendered as `application/problem+json`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`about:blank` for plain HTTP statuses).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Short, human-readable summary of the problem type.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, in words.
    pub detail: String,
    /// For validation failures: every invalid field and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<InvalidParameter>)]
    pub invalid_parameters: Vec<FieldViolation>,
    /// For 405s: the methods the resource does allow (the `Allow` header).
    #[serde(skip)]
    pub allow: Option<&'static str>,
}

/// One invalid field of a request (schema for [`FieldViolation`]).
#[derive(Serialize, utoipa::ToSchema)]
pub struct InvalidParameter {
    /// The field's path in the document, e.g. `spec.to[0].targetRef.name`.
    pub field: String,
    /// Why it is invalid.
    pub reason: String,
}

impl Problem {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            kind: "about:blank",
            title,
            status: status.as_u16(),
            detail: detail.into(),
            invalid_parameters: Vec::new(),
            allow: None,
        }
    }

    /// 400: the request is malformed (unparseable body, bad query parameter).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "Bad Request", detail)
    }

    /// 400 listing every invalid field.
    pub fn invalid(violations: Vec<FieldViolation>) -> Self {
        let detail = format!(
            "the resource is invalid: {} field(s) failed validation",
            violations.len()
        );
        Problem {
            invalid_parameters: violations,
            ..Problem::new(StatusCode::BAD_REQUEST, "Invalid Resource", detail)
        }
    }

    /// 401: no or wrong credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail)
    }

    /// 403: the credentials are valid but do not allow this request (a read-only
    /// token on a write).
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, "Forbidden", detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "Not Found", detail)
    }

    /// 405: e.g. writing a resource that only zones may write.
    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed", detail)
    }

    /// 405 on a resource this server only serves for reading (`Allow: GET, HEAD`).
    pub fn read_only(detail: impl Into<String>) -> Self {
        Problem {
            allow: Some("GET, HEAD"),
            ..Problem::method_not_allowed(detail)
        }
    }

    /// 409: a version conflict or a create over an existing resource.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::CONFLICT, "Conflict", detail)
    }

    /// 503: the store is unreachable.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            detail,
        )
    }

    /// Any status, for rejections axum produced (e.g. 413 body too large).
    pub fn from_status(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem::new(status, status.canonical_reason().unwrap_or("Error"), detail)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<ValidationError> for Problem {
    fn from(error: ValidationError) -> Self {
        Problem::invalid(error.violations)
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        let detail = error.to_string();
        match error {
            StoreError::NotFound(_)
            | StoreError::MeshNotFound { .. }
            | StoreError::ZoneNotFound { .. } => Problem::not_found(detail),
            StoreError::AlreadyExists(_) | StoreError::Conflict { .. } => Problem::conflict(detail),
            StoreError::Invalid { .. } => Problem::bad_request(detail),
            StoreError::Unavailable(_) => Problem::unavailable(detail),
            StoreError::Compacted { .. }
            | StoreError::Backend(_)
            | StoreError::Unreadable { .. } => {
                tracing::error!(%detail, "store failure");
                Problem::from_status(StatusCode::INTERNAL_SERVER_ERROR, detail)
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(&self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
