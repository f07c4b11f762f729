//! The [`Plan`]: a destination's endpoints sorted into priorities by zone,
//! following a `MeshLoadBalancingStrategy`'s `localityAwareness`.
//!
//! A plan is pure data computed once per configuration change: it knows
//! nothing about health. The [`Balancer`](crate::Balancer) combines it with
//! health state to pick endpoints.
//!
//! # Priority assignment
//!
//! * **Locality awareness on** (`locality` is `Some` and not `disabled`),
//!   Kuma's model:
//!   - the local zone is priority 0;
//!   - failover rule *i* (0-based, counted over the whole `failover` list)
//!     applies when it has no `from` or its `from.zones` lists the local zone;
//!     it puts at priority *i + 1* every zone its `to` selects that no earlier
//!     rule took: `Any` = every other zone, `AnyExcept` = every other zone
//!     but the listed ones, `Only` = the listed zones. A `None` rule stops
//!     processing: no later rule adds a zone;
//!   - zones no rule selects are **unreachable** (kept in
//!     [`Plan::unreachable`], never picked). In particular, locality
//!     awareness without any failover rule keeps traffic in the local zone,
//!     as Kuma's "disable cross-zone traffic" example does.
//! * **No strategy** (`locality` is `None`) or `disabled: true`, Meridian's
//!   documented default: local zone at priority 0, **every other zone at
//!   priority 1**, no affinity tags. Traffic stays local while the local zone
//!   is healthy enough and spills to all other zones, weighted by their
//!   healthy instance counts, when it is not.
//!
//! # Affinity tags (local zone only)
//!
//! With `localZone.affinityTags` `[t0, t1, …, tn-1]` (most important first),
//! each local endpoint joins the group of the **first** tag whose value it
//! shares with the local proxy (`local_tags`); endpoints sharing none join a
//! rest group of weight 1. The group of tag *k* has the tag's `weight`, or,
//! when unset, 9·10^(n-1-k) — so two unweighted tags split traffic 90 : 9 : 1
//! between same-`t0`, same-`t1` and the rest, Kuma's default. Group weights
//! are *group* shares (as Envoy locality weights), not per-endpoint
//! multipliers: a same-node group of one endpoint and one of ten both get
//! their full share. Within a group, endpoints are weighted by their own
//! [`Endpoint::weight`]. Groups with no usable endpoint give their share to
//! the others. A proxy that lacks a tag matches no endpoint on it.
//!
//! # Failover threshold
//!
//! `crossZone.failoverThreshold.percentage` is kept as
//! [`Plan::failover_threshold_percent`] (clamped to 0..=100; unset or
//! unparsable = [`DEFAULT_FAILOVER_THRESHOLD_PERCENT`], Envoy's default
//! overprovisioning factor 1.4). See [`Balancer`](crate::Balancer) for how it
//! is applied.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;

use meridian_model::{AffinityTag, FailoverToType, LocalityAwareness};

/// The failover threshold used when a strategy sets none: 100 / 1.4 ≈ 71.43 %,
/// which is Envoy's default overprovisioning factor (140 %) — a priority keeps
/// all its traffic until fewer than ~72 % of its capacity is healthy.
pub const DEFAULT_FAILOVER_THRESHOLD_PERCENT: f64 = 100.0 / 1.4;

/// One destination a proxy can connect to: a local service instance, or a
/// remote zone's ingress standing for that zone's instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Where to connect. Addresses identify endpoints: health is tracked per
    /// address, and a plan keeps only the first endpoint of each address.
    pub address: SocketAddr,
    /// The zone the endpoint is in (for an ingress: the zone it serves).
    pub zone: String,
    /// Relative capacity. For a remote zone's ingress: its healthy instance
    /// count of the service; for a local instance usually 1. Zero means no
    /// capacity: never picked outside panic mode.
    pub weight: u32,
    /// The endpoint's tags (used by affinity tags in the local zone).
    pub tags: BTreeMap<String, String>,
}

impl Endpoint {
    /// An endpoint with no tags.
    pub fn new(address: SocketAddr, zone: impl Into<String>, weight: u32) -> Self {
        Self {
            address,
            zone: zone.into(),
            weight,
            tags: BTreeMap::new(),
        }
    }

    /// Adds a tag (builder style).
    #[must_use]
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }
}

/// A set of endpoints of one priority that share one traffic share (an
/// affinity group in the local zone; the whole priority elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityGroup {
    tag: Option<String>,
    weight: u64,
    members: Vec<usize>,
}

