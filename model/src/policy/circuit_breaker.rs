//! `MeshCircuitBreaker`: connection limits and outlier detection, for
//! outbound (`to`) and inbound (`from`, `Mesh` clients only, or Kuma 2.10+'s
//! `rules`, which select every client) traffic.

use crate::duration::Duration;
use crate::error::{Validate, Violations, index, join};
use crate::kind::ResourceKind;
use crate::policy::{
    IntOrString, Match, PolicyEntry, TargetRefPolicy, entries, validate_default, validate_entries,
    validate_percent, validate_positive, validate_positive_duration,
};
use crate::target_ref::TargetRef;

/// The body (`spec`) of a `MeshCircuitBreaker`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshCircuitBreakerSpec {
    /// The proxies configured; absent means `Mesh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    /// Outbound settings per destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<CircuitBreakerEntry>>,
    /// Inbound settings (`Mesh` clients only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<CircuitBreakerEntry>>,
    /// Inbound settings for every client (instead of `to` and `from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<CircuitBreakerRule>>,
}

/// An inbound rule: settings for every client of the selected inbounds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CircuitBreakerRule {
    /// The settings.
    #[serde(default)]
    pub default: CircuitBreakerConf,
}

/// Settings for a group of destinations or clients.
pub type CircuitBreakerEntry = PolicyEntry<CircuitBreakerConf>;

#[cfg(feature = "openapi")]
impl super::EntrySchema for CircuitBreakerConf {
    const ENTRY: super::EntryDocs = super::EntryDocs {
        name: "CircuitBreakerEntry",
        about: "Settings for a group of destinations or clients.",
        target_ref: "The destinations or clients.",
        default: "The settings.",
    };
}

/// The mergeable circuit-breaker configuration (at least one of the two).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CircuitBreakerConf {
    /// Limits on concurrent connections and requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limits: Option<ConnectionLimits>,
    /// Ejection of misbehaving endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
}

/// Limits on concurrent connections and requests (each greater than 0 when set).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionLimits {
    /// Maximum connections to the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_connections: Option<u32>,
    /// Maximum queued connection attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_pending_requests: Option<u32>,
    /// Maximum parallel requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_requests: Option<u32>,
    /// Maximum parallel retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_retries: Option<u32>,
    /// Maximum connection pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_connection_pools: Option<u32>,
}

/// Ejection of misbehaving endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutlierDetection {
    /// Turn outlier detection off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Time between ejection sweeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Base ejection time (multiplied by the number of ejections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Duration>,
    /// Maximum percentage of endpoints ejected at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(maximum = 100))]
    pub max_ejection_percent: Option<u32>,
    /// Count local-origin failures (connect errors) apart from upstream ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_external_and_local_errors: Option<bool>,
    /// What counts as misbehaving (required, with at least one detector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detectors: Option<Detectors>,
}

/// Outlier detectors.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Detectors {
    /// Consecutive failures of any kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_failures: Option<ConsecutiveDetector>,
    /// Consecutive gateway failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_failures: Option<ConsecutiveDetector>,
    /// Consecutive local-origin failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_origin_failures: Option<ConsecutiveDetector>,
    /// Success rate far below the cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<SuccessRateDetector>,
    /// Failure percentage above a threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_percentage: Option<FailurePercentageDetector>,
}

/// A consecutive-failures detector.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsecutiveDetector {
    /// Failures in a row before ejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub consecutive: Option<u32>,
}

/// The success-rate detector.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SuccessRateDetector {
    /// Endpoints needed for the detector to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub minimum_hosts: Option<u32>,
    /// Requests per endpoint needed in an interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub request_volume: Option<u32>,
    /// Ejection below mean − factor × stddev (e.g. `"1.9"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_deviation_factor: Option<IntOrString>,
}

/// The failure-percentage detector.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailurePercentageDetector {
    /// Endpoints needed for the detector to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub minimum_hosts: Option<u32>,
    /// Requests per endpoint needed in an interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub request_volume: Option<u32>,
    /// Failure percentage at which an endpoint is ejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(maximum = 100))]
    pub threshold: Option<u32>,
}

impl TargetRefPolicy for MeshCircuitBreakerSpec {
    type Conf = CircuitBreakerConf;

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
        let every_client: &[Match] = &[];
        self.rules
            .iter()
            .flatten()
            .map(|r| (every_client, &r.default))
            .collect()
    }
}

