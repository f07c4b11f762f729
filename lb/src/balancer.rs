//! The [`Balancer`]: picks an endpoint from a [`Plan`] given live health.
//!
//! # Choosing a priority (Envoy-compatible spill-over)
//!
//! For each priority *p*, its healthy share *hₚ* is the weight of its healthy
//! endpoints over the weight of all its endpoints (weights, not counts: an
//! ingress standing for 8 instances counts 8). With failover threshold *T*
//! (percent, [`Plan::failover_threshold_percent`]) the priority's
//! availability is `aₚ = min(1, hₚ / T)` — exactly Envoy's
//! `min(100 %, healthy % × overprovisioning factor)` with factor `100 / T`
//! (*T* = 0 means: available while anything in it is healthy). Then, lowest
//! level first, each priority takes `min(aₚ, what is left)` of the traffic:
//!
//! * a priority at or above the threshold takes **all** traffic;
//! * below it, traffic spills **gradually**: local zone 50 % healthy with
//!   *T* = 70 % keeps 50/70 ≈ 71 % and sends 29 % to the next priority;
//! * *T* = 100 % spills as soon as anything is unhealthy, in proportion;
//! * when the available shares add up to less than 100 %, they are scaled up
//!   so all traffic still goes to healthy endpoints.
//!
//! Inside the chosen priority an affinity group is drawn by group weight
//! (among groups with a healthy endpoint), then a healthy endpoint of that
//! group by [`Endpoint::weight`](crate::Endpoint::weight). Endpoints of weight
//! zero carry no traffic.
//!
//! # Panic mode
//!
//! When no priority has any healthy weight (everything ejected or marked
//! down), the balancer picks among **all** reachable endpoints by weight
//! (uniformly if every weight is zero), as Envoy does below its panic
//! threshold: trying a possibly-bad endpoint beats refusing the connection,
//! and a success there brings it back. Counted in
//! `meridian_lb_panic_picks_total`.

use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;

use crate::health::{EndpointHealth, HealthConfig, HealthTracker};
use crate::plan::{Endpoint, Plan};

/// How many draws [`Balancer::pick_untried_at`] makes before falling back to
/// the untried endpoints directly.
pub const UNTRIED_DRAWS: usize = 8;

/// Locality-aware endpoint selection over a [`Plan`] with health state.
#[derive(Debug, Clone)]
pub struct Balancer {
    plan: Plan,
    health: HealthTracker,
}

impl Balancer {
    /// A balancer with every endpoint healthy.
    pub fn new(plan: Plan, config: HealthConfig) -> Self {
        Self {
            plan,
            health: HealthTracker::new(config),
        }
    }

    /// The plan in use.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The outlier-detection settings the balancer was built with (a balancer
    /// cannot take new ones in place; see [`crate::shared::carry_over`]).
    pub fn health_config(&self) -> &HealthConfig {
        self.health.config()
    }

    /// Replaces the plan (new endpoints or policy), keeping the health state
    /// of addresses still present and forgetting the others.
    pub fn set_plan(&mut self, plan: Plan) {
        self.health
            .retain(|a| plan.endpoints().iter().any(|e| e.address == a));
        self.plan = plan;
    }

    /// Picks an endpoint now; see [`Balancer::pick_at`].
    pub fn pick(&mut self, rng: &mut impl Rng) -> Option<&Endpoint> {
        self.pick_at(Instant::now(), rng)
    }

    /// Picks an endpoint as of `now`: a priority by the spill-over rule, then
    /// an affinity group and a healthy endpoint by weight; panic mode when
    /// nothing is healthy. `None` only when the plan has no endpoint.
    pub fn pick_at(&mut self, now: Instant, rng: &mut impl Rng) -> Option<&Endpoint> {
        self.health.settle(now);
        let loads = self.priority_loads(now);
        let Some(p) = choose_by_load(&loads, rng) else {
            return self.panic_pick(rng);
        };
        let priority = &self.plan.priorities()[p];
        let groups: Vec<(usize, u64)> = priority
            .groups()
            .iter()
            .enumerate()
            .filter(|(_, g)| self.healthy_weight(g.members(), now) > 0)
            .map(|(i, g)| (i, g.weight()))
            .collect();
        let g = groups[choose_weighted(groups.iter().map(|(_, w)| *w), rng)?].0;
        let members: Vec<usize> = priority.groups()[g]
            .members()
            .iter()
            .copied()
            .filter(|&i| self.usable(i, now))
            .collect();
        let endpoints = self.plan.endpoints();
        let i =
            members[choose_weighted(members.iter().map(|&i| u64::from(endpoints[i].weight)), rng)?];
        Some(&endpoints[i])
    }