impl AffinityGroup {
    /// The affinity tag key the members share with the local proxy; `None`
    /// for the rest group or a priority without affinity.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The group's relative share within its priority.
    pub fn weight(&self) -> u64 {
        self.weight
    }

    /// Indexes of the members into [`Plan::endpoints`].
    pub fn members(&self) -> &[usize] {
        &self.members
    }
}

/// The endpoints of one priority level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priority {
    level: u32,
    zones: BTreeSet<String>,
    groups: Vec<AffinityGroup>,
}

impl Priority {
    /// The level: 0 for the local zone, *i + 1* for failover rule *i*, 1 for
    /// every other zone without locality awareness.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// The zones at this level.
    pub fn zones(&self) -> &BTreeSet<String> {
        &self.zones
    }

    /// The affinity groups (a single group unless affinity tags apply).
    pub fn groups(&self) -> &[AffinityGroup] {
        &self.groups
    }

    /// Indexes into [`Plan::endpoints`] of every endpoint at this level.
    pub fn endpoint_indexes(&self) -> impl Iterator<Item = usize> + '_ {
        self.groups.iter().flat_map(|g| g.members.iter().copied())
    }
}

/// A destination's endpoints sorted into priorities (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    endpoints: Vec<Endpoint>,
    priorities: Vec<Priority>,
    unreachable: Vec<Endpoint>,
    failover_threshold_percent: f64,
    locality_aware: bool,
}

impl Plan {
    /// Sorts `endpoints` into priorities as seen from a proxy in `local_zone`
    /// with tags `local_tags`, following `locality` (the merged
    /// `localityAwareness` of the strategy for this destination, if any).
    pub fn build(
        local_zone: &str,
        local_tags: &BTreeMap<String, String>,
        endpoints: Vec<Endpoint>,
        locality: Option<&LocalityAwareness>,
    ) -> Plan {
        let locality = locality.filter(|la| la.disabled != Some(true));
        let mut seen = HashSet::new();
        let endpoints: Vec<Endpoint> = endpoints
            .into_iter()
            .filter(|e| seen.insert(e.address))
            .collect();
        let other_zones: BTreeSet<String> = endpoints
            .iter()
            .filter(|e| e.zone != local_zone)
            .map(|e| e.zone.clone())
            .collect();

        let mut zone_level: BTreeMap<String, u32> = BTreeMap::new();
        zone_level.insert(local_zone.to_owned(), 0);
        match locality {
            None => {
                for z in &other_zones {
                    zone_level.insert(z.clone(), 1);
                }
            }
            Some(la) => {
                let rules = la
                    .cross_zone
                    .as_ref()
                    .and_then(|cz| cz.failover.as_deref())
                    .unwrap_or_default();
                for (i, rule) in rules.iter().enumerate() {
                    let applies = rule
                        .from
                        .as_ref()
                        .is_none_or(|f| f.zones.iter().any(|z| z == local_zone));
                    if !applies {
                        continue;
                    }
                    let listed: Vec<&str> =
                        rule.to.zones.iter().flatten().map(String::as_str).collect();
                    let selects = |z: &str| match rule.to.type_ {
                        FailoverToType::Any => true,
                        FailoverToType::AnyExcept => !listed.contains(&z),
                        FailoverToType::Only => listed.contains(&z),
                        FailoverToType::None => false,
                    };
                    if rule.to.type_ == FailoverToType::None {
                        break;
                    }
                    let level = u32::try_from(i + 1).unwrap_or(u32::MAX);
                    for z in &other_zones {
                        if selects(z) {
                            zone_level.entry(z.clone()).or_insert(level);
                        }
                    }
                }
            }
        }

        let affinity: &[AffinityTag] = locality
            .and_then(|la| la.local_zone.as_ref())
            .and_then(|lz| lz.affinity_tags.as_deref())
            .unwrap_or_default();

        let mut reachable = Vec::new();
        let mut unreachable = Vec::new();
        let mut by_level: BTreeMap<u32, (BTreeSet<String>, Vec<usize>)> = BTreeMap::new();
        for e in endpoints {
            match zone_level.get(e.zone.as_str()) {
                Some(&level) => {
                    let entry = by_level.entry(level).or_default();
                    entry.0.insert(e.zone.clone());
                    entry.1.push(reachable.len());
                    reachable.push(e);
                }
                None => unreachable.push(e),
            }
        }

        let priorities = by_level
            .into_iter()
            .map(|(level, (zones, members))| {
                let groups = if level == 0 && !affinity.is_empty() {
                    affinity_groups(&reachable, members, local_tags, affinity)
                } else {
                    vec![AffinityGroup {
                        tag: None,
                        weight: 1,
                        members,
                    }]
                };
                Priority {
                    level,
                    zones,
                    groups,
                }
            })
            .collect();

        let failover_threshold_percent = locality
            .and_then(|la| la.cross_zone.as_ref())
            .and_then(|cz| cz.failover_threshold.as_ref())
            .and_then(|t| t.percentage.as_f64())
            .map_or(DEFAULT_FAILOVER_THRESHOLD_PERCENT, |p| p.clamp(0.0, 100.0));

        Plan {
            endpoints: reachable,
            priorities,
            unreachable,
            failover_threshold_percent,
            locality_aware: locality.is_some(),
        }
    }

