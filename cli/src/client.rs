//! A small client for the REST API that turns every failure into a message a person
//! can act on (API unreachable, token refused, invalid document with every field).

use anyhow::{Context, anyhow};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Talks to one Meridian REST API.
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// A non-2xx answer from the API, with its problem document when there is one.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The RFC 7807 body, if the API sent one.
    pub problem: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let detail = self
            .problem
            .as_ref()
            .and_then(|p| p.get("detail"))
            .and_then(Value::as_str)
            .unwrap_or("no detail given");
        write!(f, "{}: {detail}", self.status)?;
        if self.status == StatusCode::UNAUTHORIZED || self.status == StatusCode::FORBIDDEN {
            write!(f, " (pass the admin token with --token or MERIDIAN_TOKEN)")?;
        }
        let invalid = self
            .problem
            .as_ref()
            .and_then(|p| p.get("invalid_parameters"))
            .and_then(Value::as_array);
        for violation in invalid.into_iter().flatten() {
            let field = violation
                .get("field")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let reason = violation
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("?");
            write!(f, "\n    {field}: {reason}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// A successful answer.
pub struct ApiResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: Value,
}

impl ApiClient {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:5681`).
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// Sends a request; `Err` carries either an [`ApiError`] or a transport failure
    /// explained in words.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<ApiResponse> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|error| {
            let cause = std::error::Error::source(&error)
                .map(|s| s.to_string())
                .unwrap_or_else(|| error.to_string());
            anyhow!(
                "cannot reach the Meridian API at {}: {cause}\n  is `meridian global-cp` running there? Point --api (or MERIDIAN_API) at it.",
                self.base
            )
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            let body = body.ok_or_else(|| {
                anyhow!("{method} {url} answered {status} with a body that is not JSON")
            })?;
            Ok(ApiResponse { status, body })
        } else {
            Err(ApiError {
                status,
                problem: body,
            }
            .into())
        }
    }

    /// GETs every page of a list, following `next`.
    pub async fn list_all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut next = Some(path.to_owned());
        while let Some(page_path) = next.take() {
            let page = self.send(Method::GET, &page_path, None).await?.body;
            if let Some(page_items) = page.get("items").and_then(Value::as_array) {
                items.extend(page_items.iter().cloned());
            }
            next = page.get("next").and_then(Value::as_str).map(str::to_owned);
        }
        Ok(items)
    }
}