    /// Picks an endpoint for a retry: one whose address is not in `tried`.
    ///
    /// The balancer draws up to [`UNTRIED_DRAWS`] times (priorities, weights
    /// and health as [`Balancer::pick_at`]); when every draw lands on a tried
    /// address, an untried endpoint of weight above zero is drawn by weight,
    /// healthy ones first, from the lowest priority that has one. `None` when
    /// every such endpoint was tried: whether to try one again is the caller's
    /// choice.
    pub fn pick_untried_at(
        &mut self,
        now: Instant,
        tried: &[SocketAddr],
        rng: &mut impl Rng,
    ) -> Option<&Endpoint> {
        for _ in 0..UNTRIED_DRAWS {
            let address = self.pick_at(now, rng)?.address;
            if !tried.contains(&address) {
                return self.plan.endpoints().iter().find(|e| e.address == address);
            }
        }
        let untried = |healthy: bool| {
            self.plan.priorities().iter().find_map(|p| {
                let pool: Vec<usize> = p
                    .endpoint_indexes()
                    .filter(|&i| {
                        let e = &self.plan.endpoints()[i];
                        e.weight > 0
                            && !tried.contains(&e.address)
                            && (!healthy || self.health.is_healthy(e.address, now))
                    })
                    .collect();
                (!pool.is_empty()).then_some(pool)
            })
        };
        let pool = untried(true).or_else(|| untried(false))?;
        let endpoints = self.plan.endpoints();
        let i = weighted_index(pool.iter().map(|&i| u64::from(endpoints[i].weight)), rng)?;
        Some(&endpoints[pool[i]])
    }

    /// [`Balancer::pick_untried_at`] now.
    pub fn pick_untried(&mut self, tried: &[SocketAddr], rng: &mut impl Rng) -> Option<&Endpoint> {
        self.pick_untried_at(Instant::now(), tried, rng)
    }

    /// Records a connection attempt's outcome at `now`; returns `true` if a
    /// failure ejected the endpoint.
    pub fn report(&mut self, addr: SocketAddr, connected: bool, now: Instant) -> bool {
        if connected {
            self.report_success(addr, now);
            false
        } else {
            self.report_failure(addr, now)
        }
    }

    /// The share of traffic (0..=1) each of [`Plan::priorities`] gets at
    /// `now`, in order; all zero means panic mode.
    pub fn priority_loads(&self, now: Instant) -> Vec<f64> {
        let threshold = self.plan.failover_threshold_percent();
        let mut left = 1.0_f64;
        let mut loads: Vec<f64> = self
            .plan
            .priorities()
            .iter()
            .map(|p| {
                let members: Vec<usize> = p.endpoint_indexes().collect();
                let total = self.total_weight(&members);
                let healthy = self.healthy_weight(&members, now);
                let available = if healthy == 0 {
                    0.0
                } else if threshold <= 0.0 {
                    1.0
                } else {
                    (healthy as f64 * 100.0 / (total as f64 * threshold)).min(1.0)
                };
                let load = available.min(left);
                left -= load;
                load
            })
            .collect();
        let sum: f64 = loads.iter().sum();
        if sum > 0.0 && sum < 1.0 {
            for l in &mut loads {
                *l /= sum;
            }
        }
        loads
    }

    /// Records a failed connection; returns `true` if it ejected the endpoint.
    pub fn report_failure(&mut self, addr: SocketAddr, now: Instant) -> bool {
        self.health.record_failure(addr, now)
    }

    /// Records a successful connection (resets the failure count).
    pub fn report_success(&mut self, addr: SocketAddr, now: Instant) {
        self.health.record_success(addr, now);
    }

