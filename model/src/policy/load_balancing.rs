//! `MeshLoadBalancingStrategy`: how a proxy spreads connections over a
//! destination's endpoints — the balancing algorithm, local-zone affinity and
//! the ordered cross-zone failover rules (the locality model: local zone
//! first, then failover rule *i* at priority *i + 1*).

use crate::error::{Validate, Violations, index, join};
use crate::kind::ResourceKind;
use crate::name::{validate_name, validate_tag_key};
use crate::policy::{
    IntOrString, PolicyEntry, TargetRefPolicy, entries, validate_default, validate_entries,
    validate_positive,
};
use crate::target_ref::TargetRef;

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
        validate_entries(
            ResourceKind::MeshLoadBalancingStrategy,
            path,
            self.target_ref.as_ref(),
            (self.to.as_deref(), None),
            None,
            v,
            validate_default,
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
        if let Some(lb) = &self.load_balancer {
            validate_load_balancer(&join(path, "loadBalancer"), lb, v);
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
                "spec.to[1].default.retries: unknown field `retries`, expected `localityAwareness` or `loadBalancer`",
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
}