impl Validate for MeshCircuitBreakerSpec {
    fn validate(&self, path: &str, v: &mut Violations) {
        validate_entries(
            ResourceKind::MeshCircuitBreaker,
            path,
            self.target_ref.as_ref(),
            (self.to.as_deref(), self.from.as_deref()),
            self.rules.as_ref().map(Vec::len),
            v,
            validate_default,
        );
        let rules_path = join(path, "rules");
        for (i, rule) in self.rules.iter().flatten().enumerate() {
            rule.default
                .validate(&join(&index(&rules_path, i), "default"), v);
        }
    }
}

impl Validate for CircuitBreakerConf {
    fn validate(&self, path: &str, v: &mut Violations) {
        if self.connection_limits.is_none() && self.outlier_detection.is_none() {
            v.add(
                path,
                "at least one of: 'connectionLimits' or 'outlierDetection' should be configured",
            );
            return;
        }
        if let Some(cl) = &self.connection_limits {
            let cp = join(path, "connectionLimits");
            for (field, value) in [
                ("maxConnections", cl.max_connections),
                ("maxConnectionPools", cl.max_connection_pools),
                ("maxPendingRequests", cl.max_pending_requests),
                ("maxRetries", cl.max_retries),
                ("maxRequests", cl.max_requests),
            ] {
                validate_positive(&join(&cp, field), value, v);
            }
        }
        if let Some(od) = &self.outlier_detection {
            validate_outlier_detection(&join(path, "outlierDetection"), od, v);
        }
    }
}

fn validate_outlier_detection(op: &str, od: &OutlierDetection, v: &mut Violations) {
    validate_positive_duration(&join(op, "interval"), od.interval.as_ref(), v);
    validate_positive_duration(
        &join(op, "baseEjectionTime"),
        od.base_ejection_time.as_ref(),
        v,
    );
    validate_percent(&join(op, "maxEjectionPercent"), od.max_ejection_percent, v);
    // As in Kuma, even a disabled outlier detection names its detectors.
    let dp = join(op, "detectors");
    let Some(d) = &od.detectors else {
        v.add(dp, "must be defined");
        return;
    };
    if d.total_failures.is_none()
        && d.gateway_failures.is_none()
        && d.local_origin_failures.is_none()
        && d.success_rate.is_none()
        && d.failure_percentage.is_none()
    {
        v.add(
            dp,
            "must have at least one defined: totalFailures, gatewayFailures, localOriginFailures, successRate, failurePercentage",
        );
        return;
    }
    let consecutive = [
        ("totalFailures", &d.total_failures),
        ("gatewayFailures", &d.gateway_failures),
        ("localOriginFailures", &d.local_origin_failures),
    ];
    for (field, det) in consecutive {
        validate_positive(
            &join(&join(&dp, field), "consecutive"),
            det.as_ref().and_then(|c| c.consecutive),
            v,
        );
    }
    if let Some(sr) = &d.success_rate {
        let sp = join(&dp, "successRate");
        validate_positive(&join(&sp, "minimumHosts"), sr.minimum_hosts, v);
        validate_positive(&join(&sp, "requestVolume"), sr.request_volume, v);
        if let Some(f) = &sr.standard_deviation_factor {
            let fp = join(&sp, "standardDeviationFactor");
            match f.as_f64() {
                None => v.add(fp, "invalid number"),
                Some(x) if x <= 0.0 => v.add(fp, "must be greater than 0"),
                Some(_) => {}
            }
        }
    }
    if let Some(fp) = &d.failure_percentage {
        let pp = join(&dp, "failurePercentage");
        validate_positive(&join(&pp, "minimumHosts"), fp.minimum_hosts, v);
        validate_positive(&join(&pp, "requestVolume"), fp.request_volume, v);
        validate_percent(&join(&pp, "threshold"), fp.threshold, v);
    }
}

#[cfg(test)]
mod tests {
    use crate::ResourceKind;
    use serde_json::json;

    fn errors(value: serde_json::Value) -> Vec<String> {
        crate::test_support::violation_lines(ResourceKind::MeshCircuitBreaker, value, true)
    }

