//! Decoding a JSON value into a typed spec while collecting *every* problem
//! with it, not just the first: each wrong type, unknown field and missing
//! field with its own path, plus the semantic violations ([`Validate`]) of the
//! parts that did decode.
//!
//! How: the typed structs are decoded by their ordinary derived `Deserialize`
//! impls, through [`Node`], a deserializer over a borrowed [`Value`] that knows
//! the path of every node it hands out (as the document has it:
//! `spec.to[1].default.localityAwareness.localZone.affinityTags[0].weight`).
//! serde stops at the first error, so decoding runs in passes: a pass that
//! fails names the node it failed at; that problem is recorded and the node is
//! *pruned* (left out, as if the document did not have it) in every later
//! pass, and decoding starts again. A pruned optional field decodes as absent,
//! a pruned array element or map entry as missing from its collection; a
//! struct that lacks a required field because that field was pruned is pruned
//! in turn, without a second report. (A required field the document really
//! lacks is reported at its struct, which is pruned too: the checks of that
//! struct's other fields wait until it can be built.) Each pass prunes one
//! more node, so the passes end, with the typed value of everything that was
//! not pruned (or with nothing, when the root itself failed). A document with
//! more than [`MAX_PASSES`] problems gets the first ones and a note.
//!
//! That value is then validated. When nothing was pruned its violations are
//! the whole answer (and the value is exactly what a plain `serde_json`
//! decode gives). Otherwise a violation is only kept when the node it names
//! decoded whole: one at a pruned node or at one of its ancestors (an
//! `affinityTags` list one of whose weights was mistyped, a `default` with an
//! unknown field) judged a value that is missing a part the user did write,
//! so it is dropped rather than reported misleadingly. Violation paths of a
//! collection that lost elements are mapped back to the document's indices.
//!
//! The first, successful pass over a valid document allocates no paths: they
//! are only rendered for errors and, in later passes, to check for pruning.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};
use serde_json::Value;

use crate::error::{FieldViolation, Validate, ValidationError, Violations, index, join};

/// At most this many passes (so at most about this many problems) per document.
const MAX_PASSES: usize = 200;

/// Decodes `value` as a `T` whose violation paths start with `prefix`
/// (`spec`, or empty for resources that keep their fields at the top level),
/// then validates it; returns every problem found.
pub(crate) fn decode_validated<T: DeserializeOwned + Validate>(
    value: &Value,
    prefix: &str,
) -> Result<T, ValidationError> {
    // serde would also build a struct from a positional array; documents are maps.
    if !value.is_object() {
        return Err(ValidationError::single(
            display(prefix),
            format!("must be an object, got {}", crate::error::json_type(value)),
        ));
    }
    let Decoded {
        typed,
        mut problems,
        pruned,
    } = decode::<T>(value, prefix);
    let Some(spec) = typed else {
        return Err(ValidationError {
            violations: problems,
        });
    };
    let mut v = Violations::default();
    spec.validate(prefix, &mut v);
    if problems.is_empty() {
        return v.into_result(spec);
    }
    let dropped = dropped_elements(&pruned);
    for violation in v.0 {
        let field = original_path(&violation.field, &dropped);
        if !pruned.iter().any(|p| is_ancestor_or_self(&field, p)) {
            problems.push(FieldViolation {
                field,
                reason: violation.reason,
            });
        }
    }
    Err(ValidationError {
        violations: problems,
    })
}

/// The outcome of the decoding passes.
struct Decoded<T> {
    /// The value of everything not pruned; `None` when the root failed.
    typed: Option<T>,
    /// Type errors, unknown and missing fields, in the order found.
    problems: Vec<FieldViolation>,
    /// Paths of the nodes left out of `typed`.
    pruned: BTreeSet<String>,
}

