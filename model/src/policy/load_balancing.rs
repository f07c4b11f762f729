//! `MeshLoadBalancingStrategy`: how a proxy spreads connections over a
//! destination's endpoints — the balancing algorithm, local-zone affinity and
//! the ordered cross-zone failover rules (the locality model: local zone
//! first, then failover rule *i* at priority *i + 1*) — and Kuma's hash
//! policies (`hashPolicies`, at the conf root or under `ringHash`/`maglev`).
//!
//! Everything follows Kuma v2.14's schema and validator, so every document
//! Kuma accepts is accepted. Only `localityAwareness` acts here: Meridian's
//! balancer picks endpoints by weight at random, so the algorithm settings and
//! hash policies are kept and synced with no effect (hash policies and
//! `activeRequestBias` are named in [`crate::warnings()`]).

use crate::duration::Duration;
use crate::error::{Validate, Violations, index, join};
use crate::kind::ResourceKind;
use crate::name::{validate_name, validate_tag_key};
use crate::policy::{
    IntOrString, PolicyEntry, TargetRefPolicy, entries, validate_entries, validate_positive,
};
use crate::target_ref::{TargetRef, TargetRefKind};

/// The body (`spec`) of a `MeshLoadBalancingStrategy`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeshLoadBalancingStrategySpec {
    /// The proxies configured; absent means `Mesh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    /// Configuration per destination; at least one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<LoadBalancingTo>>,
}

/// Configuration for a group of destinations.
pub type LoadBalancingTo = PolicyEntry<LoadBalancingConf>;

#[cfg(feature = "openapi")]
impl super::EntrySchema for LoadBalancingConf {
    const ENTRY: super::EntryDocs = super::EntryDocs {
        name: "LoadBalancingTo",
        about: "Configuration for a group of destinations.",
        target_ref: "The destinations (`Mesh` or `MeshService`).",
        default: "The configuration.",
    };
}

/// The mergeable load-balancing configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoadBalancingConf {
    /// Zone affinity and failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_awareness: Option<LocalityAwareness>,
    /// The balancing algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// What to hash for consistent hashing, in order (not together with
    /// `loadBalancer.ringHash.hashPolicies` or `loadBalancer.maglev.hashPolicies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_policies: Option<Vec<HashPolicy>>,
}

/// Zone affinity and failover.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LocalityAwareness {
    /// Turn locality awareness off (spread over all zones by weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Preferences inside the local zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_zone: Option<LocalZone>,
    /// Where to go when the local zone cannot serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_zone: Option<CrossZone>,
}

/// Preferences inside the local zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LocalZone {
    /// Tags whose equal values are preferred, most important first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_tags: Option<Vec<AffinityTag>>,
}

/// A tag to prefer endpoints by.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AffinityTag {
    /// The tag key.
    pub key: String,
    /// Relative weight of the preference (greater than 0; either every tag
    /// of the list has one or none has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub weight: Option<u32>,
}

/// Cross-zone failover.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CrossZone {
    /// Ordered failover rules; rule *i* is tried at priority *i + 1*.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Vec<Failover>>,
    /// Spill over when fewer than this percentage (greater than 0) of local
    /// endpoints are healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_threshold: Option<FailoverThreshold>,
}

/// One failover rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Failover {
    /// The zones the rule applies to (absent = every zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<FailoverFrom>,
    /// The zones to fail over to.
    pub to: FailoverTo,
}

/// The zones a failover rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailoverFrom {
    /// Zone names.
    pub zones: Vec<String>,
}

/// The zones to fail over to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailoverTo {
    /// How `zones` is read.
    #[serde(rename = "type")]
    pub type_: FailoverToType,
    /// Zone names (for `Only` and `AnyExcept`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<Vec<String>>,
}

/// How a failover rule's target zones are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FailoverToType {
    /// Any other zone.
    Any,
    /// Any other zone except those listed.
    AnyExcept,
    /// Only the listed zones.
    Only,
    /// No failover.
    None,
}

/// The spill-over threshold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailoverThreshold {
    /// Healthy percentage (greater than 0, at most 100), integer or string.
    pub percentage: IntOrString,
}

/// The balancing algorithm and its settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoadBalancer {
    /// The algorithm.
    #[serde(rename = "type")]
    pub type_: LoadBalancerType,
    /// Settings for `LeastRequest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub least_request: Option<LeastRequest>,
    /// Settings for `RingHash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    /// Settings for `Maglev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev: Option<Maglev>,
}

/// Balancing algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LoadBalancerType {
    /// Each endpoint in turn.
    RoundRobin,
    /// The endpoint with the fewest active connections among a few random choices.
    LeastRequest,
    /// A random endpoint.
    Random,
    /// Consistent hashing on a ring.
    RingHash,
    /// Consistent hashing with Maglev tables.
    Maglev,
}