    #[test]
    fn every_type_error_and_unknown_field_comes_back_at_once() {
        let value = json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {
            "connectionLimits": {"maxConnections": -3, "maxRequests": 0},
            "outlierDetection": {"interval": 5, "maxEjectionPercent": 120, "detectors": {"totalFailures": {"consecutive": 2}}},
            "retryBudget": {}}}]});
        let got = errors(value);
        assert_eq!(
            got,
            vec![
                "spec.to[0].default.connectionLimits.maxConnections: invalid value: integer `-3`, expected u32",
                "spec.to[0].default.outlierDetection.interval: invalid type: integer `5`, expected a string",
                "spec.to[0].default.retryBudget: unknown field `retryBudget`, expected `connectionLimits` or `outlierDetection`",
                // Beside the problems, what did decode is checked too.
                "spec.to[0].default.connectionLimits.maxRequests: must be greater than 0",
                "spec.to[0].default.outlierDetection.maxEjectionPercent: must be in inclusive range [0, 100]",
            ]
        );
    }

    #[test]
    fn table() {
        let full = json!({
            "connectionLimits": {"maxConnections": 2, "maxPendingRequests": 8, "maxRequests": 2, "maxRetries": 2, "maxConnectionPools": 1},
            "outlierDetection": {"disabled": false, "interval": "5s", "baseEjectionTime": "30s", "maxEjectionPercent": 20,
                "splitExternalAndLocalErrors": true, "detectors": {
                    "totalFailures": {"consecutive": 10}, "gatewayFailures": {"consecutive": 10}, "localOriginFailures": {"consecutive": 10},
                    "successRate": {"minimumHosts": 5, "requestVolume": 10, "standardDeviationFactor": "1.9"},
                    "failurePercentage": {"requestVolume": 10, "minimumHosts": 5, "threshold": 85}}}
        });
        let p = "spec.to[0].default.outlierDetection";
        let cases: Vec<(serde_json::Value, Vec<String>)> = vec![
            (
                json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": full}]}),
                vec![],
            ),
            (
                json!({"from": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionLimits": {"maxConnections": 1}}}]}),
                vec![],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {"outlierDetection": {"maxEjectionPercent": 101, "detectors": {
                    "totalFailures": {"consecutive": 0}, "successRate": {"standardDeviationFactor": "-1"}, "failurePercentage": {"threshold": 200}}}}}]}),
                vec![
                    format!("{p}.maxEjectionPercent: must be in inclusive range [0, 100]"),
                    format!("{p}.detectors.totalFailures.consecutive: must be greater than 0"),
                    format!(
                        "{p}.detectors.successRate.standardDeviationFactor: must be greater than 0"
                    ),
                    format!(
                        "{p}.detectors.failurePercentage.threshold: must be in inclusive range [0, 100]"
                    ),
                ],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {"outlierDetection": {"interval": "0s", "baseEjectionTime": "0ms", "detectors": {
                    "successRate": {"minimumHosts": 0, "requestVolume": 0, "standardDeviationFactor": "0"},
                    "failurePercentage": {"minimumHosts": 0, "requestVolume": 0, "threshold": 0}}}}}]}),
                vec![
                    format!("{p}.interval: must be greater than zero when defined"),
                    format!("{p}.baseEjectionTime: must be greater than zero when defined"),
                    format!("{p}.detectors.successRate.minimumHosts: must be greater than 0"),
                    format!("{p}.detectors.successRate.requestVolume: must be greater than 0"),
                    format!(
                        "{p}.detectors.successRate.standardDeviationFactor: must be greater than 0"
                    ),
                    format!("{p}.detectors.failurePercentage.minimumHosts: must be greater than 0"),
                    format!("{p}.detectors.failurePercentage.requestVolume: must be greater than 0"),
                ],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {"outlierDetection": {"detectors": {"successRate": {"standardDeviationFactor": "x"}}}}}]}),
                vec![format!("{p}.detectors.successRate.standardDeviationFactor: invalid number")],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {"outlierDetection": {"disabled": true}}}]}),
                vec![format!("{p}.detectors: must be defined")],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {"outlierDetection": {"maxEjectionPercent": 100, "detectors": {}}}}]}),
                vec![format!(
                    "{p}.detectors: must have at least one defined: totalFailures, gatewayFailures, localOriginFailures, successRate, failurePercentage"
                )],
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionLimits": {
                    "maxConnections": 0, "maxConnectionPools": 0, "maxPendingRequests": 0, "maxRetries": 0, "maxRequests": 0}}}]}),
                ["maxConnections", "maxConnectionPools", "maxPendingRequests", "maxRetries", "maxRequests"]
                    .iter()
                    .map(|f| format!("spec.to[0].default.connectionLimits.{f}: must be greater than 0"))
                    .collect(),
            ),
            (
                json!({"to": [{"targetRef": {"kind": "Mesh"}, "default": {}}]}),
                vec![
                    "spec.to[0].default: at least one of: 'connectionLimits' or 'outlierDetection' should be configured"
                        .to_owned(),
                ],
            ),
            (
                json!({"targetRef": {"kind": "Mesh"}}),
                vec!["spec: at least one of 'from', 'to' or 'rules' has to be defined".to_owned()],
            ),
        ];
        for (value, want) in cases {
            assert_eq!(errors(value.clone()), want, "{value}");
        }
    }
}
