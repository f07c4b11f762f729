//! `MeshHealthCheck`: active health checking of a destination's endpoints
//! from the calling proxy (`to` only). Meridian's proxies are L4, so only TCP
//! checks run; Kuma's `http` and `grpc` sections are accepted, validated by
//! Kuma's rules, stored and synced, and named in the API's `warnings` (see
//! [`crate::warnings()`]): they do not apply to TCP traffic.

use crate::duration::Duration;
use crate::error::{Validate, Violations, join};
use crate::kind::ResourceKind;
use crate::policy::{
    IntOrString, PolicyEntry, TargetRefPolicy, entries, validate_default, validate_entries,
    validate_percent, validate_positive_duration,
};
use crate::target_ref::TargetRef;

/// The body (`spec`) of a `MeshHealthCheck`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshHealthCheckSpec {
    /// The proxies that run the checks; absent means `Mesh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    /// Checks per destination; at least one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<HealthCheckTo>>,
}

/// Checks for a group of destinations.
pub type HealthCheckTo = PolicyEntry<HealthCheckConf>;

#[cfg(feature = "openapi")]
impl super::EntrySchema for HealthCheckConf {
    const ENTRY: super::EntryDocs = super::EntryDocs {
        name: "HealthCheckTo",
        about: "Checks for a group of destinations.",
        target_ref: "The destinations (`Mesh` or `MeshService`).",
        default: "The check settings.",
    };
}

/// The mergeable health-check configuration. As in Kuma, it names at least
/// one check (`http`, `tcp` or `grpc`; only `tcp` runs here); durations and
/// thresholds are greater than 0 when set.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthCheckConf {
    /// Time between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Time to wait for a check's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Failed checks before an endpoint is unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub unhealthy_threshold: Option<u32>,
    /// Passed checks before an endpoint is healthy again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub healthy_threshold: Option<u32>,
    /// Random delay before the first check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_jitter: Option<Duration>,
    /// Random delay added to each interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_jitter: Option<Duration>,
    /// Random delay added to each interval, as a percentage of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_jitter_percent: Option<u32>,
    /// Below this healthy percentage, all endpoints are used (panic mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_panic_threshold: Option<IntOrString>,
    /// In panic mode, fail connections instead of using unhealthy endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_traffic_on_panic: Option<bool>,
    /// Check interval for endpoints that received no traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_traffic_interval: Option<Duration>,
    /// Keep the check connection open between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_connection: Option<bool>,
    /// Path of a file to log health-check events to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log_path: Option<String>,
    /// Log every failed check, not only state changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub always_log_health_check_failures: Option<bool>,
    /// The TCP check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpHealthCheck>,
    /// Kuma's HTTP check: accepted and kept; not run (Meridian is L4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpHealthCheck>,
    /// Kuma's gRPC check: accepted and kept; not run (Meridian is L4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcHealthCheck>,
}

/// Kuma's HTTP health check.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HttpHealthCheck {
    /// Turns the check off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// The path requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Headers added to the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers_to_add: Option<HeaderModifier>,
    /// Statuses counted as healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_statuses: Option<Vec<i32>>,
}

/// Headers to set or add.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeaderModifier {
    /// Replace these headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Vec<HeaderKeyValue>>,
    /// Append these headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<Vec<HeaderKeyValue>>,
}

/// One header.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeaderKeyValue {
    /// The header name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// Kuma's gRPC health check.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrpcHealthCheck {
    /// Turns the check off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// The service name checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// The `:authority` sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

/// The TCP check: connect, optionally send a payload and expect a reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TcpHealthCheck {
    /// Turn the TCP check off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Base64 payload to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Base64 payloads, each expected somewhere in the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive: Option<Vec<String>>,
}

impl TargetRefPolicy for MeshHealthCheckSpec {
    type Conf = HealthCheckConf;

    fn target_ref(&self) -> Option<&TargetRef> {
        self.target_ref.as_ref()
    }

    fn entries_to(&self) -> Vec<(&TargetRef, &Self::Conf)> {
        entries(self.to.as_deref())
    }
}

