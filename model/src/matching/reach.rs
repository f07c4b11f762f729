//! [`PolicyReach`]: what a policy can select, in the terms an index uses.
//!
//! Incremental config computation (the zone CP's reconciler) must know, for a
//! policy that changed, which proxies its result can differ for — and, for a
//! proxy, which of the mesh's policies can select it — without running the
//! whole matcher. [`PolicyReach`] reduces a policy to:
//!
//! - the services its top-level targetRef names (`MeshService`,
//!   `MeshServiceSubset`), or none for `Mesh`/`MeshSubset`/`Dataplane` (every
//!   proxy is a candidate; [`may_affect`] then checks the name and labels);
//! - the destination services its `to` entries name, or `None` when an entry
//!   targets every destination (`Mesh`) or the policy has `from` entries or `rules`
//!   (inbounds are reached whatever the outbounds).
//!
//! Invariant: both are *over*-approximations. [`may_affect`] is exact with
//! respect to [`crate::match_policies`]: when it says `false`, adding or
//! removing the policy cannot change that proxy's [`crate::ProxyPolicies`].

use std::collections::BTreeSet;

use crate::document::Spec;
use crate::policy::TargetRefPolicy;
use crate::target_ref::{TargetRef, TargetRefKind};

use super::{DataplaneRef, selects_dataplane, selects_inbound};

/// What a policy's targetRefs can select (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyReach {
    /// Services named by the top-level targetRef; `None`: any proxy.
    pub top_services: Option<BTreeSet<String>>,
    /// Destination services named by `to` entries; `None`: any outbound, or
    /// the policy reaches inbounds.
    pub to_services: Option<BTreeSet<String>>,
}

fn named(t: &TargetRef) -> Option<&str> {
    match t.kind {
        TargetRefKind::MeshService | TargetRefKind::MeshServiceSubset => t.name.as_deref(),
        _ => None,
    }
}

fn reach_of<T: TargetRefPolicy>(p: &T) -> PolicyReach {
    let top_services = p
        .target_ref()
        .and_then(named)
        .map(|s| BTreeSet::from([s.to_owned()]));
    let to_services = if !p.reaches_inbounds() {
        p.entries_to()
            .iter()
            .map(|(t, _)| named(t).map(str::to_owned))
            .collect::<Option<BTreeSet<_>>>()
    } else {
        None
    };
    PolicyReach {
        top_services,
        to_services,
    }
}

fn affects<T: TargetRefPolicy>(p: &T, proxy: DataplaneRef<'_>) -> bool {
    let mesh = TargetRef::mesh();
    let top = p.target_ref().unwrap_or(&mesh);
    let dp = proxy.spec;
    let on_inbound = || {
        dp.configured_inbounds()
            .any(|i| selects_inbound(top, proxy, i))
    };
    let from = p.reaches_inbounds() && on_inbound();
    from || (selects_dataplane(top, proxy)
        && p.entries_to().iter().any(|(t, _)| {
            dp.outbounds().iter().any(|o| match &o.backend_ref {
                None => t.selects(o.service(), &o.tags),
                // A resource destination is resolved by the zone CP: any
                // ref that can select one may (an over-approximation).
                Some(_) => matches!(
                    t.kind,
                    TargetRefKind::Mesh
                        | TargetRefKind::MeshService
                        | TargetRefKind::MeshMultiZoneService
                ),
            })
        }))
}

/// Dispatches `$f` over the policy variants of a [`Spec`]; `None` for the rest.
macro_rules! on_policy {
    ($spec:expr, $p:ident => $e:expr) => {
        match $spec {
            Spec::MeshTrafficPermission($p) => Some($e),
            Spec::MeshTcpRoute($p) => Some($e),
            Spec::MeshLoadBalancingStrategy($p) => Some($e),
            Spec::MeshTimeout($p) => Some($e),
            Spec::MeshHealthCheck($p) => Some($e),
            Spec::MeshCircuitBreaker($p) => Some($e),
            Spec::MeshRetry($p) => Some($e),
            _ => None,
        }
    };
}

impl PolicyReach {
    /// The reach of a policy spec; `None` for non-policy specs.
    pub fn of(spec: &Spec) -> Option<PolicyReach> {
        on_policy!(spec, p => reach_of(p))
    }
}

/// Whether `spec` (a policy) can change the effective policies of sidecar
/// `dp`: its top-level targetRef selects the proxy (or one of its inbounds)
/// and one of its entries reaches an outbound or an inbound of it.
pub fn may_affect(spec: &Spec, dp: DataplaneRef<'_>) -> bool {
    on_policy!(spec, p => affects(p, dp)).unwrap_or(false)
}
