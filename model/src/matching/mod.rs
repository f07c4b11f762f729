//! Policy matching: which targetRef policies apply to a proxy, and the
//! effective configuration per outbound destination and per inbound, using
//! Kuma's algorithm restricted to TCP.
//!
//! ```text
//!  policies ──select by top-level targetRef──▶ matched ──sort──▶ ordered (least specific first)
//!                                                                   │
//!     per outbound service: `to` entries selecting it, in order ────┼──▶ merge `default`s ─▶ OutboundPolicies
//!     per inbound port:     `from` entries, in order ───────────────┘──▶ merge / rule list ─▶ InboundPolicies
//! ```
//!
//! Ordering (least to most specific; later wins when merging):
//! 1. the top-level targetRef ([`TargetRef::specificity`]): Mesh < Dataplane <
//!    MeshSubset < MeshService < MeshServiceSubset (Kuma's table), and among
//!    Dataplane refs `labels` < `name` < with `sectionName`;
//! 2. origin: global (or no `kuma.io/origin` label) < `kuma.io/origin: zone`;
//! 3. name, inverted lexicographic: of two otherwise equal policies the one
//!    whose name sorts *first* wins. Kuma's policy docs ("How policies are
//!    combined", kuma-website `app/_src/policies/introduction_213.md`) list
//!    `zzzzz` as least priority and `aaa` as most.
//!
//! Within that order, a policy's own entries are taken by their targetRef
//! kind (Mesh before MeshService), then document order, as in Kuma 2.x where
//! the concatenated `to`/`from` items are merged in policy order.
//!
//! The function is pure: callers pass the mesh's policies (other specs are
//! ignored) and get a value; nothing is cached or looked up.

mod destination;
mod merge;
mod permission;
mod reach;
#[cfg(test)]
mod tests;

pub use destination::Destination;
pub use merge::merge_confs;
pub use permission::{Decider, PermissionMatch, PermissionRule, TrafficPermissionRules};
pub use reach::{PolicyReach, may_affect};

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::dataplane::{DataplaneSpec, Inbound};
use crate::document::{Resource, ResourceMeta, Spec};
use crate::mesh::MeshSpec;
use crate::policy::{
    Action, BackendRef, CircuitBreakerConf, HealthCheckConf, LoadBalancingConf, RetryConf,
    TargetRefPolicy, TimeoutConf,
};
use crate::target_ref::{TargetRef, TargetRefKind};

/// A policy as input to matching: borrowed meta (for origin and name) and spec.
#[derive(Debug, Clone, Copy)]
pub struct PolicyItem<'a> {
    /// Name and labels.
    pub meta: &'a ResourceMeta,
    /// The policy spec; non-policy specs are ignored.
    pub spec: &'a Spec,
}

impl<'a> From<&'a Resource> for PolicyItem<'a> {
    fn from(r: &'a Resource) -> Self {
        Self {
            meta: &r.meta,
            spec: &r.spec,
        }
    }
}

/// The proxy whose policies are computed (zone proxies may be added later).
#[derive(Debug, Clone, Copy)]
pub enum ProxyRef<'a> {
    /// A sidecar.
    Dataplane(DataplaneRef<'a>),
}

/// An owned [`DataplaneRef`]: what a zone CP keeps of a registered sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedDataplane {
    /// The Dataplane resource's name.
    pub name: String,
    /// The Dataplane resource's labels.
    pub labels: BTreeMap<String, String>,
    /// The spec.
    pub spec: DataplaneSpec,
}

impl NamedDataplane {
    /// Borrowed, for matching.
    pub fn view(&self) -> DataplaneRef<'_> {
        DataplaneRef {
            name: &self.name,
            labels: &self.labels,
            spec: &self.spec,
        }
    }
}

/// A sidecar as matching sees it: its resource name and labels (what `Dataplane`
/// targetRefs select) and its spec.
#[derive(Debug, Clone, Copy)]
pub struct DataplaneRef<'a> {
    /// The Dataplane resource's name.
    pub name: &'a str,
    /// The Dataplane resource's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The spec.
    pub spec: &'a DataplaneSpec,
}

