//! The `Mesh*` targetRef policies Meridian implements, and what they share:
//! the targetRef support matrix (which kinds each policy accepts at the top
//! level, in `to` and in `from`, as Kuma documents them), the
//! at-least-one-entry rule of policies with `from` (`to`-only policies accept
//! an empty `to`, as Kuma), and the [`TargetRefPolicy`] view the matcher uses.
//!
//! | policy                    | top level | `to`                 | `from` |
//! |---------------------------|-----------|----------------------|--------|
//! | MeshTrafficPermission     | all four  | –                    | all four |
//! | MeshTCPRoute              | all four  | MeshService          | –      |
//! | MeshLoadBalancingStrategy | all four  | Mesh, MeshService    | –      |
//! | MeshTimeout               | all four  | Mesh, MeshService    | Mesh   |
//! | MeshHealthCheck           | all four  | Mesh, MeshService    | –      |
//! | MeshCircuitBreaker        | all four  | Mesh, MeshService    | Mesh   |
//! | MeshRetry                 | all four  | Mesh, MeshService    | –      |

pub mod circuit_breaker;
pub mod health_check;
pub mod inbound_match;
pub mod load_balancing;
pub mod retry;
pub mod tcp_route;
pub mod timeout;
pub mod traffic_permission;

pub use circuit_breaker::*;
pub use health_check::*;
pub use inbound_match::*;
pub use load_balancing::*;
pub use retry::*;
pub use tcp_route::*;
pub use timeout::*;
pub use traffic_permission::*;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::decode::decode_validated;
use crate::duration::Duration;
use crate::error::{Validate, ValidationError, Violations, index, join};
use crate::kind::ResourceKind;
use crate::target_ref::{RefRules, TargetRef, TargetRefKind};

/// A policy's entries as the matcher sees them: the top-level targetRef and
/// `(targetRef, default)` pairs for each direction.
pub trait TargetRefPolicy {
    /// The mergeable configuration under `default`.
    type Conf: Clone + Serialize + DeserializeOwned;

    /// The top-level targetRef; absent means `Mesh` (as in Kuma 2.6+).
    fn target_ref(&self) -> Option<&TargetRef>;

    /// `to` entries in document order.
    fn entries_to(&self) -> Vec<(&TargetRef, &Self::Conf)> {
        Vec::new()
    }

    /// `from` entries in document order.
    fn entries_from(&self) -> Vec<(&TargetRef, &Self::Conf)> {
        Vec::new()
    }

    /// Inbound `rules` (Kuma 2.10+) in document order, each with its
    /// `matches` (empty: every client).
    fn entries_rules(&self) -> Vec<(&[Match], &Self::Conf)> {
        Vec::new()
    }

    /// The targetRef of every `to` entry, in document order (also of entries
    /// that configure nothing).
    fn to_refs(&self) -> Vec<&TargetRef> {
        self.entries_to().into_iter().map(|(t, _)| t).collect()
    }

    /// Whether the policy configures inbounds: it has `from` entries or
    /// inbound `rules`.
    fn reaches_inbounds(&self) -> bool {
        !self.entries_from().is_empty() || !self.entries_rules().is_empty()
    }
}

/// A `to` or `from` entry of a policy: the destinations or clients its
/// targetRef selects and the configuration (`default`) that applies to them.
/// Each policy names its own instantiation (e.g. [`TimeoutEntry`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyEntry<C> {
    /// The destinations or clients.
    pub target_ref: TargetRef,
    /// The configuration.
    pub default: C,
}

/// How the OpenAPI document names and describes `PolicyEntry<Self>`: each
/// policy's entry keeps its own schema name and descriptions (a derived
/// schema would name every instantiation `PolicyEntry`).
#[cfg(feature = "openapi")]
pub trait EntrySchema: utoipa::ToSchema {
    /// The entry's schema name and descriptions.
    const ENTRY: EntryDocs;
}