    /// Every reachable endpoint; priorities and groups index into this.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The non-empty priorities, lowest level first.
    pub fn priorities(&self) -> &[Priority] {
        &self.priorities
    }

    /// Endpoints in zones no failover rule selects; never picked.
    pub fn unreachable(&self) -> &[Endpoint] {
        &self.unreachable
    }

    /// The failover threshold in percent (0..=100).
    pub fn failover_threshold_percent(&self) -> f64 {
        self.failover_threshold_percent
    }

    /// Whether the plan follows a strategy's locality awareness (`false` for
    /// the no-strategy / `disabled` default).
    pub fn is_locality_aware(&self) -> bool {
        self.locality_aware
    }

    /// The priority level of a zone's endpoints, if the zone has any
    /// reachable endpoint.
    pub fn zone_priority(&self, zone: &str) -> Option<u32> {
        self.priorities
            .iter()
            .find(|p| p.zones.contains(zone))
            .map(|p| p.level)
    }

    /// The priority level of the endpoint at `address`, if reachable.
    pub fn priority_of(&self, address: SocketAddr) -> Option<u32> {
        self.priorities
            .iter()
            .find(|p| {
                p.endpoint_indexes()
                    .any(|i| self.endpoints[i].address == address)
            })
            .map(|p| p.level)
    }

