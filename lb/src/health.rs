//! Health state per endpoint address: passive outlier detection (consecutive
//! failures eject an endpoint for a growing time) and active health checks.
//!
//! The proxy reports every connection outcome; nothing waits for the control
//! plane. Time is always passed in as an [`Instant`], so behaviour is
//! deterministic under test.
//!
//! # Rules
//!
//! * An endpoint is **healthy** unless an active check marked it down
//!   ([`HealthTracker::set_active`]) or it is ejected.
//! * [`HealthConfig::consecutive_failures`] failures in a row (default 3)
//!   eject it for `base_ejection_time × ejections` (default 30 s × n), capped
//!   at `max_ejection_time` (default 300 s) — Envoy's outlier-detection
//!   rule. The endpoint returns by itself when that time has passed.
//! * A success resets the failure count. Outcomes reported while the endpoint
//!   is ejected (connections that began before) are ignored.
//! * The ejection count decays: it drops by one for every full
//!   `decay_interval` (default 10 s, `outlierDetection.interval`) the
//!   endpoint spent back in service, so a flapping endpoint stays out longer
//!   while one that recovered for good starts again at the base time.
//! * Addresses never reported are healthy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meridian_model::OutlierDetection;

/// Failures in a row that eject an endpoint when nothing is configured.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 3;
/// Base ejection time when nothing is configured (Envoy's default).
pub const DEFAULT_BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
/// Longest ejection (Envoy's default `max_ejection_time`).
pub const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
/// Time back in service that forgives one past ejection (Envoy's default
/// outlier-detection interval).
pub const DEFAULT_DECAY_INTERVAL: Duration = Duration::from_secs(10);

/// Passive health-check settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Failures in a row that eject an endpoint; `None` turns passive
    /// ejection off (failures are still counted). `Some(0)` acts as 1.
    pub consecutive_failures: Option<u32>,
    /// Ejection time for the first ejection; the n-th lasts n times as long.
    pub base_ejection_time: Duration,
    /// Cap on one ejection's length.
    pub max_ejection_time: Duration,
    /// Time back in service that forgives one past ejection.
    pub decay_interval: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: Some(DEFAULT_CONSECUTIVE_FAILURES),
            base_ejection_time: DEFAULT_BASE_EJECTION_TIME,
            max_ejection_time: DEFAULT_MAX_EJECTION_TIME,
            decay_interval: DEFAULT_DECAY_INTERVAL,
        }
    }
}

impl HealthConfig {
    /// Settings from a `MeshCircuitBreaker`'s `outlierDetection` (`None` =
    /// defaults): `disabled: true` turns ejection off;
    /// `detectors.totalFailures.consecutive`, `baseEjectionTime` and
    /// `interval` override the defaults. Other detectors (gateway, success
    /// rate, failure percentage) need request-level outcomes a TCP proxy does
    /// not see and are not used; `maxEjectionPercent` is not applied either —
    /// panic mode covers the all-ejected case.
    pub fn from_outlier_detection(od: Option<&OutlierDetection>) -> Self {
        let mut config = Self::default();
        let Some(od) = od else {
            return config;
        };
        if od.disabled == Some(true) {
            config.consecutive_failures = None;
        } else if let Some(n) = od
            .detectors
            .as_ref()
            .and_then(|d| d.total_failures.as_ref())
            .and_then(|t| t.consecutive)
        {
            config.consecutive_failures = Some(n);
        }
        if let Some(t) = &od.base_ejection_time {
            config.base_ejection_time = t.as_duration();
        }
        if let Some(t) = &od.interval {
            config.decay_interval = t.as_duration();
        }
        config
    }

    fn ejection_time(&self, ejections: u32) -> Duration {
        self.base_ejection_time
            .saturating_mul(ejections)
            .min(self.max_ejection_time)
    }
}

/// What is known about one endpoint's health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointHealth {
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
    returned_at: Option<Instant>,
    active_down: bool,
}

impl EndpointHealth {
    /// Failures since the last success or ejection.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The ejection count behind the current (or next) ejection's length.
    pub fn ejections(&self) -> u32 {
        self.ejections
    }

