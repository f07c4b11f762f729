//! Prometheus metrics of the REST API: the HTTP request metrics layer. The
//! process-wide recorder ([`prometheus`]) lives in `meridian-telemetry`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

pub use meridian_telemetry::prometheus;

/// Middleware: counts requests and records their latency per route, method and status.
pub async fn record_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("meridian_http_requests_total", &labels).increment(1);
    metrics::histogram!("meridian_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