impl Validate for MeshHealthCheckSpec {
    fn validate(&self, path: &str, v: &mut Violations) {
        validate_entries(
            ResourceKind::MeshHealthCheck,
            path,
            self.target_ref.as_ref(),
            (self.to.as_deref(), None),
            None,
            v,
            validate_default,
        );
    }
}

impl Validate for HealthCheckConf {
    fn validate(&self, path: &str, v: &mut Violations) {
        let field = |name| join(path, name);
        validate_positive_duration(&field("interval"), self.interval.as_ref(), v);
        validate_positive_duration(&field("timeout"), self.timeout.as_ref(), v);
        for (name, value) in [
            ("unhealthyThreshold", self.unhealthy_threshold),
            ("healthyThreshold", self.healthy_threshold),
        ] {
            if value == Some(0) {
                v.add(field(name), "must be greater than zero when defined");
            }
        }
        validate_positive_duration(&field("initialJitter"), self.initial_jitter.as_ref(), v);
        validate_positive_duration(&field("intervalJitter"), self.interval_jitter.as_ref(), v);
        validate_percent(
            &field("intervalJitterPercent"),
            self.interval_jitter_percent,
            v,
        );
        if let Some(p) = &self.healthy_panic_threshold {
            p.validate_percentage(&field("healthyPanicThreshold"), true, v);
        }
        validate_positive_duration(
            &field("noTrafficInterval"),
            self.no_traffic_interval.as_ref(),
            v,
        );
        if let Some(p) = &self.event_log_path
            && !is_file_path(p)
        {
            v.add(field("eventLogPath"), "must be a valid path when defined");
        }
        if let Some(http) = &self.http {
            let hp = field("http");
            if http.path.as_deref() == Some("") {
                v.add(join(&hp, "path"), "must not be empty");
            }
            for (i, status) in http.expected_statuses.iter().flatten().enumerate() {
                if !(100..=599).contains(status) {
                    v.add(
                        format!("{hp}.expectedStatuses[{i}]"),
                        "must be in inclusive range [100, 599]",
                    );
                }
            }
        }
        if self.http.is_none() && self.tcp.is_none() && self.grpc.is_none() {
            v.add(
                path,
                "must have at least one defined: http, tcp, grpc (Meridian runs `tcp` checks only)",
            );
        }
    }
}

/// Whether `p` is an absolute file path, as Kuma checks `eventLogPath`: a
/// Unix path (`/` then anything but NUL) or a Windows one (`C:\dir\file`,
/// without `/:*?"<>|` or line breaks in its parts).
fn is_file_path(p: &str) -> bool {
    if p.starts_with('/') {
        return !p.contains('\0');
    }
    let mut chars = p.chars();
    let drive = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !(drive && chars.next() == Some(':') && chars.next() == Some('\\')) {
        return false;
    }
    let rest = chars.as_str();
    let parts: Vec<&str> = rest.split('\\').collect();
    let Some((file, dirs)) = parts.split_last() else {
        return false;
    };
    let bad = |c: char| "/:*?\"<>|\r\n".contains(c);
    rest.len() <= 32_767
        && !file.contains(bad)
        && dirs.iter().all(|dir| !dir.is_empty() && !dir.contains(bad))
}

#[cfg(test)]
mod tests {
    use crate::{ResourceKind, Spec};
    use serde_json::json;

    fn errors(default: serde_json::Value) -> Vec<String> {
        let value = json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": default}]});
        match Spec::from_value(ResourceKind::MeshHealthCheck, value.clone()) {
            Ok(spec) => {
                assert_eq!(spec.to_value(), value);
                vec![]
            }
            Err(e) => e
                .violations
                .into_iter()
                .map(|v| format!("{}: {}", v.field, v.reason))
                .collect(),
        }
    }

