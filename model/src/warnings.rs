//! Warnings: the parts of a *valid* document that do not apply to TCP traffic,
//! or that Meridian keeps without acting on them yet.
//!
//! Kuma documents carry HTTP-only parts (MeshTimeout `http`, MeshHealthCheck
//! `http`/`grpc`, MeshCircuitBreaker's request limits and gateway detector,
//! MeshLoadBalancingStrategy's request hash policies) and settings Meridian's
//! balancer does not implement (connection hashing, LeastRequest's
//! `activeRequestBias`).
//! Meridian accepts them as Kuma does, validates them by Kuma's rules, stores
//! and syncs them — and says, per field, that they have no effect here. The REST
//! API returns these in the `warnings` list of a PUT's answer (as Kuma's API
//! server returns its deprecations) and `meridian apply` prints each. Nothing is
//! silently ignored and nothing valid is refused.
//!
//! The same list names the targetRefs Meridian keeps but does not resolve
//! (gateway and HTTP-route kinds, MeshExternalService, MeshMultiZoneService,
//! MeshService by labels) and inbound timeout `rules` with `matches`: accepted
//! as Kuma accepts them, and said to select nothing here.
//!
//! Computed from the typed spec, so only fields the document set are named.

use crate::document::Spec;
use crate::error::FieldViolation;
use crate::policy::{HashPolicy, HashPolicyType, TargetRefPolicy};
use crate::target_ref::{TargetRef, TargetRefKind};

/// Why an HTTP-only part does nothing here.
const L4: &str =
    "does not apply to TCP traffic: Meridian's proxies are L4, so this is kept and has no effect";

/// Why a connection hash policy does nothing here.
const NO_CONNECTION_HASH: &str = "kept and has no effect: Meridian's balancer does not hash connections yet (it picks endpoints by weight at random)";

/// Why `leastRequest.activeRequestBias` does nothing here.
const NO_LEAST_REQUEST: &str = "kept and has no effect: Meridian's balancer does not implement LeastRequest (it picks endpoints by weight at random)";

/// Why a hash policy does nothing here: request properties are HTTP; the
/// connection ones could apply to TCP, but nothing hashes yet.
fn hash_reason(h: &HashPolicy) -> &'static str {
    match h.type_ {
        HashPolicyType::Header
        | HashPolicyType::Cookie
        | HashPolicyType::QueryParameter
        | HashPolicyType::FilterState => L4,
        HashPolicyType::Connection | HashPolicyType::SourceIp => NO_CONNECTION_HASH,
    }
}

/// The parts of `spec` that do not apply to TCP traffic or have no effect
/// here yet, with their paths (`spec.to[0].default.http`), in document order.
pub fn warnings(spec: &Spec) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    let mut warn = |field: String, reason: &str| out.push(FieldViolation::new(field, reason));
    // An entry's HTTP and gRPC sections, which an L4 proxy cannot apply.
    let l4_sections = |at: &str, http: bool, grpc: bool, warn: &mut dyn FnMut(String, &str)| {
        for (section, present) in [("http", http), ("grpc", grpc)] {
            if present {
                warn(format!("{at}.{section}"), L4);
            }
        }
    };
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
        Spec::MeshRetry(p) => {
            for (i, (_, conf)) in p.entries_to().iter().enumerate() {
                let at = format!("spec.to[{i}].default");
                l4_sections(&at, conf.http.is_some(), conf.grpc.is_some(), &mut warn);
            }
        }
        Spec::MeshHealthCheck(p) => {
            for (i, (_, conf)) in p.entries_to().iter().enumerate() {
                let at = format!("spec.to[{i}].default");
                l4_sections(&at, conf.http.is_some(), conf.grpc.is_some(), &mut warn);
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
        Spec::MeshLoadBalancingStrategy(p) => {
            for (i, (_, conf)) in p.entries_to().iter().enumerate() {
                let at = format!("spec.to[{i}].default");
                let lb = conf.load_balancer.as_ref();
                if lb
                    .and_then(|l| l.least_request.as_ref())
                    .is_some_and(|l| l.active_request_bias.is_some())
                {
                    warn(
                        format!("{at}.loadBalancer.leastRequest.activeRequestBias"),
                        NO_LEAST_REQUEST,
                    );
                }
                let lists = [
                    (
                        format!("{at}.loadBalancer.ringHash.hashPolicies"),
                        lb.and_then(|l| l.ring_hash.as_ref())
                            .and_then(|r| r.hash_policies.as_deref()),
                    ),
                    (
                        format!("{at}.loadBalancer.maglev.hashPolicies"),
                        lb.and_then(|l| l.maglev.as_ref())
                            .and_then(|m| m.hash_policies.as_deref()),
                    ),
                    (format!("{at}.hashPolicies"), conf.hash_policies.as_deref()),
                ];
                for (path, list) in lists {
                    for (j, h) in list.into_iter().flatten().enumerate() {
                        warn(format!("{path}[{j}]"), hash_reason(h));
                    }
                }
            }
        }
        _ => {}
    }
    unresolved_refs(spec, &mut out);
    out
}

