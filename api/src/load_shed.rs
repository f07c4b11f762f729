//! Sheds REST requests beyond a concurrency limit: past [`MAX_IN_FLIGHT`] requests
//! in progress, a new one is answered 503 with `Retry-After` at once, instead of
//! queueing until every request times out. Health, readiness and metrics are not
//! behind it, so probes still answer under load.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::problem::Problem;

/// Requests the resource API works on at once.
pub const MAX_IN_FLIGHT: usize = 512;

/// The shared limit.
#[derive(Clone, Debug)]
pub struct InFlight(Arc<Semaphore>);

impl InFlight {
    /// A limit of `permits` requests at once.
    pub fn new(permits: usize) -> Self {
        InFlight(Arc::new(Semaphore::new(permits)))
    }
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight::new(MAX_IN_FLIGHT)
    }
}

/// Middleware: runs the request with a permit, or sheds it.
pub async fn shed(State(in_flight): State<InFlight>, request: Request, next: Next) -> Response {
    let Ok(_permit) = in_flight.0.clone().try_acquire_owned() else {
        metrics::counter!("meridian_http_requests_shed_total").increment(1);
        let mut response =
            Problem::unavailable("too many requests in progress; retry shortly").into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_request_past_the_limit_is_shed_with_retry_after() {
        let limit = InFlight::new(1);
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .route_layer(axum::middleware::from_fn_with_state(limit.clone(), shed));
        let request = || {
            Request::builder()
                .uri("/")
                .body(Body::empty())
                .expect("request")
        };

        let held = limit
            .0
            .clone()
            .try_acquire_owned()
            .expect("the only permit");
        let shed = app.clone().oneshot(request()).await.expect("response");
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");

        drop(held);
        let served = app.oneshot(request()).await.expect("response");
        assert_eq!(served.status(), StatusCode::OK);
    }
}
