//! The sidecar's Prometheus metric names (recorded with the `metrics` crate; the
//! process installs the recorder, see [`crate::admin`]). The relay's own
//! metrics (bytes, connections, idle timeouts) come from `meridian-relay`.

/// Connections accepted on an inbound, by `service`.
pub const INBOUND_CONNECTIONS: &str = "meridian_dp_inbound_connections_total";
/// Inbound connections denied by MeshTrafficPermission, by `service` and `client`.
pub const INBOUND_DENIED: &str = "meridian_dp_inbound_denied_total";
/// Inbound connections closed before reaching the app for another reason than a
/// deny (no certificate yet, TLS handshake failed, app unreachable, limit), by
/// `service` and `reason`.
pub const INBOUND_REFUSED: &str = "meridian_dp_inbound_refused_total";
/// Outbound connections relayed, by `service` and `backend`.
pub const OUTBOUND_CONNECTIONS: &str = "meridian_dp_outbound_connections_total";
/// Failed attempts to reach an outbound endpoint (TCP or TLS), by `service` and
/// `backend`.
pub const OUTBOUND_CONNECT_FAILURES: &str = "meridian_dp_outbound_connect_failures_total";
/// Outbound connections closed because no backend or endpoint could be used,
/// by `service`.
pub const OUTBOUND_NO_ENDPOINT: &str = "meridian_dp_outbound_no_endpoint_total";
/// Outbound connections refused for another reason (no certificate yet,
/// connection limit), by `service` and `reason`.
pub const OUTBOUND_REFUSED: &str = "meridian_dp_outbound_refused_total";
/// Listeners that could not be bound, by `address`.
pub const LISTENER_BIND_FAILURES: &str = "meridian_dp_listener_bind_failures_total";
/// Listeners currently open.
pub const LISTENERS: &str = "meridian_dp_listeners";
/// Configs applied (a `Sidecar` config reconciled into listeners).
pub const CONFIGS_APPLIED: &str = "meridian_dp_configs_applied_total";
/// Active health-check verdicts changing an endpoint's state, by `service` and
/// `healthy` (`true`/`false`).
pub const HEALTH_CHECK_TRANSITIONS: &str = "meridian_dp_health_check_transitions_total";