    #[test]
    fn table() {
        let p = "spec.to[0].default";
        let cases: Vec<(serde_json::Value, Vec<String>)> = vec![
            (
                json!({"interval": "10s", "timeout": "2s", "unhealthyThreshold": 3, "healthyThreshold": 1, "initialJitter": "5s",
                       "intervalJitter": "6s", "intervalJitterPercent": 10, "healthyPanicThreshold": 60, "failTrafficOnPanic": true,
                       "noTrafficInterval": "10s", "reuseConnection": true, "eventLogPath": "/tmp/hc.log",
                       "tcp": {"disabled": false, "send": "Zm9v", "receive": ["YmFy"]}}),
                vec![],
            ),
            (json!({"tcp": {}, "healthyPanicThreshold": 0}), vec![]),
            // Accepted as Kuma accepts them (the API warns that they do not run here).
            (
                json!({"http": {"path": "/health", "expectedStatuses": [200],
                        "requestHeadersToAdd": {"set": [{"name": "x", "value": "y"}]}},
                       "grpc": {"serviceName": "s", "authority": "a"}}),
                vec![],
            ),
            (
                json!({"http": {"path": "", "expectedStatuses": [99, 600]}}),
                vec![
                    format!("{p}.http.path: must not be empty"),
                    format!("{p}.http.expectedStatuses[0]: must be in inclusive range [100, 599]"),
                    format!("{p}.http.expectedStatuses[1]: must be in inclusive range [100, 599]"),
                ],
            ),
            (
                json!({"interval": "0s", "unhealthyThreshold": 0, "intervalJitterPercent": 150, "healthyPanicThreshold": "x", "tcp": {}}),
                vec![
                    format!("{p}.interval: must be greater than zero when defined"),
                    format!("{p}.unhealthyThreshold: must be greater than zero when defined"),
                    format!("{p}.intervalJitterPercent: must be in inclusive range [0, 100]"),
                    format!("{p}.healthyPanicThreshold: string must be a valid number"),
                ],
            ),
            (
                json!({"timeout": "0s", "healthyThreshold": 0, "initialJitter": "0s", "intervalJitter": "0ms",
                       "noTrafficInterval": "0", "healthyPanicThreshold": 101, "tcp": {}}),
                vec![
                    format!("{p}.timeout: must be greater than zero when defined"),
                    format!("{p}.healthyThreshold: must be greater than zero when defined"),
                    format!("{p}.initialJitter: must be greater than zero when defined"),
                    format!("{p}.intervalJitter: must be greater than zero when defined"),
                    format!("{p}.healthyPanicThreshold: must be in inclusive range [0.0, 100.0]"),
                    format!("{p}.noTrafficInterval: must be greater than zero when defined"),
                ],
            ),
            (
                json!({"eventLogPath": "#not_valid_path", "tcp": {}}),
                vec![format!(
                    "{p}.eventLogPath: must be a valid path when defined"
                )],
            ),
            (
                json!({}),
                vec![format!(
                    "{p}: must have at least one defined: http, tcp, grpc (Meridian runs `tcp` checks only)"
                )],
            ),
            (
                json!({"interval": "10s", "timeout": "2s"}),
                vec![format!(
                    "{p}: must have at least one defined: http, tcp, grpc (Meridian runs `tcp` checks only)"
                )],
            ),
        ];
        for (default, want) in cases {
            assert_eq!(errors(default.clone()), want, "{default}");
        }
        let from = json!({"targetRef": {"kind": "Mesh"}, "from": [{"targetRef": {"kind": "Mesh"}, "default": {}}]});
        let e = Spec::from_value(ResourceKind::MeshHealthCheck, from).expect_err("from");
        assert_eq!(e.violations[0].field, "spec.from");
        assert_eq!(
            e.violations[0].reason,
            "MeshHealthCheck does not support `from`"
        );
    }

    #[test]
    fn event_log_paths() {
        for p in [
            "/tmp/hc.log",
            "/",
            "//x",
            "/a b/c",
            "C:\\logs\\hc.log",
            "c:\\",
            "D:\\x\\",
        ] {
            assert!(super::is_file_path(p), "{p}");
        }
        for p in [
            "",
            "hc.log",
            "./hc.log",
            "#not_valid_path",
            "/a\0b",
            "C:/logs",
            "C:\\a\\\\b",
            "C:\\a:b",
            "1:\\a",
        ] {
            assert!(!super::is_file_path(p), "{p}");
        }
    }
}