    /// Sets an active (TCP) health check's verdict for `addr`.
    pub fn set_active_health(&mut self, addr: SocketAddr, healthy: bool) {
        self.health.set_active(addr, healthy);
    }

    /// Whether `addr` is healthy at `now`.
    pub fn is_healthy(&self, addr: SocketAddr, now: Instant) -> bool {
        self.health.is_healthy(addr, now)
    }

    /// The health state of `addr`, if anything was reported about it.
    pub fn health(&self, addr: SocketAddr) -> Option<&EndpointHealth> {
        self.health.state(addr)
    }

    fn usable(&self, i: usize, now: Instant) -> bool {
        let e = &self.plan.endpoints()[i];
        e.weight > 0 && self.health.is_healthy(e.address, now)
    }

    fn total_weight(&self, members: &[usize]) -> u64 {
        members
            .iter()
            .map(|&i| u64::from(self.plan.endpoints()[i].weight))
            .sum()
    }

    fn healthy_weight(&self, members: &[usize], now: Instant) -> u64 {
        members
            .iter()
            .filter(|&&i| self.usable(i, now))
            .map(|&i| u64::from(self.plan.endpoints()[i].weight))
            .sum()
    }

    fn panic_pick(&self, rng: &mut impl Rng) -> Option<&Endpoint> {
        let endpoints = self.plan.endpoints();
        let i = choose_weighted(endpoints.iter().map(|e| u64::from(e.weight)), rng)?;
        metrics::counter!("meridian_lb_panic_picks_total").increment(1);
        Some(&endpoints[i])
    }
}

/// Draws an index by `loads` (summing to 1, or all zero → `None`).
fn choose_by_load(loads: &[f64], rng: &mut impl Rng) -> Option<usize> {
    let last = loads.iter().rposition(|&l| l > 0.0)?;
    let r: f64 = rng.random();
    let mut acc = 0.0;
    for (i, &l) in loads.iter().enumerate() {
        acc += l;
        if l > 0.0 && r < acc {
            return Some(i);
        }
    }
    Some(last)
}

/// Draws an index with probability proportional to its weight; uniformly
/// when every weight is zero; `None` when there is nothing to draw.
fn choose_weighted(
    weights: impl Iterator<Item = u64> + Clone,
    rng: &mut impl Rng,
) -> Option<usize> {
    let n = weights.clone().count();
    if n == 0 {
        return None;
    }
    weighted_index(weights, rng).or_else(|| Some(rng.random_range(0..n)))
}

