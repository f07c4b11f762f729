//! `MeshRetry`: how often a client retries, per destination (`to` only).
//!
//! Meridian's proxies are L4: `tcp.maxConnectAttempt` (how many endpoints an
//! outbound connection tries before it gives up) takes effect; the `http` and
//! `grpc` sections are accepted, validated with Kuma's rules, kept and named in
//! the write's `warnings`.

use std::collections::BTreeMap;

use crate::duration::Duration;
use crate::error::{Validate, Violations, index, join};
use crate::kind::ResourceKind;
use crate::policy::{
    IntOrString, PolicyEntry, TargetRefPolicy, entries, validate_default, validate_entries,
    validate_positive_duration,
};
use crate::target_ref::TargetRef;

/// The body (`spec`) of a `MeshRetry`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshRetrySpec {
    /// The client proxies configured; absent means `Mesh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    /// Retry settings per destination (an empty list overrides inherited ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<RetryEntry>>,
}

/// Retry settings for a group of destinations.
pub type RetryEntry = PolicyEntry<RetryConf>;

#[cfg(feature = "openapi")]
impl super::EntrySchema for RetryConf {
    const ENTRY: super::EntryDocs = super::EntryDocs {
        name: "RetryEntry",
        about: "Retry settings for a group of destinations.",
        target_ref: "The destinations.",
        default: "The settings.",
    };
}

/// The mergeable retry configuration: at least one of `tcp`, `http`, `grpc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetryConf {
    /// TCP: connection attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpRetry>,
    /// HTTP retries (kept; Meridian's proxies are L4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpRetry>,
    /// gRPC retries (kept; Meridian's proxies are L4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcRetry>,
}

/// TCP retries.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TcpRetry {
    /// Endpoints an outbound connection tries before it fails (greater than 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_connect_attempt: Option<u32>,
}

/// HTTP retries (Kuma's fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HttpRetry {
    /// Retries per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    /// Timeout of each try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// Exponential back-off between tries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_off: Option<BackOff>,
    /// Back-off told by the upstream's rate-limit headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited_back_off: Option<RateLimitedBackOff>,
    /// Conditions to retry on: Kuma's names or HTTP status codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<IntOrString>>,
    /// Responses with these headers are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retriable_response_headers: Option<Vec<HeaderMatch>>,
    /// Only requests with these headers are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retriable_request_headers: Option<Vec<HeaderMatch>>,
    /// Which endpoints a retry may pick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selection: Option<Vec<Predicate>>,
    /// Attempts at picking an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selection_max_attempts: Option<i64>,
}

/// gRPC retries (Kuma's fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrpcRetry {
    /// Retries per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    /// Timeout of each try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// Exponential back-off between tries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_off: Option<BackOff>,
    /// Back-off told by the upstream's rate-limit headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited_back_off: Option<RateLimitedBackOff>,
    /// gRPC statuses to retry on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<String>>,
}

/// Exponential back-off.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackOff {
    /// The first interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_interval: Option<Duration>,
    /// The longest interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<Duration>,
}

/// Back-off from the upstream's rate-limit headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateLimitedBackOff {
    /// The headers that say how long to wait (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_headers: Option<Vec<ResetHeader>>,
    /// The longest wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<Duration>,
}

/// A header saying how long to wait.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResetHeader {
    /// Its name (not empty).
    #[serde(default)]
    pub name: String,
    /// `Seconds` or `UnixTimestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<RateLimitFormat>,
}

/// How a reset header states its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RateLimitFormat {
    /// Seconds to wait.
    Seconds,
    /// A Unix time to wait for.
    UnixTimestamp,
}

/// Kuma's `HeaderMatch` (its `type` is not checked by Kuma's validator, so
/// any text is kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeaderMatch {
    /// `Exact`, `Prefix`, `RegularExpression`, `Present` or `Absent`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The header.
    #[serde(default)]
    pub name: String,
    /// The value matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A host-selection predicate.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Predicate {
    /// `OmitPreviousHosts`, `OmitHostsWithTags` or `OmitPreviousPriorities`.
    #[serde(default)]
    pub predicate: String,
    /// The tags (`OmitHostsWithTags`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// How often priorities are re-evaluated (`OmitPreviousPriorities`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_frequency: Option<i32>,
}

/// Kuma's `retryOn` names for HTTP.
const HTTP_RETRY_ON: [&str; 17] = [
    "5xx",
    "GatewayError",
    "Reset",
    "Retriable4xx",
    "ConnectFailure",
    "EnvoyRatelimited",
    "RefusedStream",
    "Http3PostConnectFailure",
    "HttpMethodConnect",
    "HttpMethodDelete",
    "HttpMethodGet",
    "HttpMethodHead",
    "HttpMethodOptions",
    "HttpMethodPatch",
    "HttpMethodPost",
    "HttpMethodPut",
    "HttpMethodTrace",
];