fn decode<T: DeserializeOwned>(value: &Value, prefix: &str) -> Decoded<T> {
    let mut problems = Vec::new();
    let mut pruned = BTreeSet::new();
    let root = Path::Root(prefix);
    for _ in 0..MAX_PASSES {
        let node = Node {
            value,
            path: &root,
            pruned: &pruned,
        };
        let err = match T::deserialize(node) {
            Ok(typed) => {
                return Decoded {
                    typed: Some(typed),
                    problems,
                    pruned,
                };
            }
            Err(e) => e,
        };
        let at = err.path.unwrap_or_else(|| prefix.to_owned());
        let follows_pruning = err
            .missing_field
            .is_some_and(|f| pruned.contains(&join(&at, f)));
        if !follows_pruning {
            problems.push(FieldViolation::new(display(&at), err.message));
        }
        // A failing root leaves nothing to decode. A failure at a pruned node
        // cannot happen (pruned nodes are never visited); stop rather than loop.
        if at == prefix || !pruned.insert(at) {
            return Decoded {
                typed: None,
                problems,
                pruned,
            };
        }
    }
    problems.push(FieldViolation::new(
        display(prefix),
        format!("too many problems: stopped after {MAX_PASSES} decoding passes"),
    ));
    Decoded {
        typed: None,
        problems,
        pruned,
    }
}

/// A path as violations name it; the root of a top-level resource is `(root)`.
fn display(path: &str) -> String {
    if path.is_empty() {
        "(root)".to_owned()
    } else {
        path.to_owned()
    }
}

/// Whether `a` is `b` or one of its ancestors (`spec.to` of `spec.to[0].x`,
/// not of `spec.top`).
fn is_ancestor_or_self(a: &str, b: &str) -> bool {
    a.is_empty()
        || b.strip_prefix(a)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// The pruned array elements, as (array path → sorted indices).
fn dropped_elements(pruned: &BTreeSet<String>) -> BTreeMap<&str, Vec<usize>> {
    let mut dropped: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for p in pruned {
        let Some(body) = p.strip_suffix(']') else {
            continue;
        };
        let Some((array, i)) = body.rsplit_once('[') else {
            continue;
        };
        if let Ok(i) = i.parse::<usize>() {
            dropped.entry(array).or_default().push(i);
        }
    }
    for indices in dropped.values_mut() {
        indices.sort_unstable();
    }
    dropped
}

/// Maps a path of the decoded value (whose collections may have lost pruned
/// elements) to the path of the same node in the document.
fn original_path(path: &str, dropped: &BTreeMap<&str, Vec<usize>>) -> String {
    if dropped.is_empty() {
        return path.to_owned();
    }
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            if let Some(end) = r.find(']')
                && let Ok(i) = r[..end].parse::<usize>()
            {
                let i = dropped.get(out.as_str()).map_or(i, |d| nth_kept(i, d));
                out = index(&out, i);
                rest = &r[end + 1..];
                continue;
            }
            // A map key, `["…"]`: copied through its closing `"]`.
            let end = r
                .get(1..)
                .and_then(|k| k.find("\"]"))
                .map_or(r.len(), |e| e + 3);
            out.push('[');
            out.push_str(&r[..end]);
            rest = &r[end..];
            continue;
        }
        // A field name with its leading dot, up to the next segment.
        let start = usize::from(rest.starts_with('.'));
        let end = rest[start..]
            .find(['.', '['])
            .map_or(rest.len(), |e| e + start);
        out.push_str(&rest[..end]);
        rest = &rest[end..];
    }
    out
}

/// The document index of the `i`-th element kept when `dropped` (sorted) were left out.
fn nth_kept(i: usize, dropped: &[usize]) -> usize {
    let mut original = i;
    for &d in dropped {
        if d <= original {
            original += 1;
        } else {
            break;
        }
    }
    original
}

