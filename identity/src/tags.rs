//! A workload's tags in its certificate: one `kuma://<tag>/<value>` URI SAN per
//! registered tag value, as Kuma's workload certificates carry them.
//!
//! The zone control plane builds [`WorkloadTags`] from the inbound tags it
//! registered for the proxy (never from what the proxy's CSR asks for), so a
//! certificate only ever states tags the zone CP accepted. The receiving side reads
//! them back with [`WorkloadTags::from_uris`] and MeshTrafficPermission `from`
//! subsets (`MeshSubset`, `MeshServiceSubset`) match on them.
//!
//! A proxy with several inbounds may carry several values of one tag (`version: v1`
//! on one inbound, `v2` on another); a subset selects it when it has every required
//! tag value, which is what Kuma's RBAC principals check (all listed URI SANs
//! present).
//!
//! Tag keys may contain `/` (`kuma.io/zone`); tag values never do (the model's
//! tag rule), so a URI splits at its last `/`. Keys and values outside the URI
//! character set are left out rather than encoded: the model refuses them at
//! registration, so none reach here.

use std::collections::{BTreeMap, BTreeSet};

/// URI scheme prefix of Kuma tag SANs.
pub const KUMA_TAG_PREFIX: &str = "kuma://";

/// The tag values of one workload, as its certificate states them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadTags(BTreeMap<String, BTreeSet<String>>);

impl WorkloadTags {
    /// No tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key: value`; a pair that cannot be written as a URI SAN is skipped.
    pub fn insert(&mut self, key: &str, value: &str) {
        if valid_part(key, true) && valid_part(value, false) {
            self.0
                .entry(key.to_owned())
                .or_default()
                .insert(value.to_owned());
        }
    }

    /// Every tag of every map in `maps` (e.g. each inbound's tags).
    pub fn from_maps<'a>(maps: impl IntoIterator<Item = &'a BTreeMap<String, String>>) -> Self {
        let mut tags = Self::new();
        for map in maps {
            for (key, value) in map {
                tags.insert(key, value);
            }
        }
        tags
    }

    /// The tags stated by `uris` (a certificate's URI SANs); other URIs are ignored.
    pub fn from_uris<'a>(uris: impl IntoIterator<Item = &'a str>) -> Self {
        let mut tags = Self::new();
        for uri in uris {
            if let Some((key, value)) = uri
                .strip_prefix(KUMA_TAG_PREFIX)
                .and_then(|rest| rest.rsplit_once('/'))
            {
                tags.insert(key, value);
            }
        }
        tags
    }

    /// Whether the workload has `key: value`.
    pub fn has(&self, key: &str, value: &str) -> bool {
        self.0.get(key).is_some_and(|values| values.contains(value))
    }

    /// The URI SANs, `kuma://<key>/<value>`, in key then value order.
    pub fn uris(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|(key, values)| {
                values
                    .iter()
                    .map(move |value| format!("{KUMA_TAG_PREFIX}{key}/{value}"))
            })
            .collect()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// ASCII that a URI SAN can hold verbatim: the model's tag characters (keys also
/// `/`), non-empty.
fn valid_part(s: &str, key: bool) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'.' | b'-' | b'_' | b':')
                || (key && b == b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_through_uris_with_slashes_in_keys_and_several_values() {
        let inbound = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let tags = WorkloadTags::from_maps(&[
            inbound(&[("kuma.io/service", "web"), ("version", "v1")]),
            inbound(&[("kuma.io/zone", "zone-1"), ("version", "v2")]),
        ]);
        let uris = tags.uris();
        assert_eq!(
            uris,
            vec![
                "kuma://kuma.io/service/web",
                "kuma://kuma.io/zone/zone-1",
                "kuma://version/v1",
                "kuma://version/v2",
            ]
        );
        let read = WorkloadTags::from_uris(
            uris.iter()
                .map(String::as_str)
                .chain(["spiffe://default/web", "kuma://no-value"]),
        );
        assert_eq!(read, tags);
        assert!(read.has("kuma.io/zone", "zone-1") && read.has("version", "v2"));
        assert!(!read.has("version", "v3") && !read.has("zone", "zone-1"));
    }

    #[test]
    fn pairs_a_uri_cannot_hold_are_left_out() {
        let mut tags = WorkloadTags::new();
        tags.insert("version", "a/b");
        tags.insert("", "v1");
        tags.insert("team", "a b");
        assert!(tags.is_empty());
    }
}