/// Kuma's `retryOn` names for gRPC.
const GRPC_RETRY_ON: [&str; 5] = [
    "Canceled",
    "DeadlineExceeded",
    "Internal",
    "ResourceExhausted",
    "Unavailable",
];

impl TargetRefPolicy for MeshRetrySpec {
    type Conf = RetryConf;

    fn target_ref(&self) -> Option<&TargetRef> {
        self.target_ref.as_ref()
    }

    fn entries_to(&self) -> Vec<(&TargetRef, &Self::Conf)> {
        entries(self.to.as_deref())
    }
}

impl Validate for MeshRetrySpec {
    fn validate(&self, path: &str, v: &mut Violations) {
        validate_entries(
            ResourceKind::MeshRetry,
            path,
            self.target_ref.as_ref(),
            (self.to.as_deref(), None),
            None,
            v,
            validate_default,
        );
    }
}

/// Kuma reports a conf's problems under `default.conf`.
impl Validate for RetryConf {
    fn validate(&self, path: &str, v: &mut Violations) {
        let path = join(path, "conf");
        if self.tcp.is_none() && self.http.is_none() && self.grpc.is_none() {
            v.add(
                path,
                "at least one of the 'tcp', 'http', 'grpc' must be specified",
            );
            return;
        }
        if let Some(tcp) = &self.tcp {
            let tp = join(&path, "tcp");
            match tcp.max_connect_attempt {
                None => v.add(tp, "must not be empty"),
                Some(0) => v.add(join(&tp, "maxConnectAttempt"), "must be greater than 0"),
                Some(_) => {}
            }
        }
        if let Some(http) = &self.http {
            let hp = join(&path, "http");
            let empty = http.num_retries.is_none()
                && http.per_try_timeout.is_none()
                && http.back_off.is_none()
                && http.retry_on.is_none()
                && http.retriable_request_headers.is_none()
                && http.retriable_response_headers.is_none()
                && http.rate_limited_back_off.is_none()
                && http.host_selection.is_none();
            let section = Section {
                path: &hp,
                empty,
                back_off: http.back_off.as_ref(),
                rate_limited: http.rate_limited_back_off.as_ref(),
            };
            section.validate(
                http.retry_on.as_deref().unwrap_or_default(),
                |r| match r {
                    IntOrString::Int(code) => is_status(*code),
                    IntOrString::String(s) => {
                        HTTP_RETRY_ON.contains(&s.as_str()) || s.parse::<i64>().is_ok_and(is_status)
                    }
                },
                IntOrString::text,
                v,
            );
            validate_host_selection(
                &join(&hp, "hostSelection"),
                http.host_selection.as_deref(),
                v,
            );
        }
        if let Some(grpc) = &self.grpc {
            let gp = join(&path, "grpc");
            let empty = grpc.num_retries.is_none()
                && grpc.per_try_timeout.is_none()
                && grpc.back_off.is_none()
                && grpc.retry_on.is_none()
                && grpc.rate_limited_back_off.is_none();
            let section = Section {
                path: &gp,
                empty,
                back_off: grpc.back_off.as_ref(),
                rate_limited: grpc.rate_limited_back_off.as_ref(),
            };
            section.validate(
                grpc.retry_on.as_deref().unwrap_or_default(),
                |r| GRPC_RETRY_ON.contains(&r.as_str()),
                String::clone,
                v,
            );
        }
    }
}

/// What the `http` and `grpc` sections have in common, for their shared
/// checks (Kuma's rules and wording).
struct Section<'a> {
    path: &'a str,
    /// No field set.
    empty: bool,
    back_off: Option<&'a BackOff>,
    rate_limited: Option<&'a RateLimitedBackOff>,
}

impl Section<'_> {
    /// Not empty, back-offs well formed, every `retryOn` item `known`.
    fn validate<T>(
        &self,
        retry_on: &[T],
        known: impl Fn(&T) -> bool,
        text: impl Fn(&T) -> String,
        v: &mut Violations,
    ) {
        if self.empty {
            v.add(self.path, "must not be empty");
        }
        if let Some(b) = self.back_off
            && b.base_interval.is_none()
            && b.max_interval.is_none()
        {
            v.add(join(self.path, "backOff"), "must not be empty");
        }
        if let Some(r) = self.rate_limited {
            let rp = join(self.path, "rateLimitedBackOff");
            validate_positive_duration(&join(&rp, "maxInterval"), r.max_interval.as_ref(), v);
            match &r.reset_headers {
                None => v.add(join(&rp, "resetHeaders"), "must be defined"),
                Some(headers) => {
                    for (i, h) in headers.iter().enumerate() {
                        if h.name.is_empty() {
                            v.add(
                                join(&index(&join(&rp, "resetHeaders"), i), "name"),
                                "must be defined",
                            );
                        }
                    }
                }
            }
        }
        for (i, r) in retry_on.iter().enumerate() {
            if !known(r) {
                v.add(
                    index(&join(self.path, "retryOn"), i),
                    format!("unknown item '{}'", text(r)),
                );
            }
        }
    }
}