    /// When the current ejection ends, if ejected at `now`.
    pub fn ejected_until(&self, now: Instant) -> Option<Instant> {
        self.ejected_until.filter(|&t| now < t)
    }

    /// Whether an active health check reported the endpoint down.
    pub fn is_active_down(&self) -> bool {
        self.active_down
    }

    /// Healthy at `now`: not marked down by an active check, not ejected.
    pub fn is_healthy(&self, now: Instant) -> bool {
        !self.active_down && self.ejected_until(now).is_none()
    }

    /// Ends an ejection that expired by `now`, remembering when.
    fn settle(&mut self, now: Instant) {
        if let Some(until) = self.ejected_until
            && now >= until
        {
            self.ejected_until = None;
            self.returned_at = Some(until);
        }
    }
}

/// Health state of a set of endpoint addresses.
#[derive(Debug, Clone, Default)]
pub struct HealthTracker {
    config: HealthConfig,
    states: HashMap<SocketAddr, EndpointHealth>,
}

impl HealthTracker {
    /// A tracker where every address starts healthy.
    pub fn new(config: HealthConfig) -> Self {
        Self {
            config,
            states: HashMap::new(),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Records a failed connection to `addr`; returns `true` when this
    /// failure ejected it.
    pub fn record_failure(&mut self, addr: SocketAddr, now: Instant) -> bool {
        let config = &self.config;
        let state = self.states.entry(addr).or_default();
        state.settle(now);
        if state.ejected_until.is_some() {
            return false;
        }
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let Some(limit) = config.consecutive_failures else {
            return false;
        };
        if state.consecutive_failures < limit.max(1) {
            return false;
        }
        if let Some(back) = state.returned_at.take() {
            let served = now.saturating_duration_since(back);
            let forgiven = served
                .as_nanos()
                .checked_div(config.decay_interval.as_nanos())
                .unwrap_or(u128::MAX);
            state.ejections = state
                .ejections
                .saturating_sub(u32::try_from(forgiven).unwrap_or(u32::MAX));
        }
        state.ejections = state.ejections.saturating_add(1);
        state.consecutive_failures = 0;
        let time = config.ejection_time(state.ejections);
        state.ejected_until = Some(
            now.checked_add(time)
                .or_else(|| now.checked_add(DEFAULT_MAX_EJECTION_TIME))
                .unwrap_or(now),
        );
        metrics::counter!("meridian_lb_ejections_total").increment(1);
        true
    }

    /// Records a successful connection to `addr`: the failure count restarts.
    pub fn record_success(&mut self, addr: SocketAddr, now: Instant) {
        let state = self.states.entry(addr).or_default();
        state.settle(now);
        if state.ejected_until.is_none() {
            state.consecutive_failures = 0;
        }
    }

    /// Sets the result of an active health check: `false` takes the endpoint
    /// out until a later `true`; ejections are independent of it.
    pub fn set_active(&mut self, addr: SocketAddr, healthy: bool) {
        self.states.entry(addr).or_default().active_down = !healthy;
    }

    /// Whether `addr` is healthy at `now`.
    pub fn is_healthy(&self, addr: SocketAddr, now: Instant) -> bool {
        self.states.get(&addr).is_none_or(|s| s.is_healthy(now))
    }

    /// The state of `addr`, if anything was reported about it.
    pub fn state(&self, addr: SocketAddr) -> Option<&EndpointHealth> {
        self.states.get(&addr)
    }

    /// Returns endpoints whose ejection expired by `now` to service.
    pub fn settle(&mut self, now: Instant) {
        for s in self.states.values_mut() {
            s.settle(now);
        }
    }

    /// Forgets every address `keep` rejects (endpoints gone from the plan).
    pub fn retain(&mut self, mut keep: impl FnMut(SocketAddr) -> bool) {
        self.states.retain(|a, _| keep(*a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_model::{ConsecutiveDetector, Detectors};

    fn addr() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 80))
    }

    #[test]
    fn ejects_after_consecutive_failures_and_returns() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(HealthConfig::default());
        assert!(h.is_healthy(addr(), t0), "unknown = healthy");
        assert!(!h.record_failure(addr(), t0));
        assert!(!h.record_failure(addr(), t0));
        assert!(h.is_healthy(addr(), t0));
        assert!(h.record_failure(addr(), t0), "third failure ejects");
        assert!(!h.is_healthy(addr(), t0));
        let until = t0 + DEFAULT_BASE_EJECTION_TIME;
        assert_eq!(
            h.state(addr()).and_then(|s| s.ejected_until(t0)),
            Some(until)
        );
        // Failures while ejected do not extend or count.
        assert!(!h.record_failure(addr(), t0 + Duration::from_secs(1)));
        assert_eq!(h.state(addr()).map(|s| s.consecutive_failures()), Some(0));
        assert!(!h.is_healthy(addr(), until - Duration::from_millis(1)));
        assert!(h.is_healthy(addr(), until), "back after the ejection time");
    }

    #[test]
    fn success_resets_failure_count() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(HealthConfig::default());
        for _ in 0..10 {
            h.record_failure(addr(), t0);
            h.record_failure(addr(), t0);
            h.record_success(addr(), t0);
        }
        assert!(h.is_healthy(addr(), t0));
        assert_eq!(h.state(addr()).map(|s| s.ejections()), Some(0));
    }

