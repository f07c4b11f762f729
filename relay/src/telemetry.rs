//! Metric names of the relay and the per-connection counter handles.
//!
//! All are counters of the `metrics` crate, without labels (the proxies that embed the
//! relay add their own per-listener metrics). Call [`describe`] once at start-up to
//! attach descriptions for the exporter.

use metrics::{Counter, counter, describe_counter};

/// Connections handed to the relay loop.
pub const CONNECTIONS_OPENED: &str = "meridian_relay_connections_opened_total";
/// Connections whose relay loop ended, successfully or not.
pub const CONNECTIONS_CLOSED: &str = "meridian_relay_connections_closed_total";
/// Bytes moved from clients to upstreams (counted as they move).
pub const BYTES_CLIENT_TO_UPSTREAM: &str = "meridian_relay_bytes_client_to_upstream_total";
/// Bytes moved from upstreams to clients (counted as they move).
pub const BYTES_UPSTREAM_TO_CLIENT: &str = "meridian_relay_bytes_upstream_to_client_total";
/// Connections ended by the idle timeout.
pub const IDLE_TIMEOUTS: &str = "meridian_relay_idle_timeouts_total";
/// Connections ended by an I/O error on either side.
pub const ERRORS: &str = "meridian_relay_errors_total";
/// Upstream connection attempts that failed (refused, unreachable, ...).
pub const CONNECT_FAILURES: &str = "meridian_relay_connect_failures_total";
/// Upstream connection attempts that hit the connection timeout.
pub const CONNECT_TIMEOUTS: &str = "meridian_relay_connect_timeouts_total";
/// Connections refused because a [`ConnectionLimiter`](crate::ConnectionLimiter) was full.
pub const REFUSED_BY_LIMITER: &str = "meridian_relay_refused_by_limiter_total";

/// Registers a description for every relay metric with the installed recorder.
pub fn describe() {
    describe_counter!(CONNECTIONS_OPENED, "Connections handed to the relay loop");
    describe_counter!(CONNECTIONS_CLOSED, "Connections whose relay loop ended");
    describe_counter!(
        BYTES_CLIENT_TO_UPSTREAM,
        "Bytes relayed from clients to upstreams"
    );
    describe_counter!(
        BYTES_UPSTREAM_TO_CLIENT,
        "Bytes relayed from upstreams to clients"
    );
    describe_counter!(IDLE_TIMEOUTS, "Connections ended by the idle timeout");
    describe_counter!(ERRORS, "Relayed connections ended by an I/O error");
    describe_counter!(CONNECT_FAILURES, "Failed upstream connection attempts");
    describe_counter!(
        CONNECT_TIMEOUTS,
        "Upstream connection attempts that timed out"
    );
    describe_counter!(
        REFUSED_BY_LIMITER,
        "Connections refused by a connection limit"
    );
}

/// Counter handles of one relayed connection, fetched once so counting bytes is an
/// atomic add, not a registry lookup.
pub(crate) struct ConnectionMetrics {
    to_upstream: Counter,
    to_client: Counter,
    reported_to_upstream: u64,
    reported_to_client: u64,
}

impl ConnectionMetrics {
    /// Counts the connection as opened and fetches the byte counters.
    pub(crate) fn open() -> Self {
        counter!(CONNECTIONS_OPENED).increment(1);
        Self {
            to_upstream: counter!(BYTES_CLIENT_TO_UPSTREAM),
            to_client: counter!(BYTES_UPSTREAM_TO_CLIENT),
            reported_to_upstream: 0,
            reported_to_client: 0,
        }
    }

    /// Reports the bytes moved since the last call, given running totals per direction.
    pub(crate) fn bytes(&mut self, to_upstream: u64, to_client: u64) {
        if to_upstream > self.reported_to_upstream {
            self.to_upstream
                .increment(to_upstream - self.reported_to_upstream);
            self.reported_to_upstream = to_upstream;
        }
        if to_client > self.reported_to_client {
            self.to_client
                .increment(to_client - self.reported_to_client);
            self.reported_to_client = to_client;
        }
    }

    /// Counts the connection as closed, with how it ended.
    pub(crate) fn close<T>(self, result: &Result<T, crate::RelayError>) {
        counter!(CONNECTIONS_CLOSED).increment(1);
        match result {
            Ok(_) => {}
            Err(e) if e.is_idle() => counter!(IDLE_TIMEOUTS).increment(1),
            Err(_) => counter!(ERRORS).increment(1),
        }
    }
}