    /// Whether the plan has no reachable endpoint.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

/// Default weight of affinity tag `k` of `n`: 9·10^(n-1-k), saturating.
fn default_affinity_weight(k: usize, n: usize) -> u64 {
    let exp = u32::try_from(n - 1 - k).unwrap_or(u32::MAX);
    10u64
        .checked_pow(exp)
        .map_or(u64::MAX, |p| p.saturating_mul(9))
}

fn affinity_groups(
    endpoints: &[Endpoint],
    members: Vec<usize>,
    local_tags: &BTreeMap<String, String>,
    tags: &[AffinityTag],
) -> Vec<AffinityGroup> {
    let n = tags.len();
    let mut groups: Vec<AffinityGroup> = tags
        .iter()
        .enumerate()
        .map(|(k, t)| AffinityGroup {
            tag: Some(t.key.clone()),
            weight: t
                .weight
                .map_or_else(|| default_affinity_weight(k, n), u64::from),
            members: Vec::new(),
        })
        .collect();
    groups.push(AffinityGroup {
        tag: None,
        weight: 1,
        members: Vec::new(),
    });
    for i in members {
        let ep = &endpoints[i];
        let k = tags
            .iter()
            .position(|t| {
                local_tags
                    .get(&t.key)
                    .is_some_and(|v| ep.tags.get(&t.key) == Some(v))
            })
            .unwrap_or(n);
        groups[k].members.push(i);
    }
    groups.retain(|g| !g.members.is_empty());
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_model::{
        CrossZone, Failover, FailoverFrom, FailoverThreshold, FailoverTo, IntOrString, LocalZone,
    };

    /// Expected priority of zones z1..z5 (`None` = unreachable).
    type Levels = [Option<u32>; 5];

    fn addr(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], n))
    }

    fn ep(n: u16, zone: &str) -> Endpoint {
        Endpoint::new(addr(n), zone, 1)
    }

    fn rule(from: Option<&[&str]>, ty: FailoverToType, zones: Option<&[&str]>) -> Failover {
        Failover {
            from: from.map(|z| FailoverFrom {
                zones: z.iter().map(|s| s.to_string()).collect(),
            }),
            to: FailoverTo {
                type_: ty,
                zones: zones.map(|z| z.iter().map(|s| s.to_string()).collect()),
            },
        }
    }

    fn rules(failover: Vec<Failover>) -> LocalityAwareness {
        LocalityAwareness {
            cross_zone: Some(CrossZone {
                failover: Some(failover),
                failover_threshold: None,
            }),
            ..Default::default()
        }
    }

    /// One endpoint per zone z1..z5 (ports 1..5), proxy in z1.
    fn five_zones() -> Vec<Endpoint> {
        (1..=5).map(|i| ep(i, &format!("z{i}"))).collect()
    }

    fn levels(plan: &Plan) -> Vec<(String, Option<u32>)> {
        (1..=5)
            .map(|i| {
                let z = format!("z{i}");
                let l = plan.zone_priority(&z);
                (z, l)
            })
            .collect()
    }

    #[test]
    fn priority_assignment() {
        use FailoverToType as T;
        let cases: Vec<(&str, Option<LocalityAwareness>, Levels)> = vec![
            (
                "no strategy: local first, all others at 1",
                None,
                [Some(0), Some(1), Some(1), Some(1), Some(1)],
            ),
            (
                "disabled: same as no strategy",
                Some(LocalityAwareness {
                    disabled: Some(true),
                    ..rules(vec![rule(None, T::Only, Some(&["z2"]))])
                }),
                [Some(0), Some(1), Some(1), Some(1), Some(1)],
            ),
            (
                "locality awareness without rules: local only",
                Some(LocalityAwareness::default()),
                [Some(0), None, None, None, None],
            ),
            (
                "Any",
                Some(rules(vec![rule(None, T::Any, None)])),
                [Some(0), Some(1), Some(1), Some(1), Some(1)],
            ),
            (
                "AnyExcept",
                Some(rules(vec![rule(None, T::AnyExcept, Some(&["z3", "z4"]))])),
                [Some(0), Some(1), None, None, Some(1)],
            ),
            (
                "Only",
                Some(rules(vec![rule(None, T::Only, Some(&["z3"]))])),
                [Some(0), None, Some(1), None, None],
            ),
            (
                "Only listing the local zone keeps it at 0",
                Some(rules(vec![rule(None, T::Only, Some(&["z1", "z2"]))])),
                [Some(0), Some(1), None, None, None],
            ),
            (
                "None stops later rules",
                Some(rules(vec![
                    rule(None, T::Only, Some(&["z2"])),
                    rule(None, T::None, None),
                    rule(None, T::Any, None),
                ])),
                [Some(0), Some(1), None, None, None],
            ),
            (
                "ordered rules: first selection wins, rule i at i+1",
                Some(rules(vec![
                    rule(None, T::Only, Some(&["z4"])),
                    rule(None, T::Only, Some(&["z4", "z2"])),
                    rule(None, T::Any, None),
                ])),
                [Some(0), Some(2), Some(3), Some(1), Some(3)],
            ),
            (
                "rules from other zones are skipped (numbering kept)",
                Some(rules(vec![
                    rule(Some(&["z2"]), T::Only, Some(&["z3"])),
                    rule(Some(&["z1", "z9"]), T::Only, Some(&["z5"])),
                    rule(Some(&["z3"]), T::Any, None),
                ])),
                [Some(0), None, None, None, Some(2)],
            ),
            (
                "a None rule from another zone does not stop ours",
                Some(rules(vec![
                    rule(Some(&["z2"]), T::None, None),
                    rule(None, T::AnyExcept, Some(&["z5"])),
                ])),
                [Some(0), Some(2), Some(2), Some(2), None],
            ),
        ];
        for (name, la, want) in cases {
            let plan = Plan::build("z1", &BTreeMap::new(), five_zones(), la.as_ref());
            let want: Vec<(String, Option<u32>)> =
                (1..=5).map(|i| (format!("z{i}"), want[i - 1])).collect();
            assert_eq!(levels(&plan), want, "{name}");
            let reachable = want.iter().filter(|(_, l)| l.is_some()).count();
            assert_eq!(plan.endpoints().len(), reachable, "{name}");
            assert_eq!(plan.unreachable().len(), 5 - reachable, "{name}");
            for w in plan.priorities().windows(2) {
                assert!(w[0].level() < w[1].level(), "{name}: sorted");
            }
        }
    }

    #[test]
    fn priority_of_and_duplicates() {
        let eps = vec![ep(1, "z1"), ep(2, "z2"), Endpoint::new(addr(1), "z2", 7)];
        let plan = Plan::build("z1", &BTreeMap::new(), eps, None);
        assert_eq!(plan.endpoints().len(), 2, "duplicate address dropped");
        assert_eq!(plan.priority_of(addr(1)), Some(0));
        assert_eq!(plan.priority_of(addr(2)), Some(1));
        assert_eq!(plan.priority_of(addr(3)), None);
        assert!(!plan.is_locality_aware());
        assert!(!plan.is_empty());
        assert!(Plan::build("z1", &BTreeMap::new(), vec![], None).is_empty());
    }

    #[test]
    fn failover_threshold_values() {
        let with = |p: Option<IntOrString>| {
            let la = LocalityAwareness {
                cross_zone: Some(CrossZone {
                    failover: None,
                    failover_threshold: p.map(|percentage| FailoverThreshold { percentage }),
                }),
                ..Default::default()
            };
            Plan::build("z1", &BTreeMap::new(), vec![], Some(&la)).failover_threshold_percent()
        };
        let cases = [
            (None, DEFAULT_FAILOVER_THRESHOLD_PERCENT),
            (Some(IntOrString::Int(70)), 70.0),
            (Some(IntOrString::String("99.9".into())), 99.9),
            (Some(IntOrString::Int(150)), 100.0),
            (Some(IntOrString::Int(-5)), 0.0),
            (
                Some(IntOrString::String("junk".into())),
                DEFAULT_FAILOVER_THRESHOLD_PERCENT,
            ),
        ];
        for (p, want) in cases {
            assert_eq!(with(p.clone()), want, "{p:?}");
        }
        let none = Plan::build("z1", &BTreeMap::new(), vec![], None);
        assert_eq!(
            none.failover_threshold_percent(),
            DEFAULT_FAILOVER_THRESHOLD_PERCENT
        );
    }

    #[test]
    fn affinity_groups_follow_first_matching_tag() {
        let local_tags: BTreeMap<String, String> = [("node", "n1"), ("az", "a1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let eps = vec![
            ep(1, "z1").with_tag("node", "n1").with_tag("az", "a1"),
            ep(2, "z1").with_tag("node", "n2").with_tag("az", "a1"),
            ep(3, "z1").with_tag("node", "n3").with_tag("az", "a2"),
            ep(4, "z1"),
            ep(5, "z2").with_tag("node", "n1"),
        ];
        let tag = |key: &str, weight: Option<u32>| AffinityTag {
            key: key.into(),
            weight,
        };
        let la = |tags: Vec<AffinityTag>| LocalityAwareness {
            local_zone: Some(LocalZone {
                affinity_tags: Some(tags),
            }),
            ..rules(vec![rule(None, FailoverToType::Any, None)])
        };
        // (tags, want groups as (tag, weight, member ports))
        type Want = Vec<(Option<&'static str>, u64, Vec<u16>)>;
        let cases: Vec<(Vec<AffinityTag>, Want)> = vec![
            (
                vec![tag("node", None), tag("az", None)],
                vec![
                    (Some("node"), 90, vec![1]),
                    (Some("az"), 9, vec![2]),
                    (None, 1, vec![3, 4]),
                ],
            ),
            (
                vec![tag("az", Some(5))],
                vec![(Some("az"), 5, vec![1, 2]), (None, 1, vec![3, 4])],
            ),
            (
                vec![tag("rack", None), tag("node", Some(3))],
                vec![(Some("node"), 3, vec![1]), (None, 1, vec![2, 3, 4])],
            ),
        ];
        for (tags, want) in cases {
            let la = la(tags.clone());
            let plan = Plan::build("z1", &local_tags, eps.clone(), Some(&la));
            let got: Want = plan.priorities()[0]
                .groups()
                .iter()
                .map(|g| {
                    (
                        g.tag().map(|t| match t {
                            "node" => "node",
                            "az" => "az",
                            _ => "other",
                        }),
                        g.weight(),
                        g.members()
                            .iter()
                            .map(|&i| plan.endpoints()[i].address.port())
                            .collect(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{tags:?}");
            // Remote priorities never use affinity.
            assert_eq!(plan.priorities()[1].groups().len(), 1);
        }
        // Without locality awareness, affinity tags are ignored.
        let mut off = la(vec![tag("node", None)]);
        off.disabled = Some(true);
        let plan = Plan::build("z1", &local_tags, eps, Some(&off));
        assert_eq!(plan.priorities()[0].groups().len(), 1);
    }

    #[test]
    fn default_affinity_weights() {
        assert_eq!(default_affinity_weight(0, 1), 9);
        assert_eq!(default_affinity_weight(0, 3), 900);
        assert_eq!(default_affinity_weight(2, 3), 9);
        assert_eq!(default_affinity_weight(0, 40), u64::MAX);
    }
}