/// Why a targetRef of `kind` selects nothing here, if it does not.
fn unresolved(r: &TargetRef, level: Level) -> Option<&'static str> {
    Some(match r.kind {
        TargetRefKind::MeshGateway => "selects nothing here: Meridian has no gateways",
        TargetRefKind::MeshHttpRoute => {
            "selects nothing here: Meridian's proxies are L4 and have no HTTP routes"
        }
        TargetRefKind::MeshExternalService => {
            "selects nothing yet: Meridian does not implement MeshExternalService yet"
        }
        // As destinations (`to`, route backends) MeshServices by labels or
        // namespace, their ports and MeshMultiZoneServices are resolved
        // against the zone's resources; as the proxies a policy applies to
        // they are not.
        TargetRefKind::MeshMultiZoneService if level != Level::To => {
            "selects no proxy here: Meridian resolves MeshMultiZoneService refs as destinations only"
        }
        TargetRefKind::MeshService
            if level != Level::To && (r.labels.is_some() || r.namespace.is_some()) =>
        {
            "selects no proxy yet: Meridian selects proxies by MeshService name (the kuma.io/service tag), not by labels or namespace; as a destination (`to`) these refs are resolved"
        }
        _ => return None,
    })
}

/// Where a targetRef sits: `sectionName` means a port of a destination only in `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    To,
    From,
}

/// Every targetRef of a policy with its path and level, top level first.
fn policy_refs<T: TargetRefPolicy>(p: &T) -> Vec<(String, &TargetRef, Level)> {
    let top = p
        .target_ref()
        .map(|t| ("spec.targetRef".to_owned(), t, Level::Top));
    fn level<'a>(
        name: &'static str,
        refs: Vec<&'a TargetRef>,
        l: Level,
    ) -> impl Iterator<Item = (String, &'a TargetRef, Level)> {
        refs.into_iter()
            .enumerate()
            .map(move |(i, r)| (format!("spec.{name}[{i}].targetRef"), r, l))
    }
    let from: Vec<&TargetRef> = p.entries_from().into_iter().map(|(t, _)| t).collect();
    top.into_iter()
        .chain(level("to", p.to_refs(), Level::To))
        .chain(level("from", from, Level::From))
        .collect()
}