/// The schema name and descriptions of a policy's [`PolicyEntry`].
#[cfg(feature = "openapi")]
#[derive(Debug, Clone, Copy)]
pub struct EntryDocs {
    /// Schema name, e.g. `TimeoutEntry`.
    pub name: &'static str,
    /// Description of the entry.
    pub about: &'static str,
    /// Description of its `targetRef`.
    pub target_ref: &'static str,
    /// Description of its `default`.
    pub default: &'static str,
}

#[cfg(feature = "openapi")]
impl<C: EntrySchema> utoipa::PartialSchema for PolicyEntry<C> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::ToSchema;
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, RefBuilder, Type};
        let field = |name: std::borrow::Cow<'_, str>, description: &str| {
            RefOr::from(
                RefBuilder::new()
                    .ref_location_from_schema_name(name)
                    .description(Some(description)),
            )
        };
        let docs = C::ENTRY;
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(docs.about))
            .required("targetRef")
            .required("default")
            .property("targetRef", field(TargetRef::name(), docs.target_ref))
            .property("default", field(C::name(), docs.default))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl<C: EntrySchema> utoipa::ToSchema for PolicyEntry<C> {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed(C::ENTRY.name)
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((TargetRef::name().into(), TargetRef::schema()));
        schemas.push((C::name().into(), C::schema()));
        TargetRef::schemas(schemas);
        C::schemas(schemas);
    }
}

/// Gives the targetRef of a `to` or `from` entry.
pub(crate) trait Targeted {
    /// The destinations or clients the entry selects.
    fn target_ref(&self) -> &TargetRef;
}

impl<C> Targeted for PolicyEntry<C> {
    fn target_ref(&self) -> &TargetRef {
        &self.target_ref
    }
}

/// `(targetRef, default)` of each entry, in document order — the body of
/// [`TargetRefPolicy::entries_to`] and [`TargetRefPolicy::entries_from`].
pub(crate) fn entries<C>(list: Option<&[PolicyEntry<C>]>) -> Vec<(&TargetRef, &C)> {
    list.into_iter()
        .flatten()
        .map(|e| (&e.target_ref, &e.default))
        .collect()
}

/// Validates what every policy shares — its targetRefs ([`validate_refs`])
/// — then calls `each` with the path (`spec.to[0]`, …) of every `to` entry,
/// then every `from` entry, for the policy's own checks.
pub(crate) fn validate_entries<E: Targeted>(
    kind: ResourceKind,
    path: &str,
    top: Option<&TargetRef>,
    (to, from): (Option<&[E]>, Option<&[E]>),
    rules: Option<usize>,
    v: &mut Violations,
    mut each: impl FnMut(&str, &E, &mut Violations),
) {
    fn refs<E: Targeted>(l: Option<&[E]>) -> Option<Vec<&TargetRef>> {
        l.map(|l| l.iter().map(Targeted::target_ref).collect())
    }
    let (to_refs, from_refs) = (refs(to), refs(from));
    validate_refs(
        kind,
        path,
        top,
        (to_refs.as_deref(), from_refs.as_deref()),
        rules,
        v,
    );
    for (level, list) in [("to", to), ("from", from)] {
        let lp = join(path, level);
        for (i, e) in list.into_iter().flatten().enumerate() {
            each(&index(&lp, i), e, v);
        }
    }
}

/// Validates an entry's `default` — the `each` of [`validate_entries`] for
/// policies whose configuration has checks of its own.
pub(crate) fn validate_default<C: Validate>(path: &str, e: &PolicyEntry<C>, v: &mut Violations) {
    e.default.validate(&join(path, "default"), v);
}

/// Which targetRef kinds a policy accepts at each level, as Kuma's validators
/// have them for policies without a `kuma.io/policy-role` label (every
/// universal policy: Kuma's "system" role). An empty list means the level does
/// not exist for the policy.
pub(crate) struct Support {
    /// Top-level kinds.
    pub(crate) top: &'static [TargetRefKind],
    /// `to` kinds under a top-level ref of the given kind.
    pub(crate) to: fn(TargetRefKind) -> &'static [TargetRefKind],
    /// `from` kinds under a top-level ref of the given kind (empty: `from`
    /// must not be defined there).
    pub(crate) from: fn(TargetRefKind) -> &'static [TargetRefKind],
    /// The policy has inbound `rules` (Kuma 2.10+).
    pub(crate) rules: bool,
    /// A top-level `MeshGateway` ref may carry listener tags.
    pub(crate) gateway_tags: bool,
}

