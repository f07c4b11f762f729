//! Active health checks (MeshHealthCheck): TCP connects to every endpoint of
//! an outbound, feeding verdicts to its balancers.
//!
//! One task per outbound that has a `healthCheck` conf (and whose TCP check is
//! not disabled). Every `interval` (default 10 s) it connects to each endpoint
//! address of each backend, giving up after `timeout` (default 2 s). After
//! `unhealthyThreshold` (default 3) failures in a row the address is marked
//! down with [`Balancer::set_active_health`](meridian_lb::Balancer::set_active_health),
//! after `healthyThreshold` (default 1) successes in a row it is up again.
//! Endpoints start healthy. The endpoints are read from the balancers each
//! round, so endpoint changes need no restart; a changed conf or set of
//! balancers replaces the task, and a removed check marks its endpoints up so
//! no stale verdict lingers.
//!
//! Kuma's `send`/`receive` payload checks, jitter and panic options are not
//! applied: the check is a plain TCP connect.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meridian_model::HealthCheckConf;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::state::{SharedBalancer, Snapshot, lock};
use crate::telemetry::HEALTH_CHECK_TRANSITIONS;

/// Time between checks when the conf has none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Time a check may take when the conf has none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Failures in a row that mark an endpoint down when the conf has none.
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;
/// Successes in a row that mark an endpoint up when the conf has none.
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 1;

/// The resolved settings of one outbound's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSettings {
    /// Time between rounds.
    pub interval: Duration,
    /// Time one connect may take.
    pub timeout: Duration,
    /// Failures in a row before an endpoint is down.
    pub unhealthy_threshold: u32,
    /// Successes in a row before a down endpoint is up.
    pub healthy_threshold: u32,
}

impl CheckSettings {
    /// The settings of `conf`, or `None` when its TCP check is disabled.
    pub fn from_conf(conf: &HealthCheckConf) -> Option<Self> {
        if conf.tcp.as_ref().and_then(|t| t.disabled) == Some(true) {
            return None;
        }
        let or = |d: Option<&meridian_model::Duration>, default| {
            d.map_or(default, meridian_model::Duration::as_duration)
        };
        Some(Self {
            // A zero interval would probe in a busy loop.
            interval: or(conf.interval.as_ref(), DEFAULT_INTERVAL).max(Duration::from_millis(1)),
            timeout: or(conf.timeout.as_ref(), DEFAULT_TIMEOUT),
            unhealthy_threshold: conf
                .unhealthy_threshold
                .unwrap_or(DEFAULT_UNHEALTHY_THRESHOLD)
                .max(1),
            healthy_threshold: conf
                .healthy_threshold
                .unwrap_or(DEFAULT_HEALTHY_THRESHOLD)
                .max(1),
        })
    }
}

/// One outbound's running checks.
struct Task {
    settings: CheckSettings,
    balancers: Vec<SharedBalancer>,
    stop: CancellationToken,
}

/// The running check tasks, by outbound listen address.
#[derive(Default)]
pub(crate) struct HealthChecks {
    tasks: HashMap<SocketAddr, Task>,
}

impl HealthChecks {
    /// Starts, replaces and stops tasks to match `snapshot`.
    pub(crate) fn reconcile(&mut self, snapshot: &Snapshot) {
        let mut wanted: HashMap<SocketAddr, (CheckSettings, Vec<SharedBalancer>, String)> =
            HashMap::new();
        for (addr, outbound) in &snapshot.outbounds {
            let Some(settings) = outbound
                .config
                .health_check
                .as_ref()
                .and_then(CheckSettings::from_conf)
            else {
                continue;
            };
            let balancers = outbound
                .backends
                .iter()
                .map(|b| Arc::clone(&b.balancer))
                .collect();
            wanted.insert(
                *addr,
                (settings, balancers, outbound.config.service.clone()),
            );
        }
        let stale: Vec<SocketAddr> = self
            .tasks
            .iter()
            .filter(|(addr, task)| {
                wanted.get(addr).is_none_or(|(settings, balancers, _)| {
                    *settings != task.settings || !same_balancers(balancers, &task.balancers)
                })
            })
            .map(|(addr, _)| *addr)
            .collect();
        for addr in stale {
            if let Some(task) = self.tasks.remove(&addr) {
                task.stop.cancel();
                if !wanted.contains_key(&addr) {
                    mark_all_up(&task.balancers);
                }
            }
        }
        for (addr, (settings, balancers, service)) in wanted {
            if self.tasks.contains_key(&addr) {
                continue;
            }
            let stop = CancellationToken::new();
            tracing::info!(outbound = %addr, service, ?settings, "starting active health checks");
            tokio::spawn(run(
                service,
                settings.clone(),
                balancers.clone(),
                stop.clone(),
            ));
            self.tasks.insert(
                addr,
                Task {
                    settings,
                    balancers,
                    stop,
                },
            );
        }
    }

