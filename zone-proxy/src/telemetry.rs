//! Metric names of the zone proxies, and [`Rejection`]: why a connection was closed
//! without being forwarded.
//!
//! All are counters of the `metrics` crate; the process installs the Prometheus
//! recorder (see [`crate::AdminServer`]). The relay and the ClientHello peek count
//! their own events (`meridian_relay_*`, `meridian_sni_peek_total`).

use std::fmt;

use metrics::describe_counter;

/// Connections accepted by the listener.
pub const ACCEPTED: &str = "meridian_zone_proxy_connections_accepted_total";
/// Connections routed to an upstream and handed to the relay.
pub const FORWARDED: &str = "meridian_zone_proxy_connections_forwarded_total";
/// Connections closed without being forwarded, labelled `reason` ([`Rejection::label`]).
pub const REJECTED: &str = "meridian_zone_proxy_rejected_total";
/// Upstream connection attempts that failed and were retried or gave up.
pub const CONNECT_RETRIES: &str = "meridian_zone_proxy_upstream_connect_failures_total";
/// Route table rebuilds from a new config.
pub const ROUTE_UPDATES: &str = "meridian_zone_proxy_route_updates_total";

/// Registers a description for every zone proxy metric with the installed recorder.
pub fn describe() {
    describe_counter!(ACCEPTED, "Connections accepted by the zone proxy");
    describe_counter!(FORWARDED, "Connections forwarded to an upstream");
    describe_counter!(
        REJECTED,
        "Connections closed without being forwarded, by reason"
    );
    describe_counter!(CONNECT_RETRIES, "Failed upstream connection attempts");
    describe_counter!(ROUTE_UPDATES, "Route table rebuilds from a new config");
}

/// Why a connection was closed without being forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The connection limit was reached.
    ConnectionLimit,
    /// Peeking the ClientHello failed; the label is
    /// [`PeekError::result_label`](meridian_sni::PeekError::result_label)
    /// (`timeout`, `too_large`, `not_tls`, `closed`, `io`).
    Peek(&'static str),
    /// The ClientHello carried no server name.
    NoSni,
    /// No config has arrived from the zone control plane yet.
    NoConfig,
    /// The server name is not in the route table.
    UnknownSni,
    /// The route has no reachable endpoint.
    NoEndpoints,
    /// Every upstream connection attempt failed.
    UpstreamUnreachable,
}

impl Rejection {
    /// The `reason` label of [`REJECTED`].
    pub fn label(self) -> &'static str {
        match self {
            Self::ConnectionLimit => "connection_limit",
            Self::Peek(label) => label,
            Self::NoSni => "no_sni",
            Self::NoConfig => "no_config",
            Self::UnknownSni => "unknown_sni",
            Self::NoEndpoints => "no_endpoints",
            Self::UpstreamUnreachable => "upstream_unreachable",
        }
    }

    /// Counts this rejection in [`REJECTED`].
    pub(crate) fn count(self) {
        metrics::counter!(REJECTED, "reason" => self.label()).increment(1);
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}
