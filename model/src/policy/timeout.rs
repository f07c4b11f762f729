//! `MeshTimeout`: connection and idle timeouts for outbound (`to`) and
//! inbound (`from`, or Kuma 2.10+'s `rules` with optional `matches` on the
//! client) traffic. The `http` section is accepted for Kuma compatibility;
//! Meridian's L4 proxies only act on `connectionTimeout` and `idleTimeout`.

use crate::duration::Duration;
use crate::error::{Validate, Violations, index, join};
use crate::kind::ResourceKind;
use crate::policy::{
    Match, PolicyEntry, TargetRefPolicy, entries, validate_default, validate_entries,
    validate_positive_duration,
};
use crate::target_ref::TargetRef;

/// The body (`spec`) of a `MeshTimeout`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshTimeoutSpec {
    /// The proxies configured; absent means `Mesh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    /// Outbound timeouts per destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<TimeoutEntry>>,
    /// Inbound timeouts (`Mesh` clients only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<TimeoutEntry>>,
    /// Inbound timeouts by client (instead of `to` and `from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<TimeoutRule>>,
}

/// An inbound rule: timeouts for the clients its `matches` select (every
/// client without `matches`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimeoutRule {
    /// Conditions on the client (any one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<Vec<Match>>,
    /// The timeouts.
    #[serde(default)]
    pub default: TimeoutConf,
}

/// Timeouts for a group of destinations or clients.
pub type TimeoutEntry = PolicyEntry<TimeoutConf>;

#[cfg(feature = "openapi")]
impl super::EntrySchema for TimeoutConf {
    const ENTRY: super::EntryDocs = super::EntryDocs {
        name: "TimeoutEntry",
        about: "Timeouts for a group of destinations or clients.",
        target_ref: "The destinations or clients.",
        default: "The timeouts.",
    };
}

/// The mergeable timeout configuration: at least one timeout;
/// `connectionTimeout` greater than 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimeoutConf {
    /// Time allowed to establish a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_timeout: Option<Duration>,
    /// A connection with no traffic for this long is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// HTTP timeouts (accepted for compatibility; not applied by Meridian's L4 proxies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTimeouts>,
}

/// HTTP timeouts of Kuma's MeshTimeout (at least one of the first four).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HttpTimeouts {
    /// Time for a whole request/response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Duration>,
    /// Idle time of a stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout: Option<Duration>,
    /// Maximum stream duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_duration: Option<Duration>,
    /// Maximum connection duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<Duration>,
    /// Time to receive request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers_timeout: Option<Duration>,
}

impl TargetRefPolicy for MeshTimeoutSpec {
    type Conf = TimeoutConf;

    fn target_ref(&self) -> Option<&TargetRef> {
        self.target_ref.as_ref()
    }

    fn entries_to(&self) -> Vec<(&TargetRef, &Self::Conf)> {
        entries(self.to.as_deref())
    }

    fn entries_from(&self) -> Vec<(&TargetRef, &Self::Conf)> {
        entries(self.from.as_deref())
    }

    fn entries_rules(&self) -> Vec<(&[Match], &Self::Conf)> {
        self.rules
            .iter()
            .flatten()
            .map(|r| (r.matches.as_deref().unwrap_or_default(), &r.default))
            .collect()
    }
}

impl Validate for MeshTimeoutSpec {
    fn validate(&self, path: &str, v: &mut Violations) {
        validate_entries(
            ResourceKind::MeshTimeout,
            path,
            self.target_ref.as_ref(),
            (self.to.as_deref(), self.from.as_deref()),
            self.rules.as_ref().map(Vec::len),
            v,
            validate_default,
        );
        let rules_path = join(path, "rules");
        for (i, rule) in self.rules.iter().flatten().enumerate() {
            let at = index(&rules_path, i);
            let default_path = join(&at, "default");
            let matches_path = join(&at, "matches");
            let mut spiffe = false;
            for (j, m) in rule.matches.iter().flatten().enumerate() {
                let mp = index(&matches_path, j);
                m.validate(&mp, v);
                if m.spiffe_id.is_none() && m.sni.is_none() {
                    v.add(mp, "must specify at least one of 'spiffeID' or 'sni'");
                }
                spiffe |= m.spiffe_id.is_some();
            }
            rule.default.validate(&default_path, v);
            if spiffe {
                // Kuma: these are set per listener, before the client is known.
                let d = &rule.default;
                let http = d.http.as_ref();
                for (field, set) in [
                    ("connectionTimeout", d.connection_timeout.is_some()),
                    ("idleTimeout", d.idle_timeout.is_some()),
                    (
                        "http.requestHeadersTimeout",
                        http.is_some_and(|h| h.request_headers_timeout.is_some()),
                    ),
                    (
                        "http.maxStreamDuration",
                        http.is_some_and(|h| h.max_stream_duration.is_some()),
                    ),
                    (
                        "http.maxConnectionDuration",
                        http.is_some_and(|h| h.max_connection_duration.is_some()),
                    ),
                ] {
                    if set {
                        v.add(
                            join(&default_path, field),
                            "can't be specified when matches contain spiffeID because this field cannot be conditioned on source identity",
                        );
                    }
                }
            }
        }
    }
}