/// The effective policies of one proxy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyPolicies {
    /// Per outbound destination.
    pub outbounds: BTreeMap<Destination, OutboundPolicies>,
    /// Per inbound, keyed by inbound port.
    pub inbounds: BTreeMap<u32, InboundPolicies>,
}

/// Effective configuration of traffic to one destination service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutboundPolicies {
    /// MeshTCPRoute backends; `None` means the default: the service itself.
    pub route: Option<Vec<BackendRef>>,
    /// Merged MeshLoadBalancingStrategy conf.
    pub load_balancing: Option<LoadBalancingConf>,
    /// Merged MeshTimeout conf.
    pub timeout: Option<TimeoutConf>,
    /// Merged MeshHealthCheck conf.
    pub health_check: Option<HealthCheckConf>,
    /// Merged MeshCircuitBreaker conf.
    pub circuit_breaker: Option<CircuitBreakerConf>,
    /// Merged MeshRetry conf.
    pub retry: Option<RetryConf>,
}

impl ProxyPolicies {
    /// The policies of the first outbound to `kuma.io/service` `service`.
    pub fn service_outbound(&self, service: &str) -> Option<&OutboundPolicies> {
        self.outbounds.iter().find_map(|(d, p)| match d {
            Destination::Service { service: s, .. } if s == service => Some(p),
            _ => None,
        })
    }
}

/// Effective configuration of one inbound.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InboundPolicies {
    /// The inbound's service.
    pub service: String,
    /// Who may connect.
    pub traffic_permissions: TrafficPermissionRules,
    /// Merged MeshTimeout `from` conf (entries targeting `Mesh`: an L4
    /// listener cannot tell clients apart before the connection is accepted).
    pub timeout: Option<TimeoutConf>,
    /// Merged MeshCircuitBreaker `from` conf (same restriction).
    pub circuit_breaker: Option<CircuitBreakerConf>,
}