/// Where a node sits in the document, built on the stack as decoding descends
/// and rendered only when needed.
#[derive(Clone, Copy)]
enum Path<'p> {
    /// The document's root, named by the prefix.
    Root(&'p str),
    /// A struct field.
    Field(&'p Path<'p>, &'p str),
    /// An array element.
    Index(&'p Path<'p>, usize),
    /// A map entry (`tags["version"]`).
    Key(&'p Path<'p>, &'p str),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Path::Root(prefix) => (*prefix).to_owned(),
            Path::Field(parent, name) => join(&parent.render(), name),
            Path::Index(parent, i) => index(&parent.render(), *i),
            Path::Key(parent, key) => format!("{}[\"{key}\"]", parent.render()),
        }
    }
}

/// Whether the node at `path` is left out of this pass.
fn is_pruned(pruned: &BTreeSet<String>, path: &Path<'_>) -> bool {
    !pruned.is_empty() && pruned.contains(&path.render())
}

/// Why a pass failed, and where.
#[derive(Debug)]
struct DecodeError {
    message: String,
    /// The innermost node the error passed through; `None` until it leaves one.
    path: Option<String>,
    /// Set for a missing required field (the path is then its struct's).
    missing_field: Option<&'static str>,
}

impl DecodeError {
    /// Names the node the error came from, unless a deeper one already did.
    fn at(mut self, path: &Path<'_>) -> Self {
        if self.path.is_none() {
            self.path = Some(path.render());
        }
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            message: msg.to_string(),
            path: None,
            missing_field: None,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            message: format!("missing field `{field}`"),
            path: None,
            missing_field: Some(field),
        }
    }
}

/// A deserializer for one node of the document.
struct Node<'de, 'p> {
    value: &'de Value,
    path: &'p Path<'p>,
    pruned: &'p BTreeSet<String>,
}

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Unexpected::Unsigned(u)
            } else if let Some(i) = n.as_i64() {
                Unexpected::Signed(i)
            } else {
                Unexpected::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

impl<'de, 'p> Node<'de, 'p> {
    fn invalid_type(&self, expected: &dyn de::Expected) -> DecodeError {
        de::Error::invalid_type(unexpected(self.value), expected)
    }

    fn seq(&self, items: &'de [Value]) -> Seq<'de, 'p> {
        Seq {
            items: items.iter().enumerate(),
            path: self.path,
            pruned: self.pruned,
        }
    }

    fn map(&self, map: &'de serde_json::Map<String, Value>, fields: bool) -> Map<'de, 'p> {
        Map {
            entries: map.iter(),
            pending: None,
            path: self.path,
            pruned: self.pruned,
            fields,
        }
    }

    fn visit_seq<V: Visitor<'de>>(
        &self,
        items: &'de [Value],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let mut seq = self.seq(items);
        let value = visitor.visit_seq(&mut seq)?;
        if seq.remaining() > 0 {
            return Err(de::Error::invalid_length(items.len(), &"fewer elements"));
        }
        Ok(value)
    }
}

impl<'de> de::Deserializer<'de> for Node<'de, '_> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let result = match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    match n.as_f64() {
                        Some(f) => visitor.visit_f64(f),
                        None => Err(de::Error::custom("number out of range")),
                    }
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => self.visit_seq(items, visitor),
            Value::Object(map) => visitor.visit_map(self.map(map, false)),
        };
        result.map_err(|e| e.at(self.path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let path = self.path;
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.at(path))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            _ => Err(self.invalid_type(&visitor)),
        }
        .map_err(|e| e.at(self.path))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let path = self.path;
        visitor.visit_newtype_struct(self).map_err(|e| e.at(path))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.value {
            Value::Array(items) => self.visit_seq(items, visitor),
            _ => Err(self.invalid_type(&visitor)),
        }
        .map_err(|e| e.at(self.path))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.value {
            Value::Object(map) => visitor.visit_map(self.map(map, false)),
            _ => Err(self.invalid_type(&visitor)),
        }
        .map_err(|e| e.at(self.path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        // Unknown keys are handed to the visitor like the others: a type that
        // denies unknown fields fails on them (and they are pruned), one that
        // does not ignores them.
        match self.value {
            Value::Object(map) => visitor.visit_map(self.map(map, true)),
            _ => Err(self.invalid_type(&visitor)),
        }
        .map_err(|e| e.at(self.path))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        // Only unit variants, written as strings, occur in the model.
        match self.value {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => Err(self.invalid_type(&"a string")),
        }
        .map_err(|e| e.at(self.path))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit_struct tuple tuple_struct identifier
    }
}