/// An HTTP status code Go's `http.StatusText` knows (Kuma's rule for a
/// numeric `retryOn`): the registered codes between 100 and 599.
fn is_status(code: i64) -> bool {
    matches!(
        code,
        100..=103
            | 200..=208
            | 226
            | 300..=305
            | 307
            | 308
            | 400..=418
            | 421..=426
            | 428
            | 429
            | 431
            | 451
            | 500..=508
            | 510
            | 511
    )
}

fn validate_host_selection(path: &str, predicates: Option<&[Predicate]>, v: &mut Violations) {
    let mut priorities = false;
    for (i, p) in predicates.into_iter().flatten().enumerate() {
        let at = index(path, i);
        match p.predicate.as_str() {
            "OmitHostsWithTags" if p.tags.is_none() => v.add(join(&at, "tags"), "must be defined"),
            "OmitPreviousPriorities" => {
                if priorities {
                    v.add(
                        join(&at, "predicate"),
                        "OmitPreviousPriorities must only be specified once",
                    );
                }
                if p.update_frequency.unwrap_or(0) <= 0 {
                    v.add(
                        join(&at, "updateFrequency"),
                        "must be defined and greater than zero",
                    );
                }
                priorities = true;
            }
            "OmitHostsWithTags" | "OmitPreviousHosts" => {}
            other => v.add(
                join(&at, "predicate"),
                format!("unknown predicate type '{other}'"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ResourceKind;
    use serde_json::json;

    fn errors(value: serde_json::Value) -> Vec<String> {
        crate::test_support::violation_lines(ResourceKind::MeshRetry, value, true)
    }

    #[test]
    fn table() {
        let d = "spec.to[0].default.conf";
        let cases: Vec<(serde_json::Value, Vec<String>)> = vec![
            (
                json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"},
                    "default": {"tcp": {"maxConnectAttempt": 5},
                        "http": {"numRetries": 5, "perTryTimeout": "16s", "retryOn": ["5xx", 503, "409"],
                            "backOff": {"baseInterval": "25ms", "maxInterval": "250ms"}},
                        "grpc": {"numRetries": 5, "retryOn": ["Unavailable"]}}}]}),
                vec![],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {}}]}),
                vec![format!(
                    "{d}: at least one of the 'tcp', 'http', 'grpc' must be specified"
                )],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {"tcp": {}, "http": {}, "grpc": {}}}]}),
                vec![
                    format!("{d}.tcp: must not be empty"),
                    format!("{d}.http: must not be empty"),
                    format!("{d}.grpc: must not be empty"),
                ],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {"tcp": {"maxConnectAttempt": 0},
                    "http": {"retryOn": ["Sometimes", 999], "backOff": {},
                        "rateLimitedBackOff": {"maxInterval": "0s"},
                        "hostSelection": [{"predicate": "OmitPreviousPriorities"}, {"predicate": "OmitPreviousPriorities", "updateFrequency": 1}, {"predicate": "Other"}]},
                    "grpc": {"retryOn": ["Maybe"]}}}]}),
                vec![
                    format!("{d}.tcp.maxConnectAttempt: must be greater than 0"),
                    format!("{d}.http.backOff: must not be empty"),
                    format!(
                        "{d}.http.rateLimitedBackOff.maxInterval: must be greater than zero when defined"
                    ),
                    format!("{d}.http.rateLimitedBackOff.resetHeaders: must be defined"),
                    format!("{d}.http.retryOn[0]: unknown item 'Sometimes'"),
                    format!("{d}.http.retryOn[1]: unknown item '999'"),
                    format!(
                        "{d}.http.hostSelection[0].updateFrequency: must be defined and greater than zero"
                    ),
                    format!(
                        "{d}.http.hostSelection[1].predicate: OmitPreviousPriorities must only be specified once"
                    ),
                    format!("{d}.http.hostSelection[2].predicate: unknown predicate type 'Other'"),
                    format!("{d}.grpc.retryOn[0]: unknown item 'Maybe'"),
                ],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "MeshSubset", "tags": {"a": "b"}}, "default": {"tcp": {"maxConnectAttempt": 1}}}]}),
                vec!["spec.to[0].targetRef.kind: MeshRetry `to` does not support kind MeshSubset (allowed: Mesh, MeshService, MeshExternalService, MeshMultiZoneService, MeshHTTPRoute)".to_owned()],
            ),
            (
                json!({"targetRef": {"kind": "Mesh"}, "from": []}),
                vec!["spec.from: MeshRetry does not support `from`".to_owned()],
            ),
        ];
        for (value, want) in cases {
            assert_eq!(errors(value.clone()), want, "{value}");
        }
    }
}