/// Draws an index with probability proportional to its weight; weight 0 never.
/// `None` when there is nothing to draw or every weight is zero.
pub fn weighted_index(
    weights: impl Iterator<Item = u64> + Clone,
    rng: &mut impl Rng,
) -> Option<usize> {
    let n = weights.clone().count();
    let total: u128 = weights.clone().map(u128::from).sum();
    if total == 0 {
        return None;
    }
    let mut x = rng.random_range(0..total);
    for (i, w) in weights.enumerate() {
        let w = u128::from(w);
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    Some(n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::DEFAULT_BASE_EJECTION_TIME;
    use meridian_model::{
        AffinityTag, CrossZone, Failover, FailoverThreshold, FailoverTo, FailoverToType,
        IntOrString, LocalZone, LocalityAwareness,
    };
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::collections::{BTreeMap, HashMap};
    use std::time::Duration;

    /// Expected share of picks per port.
    type Shares = Vec<(u16, f64)>;
    /// (name, locality, local endpoints ejected, remote ejected, shares).
    type SpillCase = (
        &'static str,
        Option<LocalityAwareness>,
        u16,
        Vec<u16>,
        Shares,
    );
    /// (name, locality, ports ejected, shares).
    type AffinityCase = (&'static str, LocalityAwareness, Vec<u16>, Shares);

    const PICKS: usize = 10_000;
    /// Allowed deviation of an observed share from the expected one over
    /// `PICKS` draws: 2.5 percentage points (≈ 5 standard deviations at
    /// p = 0.5, so a correct implementation does not fail by chance, while a
    /// wrong weighting is caught).
    const TOLERANCE: f64 = 0.025;

    fn addr(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], n))
    }

    fn ep(n: u16, zone: &str, weight: u32) -> Endpoint {
        Endpoint::new(addr(n), zone, weight)
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(4)
    }

    fn balancer(eps: Vec<Endpoint>, la: Option<&LocalityAwareness>) -> Balancer {
        Balancer::new(
            Plan::build("z1", &BTreeMap::new(), eps, la),
            HealthConfig::default(),
        )
    }

    fn threshold(percent: i64) -> LocalityAwareness {
        LocalityAwareness {
            cross_zone: Some(CrossZone {
                failover: Some(vec![Failover {
                    from: None,
                    to: FailoverTo {
                        type_: FailoverToType::Any,
                        zones: None,
                    },
                }]),
                failover_threshold: Some(FailoverThreshold {
                    percentage: IntOrString::Int(percent),
                }),
            }),
            ..Default::default()
        }
    }

    /// Share of `PICKS` picks per port.
    fn shares(b: &mut Balancer, now: Instant) -> HashMap<u16, f64> {
        let mut rng = rng();
        let mut counts: HashMap<u16, usize> = HashMap::new();
        for _ in 0..PICKS {
            let e = b.pick_at(now, &mut rng).expect("an endpoint");
            *counts.entry(e.address.port()).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(p, c)| (p, c as f64 / PICKS as f64))
            .collect()
    }

    fn assert_shares(got: &HashMap<u16, f64>, want: &[(u16, f64)], name: &str) {
        for &(port, share) in want {
            let g = got.get(&port).copied().unwrap_or(0.0);
            assert!(
                (g - share).abs() <= TOLERANCE,
                "{name}: port {port} got {g:.4}, want {share:.4} (all: {got:?})"
            );
        }
        let listed: f64 = want.iter().map(|(_, s)| s).sum();
        assert!(
            (listed - 1.0).abs() < 1e-9,
            "{name}: expected shares sum to 1"
        );
        for port in got.keys() {
            assert!(
                want.iter().any(|(p, _)| p == port),
                "{name}: unexpected port {port} picked ({got:?})"
            );
        }
    }

    fn eject(b: &mut Balancer, port: u16, now: Instant) {
        for _ in 0..3 {
            b.report_failure(addr(port), now);
        }
        assert!(!b.is_healthy(addr(port), now));
    }

    #[test]
    fn spill_over_table() {
        // Local z1: ports 1..=10 (weight 1). z2: port 20 (weight 3),
        // z3: port 30 (weight 1). Every case ejects some local endpoints.
        let eps = || {
            let mut v: Vec<Endpoint> = (1..=10).map(|i| ep(i, "z1", 1)).collect();
            v.push(ep(20, "z2", 3));
            v.push(ep(30, "z3", 1));
            v
        };
        let local = |n: u16, total: f64| -> Vec<(u16, f64)> {
            (1..=10)
                .filter(|&i| i > 10 - n)
                .map(|i| (i, total / f64::from(n)))
                .collect()
        };
        let remote = |total: f64| vec![(20, total * 0.75), (30, total * 0.25)];
        let join = |a: Vec<(u16, f64)>, b: Vec<(u16, f64)>| [a, b].concat();
        let cases: Vec<SpillCase> = vec![
            ("healthy: local only", None, 0, vec![], local(10, 1.0)),
            (
                "default threshold 71.4%: 8/10 healthy stays local",
                None,
                2,
                vec![],
                local(8, 1.0),
            ),
            (
                "default threshold: 5/10 healthy spills 30%",
                None,
                5,
                vec![],
                join(local(5, 0.7), remote(0.3)),
            ),
            (
                "local all ejected: next priority by instance weights",
                None,
                10,
                vec![],
                remote(1.0),
            ),
            (
                "threshold 50: 5/10 healthy stays local",
                Some(threshold(50)),
                5,
                vec![],
                local(5, 1.0),
            ),
            (
                "threshold 80: 4/10 healthy keeps half",
                Some(threshold(80)),
                6,
                vec![],
                join(local(4, 0.5), remote(0.5)),
            ),
            (
                "threshold 100: 9/10 healthy spills 10%",
                Some(threshold(100)),
                1,
                vec![],
                join(local(9, 0.9), remote(0.1)),
            ),
            (
                "threshold 0: one healthy local keeps everything",
                Some(threshold(0)),
                9,
                vec![],
                local(1, 1.0),
            ),
            (
                "threshold 100, remote partly down: scaled to healthy",
                Some(threshold(100)),
                5,
                vec![20],
                // a0 = 0.5, a1 = 0.25 → normalised 2/3 : 1/3.
                join(local(5, 2.0 / 3.0), vec![(30, 1.0 / 3.0)]),
            ),
        ];
        let now = Instant::now();
        for (name, la, local_down, remote_down, want) in cases {
            let mut b = balancer(eps(), la.as_ref());
            for port in (1..=10).take(usize::from(local_down)) {
                eject(&mut b, port, now);
            }
            for port in remote_down {
                eject(&mut b, port, now);
            }
            assert_shares(&shares(&mut b, now), &want, name);
        }
    }

    #[test]
    fn failover_rules_pick_next_allowed_zone() {
        use FailoverToType as T;
        let rule = |from: Option<&str>, ty: T, zones: Option<&[&str]>| Failover {
            from: from.map(|z| meridian_model::FailoverFrom {
                zones: vec![z.to_string()],
            }),
            to: FailoverTo {
                type_: ty,
                zones: zones.map(|z| z.iter().map(|s| s.to_string()).collect()),
            },
        };
        let la = |rules: Vec<Failover>| LocalityAwareness {
            cross_zone: Some(CrossZone {
                failover: Some(rules),
                failover_threshold: None,
            }),
            ..Default::default()
        };
        // Local z1 (port 1) is ejected; z2/z3/z4 at ports 2/3/4, weight 1.
        let cases: Vec<(&str, LocalityAwareness, Shares)> = vec![
            (
                "Any",
                la(vec![rule(None, T::Any, None)]),
                vec![(2, 1.0 / 3.0), (3, 1.0 / 3.0), (4, 1.0 / 3.0)],
            ),
            (
                "AnyExcept z2",
                la(vec![rule(None, T::AnyExcept, Some(&["z2"]))]),
                vec![(3, 0.5), (4, 0.5)],
            ),
            (
                "Only z4, then Any",
                la(vec![
                    rule(None, T::Only, Some(&["z4"])),
                    rule(None, T::Any, None),
                ]),
                vec![(4, 1.0)],
            ),
            (
                "rule from z2 skipped, ours takes z3",
                la(vec![
                    rule(Some("z2"), T::Only, Some(&["z4"])),
                    rule(Some("z1"), T::Only, Some(&["z3"])),
                ]),
                vec![(3, 1.0)],
            ),
            // Nothing else reachable: panic mode among reachable = z1 only.
            ("None", la(vec![rule(None, T::None, None)]), vec![(1, 1.0)]),
            (
                "only a rule from another zone",
                la(vec![rule(Some("z3"), T::Any, None)]),
                vec![(1, 1.0)],
            ),
        ];
        let now = Instant::now();
        for (name, la, want) in cases {
            let eps = (1..=4).map(|i| ep(i, &format!("z{i}"), 1)).collect();
            let mut b = balancer(eps, Some(&la));
            eject(&mut b, 1, now);
            assert_shares(&shares(&mut b, now), &want, name);
        }
    }

    #[test]
    fn failover_walks_priorities_in_order() {
        use FailoverToType as T;
        let only = |z: &str| Failover {
            from: None,
            to: FailoverTo {
                type_: T::Only,
                zones: Some(vec![z.to_string()]),
            },
        };
        let la = LocalityAwareness {
            cross_zone: Some(CrossZone {
                failover: Some(vec![only("z3"), only("z2")]),
                failover_threshold: None,
            }),
            ..Default::default()
        };
        let eps = (1..=3).map(|i| ep(i, &format!("z{i}"), 1)).collect();
        let mut b = balancer(eps, Some(&la));
        let now = Instant::now();
        let mut rng = rng();
        let mut pick = |b: &mut Balancer| b.pick_at(now, &mut rng).map(|e| e.address.port());
        assert_eq!(pick(&mut b), Some(1), "local first");
        eject(&mut b, 1, now);
        assert_eq!(pick(&mut b), Some(3), "rule 0 → priority 1");
        eject(&mut b, 3, now);
        assert_eq!(pick(&mut b), Some(2), "rule 1 → priority 2");
        b.set_active_health(addr(3), true); // active OK does not end an ejection
        assert_eq!(pick(&mut b), Some(2));
    }

    #[test]
    fn remote_zones_weighted_by_instance_counts() {
        // No local endpoints at all: everything is remote, weights 6:3:1.
        let eps = vec![
            ep(2, "z2", 6),
            ep(3, "z3", 3),
            ep(4, "z4", 1),
            ep(5, "z5", 0),
        ];
        let mut b = balancer(eps, None);
        let now = Instant::now();
        assert_shares(
            &shares(&mut b, now),
            &[(2, 0.6), (3, 0.3), (4, 0.1)],
            "6:3:1, zero-instance zone never picked",
        );
        // The heaviest zone's ingress stops answering: 3:1 over the rest.
        eject(&mut b, 2, now);
        assert_shares(
            &shares(&mut b, now),
            &[(3, 0.75), (4, 0.25)],
            "ingress down",
        );
    }

    #[test]
    fn affinity_weighting() {
        let local_tags: BTreeMap<String, String> = [("node", "n1"), ("az", "a1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let eps = vec![
            ep(1, "z1", 1).with_tag("node", "n1").with_tag("az", "a1"),
            ep(2, "z1", 1).with_tag("node", "n2").with_tag("az", "a1"),
            ep(3, "z1", 1).with_tag("node", "n3").with_tag("az", "a1"),
            ep(4, "z1", 1).with_tag("node", "n4").with_tag("az", "a2"),
            ep(9, "z2", 1),
        ];
        let la = |tags: Vec<(&str, Option<u32>)>| LocalityAwareness {
            local_zone: Some(LocalZone {
                affinity_tags: Some(
                    tags.into_iter()
                        .map(|(k, weight)| AffinityTag {
                            key: k.to_string(),
                            weight,
                        })
                        .collect(),
                ),
            }),
            ..threshold(50)
        };
        let cases: Vec<AffinityCase> = vec![
            (
                "default weights 90:9:1",
                la(vec![("node", None), ("az", None)]),
                vec![],
                vec![(1, 0.90), (2, 0.045), (3, 0.045), (4, 0.01)],
            ),
            (
                "explicit weight 3 on az vs rest 1",
                la(vec![("az", Some(3))]),
                vec![],
                vec![(1, 0.25), (2, 0.25), (3, 0.25), (4, 0.25)],
            ),
            (
                "explicit weight 9 on az, node group ignored",
                la(vec![("az", Some(9))]),
                vec![],
                vec![(1, 0.3), (2, 0.3), (3, 0.3), (4, 0.1)],
            ),
            (
                "same-node endpoint ejected: its share moves to the az group",
                la(vec![("node", None), ("az", None)]),
                vec![1],
                vec![(2, 0.45), (3, 0.45), (4, 0.1)],
            ),
        ];
        let now = Instant::now();
        for (name, la, down, want) in cases {
            let plan = Plan::build("z1", &local_tags, eps.clone(), Some(&la));
            let mut b = Balancer::new(plan, HealthConfig::default());
            for port in down {
                eject(&mut b, port, now);
            }
            assert_shares(&shares(&mut b, now), &want, name);
        }
    }

    #[test]
    fn ejection_then_return_after_ejection_time() {
        let mut b = balancer(vec![ep(1, "z1", 1), ep(2, "z2", 1)], None);
        let t0 = Instant::now();
        let mut rng = rng();
        assert!(!b.report_failure(addr(1), t0));
        assert!(!b.report_failure(addr(1), t0));
        assert_eq!(b.pick_at(t0, &mut rng).map(|e| e.address.port()), Some(1));
        assert!(b.report_failure(addr(1), t0), "third failure ejects");
        assert_eq!(b.pick_at(t0, &mut rng).map(|e| e.address.port()), Some(2));
        let back = t0 + DEFAULT_BASE_EJECTION_TIME;
        let just_before = back - Duration::from_millis(1);
        assert_eq!(
            b.pick_at(just_before, &mut rng).map(|e| e.address.port()),
            Some(2)
        );
        assert_eq!(b.pick_at(back, &mut rng).map(|e| e.address.port()), Some(1));
        // Second ejection lasts twice as long.
        for _ in 0..3 {
            b.report_failure(addr(1), back);
        }
        let t2 = back + DEFAULT_BASE_EJECTION_TIME;
        assert_eq!(b.pick_at(t2, &mut rng).map(|e| e.address.port()), Some(2));
        let t3 = back + 2 * DEFAULT_BASE_EJECTION_TIME;
        assert_eq!(b.pick_at(t3, &mut rng).map(|e| e.address.port()), Some(1));
        assert_eq!(b.health(addr(1)).map(|h| h.ejections()), Some(2));
    }

    #[test]
    fn success_resets_failures() {
        let mut b = balancer(vec![ep(1, "z1", 1), ep(2, "z2", 1)], None);
        let now = Instant::now();
        for _ in 0..5 {
            b.report_failure(addr(1), now);
            b.report_failure(addr(1), now);
            b.report_success(addr(1), now);
        }
        assert!(b.is_healthy(addr(1), now));
        assert_eq!(b.health(addr(1)).map(|h| h.consecutive_failures()), Some(0));
        let mut rng = rng();
        assert_eq!(b.pick_at(now, &mut rng).map(|e| e.address.port()), Some(1));
    }

    #[test]
    fn active_health_check_withdraws_and_restores() {
        let mut b = balancer(vec![ep(1, "z1", 1), ep(2, "z2", 1), ep(3, "z3", 1)], None);
        let now = Instant::now();
        let mut rng = rng();
        eject(&mut b, 1, now);
        b.set_active_health(addr(2), false);
        for _ in 0..100 {
            assert_eq!(b.pick_at(now, &mut rng).map(|e| e.address.port()), Some(3));
        }
        b.set_active_health(addr(2), true);
        assert_shares(&shares(&mut b, now), &[(2, 0.5), (3, 0.5)], "restored");
    }

    #[test]
    fn panic_mode_picks_from_all() {
        let eps = vec![ep(1, "z1", 1), ep(2, "z2", 2), ep(3, "z3", 1)];
        let mut b = balancer(eps, None);
        let now = Instant::now();
        for port in 1..=3 {
            eject(&mut b, port, now);
        }
        assert!(b.priority_loads(now).iter().all(|&l| l == 0.0));
        assert_shares(
            &shares(&mut b, now),
            &[(1, 0.25), (2, 0.5), (3, 0.25)],
            "panic: all endpoints by weight",
        );
        // All weights zero: uniform.
        let eps = vec![ep(1, "z1", 0), ep(2, "z2", 0)];
        let mut b = balancer(eps, None);
        assert_shares(
            &shares(&mut b, now),
            &[(1, 0.5), (2, 0.5)],
            "panic: uniform",
        );
    }

    #[test]
    fn empty_plan_picks_nothing() {
        let mut b = balancer(vec![], None);
        assert!(b.pick_at(Instant::now(), &mut rng()).is_none());
        // Only unreachable endpoints: nothing either.
        let la = LocalityAwareness::default();
        let mut b = balancer(vec![ep(2, "z2", 1)], Some(&la));
        assert_eq!(b.plan().unreachable().len(), 1);
        assert!(b.pick_at(Instant::now(), &mut rng()).is_none());
    }

    #[test]
    fn set_plan_keeps_health_of_surviving_endpoints() {
        let mut b = balancer(vec![ep(1, "z1", 1), ep(2, "z1", 1)], None);
        let now = Instant::now();
        eject(&mut b, 1, now);
        eject(&mut b, 2, now);
        b.set_plan(Plan::build(
            "z1",
            &BTreeMap::new(),
            vec![ep(1, "z1", 1), ep(3, "z1", 1)],
            None,
        ));
        assert!(!b.is_healthy(addr(1), now), "kept");
        assert!(b.health(addr(2)).is_none(), "forgotten");
        let mut rng = rng();
        assert_eq!(b.pick_at(now, &mut rng).map(|e| e.address.port()), Some(3));
    }

    #[test]
    fn picks_are_deterministic_for_a_seed() {
        let eps: Vec<Endpoint> = (1..=5).map(|i| ep(i, "z1", u32::from(i))).collect();
        let run = || {
            let mut b = balancer(eps.clone(), None);
            let mut rng = rng();
            let now = Instant::now();
            (0..50)
                .map(|_| b.pick_at(now, &mut rng).map(|e| e.address.port()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn weighted_choice_helper() {
        let mut rng = rng();
        assert_eq!(choose_weighted(std::iter::empty(), &mut rng), None);
        for _ in 0..100 {
            assert_eq!(choose_weighted([0, 5, 0].into_iter(), &mut rng), Some(1));
        }
        assert_eq!(choose_by_load(&[0.0, 0.0], &mut rng), None);
        assert_eq!(choose_by_load(&[0.0, 1.0], &mut rng), Some(1));
    }

    #[test]
    fn weighted_index_never_draws_weight_zero_and_gives_up_on_all_zero() {
        let mut rng = rng();
        assert_eq!(weighted_index(std::iter::empty(), &mut rng), None);
        assert_eq!(weighted_index([0, 0].into_iter(), &mut rng), None);
        let mut counts = [0; 3];
        for _ in 0..4000 {
            counts[weighted_index([3, 0, 1].into_iter(), &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!((2800..3200).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn untried_picking_skips_tried_addresses_and_ends_when_all_are_tried() {
        let now = Instant::now();
        // 1 takes almost all the weight; excluding it still yields another.
        let mut b = balancer(
            vec![ep(1, "z1", 1000), ep(2, "z1", 1), ep(3, "z1", 1)],
            None,
        );
        let mut rng = rng();
        for _ in 0..200 {
            let mut tried = vec![];
            for _ in 0..3 {
                let next = b.pick_untried_at(now, &tried, &mut rng).unwrap().address;
                assert!(!tried.contains(&next), "{next} twice in {tried:?}");
                tried.push(next);
            }
            assert_eq!(b.pick_untried_at(now, &tried, &mut rng), None);
        }
        let mut empty = balancer(vec![], None);
        assert_eq!(empty.pick_untried_at(now, &[], &mut rng), None);
    }

    #[test]
    fn untried_picking_prefers_healthy_then_the_lowest_priority() {
        let now = Instant::now();
        // Local 1 and 2, remote 3 (priority 1). 1 tried, 2 ejected: the healthy
        // remote 3 comes before the ejected local 2.
        let mut b = balancer(vec![ep(1, "z1", 1), ep(2, "z1", 1), ep(3, "z2", 1)], None);
        for _ in 0..3 {
            b.report_failure(addr(2), now);
        }
        let mut rng = rng();
        for _ in 0..100 {
            assert_eq!(
                b.pick_untried_at(now, &[addr(1)], &mut rng)
                    .map(|e| e.address),
                Some(addr(3))
            );
        }
        // Nothing healthy left untried: an unhealthy untried one beats none.
        assert_eq!(
            b.pick_untried_at(now, &[addr(1), addr(3)], &mut rng)
                .map(|e| e.address),
            Some(addr(2))
        );
        // Weight-zero endpoints are never retried.
        let mut z = balancer(vec![ep(1, "z1", 1), ep(2, "z1", 0)], None);
        assert_eq!(z.pick_untried_at(now, &[addr(1)], &mut rng), None);
    }

    #[test]
    fn report_counts_failures_and_success_resets_them() {
        let now = Instant::now();
        let mut b = balancer(vec![ep(1, "z1", 1)], None);
        assert!(!b.report(addr(1), false, now));
        assert!(!b.report(addr(1), false, now));
        assert!(!b.report(addr(1), true, now));
        assert!(!b.report(addr(1), false, now));
        assert!(!b.report(addr(1), false, now));
        assert!(b.report(addr(1), false, now), "the third in a row ejects");
        assert!(!b.is_healthy(addr(1), now));
    }
}