/// `LeastRequest` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeastRequest {
    /// How many random endpoints to compare (≥ 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice_count: Option<u32>,
    /// How strongly active requests lower an endpoint's weight: a number
    /// ≥ 0, integer or string (`"1.3"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_request_bias: Option<IntOrString>,
}

/// `RingHash` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RingHash {
    /// `XXHash` or `MurmurHash2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_function: Option<HashFunction>,
    /// Minimum ring size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ring_size: Option<u32>,
    /// Maximum ring size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ring_size: Option<u32>,
    /// What to hash, in order (not together with the conf's `hashPolicies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_policies: Option<Vec<HashPolicy>>,
}

/// Hash functions for `RingHash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum HashFunction {
    /// xxHash.
    XXHash,
    /// MurmurHash2.
    MurmurHash2,
}

/// `Maglev` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Maglev {
    /// Table size (a prime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u32>,
    /// What to hash, in order (not together with the conf's `hashPolicies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_policies: Option<Vec<HashPolicy>>,
}

/// One property of a request or connection to hash on; the part named by
/// `type` must be set (the others are kept and unused, as in Kuma).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HashPolicy {
    /// What is hashed.
    #[serde(rename = "type")]
    pub type_: HashPolicyType,
    /// Stop at this policy when it produced a hash (skip the rest of the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<bool>,
    /// For `Header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HashHeader>,
    /// For `Cookie`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<HashCookie>,
    /// For `Connection` and `SourceIP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<HashConnection>,
    /// For `QueryParameter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_parameter: Option<HashQueryParameter>,
    /// For `FilterState`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_state: Option<HashFilterState>,
}

/// What a hash policy hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum HashPolicyType {
    /// A request header (`header`).
    Header,
    /// A cookie (`cookie`).
    Cookie,
    /// The connection (`connection`).
    Connection,
    /// The client's source IP (Kuma requires `connection` for it too).
    #[serde(rename = "SourceIP")]
    #[cfg_attr(feature = "openapi", schema(rename = "SourceIP"))]
    SourceIp,
    /// A URL query parameter (`queryParameter`).
    QueryParameter,
    /// An object of Envoy's per-request filter state (`filterState`).
    FilterState,
}

impl HashPolicyType {
    /// The name as written in documents.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Header => "Header",
            Self::Cookie => "Cookie",
            Self::Connection => "Connection",
            Self::SourceIp => "SourceIP",
            Self::QueryParameter => "QueryParameter",
            Self::FilterState => "FilterState",
        }
    }

    /// The part of a hash policy this type reads (Kuma's pairing).
    pub const fn part(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Cookie => "cookie",
            Self::Connection | Self::SourceIp => "connection",
            Self::QueryParameter => "queryParameter",
            Self::FilterState => "filterState",
        }
    }
}

/// The header a hash policy hashes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HashHeader {
    /// The request header's name (not empty).
    pub name: String,
}

/// The cookie a hash policy hashes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HashCookie {
    /// The cookie's name (not empty).
    pub name: String,
    /// When set, a cookie with this lifetime is generated if the request has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// The generated cookie's path (absolute: starts with `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// How a hash policy hashes the connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HashConnection {
    /// Hash on the source IP address.
    #[serde(rename = "sourceIP", default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<bool>,
}

/// The query parameter a hash policy hashes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HashQueryParameter {
    /// The parameter's name (not empty; case-sensitive).
    pub name: String,
}

/// The filter-state object a hash policy hashes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HashFilterState {
    /// The object's key (not empty).
    pub key: String,
}

impl TargetRefPolicy for MeshLoadBalancingStrategySpec {
    type Conf = LoadBalancingConf;

    fn target_ref(&self) -> Option<&TargetRef> {
        self.target_ref.as_ref()
    }

    fn entries_to(&self) -> Vec<(&TargetRef, &Self::Conf)> {
        entries(self.to.as_deref())
    }
}

impl Validate for MeshLoadBalancingStrategySpec {
    fn validate(&self, path: &str, v: &mut Violations) {
        let top_kind = self.target_ref.as_ref().map(|t| t.kind);
        validate_entries(
            ResourceKind::MeshLoadBalancingStrategy,
            path,
            self.target_ref.as_ref(),
            (self.to.as_deref(), None),
            None,
            v,
            |p, e, v| {
                // A gateway's balancing algorithm is set for all its traffic
                // at once: Kuma takes `loadBalancer` there only from a `Mesh`
                // entry.
                if top_kind == Some(TargetRefKind::MeshGateway)
                    && e.default.load_balancer.is_some()
                    && e.target_ref.kind != TargetRefKind::Mesh
                {
                    v.add(
                        join(&join(p, "targetRef"), "kind"),
                        format!(
                            "only Mesh is allowed if loadBalancer is set under a top-level MeshGateway (got {})",
                            e.target_ref.kind
                        ),
                    );
                }
                let dp = join(p, "default");
                if e.target_ref.kind == TargetRefKind::MeshHttpRoute {
                    e.default.validate_for_route(&dp, v);
                } else {
                    e.default.validate(&dp, v);
                }
            },
        );
    }
}

