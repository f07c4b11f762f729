//! Kuma's merge of `default` confs: the confs of every matching entry, least
//! specific first, are combined as JSON merge patches (RFC 7386): a later
//! conf's fields override earlier ones, objects merge recursively, lists are
//! replaced whole.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Merges `confs` in order (later wins); `None` when there are none.
///
/// Works on the JSON form so every conf type merges the same way; confs that
/// passed validation always convert back, and anything that would not is
/// dropped rather than panicking.
pub fn merge_confs<C: Serialize + DeserializeOwned>(confs: &[&C]) -> Option<C> {
    let mut merged: Option<Value> = None;
    for conf in confs {
        let Ok(patch) = serde_json::to_value(conf) else {
            continue;
        };
        match &mut merged {
            None => merged = Some(patch),
            Some(target) => merge_patch(target, &patch),
        }
    }
    merged.and_then(|m| serde_json::from_value(m).ok())
}

/// Applies an RFC 7386 merge patch to `target`.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target_map) = target {
        for (k, v) in patch_map {
            if v.is_null() {
                target_map.remove(k);
            } else {
                merge_patch(target_map.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7386_cases() {
        // (target, patch, result) — the Kuma docs example plus RFC 7386 basics.
        let cases = [
            (
                json!({"conf": 1, "sub": {"array": [1, 2, 3], "other": 50, "other-array": [3, 4, 5]}}),
                json!({"sub": {"array": [], "other-array": [5, 6], "extra": 2}}),
                json!({"conf": 1, "sub": {"array": [], "other": 50, "other-array": [5, 6], "extra": 2}}),
            ),
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": [1]}),
                json!({"a": {"b": 1}}),
                json!({"a": {"b": 1}}),
            ),
            (json!([1]), json!({"a": 1}), json!({"a": 1})),
        ];
        for (mut target, patch, want) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, want);
        }
    }

    #[test]
    fn typed_merge() {
        use crate::TimeoutConf;
        let a: TimeoutConf =
            serde_json::from_value(json!({"connectionTimeout": "1s", "idleTimeout": "1h"}))
                .expect("a");
        let b: TimeoutConf = serde_json::from_value(json!({"idleTimeout": "5m"})).expect("b");
        let merged = merge_confs(&[&a, &b]).expect("merged");
        assert_eq!(
            serde_json::to_value(merged).expect("ser"),
            json!({"connectionTimeout": "1s", "idleTimeout": "5m"})
        );
        assert_eq!(merge_confs::<TimeoutConf>(&[]), None);
    }
}