impl Support {
    /// Whether the policy has `to` entries at all.
    pub(crate) fn has_to(&self) -> bool {
        !(self.to)(TargetRefKind::Mesh).is_empty()
    }

    /// Whether the policy has `from` entries at all.
    pub(crate) fn has_from(&self) -> bool {
        !(self.from)(TargetRefKind::Mesh).is_empty()
    }
}

use TargetRefKind::{
    Dataplane, Mesh, MeshExternalService, MeshGateway, MeshHttpRoute, MeshMultiZoneService,
    MeshService, MeshServiceSubset, MeshSubset,
};

const NONE: &[TargetRefKind] = &[];
const TAG_BASED: &[TargetRefKind] = &[Mesh, MeshSubset, MeshService, MeshServiceSubset];
const WORKLOADS: &[TargetRefKind] = &[Mesh, MeshSubset, MeshService, MeshServiceSubset, Dataplane];
const WORKLOADS_AND_GATEWAYS: &[TargetRefKind] = &[
    Mesh,
    MeshSubset,
    MeshGateway,
    MeshService,
    MeshServiceSubset,
    Dataplane,
];
const DESTINATIONS: &[TargetRefKind] =
    &[Mesh, MeshService, MeshExternalService, MeshMultiZoneService];
/// Top-level kinds of the policies that also configure HTTP routes.
const WORKLOADS_GATEWAYS_AND_ROUTES: &[TargetRefKind] = &[
    Mesh,
    MeshSubset,
    Dataplane,
    MeshGateway,
    MeshService,
    MeshServiceSubset,
    MeshHttpRoute,
];

/// `to` kinds of those policies: under a gateway or route only `Mesh` and
/// external services.
fn destinations_and_routes(top: TargetRefKind) -> &'static [TargetRefKind] {
    match top {
        MeshHttpRoute | MeshGateway => &[Mesh, MeshExternalService],
        _ => &[
            Mesh,
            MeshService,
            MeshExternalService,
            MeshMultiZoneService,
            MeshHttpRoute,
        ],
    }
}

fn no_level(_: TargetRefKind) -> &'static [TargetRefKind] {
    NONE
}

fn mesh_only(_: TargetRefKind) -> &'static [TargetRefKind] {
    &[Mesh]
}

fn destinations(_: TargetRefKind) -> &'static [TargetRefKind] {
    DESTINATIONS
}

/// The support matrix of a policy kind (Kuma v2.14's validators).
pub(crate) fn support(kind: ResourceKind) -> Support {
    let none = Support {
        top: NONE,
        to: no_level,
        from: no_level,
        rules: false,
        gateway_tags: false,
    };
    match kind {
        ResourceKind::MeshTrafficPermission => Support {
            top: WORKLOADS,
            from: |_| TAG_BASED,
            rules: true,
            ..none
        },
        ResourceKind::MeshTcpRoute => Support {
            top: WORKLOADS_AND_GATEWAYS,
            to: |top| match top {
                MeshGateway => &[Mesh],
                _ => &[MeshService, MeshExternalService, MeshMultiZoneService],
            },
            gateway_tags: true,
            ..none
        },
        ResourceKind::MeshLoadBalancingStrategy => Support {
            top: WORKLOADS_AND_GATEWAYS,
            to: |top| match top {
                MeshGateway => &[Mesh, MeshService, MeshMultiZoneService],
                _ => &[Mesh, MeshService, MeshMultiZoneService, MeshHttpRoute],
            },
            gateway_tags: true,
            ..none
        },
        ResourceKind::MeshHealthCheck => Support {
            top: WORKLOADS_AND_GATEWAYS,
            to: destinations,
            gateway_tags: true,
            ..none
        },
        ResourceKind::MeshTimeout => Support {
            top: WORKLOADS_GATEWAYS_AND_ROUTES,
            to: destinations_and_routes,
            from: |top| match top {
                MeshHttpRoute | MeshGateway => NONE,
                _ => &[Mesh],
            },
            rules: true,
            gateway_tags: true,
        },
        ResourceKind::MeshRetry => Support {
            top: WORKLOADS_GATEWAYS_AND_ROUTES,
            to: destinations_and_routes,
            gateway_tags: true,
            ..none
        },
        ResourceKind::MeshCircuitBreaker => Support {
            top: WORKLOADS_AND_GATEWAYS,
            to: destinations,
            from: mesh_only,
            rules: true,
            gateway_tags: true,
        },
        _ => none,
    }
}