/// The elements of an array, pruned ones skipped.
struct Seq<'de, 'p> {
    items: std::iter::Enumerate<std::slice::Iter<'de, Value>>,
    path: &'p Path<'p>,
    pruned: &'p BTreeSet<String>,
}

impl Seq<'_, '_> {
    fn remaining(&mut self) -> usize {
        let (path, pruned) = (self.path, self.pruned);
        self.items
            .by_ref()
            .filter(|(i, _)| !is_pruned(pruned, &Path::Index(path, *i)))
            .count()
    }
}

impl<'de> de::SeqAccess<'de> for Seq<'de, '_> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        for (i, value) in self.items.by_ref() {
            let path = Path::Index(self.path, i);
            if is_pruned(self.pruned, &path) {
                continue;
            }
            let node = Node {
                value,
                path: &path,
                pruned: self.pruned,
            };
            return seed.deserialize(node).map(Some).map_err(|e| e.at(&path));
        }
        Ok(None)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The entries of an object (a struct's fields or a map's entries), pruned
/// ones skipped.
struct Map<'de, 'p> {
    entries: serde_json::map::Iter<'de>,
    pending: Option<(&'de str, &'de Value)>,
    path: &'p Path<'p>,
    pruned: &'p BTreeSet<String>,
    /// Struct fields (`a.b`) rather than map entries (`a["b"]`).
    fields: bool,
}

/// The path of the entry `key` of the object at `parent`.
fn entry<'k>(parent: &'k Path<'k>, fields: bool, key: &'k str) -> Path<'k> {
    if fields {
        Path::Field(parent, key)
    } else {
        Path::Key(parent, key)
    }
}