impl Validate for TimeoutConf {
    fn validate(&self, path: &str, v: &mut Violations) {
        if self.connection_timeout.is_none() && self.idle_timeout.is_none() && self.http.is_none() {
            v.add(path, "at least one timeout should be configured");
            return;
        }
        validate_positive_duration(
            &join(path, "connectionTimeout"),
            self.connection_timeout.as_ref(),
            v,
        );
        if let Some(h) = &self.http
            // Kuma's rule; it leaves `requestHeadersTimeout` out of the count.
            && h.request_timeout.is_none()
            && h.stream_idle_timeout.is_none()
            && h.max_stream_duration.is_none()
            && h.max_connection_duration.is_none()
        {
            v.add(
                join(path, "http"),
                "at least one timeout in this section should be configured",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ResourceKind;
    use serde_json::json;

    fn errors(value: serde_json::Value) -> Vec<String> {
        crate::test_support::violation_lines(ResourceKind::MeshTimeout, value, true)
    }

    #[test]
    fn table() {
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (
                json!({"targetRef": {"kind": "MeshSubset", "tags": {"app": "frontend"}},
                       "from": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "60s", "connectionTimeout": "2s",
                           "http": {"requestTimeout": "10s", "streamIdleTimeout": "1h", "maxStreamDuration": "30m", "maxConnectionDuration": "30m"}}}],
                       "to": [{"targetRef": {"kind": "MeshService", "name": "backend_kuma-demo_svc_3001"}, "default": {"idleTimeout": "1m30s", "connectionTimeout": "1s"}}]}),
                vec![],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {}}]}),
                vec!["spec.to[0].default: at least one timeout should be configured"],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": "0s", "idleTimeout": "0s"}}]}),
                vec![
                    "spec.to[0].default.connectionTimeout: must be greater than zero when defined",
                ],
            ),
            (
                json!({"from": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {}}}]}),
                vec![
                    "spec.from[0].default.http: at least one timeout in this section should be configured",
                ],
            ),
            (
                json!({"from": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {"requestHeadersTimeout": "1s"}}}]}),
                vec![
                    "spec.from[0].default.http: at least one timeout in this section should be configured",
                ],
            ),
            (
                json!({"from": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {"streamIdleTimeout": "0s"}}}]}),
                vec![],
            ),
            (
                json!({"targetRef": {"kind": "Mesh"}}),
                vec!["spec: at least one of 'from', 'to' or 'rules' has to be defined"],
            ),
            (
                json!({"targetRef": {"kind": "Mesh"}, "to": [], "from": []}),
                vec!["spec: at least one of 'from', 'to' or 'rules' has to be defined"],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": "5 minutes"}}]}),
                vec![
                    "spec.to[0].default.idleTimeout: invalid duration \"5 minutes\": unknown unit (expected a Go duration such as \"10s\", \"1m30s\" or \"500ms\")",
                ],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": "-1s"}}]}),
                vec![
                    "spec.to[0].default.connectionTimeout: invalid duration \"-1s\": must not be negative (expected a Go duration such as \"10s\", \"1m30s\" or \"500ms\")",
                ],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": 5}}]}),
                vec![
                    "spec.to[0].default.connectionTimeout: invalid type: integer `5`, expected a string",
                ],
            ),
            (
                json!({"from": [{"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"idleTimeout": "1s"}}],
                       "to": [{"targetRef": {"kind": "MeshSubset", "tags": {"a": "b"}}, "default": {"idleTimeout": "1s"}}]}),
                vec![
                    "spec.to[0].targetRef.kind: MeshTimeout `to` does not support kind MeshSubset (allowed: Mesh, MeshService, MeshExternalService, MeshMultiZoneService, MeshHTTPRoute)",
                    "spec.from[0].targetRef.kind: MeshTimeout `from` does not support kind MeshService (allowed: Mesh)",
                ],
            ),
        ];
        for (value, want) in cases {
            assert_eq!(errors(value.clone()), want, "{value}");
        }
    }
}
