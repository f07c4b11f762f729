//! Warnings: the parts of a *valid* document that do not apply to TCP traffic.
//!
//! Kuma documents carry HTTP-only parts (MeshTimeout `http`, MeshHealthCheck
//! `http`/`grpc`, MeshCircuitBreaker's request limits and gateway detector).
//! Meridian accepts them as Kuma does, validates them by Kuma's rules, stores
//! and syncs them — and says, per field, that they have no effect here. The REST
//! API returns these in the `warnings` list of a PUT's answer (as Kuma's API
//! server returns its deprecations) and `meridian apply` prints each. Nothing is
//! silently ignored and nothing valid is refused.
//!
//! Computed from the typed spec, so only fields the document set are named.

use crate::document::Spec;
use crate::error::FieldViolation;
use crate::policy::TargetRefPolicy;

/// Why an HTTP-only part does nothing here.
const L4: &str =
    "does not apply to TCP traffic: Meridian's proxies are L4, so this is kept and has no effect";

/// The parts of `spec` that do not apply to TCP traffic, with their paths
/// (`spec.to[0].default.http`), in document order.
pub fn warnings(spec: &Spec) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    let mut warn = |field: String, reason: &str| out.push(FieldViolation::new(field, reason));
    match spec {
        Spec::MeshTimeout(p) => {
            for (level, entries) in [("to", p.entries_to()), ("from", p.entries_from())] {
                for (i, (_, conf)) in entries.iter().enumerate() {
                    if conf.http.is_some() {
                        warn(format!("spec.{level}[{i}].default.http"), L4);
                    }
                }
            }
        }
        Spec::MeshHealthCheck(p) => {
            for (i, (_, conf)) in p.entries_to().iter().enumerate() {
                let at = format!("spec.to[{i}].default");
                if conf.http.is_some() {
                    warn(format!("{at}.http"), L4);
                }
                if conf.grpc.is_some() {
                    warn(format!("{at}.grpc"), L4);
                }
                if conf.tcp.is_none() {
                    warn(
                        at,
                        "runs no health check here: Meridian runs only `tcp` checks and this entry has none",
                    );
                }
            }
        }
        Spec::MeshCircuitBreaker(p) => {
            for (level, entries) in [("to", p.entries_to()), ("from", p.entries_from())] {
                for (i, (_, conf)) in entries.iter().enumerate() {
                    let at = format!("spec.{level}[{i}].default");
                    if let Some(limits) = &conf.connection_limits {
                        for (field, set) in [
                            ("maxPendingRequests", limits.max_pending_requests.is_some()),
                            ("maxRequests", limits.max_requests.is_some()),
                        ] {
                            if set {
                                warn(format!("{at}.connectionLimits.{field}"), L4);
                            }
                        }
                    }
                    if conf
                        .outlier_detection
                        .as_ref()
                        .and_then(|o| o.detectors.as_ref())
                        .is_some_and(|d| d.gateway_failures.is_some())
                    {
                        warn(
                            format!("{at}.outlierDetection.detectors.gatewayFailures"),
                            L4,
                        );
                    }
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ResourceKind;
    use serde_json::json;

    fn fields(kind: ResourceKind, spec: serde_json::Value) -> Vec<String> {
        let spec = Spec::from_value(kind, spec).expect("valid");
        warnings(&spec).into_iter().map(|w| w.field).collect()
    }

    #[test]
    fn http_only_parts_are_named_and_tcp_parts_are_not() {
        assert_eq!(
            fields(
                ResourceKind::MeshTimeout,
                json!({"targetRef": {"kind": "Mesh"},
                    "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "1h"}},
                           {"targetRef": {"kind": "Mesh"}, "default": {"http": {"requestTimeout": "1s"}}}],
                    "from": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {"streamIdleTimeout": "1s"}}}]})
            ),
            ["spec.to[1].default.http", "spec.from[0].default.http"]
        );
        assert_eq!(
            fields(
                ResourceKind::MeshHealthCheck,
                json!({"targetRef": {"kind": "Mesh"},
                    "to": [{"targetRef": {"kind": "Mesh"}, "default": {"tcp": {}, "grpc": {}}},
                           {"targetRef": {"kind": "Mesh"}, "default": {"http": {"path": "/"}}}]})
            ),
            [
                "spec.to[0].default.grpc",
                "spec.to[1].default.http",
                "spec.to[1].default"
            ]
        );
        assert_eq!(
            fields(
                ResourceKind::MeshCircuitBreaker,
                json!({"targetRef": {"kind": "Mesh"},
                    "to": [{"targetRef": {"kind": "Mesh"}, "default": {
                        "connectionLimits": {"maxConnections": 10, "maxRequests": 5},
                        "outlierDetection": {"detectors": {"gatewayFailures": {"consecutive": 2}}}}}]})
            ),
            [
                "spec.to[0].default.connectionLimits.maxRequests",
                "spec.to[0].default.outlierDetection.detectors.gatewayFailures"
            ]
        );
        assert!(
            fields(
                ResourceKind::MeshTimeout,
                json!({"targetRef": {"kind": "Mesh"},
                    "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": "5s"}}]})
            )
            .is_empty()
        );
    }
}