/// Parses and validates a policy spec (the value under the document's `spec`).
///
/// Unsupported `to`/`from` keys are reported with a policy-specific reason and
/// removed first, so the rest of the spec is still checked and every
/// violation is returned together.
pub(crate) fn parse_policy<T>(
    kind: ResourceKind,
    mut value: serde_json::Value,
) -> Result<T, ValidationError>
where
    T: DeserializeOwned + Validate,
{
    let mut v = Violations::default();
    let sup = support(kind);
    if let serde_json::Value::Object(map) = &mut value {
        for (level, exists) in [
            ("to", sup.has_to()),
            ("from", sup.has_from()),
            ("rules", sup.rules),
        ] {
            if !exists && map.remove(level).is_some() {
                v.add(
                    format!("spec.{level}"),
                    format!("{kind} does not support `{level}`"),
                );
            }
        }
    }
    match decode_validated::<T>(&value, "spec") {
        Ok(spec) => v.into_result(spec),
        Err(e) => {
            v.extend(e);
            Err(ValidationError { violations: v.0 })
        }
    }
}

/// Checks the targetRefs of a policy against its support matrix and that it
/// has entries in a direction it supports (Kuma's rules and wording; `to`-only policies
/// have no length rule: `to: []` is accepted, kumahq/kuma#16212). `rules`
/// is the number of inbound `rules` of policies that have them.
pub(crate) fn validate_refs(
    kind: ResourceKind,
    path: &str,
    top: Option<&TargetRef>,
    (to, from): (Option<&[&TargetRef]>, Option<&[&TargetRef]>),
    rules: Option<usize>,
    v: &mut Violations,
) {
    let sup = support(kind);
    let n = |l: Option<usize>| l.unwrap_or(0);
    let (to_n, from_n) = (to.map(<[_]>::len), from.map(<[_]>::len));
    let top_kind = top.map_or(Mesh, |t| t.kind);
    if let Some(t) = top {
        t.validate_with(
            &join(path, "targetRef"),
            &RefRules {
                allowed: sup.top,
                place: &format!("{kind} top-level targetRef"),
                inbound: n(from_n) + n(rules) > 0,
                gateway_tags: sup.gateway_tags,
            },
            v,
        );
    }
    for (level, refs, allowed) in [
        ("to", to, (sup.to)(top_kind)),
        ("from", from, (sup.from)(top_kind)),
    ] {
        let lp = join(path, level);
        if allowed.is_empty() && refs.is_some_and(|r| !r.is_empty()) {
            // The level exists for the policy, not under this top-level kind.
            v.add(
                lp,
                format!("must not be defined with a top-level {top_kind}"),
            );
            continue;
        }
        for (i, r) in refs.unwrap_or_default().iter().enumerate() {
            r.validate_at(
                &join(&index(&lp, i), "targetRef"),
                allowed,
                &format!("{kind} `{level}`"),
                false,
                v,
            );
        }
    }
    match (sup.has_to(), sup.has_from(), sup.rules) {
        (_, true, true) if n(rules) > 0 && n(to_n) + n(from_n) > 0 => {
            if sup.has_to() {
                v.add(
                    path,
                    "fields 'to' and 'from' must be empty when 'rules' is defined",
                );
            } else {
                v.add(path, "field 'from' must be empty when 'rules' is defined");
            }
        }
        (false, true, true) if n(from_n) + n(rules) == 0 => {
            v.add(path, "at least one of 'from' or 'rules' has to be defined");
        }
        (true, true, true) if n(to_n) + n(from_n) + n(rules) == 0 => {
            v.add(
                path,
                "at least one of 'from', 'to' or 'rules' has to be defined",
            );
        }
        _ => {}
    }
}

