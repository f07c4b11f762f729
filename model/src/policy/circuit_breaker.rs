//! `MeshCircuitBreaker`: connection limits and outlier detection, for
//! outbound (`to`) and inbound (`from`, `Mesh` clients only) traffic.

use crate::duration::Duration;
use crate::error::{Validate, Violations, join};
use crate::kind::ResourceKind;
use crate::policy::{
    IntOrString, PolicyEntry, TargetRefPolicy, entries, validate_default, validate_entries,
    validate_percent,
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

/// The mergeable circuit-breaker configuration.
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

/// Limits on concurrent connections and requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionLimits {
    /// Maximum connections to the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Maximum queued connection attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    /// Maximum parallel requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// Maximum parallel retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Maximum connection pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    pub max_ejection_percent: Option<u32>,
    /// Count local-origin failures (connect errors) apart from upstream ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_external_and_local_errors: Option<bool>,
    /// What counts as misbehaving.
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
    pub consecutive: Option<u32>,
}

/// The success-rate detector.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SuccessRateDetector {
    /// Endpoints needed for the detector to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_hosts: Option<u32>,
    /// Requests per endpoint needed in an interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    pub minimum_hosts: Option<u32>,
    /// Requests per endpoint needed in an interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_volume: Option<u32>,
    /// Failure percentage at which an endpoint is ejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
}

impl Validate for MeshCircuitBreakerSpec {
    fn validate(&self, path: &str, v: &mut Violations) {
        validate_entries(
            ResourceKind::MeshCircuitBreaker,
            path,
            self.target_ref.as_ref(),
            (self.to.as_deref(), self.from.as_deref()),
            v,
            validate_default,
        );
    }
}

impl Validate for CircuitBreakerConf {
    fn validate(&self, path: &str, v: &mut Violations) {
        let Some(od) = &self.outlier_detection else {
            return;
        };
        let op = join(path, "outlierDetection");
        validate_percent(&join(&op, "maxEjectionPercent"), od.max_ejection_percent, v);
        let Some(d) = &od.detectors else { return };
        let dp = join(&op, "detectors");
        let consecutive = [
            ("totalFailures", &d.total_failures),
            ("gatewayFailures", &d.gateway_failures),
            ("localOriginFailures", &d.local_origin_failures),
        ];
        for (field, det) in consecutive {
            if det.as_ref().and_then(|c| c.consecutive) == Some(0) {
                v.add(join(&join(&dp, field), "consecutive"), "must be at least 1");
            }
        }
        if let Some(f) = d.standard_deviation_factor() {
            let ok = f.as_f64().is_some_and(|x| x >= 0.0);
            if !ok {
                v.add(
                    join(&join(&dp, "successRate"), "standardDeviationFactor"),
                    "must be a non-negative number (integer or string such as \"1.9\")",
                );
            }
        }
        if let Some(fp) = &d.failure_percentage {
            validate_percent(
                &join(&join(&dp, "failurePercentage"), "threshold"),
                fp.threshold,
                v,
            );
        }
    }
}

impl Detectors {
    fn standard_deviation_factor(&self) -> Option<&IntOrString> {
        self.success_rate
            .as_ref()?
            .standard_deviation_factor
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use crate::{ResourceKind, Spec};
    use serde_json::json;

    fn errors(value: serde_json::Value) -> Vec<String> {
        match Spec::from_value(ResourceKind::MeshCircuitBreaker, value.clone()) {
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
                    format!("{p}.detectors.totalFailures.consecutive: must be at least 1"),
                    format!(
                        "{p}.detectors.successRate.standardDeviationFactor: must be a non-negative number (integer or string such as \"1.9\")"
                    ),
                    format!(
                        "{p}.detectors.failurePercentage.threshold: must be in inclusive range [0, 100]"
                    ),
                ],
            ),
            (
                json!({"targetRef": {"kind": "Mesh"}}),
                vec!["spec: must have at least one `to` or `from` entry".to_owned()],
            ),
        ];
        for (value, want) in cases {
            assert_eq!(errors(value.clone()), want, "{value}");
        }
    }
}
