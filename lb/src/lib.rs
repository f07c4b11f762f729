//! Locality-aware load balancing: endpoint priorities, failover, weights by
//! healthy instances.
//!
//! The sidecar and the zone ingress and egress use this crate to choose where a new
//! connection goes. It is pure: no I/O, no clock of its own (time is passed
//! in), randomness from the caller's [`rand::Rng`].
//!
//! * [`Plan`] ([`plan`]) sorts a destination's endpoints into priorities from
//!   the local zone and the `MeshLoadBalancingStrategy`'s
//!   `localityAwareness`.
//! * [`HealthTracker`] ([`health`]) keeps passive (consecutive failures →
//!   ejection) and active health per endpoint address.
//! * [`Balancer`] ([`balancer`]) combines both: a priority by the failover
//!   threshold, then an endpoint by weight; for retries, an endpoint not tried
//!   yet ([`Balancer::pick_untried`]).
//! * [`SharedBalancer`] ([`shared`]): one destination's balancer shared by its
//!   connections and carried across config updates ([`carry_over`]), so health
//!   survives endpoint changes. Both the sidecar and the zone proxies use it.
//! * [`weighted_index`]: the one weighted draw (weight 0 never wins), also used
//!   for the sidecar's MeshTCPRoute backend weights.
//!
//! # The priority model
//!
//! ```text
//!  proxy in zone z1          MeshLoadBalancingStrategy.localityAwareness
//!        │                     crossZone.failover: [ rule0, rule1, … ]
//!        ▼
//!  ┌──────────────┐  priority 0: the local zone (z1) — affinity groups:
//!  │ z1 endpoints │    same t0 value ─ w0 (default 90) ┐ one group drawn by
//!  │              │    same t1 value ─ w1 (default  9) ├ weight, then an
//!  │              │    the rest ────── 1               ┘ endpoint by weight
//!  └──────┬───────┘
//!         │ healthy share h0 < threshold T → spill (1 - h0/T) onward
//!         ▼
//!  ┌──────────────┐  priority 1: zones of rule0 (Any / AnyExcept / Only),
//!  │ z2 ingress 6 │    rule0 applies if it has no `from` or `from` lists z1;
//!  │ z3 ingress 3 │    each remote ingress weighted by its zone's healthy
//!  └──────┬───────┘    instance count (here 6 : 3)
//!         │ h1 < T → spill onward
//!         ▼
//!  ┌──────────────┐  priority 2: zones of rule1 not already taken
//!  │ z4 ingress 2 │  … a `None` rule ends the list; zones no rule selects
//!  └──────┬───────┘    are unreachable.
//!         │ nothing healthy anywhere
//!         ▼
//!     panic mode: any reachable endpoint, by weight
//!
//!  No strategy, or localityAwareness.disabled (Meridian's default):
//!     priority 0 = local zone, priority 1 = every other zone.
//! ```
//!
//! Defaults: failover threshold ≈ 71.4 % ([`DEFAULT_FAILOVER_THRESHOLD_PERCENT`],
//! Envoy's overprovisioning factor 1.4); 3 consecutive failures eject
//! ([`DEFAULT_CONSECUTIVE_FAILURES`]) for 30 s × ejections
//! ([`DEFAULT_BASE_EJECTION_TIME`]), at most 300 s
//! ([`DEFAULT_MAX_EJECTION_TIME`]).
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::time::Instant;
//! use meridian_lb::{Balancer, Endpoint, HealthConfig, Plan};
//! use rand::SeedableRng;
//!
//! let local = Endpoint::new("10.0.0.1:8080".parse().unwrap(), "z1", 1);
//! let remote = Endpoint::new("10.1.0.1:10001".parse().unwrap(), "z2", 4);
//! let plan = Plan::build("z1", &BTreeMap::new(), vec![local, remote], None);
//! let mut lb = Balancer::new(plan, HealthConfig::default());
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1);
//! let now = Instant::now();
//! assert_eq!(lb.pick_at(now, &mut rng).unwrap().zone, "z1");
//! for _ in 0..3 {
//!     lb.report_failure("10.0.0.1:8080".parse().unwrap(), now);
//! }
//! assert_eq!(lb.pick_at(now, &mut rng).unwrap().zone, "z2");
//! ```

pub mod balancer;
pub mod health;
pub mod plan;
pub mod shared;

pub use balancer::{Balancer, UNTRIED_DRAWS, weighted_index};
pub use health::{
    DEFAULT_BASE_EJECTION_TIME, DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_DECAY_INTERVAL,
    DEFAULT_MAX_EJECTION_TIME, EndpointHealth, HealthConfig, HealthTracker,
};
pub use plan::{AffinityGroup, DEFAULT_FAILOVER_THRESHOLD_PERCENT, Endpoint, Plan, Priority};
pub use shared::{SharedBalancer, carry_over, lock};