/// Records a violation when a percentage is above 100 (Kuma's wording).
pub(crate) fn validate_percent(path: &str, value: Option<u32>, v: &mut Violations) {
    if value.is_some_and(|p| p > 100) {
        v.add(path, "must be in inclusive range [0, 100]");
    }
}

/// Records a violation when a count is set to 0 (Kuma's rule for its
/// `uint32` limits, thresholds and weights: greater than 0 when set).
pub(crate) fn validate_positive(path: &str, value: Option<u32>, v: &mut Violations) {
    if value == Some(0) {
        v.add(path, "must be greater than 0");
    }
}

/// Records a violation when a duration is set to 0 (negative durations do
/// not parse).
pub(crate) fn validate_positive_duration(path: &str, value: Option<&Duration>, v: &mut Violations) {
    if value.is_some_and(|d| d.as_duration().is_zero()) {
        v.add(path, "must be greater than zero when defined");
    }
}

/// A number written either as an integer or as a string (Kuma's
/// `intstr.IntOrString`), e.g. a percentage `70` or `"99.9"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntOrString {
    /// Written as an integer.
    Int(i64),
    /// Written as a string.
    String(String),
}

impl IntOrString {
    /// The value as written, as text.
    pub fn text(&self) -> String {
        match self {
            Self::Int(i) => i.to_string(),
            Self::String(s) => s.clone(),
        }
    }

    /// The numeric value, if the string form is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        }
    }

    /// Records a violation unless the value is a number in `0..=100`, and
    /// also when it is 0 unless `allow_zero` (Kuma's percentage rule and
    /// wording).
    pub(crate) fn validate_percentage(&self, path: &str, allow_zero: bool, v: &mut Violations) {
        match self.as_f64() {
            None => v.add(path, "string must be a valid number"),
            Some(p) if !(0.0..=100.0).contains(&p) => {
                v.add(path, "must be in inclusive range [0.0, 100.0]")
            }
            Some(p) if p == 0.0 && !allow_zero => v.add(path, "must be greater than 0"),
            Some(_) => {}
        }
    }
}

impl Serialize for IntOrString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Int(i) => s.serialize_i64(*i),
            Self::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> serde::Deserialize<'de> for IntOrString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IntOrString::String(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for IntOrString {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer))
            .item(ObjectBuilder::new().schema_type(Type::String))
            .description(Some("An integer or a string holding a number."))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for IntOrString {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_string() {
        // (value, its number, the violation with zero allowed, without)
        let cases = [
            (serde_json::json!(70), Some(70.0), None, None),
            (serde_json::json!("99.9"), Some(99.9), None, None),
            (
                serde_json::json!("abc"),
                None,
                Some("string must be a valid number"),
                Some("string must be a valid number"),
            ),
            (
                serde_json::json!(101),
                Some(101.0),
                Some("must be in inclusive range [0.0, 100.0]"),
                Some("must be in inclusive range [0.0, 100.0]"),
            ),
            (
                serde_json::json!(-1),
                Some(-1.0),
                Some("must be in inclusive range [0.0, 100.0]"),
                Some("must be in inclusive range [0.0, 100.0]"),
            ),
            (
                serde_json::json!("0.0"),
                Some(0.0),
                None,
                Some("must be greater than 0"),
            ),
        ];
        for (value, num, with_zero, without_zero) in cases {
            let p: IntOrString = serde_json::from_value(value.clone()).expect("parse");
            assert_eq!(p.as_f64(), num, "{value}");
            for (allow_zero, want) in [(true, with_zero), (false, without_zero)] {
                let mut v = Violations::default();
                p.validate_percentage("p", allow_zero, &mut v);
                let got: Vec<&str> = v.0.iter().map(|f| f.reason.as_str()).collect();
                assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "{value}");
            }
            assert_eq!(serde_json::to_value(&p).expect("ser"), value);
        }
        assert!(serde_json::from_value::<IntOrString>(serde_json::json!(1.5)).is_err());
    }
}