/// Kuma's reason for the parts a `MeshHTTPRoute` entry may not have.
const ROUTE_ONLY_HASHING: &str =
    "field is not allowed when targetRef.kind is MeshHTTPRoute, only hashPolicies is supported";

impl LoadBalancingConf {
    /// The conf of an entry whose targetRef is a `MeshHTTPRoute`: Kuma lets it
    /// set only `hashPolicies` (the route's hashing; the cluster-wide
    /// algorithm and locality belong to the destination's own entry).
    fn validate_for_route(&self, path: &str, v: &mut Violations) {
        if self.load_balancer.is_some() {
            v.add(join(path, "loadBalancer"), ROUTE_ONLY_HASHING);
        }
        if self.locality_awareness.is_some() {
            v.add(join(path, "localityAwareness"), ROUTE_ONLY_HASHING);
        }
        validate_hash_policies(
            &join(path, "hashPolicies"),
            self.hash_policies.as_deref(),
            v,
        );
    }
}

impl Validate for LoadBalancingConf {
    fn validate(&self, path: &str, v: &mut Violations) {
        if let Some(la) = &self.locality_awareness {
            let lp = join(path, "localityAwareness");
            let tags_path = join(&join(&lp, "localZone"), "affinityTags");
            let tags = la
                .local_zone
                .as_ref()
                .and_then(|z| z.affinity_tags.as_deref())
                .unwrap_or_default();
            for (i, t) in tags.iter().enumerate() {
                let tp = index(&tags_path, i);
                if let Err(e) = validate_tag_key(&t.key) {
                    v.add(join(&tp, "key"), e);
                }
                validate_positive(&join(&tp, "weight"), t.weight, v);
            }
            // Weights rank the tags against each other: all or none.
            let weighted = tags.iter().filter(|t| t.weight.is_some()).count();
            if weighted > 0 && weighted != tags.len() {
                v.add(tags_path, "all or none affinity tags should have weight");
            }
            if let Some(cz) = &la.cross_zone {
                let cp = join(&lp, "crossZone");
                let fp = join(&cp, "failover");
                for (i, f) in cz.failover.iter().flatten().enumerate() {
                    validate_failover(&index(&fp, i), f, v);
                }
                if let Some(t) = &cz.failover_threshold {
                    t.percentage.validate_percentage(
                        &join(&join(&cp, "failoverThreshold"), "percentage"),
                        false,
                        v,
                    );
                }
            }
        }
        validate_hash_policies(
            &join(path, "hashPolicies"),
            self.hash_policies.as_deref(),
            v,
        );
        if let Some(lb) = &self.load_balancer {
            let lp = join(path, "loadBalancer");
            validate_load_balancer(&lp, lb, v);
            // One list decides what is hashed: Kuma refuses a second one
            // under the algorithm when the root has one (even an empty list).
            if self.hash_policies.is_some() {
                let nested = [
                    ("ringHash", lb.ring_hash.as_ref().map(|r| &r.hash_policies)),
                    ("maglev", lb.maglev.as_ref().map(|m| &m.hash_policies)),
                ];
                for (field, list) in nested {
                    if list.is_some_and(Option::is_some) {
                        v.add(
                            join(&join(&lp, field), "hashPolicies"),
                            "hashPolicies already specified in the root level (default.hashPolicies); set them in one place",
                        );
                    }
                }
            }
        }
    }
}

/// Kuma's rules for a `hashPolicies` list: the part the type reads must be
/// set, a cookie's path must be absolute, and (Kuma's schema) names and keys
/// must not be empty.
fn validate_hash_policies(path: &str, list: Option<&[HashPolicy]>, v: &mut Violations) {
    for (i, h) in list.into_iter().flatten().enumerate() {
        let hp = index(path, i);
        let set = match h.type_ {
            HashPolicyType::Header => h.header.is_some(),
            HashPolicyType::Cookie => h.cookie.is_some(),
            HashPolicyType::Connection | HashPolicyType::SourceIp => h.connection.is_some(),
            HashPolicyType::QueryParameter => h.query_parameter.is_some(),
            HashPolicyType::FilterState => h.filter_state.is_some(),
        };
        if !set {
            v.add(
                join(&hp, h.type_.part()),
                format!("must be defined for type {}", h.type_.as_str()),
            );
        }
        // Kuma checks the path only of the cookie its type reads.
        if h.type_ == HashPolicyType::Cookie
            && let Some(p) = h.cookie.as_ref().and_then(|c| c.path.as_deref())
            && !p.starts_with('/')
        {
            v.add(
                join(&join(&hp, "cookie"), "path"),
                format!("must be an absolute path (start with '/'), got {p:?}"),
            );
        }
        let names = [
            ("header", "name", h.header.as_ref().map(|x| &x.name)),
            ("cookie", "name", h.cookie.as_ref().map(|x| &x.name)),
            (
                "queryParameter",
                "name",
                h.query_parameter.as_ref().map(|x| &x.name),
            ),
            (
                "filterState",
                "key",
                h.filter_state.as_ref().map(|x| &x.key),
            ),
        ];
        for (part, field, value) in names {
            if value.is_some_and(|n| n.is_empty()) {
                v.add(join(&join(&hp, part), field), "must not be empty");
            }
        }
    }
}