    #[test]
    fn ejection_time_grows_caps_and_decays() {
        let config = HealthConfig {
            consecutive_failures: Some(1),
            base_ejection_time: Duration::from_secs(100),
            max_ejection_time: Duration::from_secs(250),
            decay_interval: Duration::from_secs(10),
        };
        let mut h = HealthTracker::new(config);
        let mut now = Instant::now();
        // (seconds back in service before failing, expected ejection secs)
        let cases = [(0, 100), (0, 200), (0, 250), (5, 250), (25, 250), (40, 100)];
        for (served, want) in cases {
            now += Duration::from_secs(served);
            assert!(h.record_failure(addr(), now), "served {served}");
            let until = h.state(addr()).and_then(|s| s.ejected_until(now));
            assert_eq!(
                until,
                Some(now + Duration::from_secs(want)),
                "served {served}"
            );
            now += Duration::from_secs(want);
        }
    }

    #[test]
    fn active_health_is_independent() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(HealthConfig::default());
        h.set_active(addr(), false);
        assert!(!h.is_healthy(addr(), t0));
        h.record_success(addr(), t0);
        assert!(
            !h.is_healthy(addr(), t0),
            "traffic success does not override"
        );
        h.set_active(addr(), true);
        assert!(h.is_healthy(addr(), t0));
    }

    #[test]
    fn disabled_never_ejects() {
        let t0 = Instant::now();
        let od = OutlierDetection {
            disabled: Some(true),
            ..Default::default()
        };
        let mut h = HealthTracker::new(HealthConfig::from_outlier_detection(Some(&od)));
        for _ in 0..100 {
            assert!(!h.record_failure(addr(), t0));
        }
        assert!(h.is_healthy(addr(), t0));
    }

    #[test]
    fn config_from_outlier_detection() {
        let dur = |s: &str| meridian_model::Duration::parse(s).ok();
        let cases = [
            (None, HealthConfig::default()),
            (
                Some(OutlierDetection {
                    base_ejection_time: dur("5s"),
                    interval: dur("1s"),
                    detectors: Some(Detectors {
                        total_failures: Some(ConsecutiveDetector {
                            consecutive: Some(7),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                HealthConfig {
                    consecutive_failures: Some(7),
                    base_ejection_time: Duration::from_secs(5),
                    decay_interval: Duration::from_secs(1),
                    ..Default::default()
                },
            ),
            (
                Some(OutlierDetection {
                    disabled: Some(true),
                    ..Default::default()
                }),
                HealthConfig {
                    consecutive_failures: None,
                    ..Default::default()
                },
            ),
            (Some(OutlierDetection::default()), HealthConfig::default()),
        ];
        for (od, want) in cases {
            assert_eq!(
                HealthConfig::from_outlier_detection(od.as_ref()),
                want,
                "{od:?}"
            );
        }
    }

    #[test]
    fn retain_forgets_state() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new(HealthConfig::default());
        h.set_active(addr(), false);
        h.retain(|_| false);
        assert!(h.is_healthy(addr(), t0));
    }
}