impl<'de> de::MapAccess<'de> for Map<'de, '_> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        for (key, value) in self.entries.by_ref() {
            let path = entry(self.path, self.fields, key);
            if is_pruned(self.pruned, &path) {
                continue;
            }
            self.pending = Some((key, value));
            return seed
                .deserialize(BorrowedStrDeserializer::<DecodeError>::new(key))
                .map(Some)
                .map_err(|e| e.at(&path));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("a map value was read before its key"));
        };
        let path = entry(self.path, self.fields, key);
        let node = Node {
            value,
            path: &path,
            pruned: self.pruned,
        };
        seed.deserialize(node).map_err(|e| e.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Doc {
        name: String,
        #[serde(default)]
        count: Option<u32>,
        #[serde(default)]
        items: Vec<Item>,
        #[serde(default)]
        tags: BTreeMap<String, String>,
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        key: String,
        #[serde(default)]
        weight: Option<u32>,
    }

    impl Validate for Doc {
        fn validate(&self, path: &str, v: &mut Violations) {
            if self.name.is_empty() {
                v.add(join(path, "name"), "must not be empty");
            }
            let items = join(path, "items");
            if self.items.is_empty() {
                v.add(items.clone(), "must not be empty");
            }
            for (i, item) in self.items.iter().enumerate() {
                if item.key.is_empty() {
                    v.add(join(&index(&items, i), "key"), "must not be empty");
                }
            }
        }
    }

    fn problems(value: Value) -> Vec<String> {
        match decode_validated::<Doc>(&value, "spec") {
            Ok(_) => vec![],
            Err(e) => e
                .violations
                .into_iter()
                .map(|v| format!("{}: {}", v.field, v.reason))
                .collect(),
        }
    }

    #[test]
    fn a_valid_document_decodes_as_serde_json_decodes_it() {
        let value = json!({"name": "a", "count": 3, "items": [{"key": "k", "weight": 2}], "tags": {"x": "y"}});
        let ours = decode_validated::<Doc>(&value, "spec").expect("valid");
        let theirs: Doc = serde_json::from_value(value).expect("valid");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn every_type_error_and_unknown_field_is_reported_with_its_path() {
        let got = problems(json!({
            "name": 5,
            "count": -1,
            "extra": true,
            "items": [{"key": "a", "weight": "heavy"}, {"key": "b", "colour": "red"}],
            "tags": {"n": 1, "ok": "yes"}
        }));
        assert_eq!(
            got,
            vec![
                "spec.name: invalid type: integer `5`, expected a string",
                "spec.count: invalid value: integer `-1`, expected u32",
                "spec.extra: unknown field `extra`, expected one of `name`, `count`, `items`, `tags`",
                "spec.items[0].weight: invalid type: string \"heavy\", expected u32",
                "spec.items[1].colour: unknown field `colour`, expected `key` or `weight`",
                "spec.tags[\"n\"]: invalid type: integer `1`, expected a string",
            ]
        );
    }

    #[test]
    fn semantic_violations_of_what_decoded_are_kept_and_point_into_the_document() {
        // items[0] cannot be built (its key has the wrong type), so the decoded
        // list is [items[1], items[2]]; the empty key of items[2] is reported at
        // the document's index, not at [1].
        let got = problems(json!({"name": "", "items": [{"key": 1}, {"key": "b"}, {"key": ""}]}));
        assert_eq!(
            got,
            vec![
                "spec.items[0].key: invalid type: integer `1`, expected a string",
                "spec.name: must not be empty",
                "spec.items[2].key: must not be empty",
            ]
        );
    }

    #[test]
    fn checks_of_a_node_that_lost_a_part_are_not_reported() {
        // The only item is pruned: "items: must not be empty" would mislead.
        assert_eq!(
            problems(json!({"name": "a", "items": ["not an item"]})),
            vec!["spec.items[0]: invalid type: string \"not an item\", expected struct Item"]
        );
    }

    #[test]
    fn a_missing_field_is_reported_once_at_its_struct() {
        assert_eq!(
            problems(json!({"items": [{"weight": 1}]})),
            vec![
                "spec.items[0]: missing field `key`",
                "spec: missing field `name`",
            ]
        );
    }

    #[test]
    fn the_root_must_be_an_object() {
        assert_eq!(
            problems(json!([1])),
            vec!["spec: must be an object, got an array"]
        );
        let e = decode_validated::<Doc>(&json!("x"), "").expect_err("not an object");
        assert_eq!(e.violations[0].field, "(root)");
    }

    #[test]
    fn paths_map_back_to_the_document() {
        let pruned: BTreeSet<String> = [
            "spec.to[0]",
            "spec.to[2].rules[1]",
            "spec.tags[\"a[0]\"]",
            "spec.to[3].x",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        let dropped = dropped_elements(&pruned);
        assert_eq!(original_path("spec.to[0].a", &dropped), "spec.to[1].a");
        assert_eq!(
            original_path("spec.to[1].rules[1].default", &dropped),
            "spec.to[2].rules[2].default"
        );
        assert_eq!(
            original_path("spec.to[2].tags[\"k.[0]\"]", &dropped),
            "spec.to[3].tags[\"k.[0]\"]"
        );
        assert_eq!(nth_kept(0, &[0, 1, 3]), 2);
        assert_eq!(nth_kept(1, &[0, 1, 3]), 4);
        assert!(is_ancestor_or_self("spec.to", "spec.to[0].x"));
        assert!(is_ancestor_or_self("spec.to[0].x", "spec.to[0].x"));
        assert!(!is_ancestor_or_self("spec.to", "spec.top"));
        assert!(!is_ancestor_or_self("spec.to[0].x", "spec.to[0]"));
        assert!(is_ancestor_or_self("", "anything"));
    }
}