    /// Stops every task.
    pub(crate) fn stop_all(&mut self) {
        for (_, task) in self.tasks.drain() {
            task.stop.cancel();
        }
    }
}

fn same_balancers(a: &[SharedBalancer], b: &[SharedBalancer]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
}

fn mark_all_up(balancers: &[SharedBalancer]) {
    for b in balancers {
        let mut lb = lock(b);
        let addrs: Vec<SocketAddr> = lb.plan().endpoints().iter().map(|e| e.address).collect();
        for addr in addrs {
            lb.set_active_health(addr, true);
        }
    }
}

/// Consecutive outcomes of one address.
#[derive(Debug, Default, Clone, Copy)]
struct Streak {
    failures: u32,
    successes: u32,
    down: bool,
}

impl Streak {
    /// Records one outcome; `Some(healthy)` when the verdict changes.
    fn record(&mut self, ok: bool, settings: &CheckSettings) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.down && self.successes >= settings.healthy_threshold {
                self.down = false;
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if !self.down && self.failures >= settings.unhealthy_threshold {
                self.down = true;
                return Some(false);
            }
        }
        None
    }
}

async fn run(
    service: String,
    settings: CheckSettings,
    balancers: Vec<SharedBalancer>,
    stop: CancellationToken,
) {
    let mut streaks: HashMap<SocketAddr, Streak> = HashMap::new();
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let addrs: HashSet<SocketAddr> = balancers
            .iter()
            .flat_map(|b| {
                lock(b)
                    .plan()
                    .endpoints()
                    .iter()
                    .map(|e| e.address)
                    .collect::<Vec<_>>()
            })
            .collect();
        streaks.retain(|a, _| addrs.contains(a));
        let mut probes = JoinSet::new();
        for addr in addrs {
            let timeout = settings.timeout;
            probes.spawn(async move { (addr, probe(addr, timeout).await) });
        }
        let results = tokio::select! {
            () = stop.cancelled() => return,
            results = probes.join_all() => results,
        };
        for (addr, ok) in results {
            let Some(healthy) = streaks.entry(addr).or_default().record(ok, &settings) else {
                continue;
            };
            tracing::info!(service, endpoint = %addr, healthy, "active health check verdict changed");
            metrics::counter!(HEALTH_CHECK_TRANSITIONS, "service" => service.clone(),
                "healthy" => healthy.to_string())
            .increment(1);
            for b in &balancers {
                let mut lb = lock(b);
                if lb.plan().endpoints().iter().any(|e| e.address == addr) {
                    lb.set_active_health(addr, healthy);
                }
            }
        }
    }
}

