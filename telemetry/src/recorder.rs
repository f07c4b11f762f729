//! The process-wide Prometheus recorder.
//!
//! Invariant: at most one recorder is installed per process, on the first call of
//! [`prometheus`]; every later call returns a handle to the same one. Metrics
//! recorded before that first call are lost, so servers call it before serving.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets of every metric named `…_seconds`, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The process-wide Prometheus recorder's handle, installing the recorder on first
/// use. Several servers in one process (tests, `meridian up`) share it.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Only fails on an empty bucket list, which LATENCY_BUCKETS is not.
            let recorder = match PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            {
                Ok(builder) => builder,
                Err(_) => PrometheusBuilder::new(),
            }
            .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// A `/metrics` answer: `handle`'s Prometheus text with its content type.
pub fn metrics_response(handle: &PrometheusHandle) -> impl IntoResponse + use<> {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_recorder_for_the_process() {
        let first = prometheus();
        metrics::counter!("meridian_telemetry_test_total").increment(2);
        let second = prometheus();
        assert!(
            second.render().contains("meridian_telemetry_test_total 2"),
            "{}",
            first.render()
        );
    }
}
