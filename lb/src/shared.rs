//! [`SharedBalancer`]: one destination's [`Balancer`], shared by every connection
//! to it and carried across config updates.
//!
//! The sidecar (one per outbound backend) and the zone proxies (one per SNI route)
//! rebuild their tables from each new config, and pass the previous table's
//! balancer for the same destination to [`carry_over`]:
//!
//! ```text
//!  config n      ─▶ table n     ─▶ dest ─▶ Arc<Mutex<Balancer>> ◀─┐ connections opened
//!  config n + 1  ─▶ table n + 1 ─▶ dest ─▶ the same Arc ─────────┘ under either table
//!                                           set_plan(new endpoints)
//! ```
//!
//! Invariants:
//! - a carried-over balancer is the same `Arc`: connections still using the old
//!   table report into the state the new one picks from;
//! - an address present before and after keeps its health (consecutive failures,
//!   ejection, active verdict); an address that left is forgotten
//!   ([`Balancer::set_plan`]);
//! - a change of outlier-detection settings starts a fresh balancer, since a
//!   tracker cannot take new thresholds in place;
//! - a poisoned lock is still used ([`lock`]): no balancer method leaves state a
//!   panic elsewhere could have broken half-way.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::balancer::Balancer;
use crate::health::HealthConfig;
use crate::plan::Plan;

/// A balancer shared by every connection of one destination, across config updates.
pub type SharedBalancer = Arc<Mutex<Balancer>>;

/// Locks a shared balancer, recovering from a poisoned lock (see the module docs).
pub fn lock(balancer: &SharedBalancer) -> MutexGuard<'_, Balancer> {
    balancer.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The balancer for a destination's new `plan`: `previous` itself, given the plan,
/// when it was built with the same `config`; otherwise a new one.
pub fn carry_over(
    previous: Option<&SharedBalancer>,
    plan: Plan,
    config: &HealthConfig,
) -> SharedBalancer {
    if let Some(old) = previous {
        let mut balancer = lock(old);
        if balancer.health_config() == config {
            balancer.set_plan(plan);
            drop(balancer);
            return Arc::clone(old);
        }
    }
    Arc::new(Mutex::new(Balancer::new(plan, config.clone())))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::plan::Endpoint;

    fn plan(addrs: &[&str]) -> Plan {
        let endpoints = addrs
            .iter()
            .map(|a| Endpoint::new(a.parse().expect("an address"), "z1", 1))
            .collect();
        Plan::build("z1", &BTreeMap::new(), endpoints, None)
    }

    fn addr(a: &str) -> SocketAddr {
        a.parse().expect("an address")
    }

    #[test]
    fn an_address_that_stays_keeps_its_ejection_and_one_that_leaves_is_forgotten() {
        let config = HealthConfig::default();
        let first = carry_over(None, plan(&["10.0.0.1:80", "10.0.0.2:80"]), &config);
        let now = Instant::now();
        for _ in 0..3 {
            lock(&first).report_failure(addr("10.0.0.1:80"), now);
            lock(&first).report_failure(addr("10.0.0.2:80"), now);
        }
        assert!(!lock(&first).is_healthy(addr("10.0.0.1:80"), now));
        // 10.0.0.1 stays, 10.0.0.2 leaves, 10.0.0.3 arrives.
        let second = carry_over(Some(&first), plan(&["10.0.0.1:80", "10.0.0.3:80"]), &config);
        assert!(Arc::ptr_eq(&first, &second), "the same balancer");
        let lb = lock(&second);
        assert!(!lb.is_healthy(addr("10.0.0.1:80"), now), "ejection kept");
        assert_eq!(
            lb.health(addr("10.0.0.1:80")).map(|h| h.ejections()),
            Some(1)
        );
        assert!(lb.health(addr("10.0.0.2:80")).is_none(), "gone, forgotten");
        assert!(lb.is_healthy(addr("10.0.0.3:80"), now));
        assert_eq!(lb.plan().endpoints().len(), 2);
    }

    #[test]
    fn new_outlier_settings_start_a_fresh_balancer() {
        let first = carry_over(None, plan(&["10.0.0.1:80"]), &HealthConfig::default());
        let now = Instant::now();
        for _ in 0..3 {
            lock(&first).report_failure(addr("10.0.0.1:80"), now);
        }
        let stricter = HealthConfig {
            base_ejection_time: Duration::from_secs(60),
            ..HealthConfig::default()
        };
        let second = carry_over(Some(&first), plan(&["10.0.0.1:80"]), &stricter);
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(lock(&second).is_healthy(addr("10.0.0.1:80"), now));
        assert_eq!(lock(&second).health_config(), &stricter);
        // The old one is left as it was for connections still holding it.
        assert!(!lock(&first).is_healthy(addr("10.0.0.1:80"), now));
    }
}
