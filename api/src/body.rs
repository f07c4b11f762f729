//! Request bodies and write preconditions: JSON or YAML documents, `If-Match` and
//! `If-None-Match` headers.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use meridian_store::Precondition;

use crate::problem::Problem;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Parses a request body as JSON, or as YAML when the content type says so.
pub fn parse_document(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<serde_json::Value, Problem> {
    let body = body.map_err(|rejection| {
        Problem::from_status(
            rejection.status(),
            format!("reading the request body: {}", rejection.body_text()),
        )
    })?;
    if body.is_empty() {
        return Err(Problem::bad_request(
            "the request body is empty; send the resource document",
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if content_type.contains("yaml") {
        serde_norway::from_slice(&body)
            .map_err(|e| Problem::bad_request(format!("the body is not valid YAML: {e}")))
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Problem::bad_request(format!("the body is not valid JSON: {e}")))
    }
}

/// The write precondition the request asks for: `If-Match: "<version>"` or
/// `If-None-Match: *`.
pub fn precondition(headers: &HeaderMap) -> Result<Precondition, Problem> {
    if let Some(value) = headers.get(header::IF_MATCH) {
        let text = value.to_str().unwrap_or_default().trim();
        let version = text
            .trim_start_matches("W/")
            .trim_matches('"')
            .parse::<i64>()
            .map_err(|_| {
                Problem::bad_request(format!(
                    "If-Match must be a resource version as returned in ETag (e.g. \"3\"), got {text:?}"
                ))
            })?;
        return Ok(Precondition::Version(version));
    }
    match headers.get(header::IF_NONE_MATCH) {
        Some(value) if value.as_bytes() == b"*" => Ok(Precondition::Absent),
        Some(value) => Err(Problem::bad_request(format!(
            "only `If-None-Match: *` is supported, got {value:?}"
        ))),
        None => Ok(Precondition::Any),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn preconditions_from_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(precondition(&headers).unwrap(), Precondition::Any);
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert_eq!(precondition(&headers).unwrap(), Precondition::Absent);
        headers.insert(header::IF_MATCH, HeaderValue::from_static("\"4\""));
        assert_eq!(precondition(&headers).unwrap(), Precondition::Version(4));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("latest"));
        assert_eq!(precondition(&headers).unwrap_err().status, 400);
    }

    #[test]
    fn yaml_and_json_bodies() {
        let mut headers = HeaderMap::new();
        let json = parse_document(&headers, Ok(Bytes::from_static(b"{\"a\": 1}"))).unwrap();
        assert_eq!(json["a"], 1);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/yaml"),
        );
        let yaml = parse_document(&headers, Ok(Bytes::from_static(b"a: 1\n"))).unwrap();
        assert_eq!(yaml, json);
        let err = parse_document(&headers, Ok(Bytes::from_static(b"a: [\n"))).unwrap_err();
        assert!(err.detail.contains("not valid YAML"), "{}", err.detail);
    }
}