/// Names every targetRef and backendRef that Meridian keeps but does not
/// resolve, and inbound `rules` whose `matches` it cannot apply.
fn unresolved_refs(spec: &Spec, out: &mut Vec<FieldViolation>) {
    let refs = match spec {
        Spec::MeshTrafficPermission(p) => policy_refs(p),
        Spec::MeshTcpRoute(p) => policy_refs(p),
        Spec::MeshLoadBalancingStrategy(p) => policy_refs(p),
        Spec::MeshHealthCheck(p) => policy_refs(p),
        Spec::MeshTimeout(p) => policy_refs(p),
        Spec::MeshCircuitBreaker(p) => policy_refs(p),
        Spec::MeshRetry(p) => policy_refs(p),
        _ => Vec::new(),
    };
    for (path, r, l) in refs {
        if let Some(reason) = unresolved(r, l) {
            out.push(FieldViolation::new(path, reason));
        }
    }
    match spec {
        Spec::MeshTimeout(p) => {
            for (i, rule) in p.rules.iter().flatten().enumerate() {
                if rule.matches.as_ref().is_some_and(|m| !m.is_empty()) {
                    out.push(FieldViolation::new(
                        format!("spec.rules[{i}].matches"),
                        "not applied: Meridian sets inbound timeouts per inbound, before the client is known, so only rules without matches take effect",
                    ));
                }
            }
        }
        Spec::MeshTcpRoute(p) => {
            for (i, to) in p.to.iter().flatten().enumerate() {
                for (j, rule) in to.rules.iter().enumerate() {
                    for (k, b) in rule.default.backend_refs.iter().enumerate() {
                        if let Some(reason) = unresolved(&b.target_ref(), Level::To) {
                            out.push(FieldViolation::new(
                                format!("spec.to[{i}].rules[{j}].default.backendRefs[{k}]"),
                                reason,
                            ));
                        }
                    }
                }
            }
        }
        _ => {}
    }
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
    fn load_balancing_hash_policies_and_bias_are_named_with_their_reason() {
        let hash = |t: &str| match t {
            "Header" => json!({"type": t, "header": {"name": "x-user"}}),
            "Cookie" => json!({"type": t, "cookie": {"name": "session", "ttl": "1h", "path": "/"}}),
            "QueryParameter" => json!({"type": t, "queryParameter": {"name": "user"}}),
            "FilterState" => json!({"type": t, "filterState": {"key": "io.kuma.key"}}),
            _ => json!({"type": t, "connection": {"sourceIP": true}, "terminal": true}),
        };
        let spec = json!({"targetRef": {"kind": "Mesh"}, "to": [
            {"targetRef": {"kind": "Mesh"}, "default": {
                "loadBalancer": {"type": "LeastRequest", "leastRequest": {"activeRequestBias": "1.3"}},
                "hashPolicies": [hash("Header"), hash("Cookie"), hash("Connection"),
                                 hash("SourceIP"), hash("QueryParameter"), hash("FilterState")]}},
            {"targetRef": {"kind": "MeshService", "name": "web"}, "default": {
                "loadBalancer": {"type": "RingHash", "ringHash": {"hashPolicies": [hash("SourceIP")]}}}},
            {"targetRef": {"kind": "MeshService", "name": "db"}, "default": {
                "loadBalancer": {"type": "Maglev", "maglev": {"hashPolicies": [hash("Header")]}}}},
            {"targetRef": {"kind": "MeshService", "name": "idle"}, "default": {
                "loadBalancer": {"type": "Maglev", "maglev": {"hashPolicies": []}}}}
        ]});
        let spec = Spec::from_value(ResourceKind::MeshLoadBalancingStrategy, spec).expect("valid");
        let got: Vec<(String, &str)> = warnings(&spec)
            .into_iter()
            .map(|w| {
                let why = match w.reason.as_str() {
                    L4 => "L4",
                    NO_CONNECTION_HASH => "no connection hash",
                    NO_LEAST_REQUEST => "no LeastRequest",
                    other => panic!("unexpected reason {other:?}"),
                };
                (w.field, why)
            })
            .collect();
        let d = "spec.to[0].default";
        let want = [
            (
                format!("{d}.loadBalancer.leastRequest.activeRequestBias"),
                "no LeastRequest",
            ),
            (format!("{d}.hashPolicies[0]"), "L4"),
            (format!("{d}.hashPolicies[1]"), "L4"),
            (format!("{d}.hashPolicies[2]"), "no connection hash"),
            (format!("{d}.hashPolicies[3]"), "no connection hash"),
            (format!("{d}.hashPolicies[4]"), "L4"),
            (format!("{d}.hashPolicies[5]"), "L4"),
            (
                "spec.to[1].default.loadBalancer.ringHash.hashPolicies[0]".to_owned(),
                "no connection hash",
            ),
            (
                "spec.to[2].default.loadBalancer.maglev.hashPolicies[0]".to_owned(),
                "L4",
            ),
        ];
        assert_eq!(got, want);
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
        // MeshRetry: the TCP part applies; HTTP and gRPC retries are named.
        assert_eq!(
            fields(
                ResourceKind::MeshRetry,
                json!({"targetRef": {"kind": "Mesh"},
                    "to": [{"targetRef": {"kind": "Mesh"}, "default": {"tcp": {"maxConnectAttempt": 2}}},
                           {"targetRef": {"kind": "Mesh"}, "default": {"http": {"numRetries": 1}, "grpc": {"numRetries": 1}}}]})
            ),
            ["spec.to[1].default.http", "spec.to[1].default.grpc"]
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

    #[test]
    fn refs_that_select_nothing_here_are_named() {
        assert_eq!(
            fields(
                ResourceKind::MeshTcpRoute,
                json!({"targetRef": {"kind": "MeshGateway", "name": "edge"},
                    "to": [{"targetRef": {"kind": "Mesh"}, "rules": [{"default": {"backendRefs": [
                        {"kind": "MeshService", "name": "a"},
                        {"kind": "MeshMultiZoneService", "name": "b", "port": 80}]}}]}]})
            ),
            ["spec.targetRef"]
        );
        assert_eq!(
            fields(
                ResourceKind::MeshTimeout,
                json!({"targetRef": {"kind": "Mesh"}, "rules": [
                    {"default": {"idleTimeout": "1s"}},
                    {"matches": [{"sni": {"type": "Exact", "value": "a.b"}}], "default": {"idleTimeout": "1s"}}]})
            ),
            ["spec.rules[1].matches"]
        );
        assert_eq!(
            fields(
                ResourceKind::MeshHealthCheck,
                json!({"targetRef": {"kind": "Mesh"}, "to": [
                    {"targetRef": {"kind": "MeshService", "name": "a", "sectionName": "http"}, "default": {"tcp": {}}},
                    {"targetRef": {"kind": "MeshService", "labels": {"team": "x"}}, "default": {"tcp": {}}},
                    {"targetRef": {"kind": "MeshExternalService", "name": "db"}, "default": {"tcp": {}}}]})
            ),
            // Ports and labels of MeshServices are destinations here.
            ["spec.to[2].targetRef"]
        );
        assert_eq!(
            fields(
                ResourceKind::MeshTimeout,
                json!({"targetRef": {"kind": "MeshService", "labels": {"team": "x"}},
                    "to": [{"targetRef": {"kind": "MeshMultiZoneService", "name": "m"}, "default": {"idleTimeout": "1s"}}]})
            ),
            ["spec.targetRef"]
        );
        assert!(
            fields(
                ResourceKind::MeshTrafficPermission,
                json!({"targetRef": {"kind": "Dataplane", "sectionName": "main"},
                    "from": [{"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "Allow"}}]})
            )
            .is_empty()
        );
    }
}