/// Computes the effective policies of `proxy` in a mesh with settings `mesh`.
///
/// MeshTCPRoute applies whatever the destination's `kuma.io/protocol` tag
/// says. Kuma (seed 004, "Route policies with different types targeting the
/// same destination") lets a MeshHTTPRoute win for http/http2/grpc
/// destinations; Meridian has no HTTP route type, so the TCP route always wins.
pub fn match_policies(
    proxy: ProxyRef<'_>,
    mesh: &MeshSpec,
    policies: &[PolicyItem<'_>],
) -> ProxyPolicies {
    let ProxyRef::Dataplane(dp) = proxy;
    let destinations: Vec<Destination> = dp
        .spec
        .outbounds()
        .iter()
        .filter(|o| o.backend_ref.is_none())
        .map(Destination::of_tags)
        .collect();
    match_policies_to(proxy, mesh, policies, &destinations)
}

/// [`match_policies`] with the proxy's outbound destinations resolved by the
/// caller (a `backendRef` outbound needs the zone's MeshServices).
pub fn match_policies_to(
    proxy: ProxyRef<'_>,
    mesh: &MeshSpec,
    policies: &[PolicyItem<'_>],
    destinations: &[Destination],
) -> ProxyPolicies {
    let ProxyRef::Dataplane(proxy) = proxy;
    let dp = proxy.spec;
    let on_proxy = |t: &TargetRef| selects_dataplane(t, proxy);

    let routes = ordered(
        policies,
        |s| match s {
            Spec::MeshTcpRoute(p) => Some(p),
            _ => None,
        },
        on_proxy,
    );
    let lbs = ordered(
        policies,
        |s| match s {
            Spec::MeshLoadBalancingStrategy(p) => Some(p),
            _ => None,
        },
        on_proxy,
    );
    let timeouts = ordered(
        policies,
        |s| match s {
            Spec::MeshTimeout(p) => Some(p),
            _ => None,
        },
        on_proxy,
    );
    let hcs = ordered(
        policies,
        |s| match s {
            Spec::MeshHealthCheck(p) => Some(p),
            _ => None,
        },
        on_proxy,
    );
    let cbs = ordered(
        policies,
        |s| match s {
            Spec::MeshCircuitBreaker(p) => Some(p),
            _ => None,
        },
        on_proxy,
    );
    let retries = ordered(
        policies,
        |s| match s {
            Spec::MeshRetry(p) => Some(p),
            _ => None,
        },
        on_proxy,
    );

    let mut result = ProxyPolicies::default();
    for dest in destinations {
        let route = merge_to(&routes, dest).map(|c| c.backend_refs);
        let outbound = OutboundPolicies {
            route,
            load_balancing: merge_to(&lbs, dest),
            timeout: merge_to(&timeouts, dest),
            health_check: merge_to(&hcs, dest),
            circuit_breaker: merge_to(&cbs, dest),
            retry: merge_to(&retries, dest),
        };
        result.outbounds.insert(dest.clone(), outbound);
    }

    for inbound in dp.configured_inbounds() {
        let on_inbound = |t: &TargetRef| selects_inbound(t, proxy, inbound);
        result.inbounds.insert(
            inbound.port,
            inbound_policies(inbound, mesh, policies, on_inbound),
        );
    }
    result
}

fn inbound_policies(
    inbound: &Inbound,
    mesh: &MeshSpec,
    policies: &[PolicyItem<'_>],
    on_inbound: impl Fn(&TargetRef) -> bool + Copy,
) -> InboundPolicies {
    let mtps = ordered_named(
        policies,
        |s| match s {
            Spec::MeshTrafficPermission(p) => Some(p),
            _ => None,
        },
        on_inbound,
    );
    let timeouts = ordered(
        policies,
        |s| match s {
            Spec::MeshTimeout(p) => Some(p),
            _ => None,
        },
        on_inbound,
    );
    let cbs = ordered(
        policies,
        |s| match s {
            Spec::MeshCircuitBreaker(p) => Some(p),
            _ => None,
        },
        on_inbound,
    );

    let mut rules = Vec::new();
    let mut denies = Vec::new();
    let mut allows = Vec::new();
    for (name, p) in &mtps {
        for conf in p.rule_confs() {
            for (action, list) in conf.lists() {
                if list.is_empty() {
                    continue;
                }
                let m = PermissionMatch {
                    action,
                    matches: list.to_vec(),
                    policy: (*name).to_owned(),
                };
                match action {
                    Action::Deny => denies.push(m),
                    Action::AllowWithShadowDeny | Action::Allow => allows.push(m),
                }
            }
        }
        for (from, conf) in entries_by_kind(p.entries_from()) {
            rules.push(PermissionRule {
                from: from.clone(),
                action: conf.action,
                policy: (*name).to_owned(),
            });
        }
    }
    // Merge order is least specific first; lookups want the winner first.
    rules.reverse();

    InboundPolicies {
        service: inbound.service().to_owned(),
        traffic_permissions: TrafficPermissionRules {
            rules,
            mtls_enabled: mesh.mtls_enabled(),
            // Kuma emits every deny before any allow, whatever the policies'
            // order; a shadow deny is checked before a plain allow of the same
            // rule so that it is logged.
            matches: denies.into_iter().chain(allows).collect(),
        },
        timeout: merge_from_mesh(&timeouts),
        circuit_breaker: merge_from_mesh(&cbs),
    }
}

/// Whether a top-level targetRef selects a dataplane. MeshSubset matches the
/// union of the inbounds' tags; the service kinds need one inbound to match;
/// `Dataplane` matches the resource's name or labels (and, with `sectionName`,
/// needs that inbound).
pub(crate) fn selects_dataplane(t: &TargetRef, dp: DataplaneRef<'_>) -> bool {
    match t.kind {
        TargetRefKind::Mesh => t.includes_sidecars(),
        TargetRefKind::MeshSubset => {
            t.includes_sidecars() && t.tags.iter().flatten().all(|(k, v)| dp.spec.has_tag(k, v))
        }
        TargetRefKind::MeshService | TargetRefKind::MeshServiceSubset => dp
            .spec
            .configured_inbounds()
            .any(|i| t.selects(i.service(), &i.tags)),
        TargetRefKind::Dataplane => {
            t.selects_dataplane_named(dp.name, dp.labels)
                && (t.section_name.is_none()
                    || dp
                        .spec
                        .configured_inbounds()
                        .any(|i| t.section_selects(i.name.as_deref(), i.port)))
        }
        _ => false,
    }
}

/// Whether a top-level targetRef selects `inbound` of `dp` (inbound policies:
/// MeshTrafficPermission, MeshTimeout and MeshCircuitBreaker `from`).
pub(crate) fn selects_inbound(t: &TargetRef, dp: DataplaneRef<'_>, inbound: &Inbound) -> bool {
    match t.kind {
        TargetRefKind::Dataplane => {
            t.selects_dataplane_named(dp.name, dp.labels)
                && t.section_selects(inbound.name.as_deref(), inbound.port)
        }
        _ => t.selects(inbound.service(), &inbound.tags),
    }
}

/// The policies of one type selected by `selects`, least specific first, with their names.
fn ordered_named<'a, T: TargetRefPolicy + 'a>(
    policies: &[PolicyItem<'a>],
    pick: impl Fn(&'a Spec) -> Option<&'a T>,
    selects: impl Fn(&TargetRef) -> bool,
) -> Vec<(&'a str, &'a T)> {
    let mesh = TargetRef::mesh();
    let mut matched: Vec<_> = policies
        .iter()
        .filter_map(|item| {
            let p = pick(item.spec)?;
            let top = p.target_ref().unwrap_or(&mesh);
            selects(top).then(|| {
                let key = (
                    top.specificity(),
                    item.meta.is_zone_origin(),
                    Reverse(item.meta.name.as_str()),
                );
                (key, item.meta.name.as_str(), p)
            })
        })
        .collect();
    matched.sort_by(|a, b| a.0.cmp(&b.0));
    matched.into_iter().map(|(_, name, p)| (name, p)).collect()
}

fn ordered<'a, T: TargetRefPolicy + 'a>(
    policies: &[PolicyItem<'a>],
    pick: impl Fn(&'a Spec) -> Option<&'a T>,
    selects: impl Fn(&TargetRef) -> bool,
) -> Vec<&'a T> {
    ordered_named(policies, pick, selects)
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// A policy's entries, least specific targetRef kind first (stable, so
/// document order breaks ties).
fn entries_by_kind<'a, C>(mut entries: Vec<(&'a TargetRef, &'a C)>) -> Vec<(&'a TargetRef, &'a C)> {
    entries.sort_by_key(|(t, _)| t.specificity());
    entries
}

/// Merges the `to` confs of `ordered` policies that select the destination.
fn merge_to<T: TargetRefPolicy>(ordered: &[&T], dest: &Destination) -> Option<T::Conf> {
    let confs: Vec<&T::Conf> = ordered
        .iter()
        .flat_map(|p| entries_by_kind(p.entries_to()))
        .filter(|(t, _)| dest.selected_by(t))
        .map(|(_, c)| c)
        .collect();
    merge_confs(&confs)
}

/// Merges the confs that apply to every client: `from` entries targeting
/// `Mesh` and inbound `rules` without `matches` (a policy has one or the
/// other), in policy order.
fn merge_from_mesh<T: TargetRefPolicy>(ordered: &[&T]) -> Option<T::Conf> {
    let confs: Vec<&T::Conf> = ordered
        .iter()
        .flat_map(|p| {
            let from = entries_by_kind(p.entries_from())
                .into_iter()
                .filter(|(t, _)| t.kind == TargetRefKind::Mesh)
                .map(|(_, c)| c);
            let rules = p
                .entries_rules()
                .into_iter()
                .filter(|(m, _)| m.is_empty())
                .map(|(_, c)| c);
            from.chain(rules).collect::<Vec<_>>()
        })
        .collect();
    merge_confs(&confs)
}
