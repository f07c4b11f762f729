//! Meridian's integration harness: real PostgreSQL databases, real processes, real
//! sockets, and a TCP fault proxy to take dependencies away on purpose.
//!
//! - [`postgres::TestDatabase`]: a fresh database per test on the PostgreSQL at
//!   `MERIDIAN_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//!   dropped when the test ends, so tests run in parallel and leave nothing behind.
//! - [`process::MeridianProcess`]: the real `meridian` binary, started and read like an
//!   operator would.
//! - [`fault_proxy::FaultProxy`]: a loopback TCP relay that can be cut and restored.
//! - [`pg_instance::PgInstance`]: a private PostgreSQL server a test may stop and
//!   start again.
//! - [`global_replicas`]: several global replicas on one database, and zone CPs that
//!   know all their KDS addresses.
//! - [`cluster::Cluster`]: global, zones, ingresses, sidecars and echo services as
//!   real processes, for end-to-end tests of the data path.
//! - [`scratch`]: free ports and temporary directories.
//! - [`eventually`]: waits for a condition with a deadline instead of sleeping.

pub mod cluster;
pub mod fault_proxy;
pub mod fixtures;
pub mod global_replicas;
pub mod kds_client;
pub mod pg_instance;
pub mod postgres;
pub mod process;
pub mod scrape;
pub mod scratch;
pub mod zone_replicas;

use std::future::Future;
use std::time::Duration;

/// Installs the process-wide TLS crypto provider and a test log subscriber; call
/// first in every test (idempotent).
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
/// The polling interval is short; the deadline is generous, so slow CI machines pass
/// and fast ones finish quickly.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GETs `url` without a token and decodes the JSON answer; `None` unless 200 (for
/// polling with [`eventually`]).
pub async fn get_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let response = http.get(url).send().await.ok()?;
    if response.status() != reqwest::StatusCode::OK {
        return None;
    }
    response.json().await.ok()
}

/// The `field`s of an RFC 7807 problem's `invalid_parameters`, in order.
pub fn problem_fields(problem: &serde_json::Value) -> Vec<String> {
    problem["invalid_parameters"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|p| p["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