/// Whether a TCP connection to `addr` opens within `timeout`.
async fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(unhealthy: u32, healthy: u32) -> CheckSettings {
        CheckSettings {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: unhealthy,
            healthy_threshold: healthy,
        }
    }

    #[test]
    fn thresholds_count_consecutive_outcomes() {
        let s = settings(3, 2);
        let mut streak = Streak::default();
        assert_eq!(streak.record(false, &s), None);
        assert_eq!(streak.record(false, &s), None);
        assert_eq!(
            streak.record(true, &s),
            None,
            "a success resets the failures"
        );
        assert_eq!(streak.record(false, &s), None);
        assert_eq!(streak.record(false, &s), None);
        assert_eq!(streak.record(false, &s), Some(false));
        assert_eq!(streak.record(false, &s), None, "already down");
        assert_eq!(streak.record(true, &s), None);
        assert_eq!(streak.record(true, &s), Some(true));
        assert_eq!(streak.record(true, &s), None);
    }

    #[test]
    fn defaults_and_disabled() {
        let conf: HealthCheckConf = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(
            CheckSettings::from_conf(&conf),
            Some(CheckSettings {
                interval: DEFAULT_INTERVAL,
                timeout: DEFAULT_TIMEOUT,
                unhealthy_threshold: 3,
                healthy_threshold: 1,
            })
        );
        let conf: HealthCheckConf = serde_json::from_value(serde_json::json!({
            "interval": "100ms", "timeout": "50ms", "unhealthyThreshold": 2, "healthyThreshold": 4
        }))
        .unwrap();
        assert_eq!(
            CheckSettings::from_conf(&conf),
            Some(CheckSettings {
                interval: Duration::from_millis(100),
                timeout: Duration::from_millis(50),
                unhealthy_threshold: 2,
                healthy_threshold: 4,
            })
        );
        let off: HealthCheckConf =
            serde_json::from_value(serde_json::json!({"tcp": {"disabled": true}})).unwrap();
        assert_eq!(CheckSettings::from_conf(&off), None);
    }
}

#[cfg(test)]
mod probe_tests {
    use super::*;
    use std::collections::BTreeMap;

    use meridian_proxy_api::{BackendConfig, EndpointConfig, OutboundConfig, SidecarConfig, Via};
    use tokio::net::TcpListener;

    fn config(endpoints: &[SocketAddr], check: Option<HealthCheckConf>) -> SidecarConfig {
        SidecarConfig {
            tags: Default::default(),
            mesh: "default".into(),
            zone: "z1".into(),
            mtls: false,
            inbounds: vec![],
            outbounds: vec![OutboundConfig {
                listen: "127.0.0.1:4000".parse().unwrap(),
                service: "backend".into(),
                backends: vec![BackendConfig {
                    service: "backend".into(),
                    subset: BTreeMap::new(),
                    weight: 1,
                    sni: "backend".into(),
                    endpoints: endpoints
                        .iter()
                        .map(|a| EndpointConfig {
                            address: *a,
                            zone: "z1".into(),
                            weight: 1,
                            tags: BTreeMap::new(),
                            via: Via::Direct,
                        })
                        .collect(),
                    resource: None,
                }],
                timeout: None,
                circuit_breaker: None,
                health_check: check,
                connect_attempts: None,
                locality: None,
            }],
        }
    }

    fn down(b: &SharedBalancer, addr: SocketAddr) -> bool {
        lock(b).health(addr).is_some_and(|h| h.is_active_down())
    }

    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn probes_mark_endpoints_down_and_up_and_removal_clears_verdicts() {
        // `live` never accepts, but the kernel completes its handshakes.
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        let dead_addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let check: HealthCheckConf = serde_json::from_value(serde_json::json!({
            "interval": "20ms", "timeout": "1s", "unhealthyThreshold": 2
        }))
        .unwrap();
        let endpoints = [live_addr, dead_addr];
        let snapshot = Snapshot::build(&config(&endpoints, Some(check)), &Snapshot::default());
        let balancer =
            Arc::clone(&snapshot.outbounds.values().next().unwrap().backends[0].balancer);
        let mut checks = HealthChecks::default();
        checks.reconcile(&snapshot);

        wait_until("dead endpoint marked down", || down(&balancer, dead_addr)).await;
        assert!(!down(&balancer, live_addr));

        let revived = TcpListener::bind(dead_addr).await.unwrap();
        wait_until("revived endpoint marked up", || !down(&balancer, dead_addr)).await;
        drop(revived);
        wait_until("dead again", || down(&balancer, dead_addr)).await;

        // Dropping the check from the config forgets its verdicts at once.
        let next = Snapshot::build(&config(&endpoints, None), &snapshot);
        checks.reconcile(&next);
        assert!(!down(&balancer, dead_addr));
        assert!(checks.tasks.is_empty());
        drop(live);
    }
}