fn validate_zones(path: &str, zones: &[String], v: &mut Violations) {
    for (i, z) in zones.iter().enumerate() {
        if let Err(e) = validate_name(z) {
            v.add(index(path, i), format!("invalid zone name: {e}"));
        }
    }
}

fn validate_failover(path: &str, f: &Failover, v: &mut Violations) {
    if let Some(from) = &f.from {
        let zp = join(&join(path, "from"), "zones");
        if from.zones.is_empty() {
            v.add(zp.clone(), "must have at least one zone");
        }
        validate_zones(&zp, &from.zones, v);
    }
    let zp = join(&join(path, "to"), "zones");
    let zones = f.to.zones.as_deref();
    match f.to.type_ {
        FailoverToType::Only | FailoverToType::AnyExcept => match zones {
            Some(z) if !z.is_empty() => validate_zones(&zp, z, v),
            _ => v.add(
                zp,
                format!("must list at least one zone for type {:?}", f.to.type_),
            ),
        },
        FailoverToType::Any | FailoverToType::None => {
            if zones.is_some() {
                v.add(zp, format!("must not be set for type {:?}", f.to.type_));
            }
        }
    }
}

fn validate_load_balancer(path: &str, lb: &LoadBalancer, v: &mut Violations) {
    let sections = [
        (
            "leastRequest",
            lb.least_request.is_some(),
            LoadBalancerType::LeastRequest,
        ),
        (
            "ringHash",
            lb.ring_hash.is_some(),
            LoadBalancerType::RingHash,
        ),
        ("maglev", lb.maglev.is_some(), LoadBalancerType::Maglev),
    ];
    for (field, set, ty) in sections {
        if set && lb.type_ != ty {
            v.add(
                join(path, field),
                format!("may only be set when type is {ty:?}"),
            );
        }
    }
    if let Some(c) = lb.least_request.as_ref().and_then(|l| l.choice_count)
        && c < 2
    {
        v.add(
            join(&join(path, "leastRequest"), "choiceCount"),
            "must be at least 2",
        );
    }
    if let Some(bias) = lb
        .least_request
        .as_ref()
        .and_then(|l| l.active_request_bias.as_ref())
    {
        let bp = join(&join(path, "leastRequest"), "activeRequestBias");
        let given = match bias {
            IntOrString::Int(i) => i.to_string(),
            IntOrString::String(s) => format!("{s:?}"),
        };
        match bias.as_f64() {
            None => v.add(bp, format!("string must be a valid number, got {given}")),
            Some(b) if b < 0.0 => v.add(
                bp,
                format!("must be greater than or equal to 0, got {given}"),
            ),
            Some(_) => {}
        }
    }
    // Checked whatever the type: Kuma checks only the type's own section, but
    // Meridian refuses a section of another type above anyway.
    for (field, list) in [
        (
            "ringHash",
            lb.ring_hash
                .as_ref()
                .and_then(|r| r.hash_policies.as_deref()),
        ),
        (
            "maglev",
            lb.maglev.as_ref().and_then(|m| m.hash_policies.as_deref()),
        ),
    ] {
        validate_hash_policies(&join(&join(path, field), "hashPolicies"), list, v);
    }
    if let Some(rh) = &lb.ring_hash
        && let (Some(min), Some(max)) = (rh.min_ring_size, rh.max_ring_size)
        && min > max
    {
        v.add(
            join(&join(path, "ringHash"), "minRingSize"),
            "must not exceed maxRingSize",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::{ResourceKind, Spec};
    use serde_json::json;

    fn errors(default: serde_json::Value) -> Vec<String> {
        let value = json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": default}]});
        match Spec::from_value(ResourceKind::MeshLoadBalancingStrategy, value.clone()) {
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

    fn failover(to: serde_json::Value) -> serde_json::Value {
        json!({"localityAwareness": {"crossZone": {"failover": [{"from": {"zones": ["zone-1"]}, "to": to}]}}})
    }

    #[test]
    fn failover_zone_rules() {
        let p = "spec.to[0].default.localityAwareness.crossZone";
        let cases: Vec<(serde_json::Value, Vec<String>)> = vec![
            (failover(json!({"type": "Any"})), vec![]),
            (failover(json!({"type": "None"})), vec![]),
            (
                failover(json!({"type": "Only", "zones": ["zone-2", "zone-3"]})),
                vec![],
            ),
            (
                failover(json!({"type": "AnyExcept", "zones": ["zone-2"]})),
                vec![],
            ),
            (
                failover(json!({"type": "Only"})),
                vec![format!(
                    "{p}.failover[0].to.zones: must list at least one zone for type Only"
                )],
            ),
            (
                failover(json!({"type": "AnyExcept", "zones": []})),
                vec![format!(
                    "{p}.failover[0].to.zones: must list at least one zone for type AnyExcept"
                )],
            ),
            (
                failover(json!({"type": "Any", "zones": ["zone-2"]})),
                vec![format!(
                    "{p}.failover[0].to.zones: must not be set for type Any"
                )],
            ),
            (
                failover(json!({"type": "None", "zones": []})),
                vec![format!(
                    "{p}.failover[0].to.zones: must not be set for type None"
                )],
            ),
            (
                failover(json!({"type": "Only", "zones": ["Zone_2"]})),
                vec![format!(
                    "{p}.failover[0].to.zones[0]: invalid zone name: invalid first or last character: a name must consist of lower-case alphanumeric characters, '-' or '.', and start and end with an alphanumeric character"
                )],
            ),
            (
                failover(json!({"type": "Somewhere"})),
                vec![format!(
                    "{p}.failover[0].to.type: unknown variant `Somewhere`, expected one of `Any`, `AnyExcept`, `Only`, `None`"
                )],
            ),
            (
                json!({"localityAwareness": {"crossZone": {"failover": [{"from": {"zones": []}, "to": {"type": "Any"}}], "failoverThreshold": {"percentage": "150"}}}}),
                vec![
                    format!("{p}.failover[0].from.zones: must have at least one zone"),
                    format!(
                        "{p}.failoverThreshold.percentage: must be in inclusive range [0.0, 100.0]"
                    ),
                ],
            ),
            (
                json!({"localityAwareness": {"crossZone": {"failoverThreshold": {"percentage": 70}}}}),
                vec![],
            ),
            (
                json!({"localityAwareness": {"crossZone": {"failoverThreshold": {"percentage": "0.1"}}}}),
                vec![],
            ),
            (
                json!({"localityAwareness": {"crossZone": {"failoverThreshold": {"percentage": 0}}}}),
                vec![format!(
                    "{p}.failoverThreshold.percentage: must be greater than 0"
                )],
            ),
            (
                json!({"localityAwareness": {"crossZone": {"failoverThreshold": {"percentage": "many"}}}}),
                vec![format!(
                    "{p}.failoverThreshold.percentage: string must be a valid number"
                )],
            ),
            (
                json!({"localityAwareness": {"disabled": true, "localZone": {"affinityTags": [{"key": "k8s.io/node", "weight": 9}]}}}),
                vec![],
            ),
        ];
        for (default, want) in cases {
            assert_eq!(errors(default.clone()), want, "{default}");
        }
    }

    #[test]
    fn affinity_tag_weights() {
        let p = "spec.to[0].default.localityAwareness.localZone.affinityTags";
        let tags =
            |t: serde_json::Value| json!({"localityAwareness": {"localZone": {"affinityTags": t}}});
        let cases: Vec<(serde_json::Value, Vec<String>)> = vec![
            (
                tags(json!([{"key": "k8s.io/node"}, {"key": "k8s.io/az"}])),
                vec![],
            ),
            (
                tags(
                    json!([{"key": "k8s.io/node", "weight": 9}, {"key": "k8s.io/az", "weight": 1}]),
                ),
                vec![],
            ),
            (
                tags(json!([{"key": "k8s.io/node", "weight": 10}, {"key": "k8s.io/az"}])),
                vec![format!("{p}: all or none affinity tags should have weight")],
            ),
            (
                tags(
                    json!([{"key": "k8s.io/node", "weight": 0}, {"key": "k8s.io/az", "weight": 10}]),
                ),
                vec![format!("{p}[0].weight: must be greater than 0")],
            ),
        ];
        for (default, want) in cases {
            assert_eq!(errors(default.clone()), want, "{default}");
        }
    }

    #[test]
    fn every_type_error_and_unknown_field_comes_back_at_once() {
        let value = json!({"targetRef": {"kind": "Mesh"}, "to": [
            {"targetRef": {"kind": "Mesh"}, "default": {"localityAwareness": {"localZone": {"affinityTags": [
                {"key": "k8s.io/node", "weight": 10}, {"key": "k8s.io/az", "weight": -3}]}}}},
            {"targetRef": {"kind": "MeshService", "name": "web"}, "default": {
                "loadBalancer": {"type": "LeastRequest", "leastRequest": {"choiceCount": "two"}, "ringHash": {}},
                "localityAwareness": {"crossZone": {"failoverThreshold": {"percentage": 0}}},
                "retries": 3}}
        ]});
        let e =
            Spec::from_value(ResourceKind::MeshLoadBalancingStrategy, value).expect_err("invalid");
        let got: Vec<String> = e
            .violations
            .into_iter()
            .map(|v| format!("{}: {}", v.field, v.reason))
            .collect();
        assert_eq!(
            got,
            vec![
                "spec.to[0].default.localityAwareness.localZone.affinityTags[1].weight: invalid value: integer `-3`, expected u32",
                "spec.to[1].default.loadBalancer.leastRequest.choiceCount: invalid type: string \"two\", expected u32",
                "spec.to[1].default.retries: unknown field `retries`, expected one of `localityAwareness`, `loadBalancer`, `hashPolicies`",
                // What did decode is checked too: the threshold and ringHash sit
                // beside the problems. (The "all or none have a weight" check of
                // affinityTags, above the mistyped weight, is not reported: it
                // would judge a list the user did not write.)
                "spec.to[1].default.localityAwareness.crossZone.failoverThreshold.percentage: must be greater than 0",
                "spec.to[1].default.loadBalancer.ringHash: may only be set when type is RingHash",
            ]
        );
    }

    #[test]
    fn load_balancer_rules() {
        let p = "spec.to[0].default.loadBalancer";
        let cases: Vec<(serde_json::Value, Vec<String>)> = vec![
            (json!({"loadBalancer": {"type": "RoundRobin"}}), vec![]),
            (
                json!({"loadBalancer": {"type": "LeastRequest", "leastRequest": {"choiceCount": 3}}}),
                vec![],
            ),
            (
                json!({"loadBalancer": {"type": "RingHash", "ringHash": {"hashFunction": "XXHash", "minRingSize": 64, "maxRingSize": 1024}}}),
                vec![],
            ),
            (
                json!({"loadBalancer": {"type": "Random", "maglev": {"tableSize": 65537}}}),
                vec![format!("{p}.maglev: may only be set when type is Maglev")],
            ),
            (
                json!({"loadBalancer": {"type": "LeastRequest", "leastRequest": {"choiceCount": 1}}}),
                vec![format!("{p}.leastRequest.choiceCount: must be at least 2")],
            ),
            (
                json!({"loadBalancer": {"type": "RingHash", "ringHash": {"minRingSize": 10, "maxRingSize": 5}}}),
                vec![format!(
                    "{p}.ringHash.minRingSize: must not exceed maxRingSize"
                )],
            ),
        ];
        for (default, want) in cases {
            assert_eq!(errors(default.clone()), want, "{default}");
        }
    }

    /// A conf with one root-level hash policy.
    fn hashing(policy: serde_json::Value) -> serde_json::Value {
        json!({"hashPolicies": [policy]})
    }

    #[test]
    fn hash_policy_rules() {
        let p = "spec.to[0].default.hashPolicies[0]";
        let cases: Vec<(serde_json::Value, Vec<String>)> = vec![
            (
                hashing(json!({"type": "Header", "header": {"name": "x-user"}, "terminal": true})),
                vec![],
            ),
            (
                hashing(
                    json!({"type": "Cookie", "cookie": {"name": "session", "ttl": "1h30m", "path": "/app"}}),
                ),
                vec![],
            ),
            (
                hashing(json!({"type": "Connection", "connection": {"sourceIP": true}})),
                vec![],
            ),
            (
                hashing(json!({"type": "SourceIP", "connection": {}})),
                vec![],
            ),
            (
                hashing(json!({"type": "QueryParameter", "queryParameter": {"name": "u"}})),
                vec![],
            ),
            (
                hashing(json!({"type": "FilterState", "filterState": {"key": "k"}})),
                vec![],
            ),
            // Kuma pairs only the type with its part; other parts are kept.
            (
                hashing(
                    json!({"type": "Header", "header": {"name": "x"}, "cookie": {"name": "c", "path": "relative"}}),
                ),
                vec![],
            ),
            (json!({"hashPolicies": []}), vec![]),
            (
                hashing(json!({"type": "Header"})),
                vec![format!("{p}.header: must be defined for type Header")],
            ),
            (
                hashing(json!({"type": "Cookie", "header": {"name": "x"}})),
                vec![format!("{p}.cookie: must be defined for type Cookie")],
            ),
            (
                hashing(json!({"type": "Connection"})),
                vec![format!(
                    "{p}.connection: must be defined for type Connection"
                )],
            ),
            (
                hashing(json!({"type": "SourceIP"})),
                vec![format!("{p}.connection: must be defined for type SourceIP")],
            ),
            (
                hashing(json!({"type": "QueryParameter"})),
                vec![format!(
                    "{p}.queryParameter: must be defined for type QueryParameter"
                )],
            ),
            (
                hashing(json!({"type": "FilterState"})),
                vec![format!(
                    "{p}.filterState: must be defined for type FilterState"
                )],
            ),
            (
                hashing(json!({"type": "Cookie", "cookie": {"name": "c", "path": "app"}})),
                vec![format!(
                    "{p}.cookie.path: must be an absolute path (start with '/'), got \"app\""
                )],
            ),
            (
                hashing(json!({"type": "Cookie", "cookie": {"name": "c", "path": ""}})),
                vec![format!(
                    "{p}.cookie.path: must be an absolute path (start with '/'), got \"\""
                )],
            ),
            (
                hashing(
                    json!({"type": "Header", "header": {"name": ""}, "queryParameter": {"name": ""}, "filterState": {"key": ""}}),
                ),
                vec![
                    format!("{p}.header.name: must not be empty"),
                    format!("{p}.queryParameter.name: must not be empty"),
                    format!("{p}.filterState.key: must not be empty"),
                ],
            ),
            (
                hashing(json!({"type": "Cookie", "cookie": {"name": ""}})),
                vec![format!("{p}.cookie.name: must not be empty")],
            ),
            (
                hashing(json!({"type": "Header", "header": {}})),
                vec![format!("{p}.header: missing field `name`")],
            ),
            (
                hashing(json!({"type": "Cookie", "cookie": {"name": "c", "ttl": "-1s"}})),
                vec![format!(
                    "{p}.cookie.ttl: invalid duration \"-1s\": must not be negative (expected a Go duration such as \"10s\", \"1m30s\" or \"500ms\")"
                )],
            ),
            (
                hashing(json!({"type": "Connection", "connection": {"sourceIp": true}})),
                vec![format!(
                    "{p}.connection.sourceIp: unknown field `sourceIp`, expected `sourceIP`"
                )],
            ),
            (
                hashing(json!({"type": "Path"})),
                vec![format!(
                    "{p}.type: unknown variant `Path`, expected one of `Header`, `Cookie`, `Connection`, `SourceIP`, `QueryParameter`, `FilterState`"
                )],
            ),
        ];
        for (default, want) in cases {
            assert_eq!(errors(default.clone()), want, "{default}");
        }
    }

    #[test]
    fn hash_policies_in_one_place() {
        let p = "spec.to[0].default.loadBalancer";
        let header = json!([{"type": "Header", "header": {"name": "x"}}]);
        let cases: Vec<(serde_json::Value, Vec<String>)> = vec![
            (
                json!({"loadBalancer": {"type": "RingHash", "ringHash": {"hashPolicies": header}}}),
                vec![],
            ),
            (
                json!({"loadBalancer": {"type": "Maglev", "maglev": {"tableSize": 65537, "hashPolicies": header}}}),
                vec![],
            ),
            // The root list with an algorithm that has none of its own.
            (
                json!({"hashPolicies": header, "loadBalancer": {"type": "Maglev", "maglev": {"tableSize": 65537}}}),
                vec![],
            ),
            (
                json!({"hashPolicies": header, "loadBalancer": {"type": "RingHash", "ringHash": {"hashPolicies": header}}}),
                vec![format!(
                    "{p}.ringHash.hashPolicies: hashPolicies already specified in the root level (default.hashPolicies); set them in one place"
                )],
            ),
            // Even an empty list counts as set, as in Kuma.
            (
                json!({"hashPolicies": [], "loadBalancer": {"type": "Maglev", "maglev": {"hashPolicies": []}}}),
                vec![format!(
                    "{p}.maglev.hashPolicies: hashPolicies already specified in the root level (default.hashPolicies); set them in one place"
                )],
            ),
            // Lists under the algorithm are checked like the root one.
            (
                json!({"loadBalancer": {"type": "Maglev", "maglev": {"hashPolicies": [{"type": "Cookie", "cookie": {"name": "c", "path": "x"}}]}}}),
                vec![format!(
                    "{p}.maglev.hashPolicies[0].cookie.path: must be an absolute path (start with '/'), got \"x\""
                )],
            ),
            (
                json!({"loadBalancer": {"type": "RingHash", "ringHash": {"hashPolicies": [{"type": "SourceIP"}]}}}),
                vec![format!(
                    "{p}.ringHash.hashPolicies[0].connection: must be defined for type SourceIP"
                )],
            ),
        ];
        for (default, want) in cases {
            assert_eq!(errors(default.clone()), want, "{default}");
        }
    }

    #[test]
    fn active_request_bias() {
        let p = "spec.to[0].default.loadBalancer.leastRequest.activeRequestBias";
        let bias = |b: serde_json::Value| json!({"loadBalancer": {"type": "LeastRequest", "leastRequest": {"choiceCount": 2, "activeRequestBias": b}}});
        let cases: Vec<(serde_json::Value, Vec<String>)> = vec![
            (bias(json!(0)), vec![]),
            (bias(json!(3)), vec![]),
            (bias(json!("1.3")), vec![]),
            (bias(json!("0.0")), vec![]),
            (
                bias(json!(-1)),
                vec![format!("{p}: must be greater than or equal to 0, got -1")],
            ),
            (
                bias(json!("-0.5")),
                vec![format!(
                    "{p}: must be greater than or equal to 0, got \"-0.5\""
                )],
            ),
            (
                bias(json!("strong")),
                vec![format!(
                    "{p}: string must be a valid number, got \"strong\""
                )],
            ),
            (
                bias(json!(1.5)),
                vec![format!(
                    "{p}: invalid type: floating point `1.5`, expected an integer or a string"
                )],
            ),
        ];
        for (default, want) in cases {
            assert_eq!(errors(default.clone()), want, "{default}");
        }
    }

    fn spec_errors(value: serde_json::Value) -> Vec<String> {
        crate::test_support::violation_lines(ResourceKind::MeshLoadBalancingStrategy, value, true)
    }

    #[test]
    fn entry_rules() {
        let route_only = "field is not allowed when targetRef.kind is MeshHTTPRoute, only hashPolicies is supported";
        let route = json!({"kind": "MeshHTTPRoute", "name": "r"});
        let cases: Vec<(serde_json::Value, Vec<String>)> = vec![
            // Kuma accepts an empty or absent `to` (an override that
            // configures nothing).
            (
                json!({"targetRef": {"kind": "Dataplane", "labels": {"app": "web"}}, "to": []}),
                vec![],
            ),
            (json!({"targetRef": {"kind": "Mesh"}}), vec![]),
            // A MeshHTTPRoute entry may only hash (Kuma's rule).
            (
                json!({"to": [{"targetRef": route, "default": {
                    "loadBalancer": {"type": "RoundRobin"}, "localityAwareness": {"disabled": true},
                    "hashPolicies": [{"type": "Header"}]}}]}),
                vec![
                    format!("spec.to[0].default.loadBalancer: {route_only}"),
                    format!("spec.to[0].default.localityAwareness: {route_only}"),
                    "spec.to[0].default.hashPolicies[0].header: must be defined for type Header"
                        .to_owned(),
                ],
            ),
            (
                json!({"to": [{"targetRef": route, "default": {"hashPolicies": [{"type": "Header", "header": {"name": "x"}}]}}]}),
                vec![],
            ),
            // Under a gateway, only a Mesh entry may set the algorithm.
            (
                json!({"targetRef": {"kind": "MeshGateway", "name": "edge"}, "to": [
                    {"targetRef": {"kind": "Mesh"}, "default": {"loadBalancer": {"type": "Random"}}},
                    {"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"loadBalancer": {"type": "Random"}}},
                    {"targetRef": {"kind": "MeshService", "name": "db"}, "default": {"localityAwareness": {"disabled": true}}}]}),
                vec![
                    "spec.to[1].targetRef.kind: only Mesh is allowed if loadBalancer is set under a top-level MeshGateway (got MeshService)".to_owned(),
                ],
            ),
        ];
        for (value, want) in cases {
            assert_eq!(spec_errors(value.clone()), want, "{value}");
        }
    }

    #[test]
    fn full_spec_round_trips() {
        let value = json!({"targetRef": {"kind": "MeshService", "name": "svc-1"}, "to": [
            {"targetRef": {"kind": "MeshService", "name": "svc-2"}, "default": {
                "localityAwareness": {"disabled": true},
                "hashPolicies": [
                    {"type": "Cookie", "terminal": false, "cookie": {"name": "cookie-name", "ttl": "1s", "path": "/absolute-path"}},
                    {"type": "SourceIP", "connection": {"sourceIP": true}}],
                "loadBalancer": {"type": "Maglev"}}},
            {"targetRef": {"kind": "Mesh"}, "default": {"loadBalancer": {"type": "LeastRequest",
                "leastRequest": {"choiceCount": 4, "activeRequestBias": "1.3"}}}},
            {"targetRef": {"kind": "MeshService", "name": "svc-3"}, "default": {"loadBalancer": {"type": "RingHash",
                "ringHash": {"hashFunction": "MurmurHash2", "minRingSize": 64, "hashPolicies": [
                    {"type": "QueryParameter", "queryParameter": {"name": "user"}},
                    {"type": "FilterState", "filterState": {"key": "io.kuma.k"}},
                    {"type": "Header", "header": {"name": "x-user"}}]}}}}
        ]});
        let spec = Spec::from_value(ResourceKind::MeshLoadBalancingStrategy, value.clone())
            .expect("valid");
        assert_eq!(spec.to_value(), value);
        let Spec::MeshLoadBalancingStrategy(p) = &spec else {
            panic!("parsed as another kind: {spec:?}");
        };
        let to = p.to.as_deref().expect("to");
        let hp = to[0]
            .default
            .hash_policies
            .as_deref()
            .expect("hashPolicies");
        assert_eq!(hp[1].type_, super::HashPolicyType::SourceIp);
        assert_eq!(
            hp[0]
                .cookie
                .as_ref()
                .and_then(|c| c.ttl.as_ref())
                .map(|t| t.as_duration()),
            Some(std::time::Duration::from_secs(1))
        );
        assert_eq!(
            to[1]
                .default
                .load_balancer
                .as_ref()
                .and_then(|l| l.least_request.as_ref())
                .and_then(|l| l.active_request_bias.as_ref()),
            Some(&crate::IntOrString::String("1.3".to_owned()))
        );
    }
}
