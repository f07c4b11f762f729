//! The SNI name format of cross-zone traffic.
//!
//! A sidecar that sends mesh traffic to another zone originates mTLS with a
//! server name that tells the remote zone ingress (and the local zone egress)
//! which mesh, service and subset the connection is for, so they can route it
//! without terminating TLS. [`SniTarget::to_sni`] computes that name.
//!
//! # Grammar
//!
//! ```text
//! sni            = service-label "." [ subset-label "." ] mesh-label ".mesh.meridian"
//! service-label  = slug(service, 46) "-" hash
//! subset-label   = slug(tags, 63)           ; present only when the subset is not empty
//! mesh-label     = slug(mesh, 63)
//! hash           = 16 lowercase hex digits  ; the first 8 bytes of SHA-256(tuple-encoding)
//! tags           = k1 "-" v1 "-" k2 "-" v2 …  ; the subset's tags in ascending key order
//!
//! slug(s, n)     = 1 to n characters of [a-z0-9-], neither first nor last "-", no "--":
//!                  ASCII letters of s lowercased, ASCII digits kept, every run of any
//!                  other characters (".", "_", "-", "/", spaces, non-ASCII, …) replaced
//!                  by one "-", leading and trailing "-" removed, cut to n characters,
//!                  "-" at the cut removed again; "x" when nothing is left.
//!
//! tuple-encoding = "meridian-sni-v1" 0x00
//!                  len(mesh) mesh len(service) service count(subset)
//!                  { len(key) key len(value) value }   ; ascending key order
//!                  ; len and count are 8-byte big-endian integers, strings are UTF-8 bytes
//! ```
//!
//! For example mesh `default`, service `backend_kuma-demo_svc_3001`, subset
//! `{version: v2}` gives `backend-kuma-demo-svc-3001-<hash>.version-v2.default.mesh.meridian`.
//!
//! # Properties
//!
//! - **Always a valid DNS name**, whatever the input: every label has 1 to 63
//!   characters of `[a-z0-9-]` and neither starts nor ends with `-`; the name has
//!   at most 46+17 + 1 + 63 + 1 + 63 + 14 = 205 characters (limit 253).
//! - **Deterministic**: the same tuple always gives the same name, on every
//!   platform and version that keeps the `v1` encoding.
//! - **No collisions between distinct tuples** (up to the 64-bit hash): the
//!   slugs are lossy (`a.b` and `a_b` both give `a-b`; long names are cut),
//!   but the hash covers the exact mesh, service and tags, length-prefixed, so
//!   mesh `a` + service `b.c` and mesh `a.b` + service `c` differ.
//! - **Readable**: the service, subset and mesh appear in the name, sanitized
//!   and possibly cut.
//!
//! Routing does not decode names: an ingress computes the name of each service
//! (and subset) it serves and looks the peeked server name up in a map. Names
//! are lowercase; TLS stacks (rustls included) lowercase the received server
//! name, and a lookup should do the same. [`looks_like_meridian_sni`] is a
//! quick syntactic reject for anything that cannot be one of these names.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The suffix every Meridian SNI name ends with (two labels, without the leading dot).
pub const SNI_SUFFIX: &str = "mesh.meridian";

/// Hex digits of the tuple hash in the service label (64 bits).
pub const HASH_HEX_LEN: usize = 16;

/// Longest service slug: a label is at most 63 characters, minus `-` and the hash.
const SERVICE_SLUG_MAX: usize = MAX_LABEL_LEN - 1 - HASH_HEX_LEN;

/// Longest DNS label.
const MAX_LABEL_LEN: usize = 63;

/// Longest DNS name (in its dotted text form, without a trailing dot).
const MAX_NAME_LEN: usize = 253;

/// Domain-separation prefix of the hashed tuple encoding.
const HASH_DOMAIN: &[u8] = b"meridian-sni-v1\0";

/// What a cross-zone connection is for: a service of a mesh, optionally a subset
/// of its instances selected by tags.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SniTarget {
    /// The mesh name.
    pub mesh: String,
    /// The service name (the `kuma.io/service` tag value), e.g. `backend_kuma-demo_svc_3001`.
    pub service: String,
    /// The subset's tags; empty for the whole service.
    pub subset: BTreeMap<String, String>,
}

impl SniTarget {
    /// A target for the whole service `service` of mesh `mesh` (no subset).
    pub fn new(mesh: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            mesh: mesh.into(),
            service: service.into(),
            subset: BTreeMap::new(),
        }
    }

    /// The same target restricted to instances tagged `key: value` (added to the subset).
    #[must_use]
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.subset.insert(key.into(), value.into());
        self
    }

    /// The SNI name of this target; see the module documentation for the grammar.
    pub fn to_sni(&self) -> String {
        let mut name = String::with_capacity(128);
        name.push_str(&slug(&self.service, SERVICE_SLUG_MAX));
        name.push('-');
        name.push_str(&self.hash_hex());
        name.push('.');
        if !self.subset.is_empty() {
            let mut tags = String::new();
            for (key, value) in &self.subset {
                // Stop early: the slug is cut to one label anyway. The cut
                // point only depends on the input, so the result stays
                // deterministic.
                if tags.len() > 4 * MAX_LABEL_LEN {
                    break;
                }
                tags.push_str(key);
                tags.push('-');
                tags.push_str(value);
                tags.push('-');
            }
            name.push_str(&slug(&tags, MAX_LABEL_LEN));
            name.push('.');
        }
        name.push_str(&slug(&self.mesh, MAX_LABEL_LEN));
        name.push('.');
        name.push_str(SNI_SUFFIX);
        name
    }

    /// The first 64 bits of SHA-256 over the length-prefixed tuple, as 16 hex digits.
    fn hash_hex(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(HASH_DOMAIN);
        hash_str(&mut hasher, &self.mesh);
        hash_str(&mut hasher, &self.service);
        hasher.update((self.subset.len() as u64).to_be_bytes());
        for (key, value) in &self.subset {
            hash_str(&mut hasher, key);
            hash_str(&mut hasher, value);
        }
        let digest = hasher.finalize();
        let mut hex = String::with_capacity(HASH_HEX_LEN);
        for byte in digest.iter().take(HASH_HEX_LEN / 2) {
            hex.push(hex_digit(byte >> 4));
            hex.push(hex_digit(byte & 0x0f));
        }
        hex
    }
}

impl std::fmt::Display for SniTarget {
    /// Writes the SNI name ([`SniTarget::to_sni`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_sni())
    }
}

/// Domain-separation prefix of the hashed resource tuple encoding.
const RESOURCE_HASH_DOMAIN: &[u8] = b"meridian-sni-resource-v1\0";

/// What a cross-zone connection to a Kuma 2.x resource is for: one port of a
/// MeshService (named as its own zone names it), or one port of a
/// MeshMultiZoneService (global, so named the same in every zone).
///
/// ```text
/// mesh-service-sni = name-label "." port "." slug(zone, 63) "." mesh-label ".ms." SNI_SUFFIX
/// multizone-sni    = name-label "." port "." mesh-label ".mzs." SNI_SUFFIX
/// name-label       = slug(name, 46) "-" hash   ; hash as above, over
///                    "meridian-sni-resource-v1" 0x00 len(kind) kind len(mesh) mesh
///                    len(zone) zone len(name) name port(4-byte big-endian)
/// ```
///
/// Five and four labels before the suffix, where a service name has two or
/// three: the three forms never collide.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceSni {
    /// One port of a MeshService.
    MeshService {
        /// The mesh.
        mesh: String,
        /// The zone that owns it.
        zone: String,
        /// Its name in its own zone (`kuma.io/display-name`).
        name: String,
        /// The port.
        port: u32,
    },
    /// One port of a MeshMultiZoneService.
    MultiZone {
        /// The mesh.
        mesh: String,
        /// Its name.
        name: String,
        /// The port.
        port: u32,
    },
}

impl ResourceSni {
    /// The SNI name (see the type's grammar).
    pub fn to_sni(&self) -> String {
        let (kind, mesh, zone, name, port) = match self {
            ResourceSni::MeshService {
                mesh,
                zone,
                name,
                port,
            } => ("ms", mesh, Some(zone), name, *port),
            ResourceSni::MultiZone { mesh, name, port } => ("mzs", mesh, None, name, *port),
        };
        let mut hasher = Sha256::new();
        hasher.update(RESOURCE_HASH_DOMAIN);
        hash_str(&mut hasher, kind);
        hash_str(&mut hasher, mesh);
        hash_str(&mut hasher, zone.map_or("", String::as_str));
        hash_str(&mut hasher, name);
        hasher.update(port.to_be_bytes());
        let digest = hasher.finalize();
        let mut out = slug(name, SERVICE_SLUG_MAX);
        out.push('-');
        for byte in digest.iter().take(HASH_HEX_LEN / 2) {
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0x0f));
        }
        out.push('.');
        out.push_str(&port.to_string());
        out.push('.');
        if let Some(zone) = zone {
            out.push_str(&slug(zone, MAX_LABEL_LEN));
            out.push('.');
        }
        out.push_str(&slug(mesh, MAX_LABEL_LEN));
        out.push('.');
        out.push_str(kind);
        out.push('.');
        out.push_str(SNI_SUFFIX);
        out
    }
}

/// Feeds one length-prefixed string to the hasher.
fn hash_str(hasher: &mut Sha256, s: &str) {
    hasher.update((s.len() as u64).to_be_bytes());
    hasher.update(s.as_bytes());
}

/// The lowercase hex digit of a nibble.
fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

/// `s` as a DNS label of at most `max` characters (see `slug` in the module grammar).
fn slug(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(max.min(s.len()) + 1);
    let mut pending_dash = false;
    for c in s.chars() {
        if out.len() >= max {
            break;
        }
        if c.is_ascii_alphanumeric() {
            if pending_dash && !out.is_empty() {
                out.push('-');
                if out.len() >= max {
                    break;
                }
            }
            pending_dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            pending_dash = true;
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push('x');
    }
    out
}

/// Whether `label` is a DNS label as this crate writes them: 1 to 63 characters of
/// `[a-z0-9-]` (ASCII letters of either case), not starting or ending with `-`.
fn is_valid_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// Whether `name` is a valid DNS host name: dot-separated labels of 1 to 63
/// characters of `[A-Za-z0-9-]`, none starting or ending with `-`, at most 253
/// characters in all (no trailing dot).
pub fn is_valid_dns_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN && name.split('.').all(is_valid_label)
}

/// A quick syntactic check that `name` could be a name made by [`SniTarget::to_sni`]:
/// a valid DNS name of 4 or 5 labels ending in `.mesh.meridian` whose first label
/// ends with `-` and 16 hex digits. ASCII case is ignored, as in DNS.
///
/// `true` does not mean a service with that name exists: routing looks the
/// (lowercased) name up among the names of the services it serves.
pub fn looks_like_meridian_sni(name: &str) -> bool {
    if !is_valid_dns_name(name) {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    let n = labels.len();
    // 4–5 labels: a service (and subset); 6: a MeshMultiZoneService port;
    // 7: a MeshService port (see [`ResourceSni`]).
    let form_ok = match n {
        4 | 5 => true,
        6 => labels[n - 3].eq_ignore_ascii_case("mzs"),
        7 => labels[n - 3].eq_ignore_ascii_case("ms"),
        _ => false,
    };
    if !form_ok {
        return false;
    }
    if !labels[n - 2].eq_ignore_ascii_case("mesh")
        || !labels[n - 1].eq_ignore_ascii_case("meridian")
    {
        return false;
    }
    let service = labels[0].as_bytes();
    // At least one slug character, then "-", then the hash.
    if service.len() < HASH_HEX_LEN + 2 {
        return false;
    }
    let (head, hash) = service.split_at(service.len() - HASH_HEX_LEN);
    head.last() == Some(&b'-') && hash.iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_are_valid_distinct_and_recognised() {
        let ms = |zone: &str, name: &str, port| ResourceSni::MeshService {
            mesh: "default".into(),
            zone: zone.into(),
            name: name.into(),
            port,
        };
        let a = ms("zone-1", "redis", 6379).to_sni();
        assert!(a.starts_with("redis-"), "{a}");
        assert!(a.ends_with(".6379.zone-1.default.ms.mesh.meridian"), "{a}");
        let mz = ResourceSni::MultiZone {
            mesh: "default".into(),
            name: "redis".into(),
            port: 6379,
        }
        .to_sni();
        assert!(mz.ends_with(".6379.default.mzs.mesh.meridian"), "{mz}");
        let others = [
            ms("zone-2", "redis", 6379).to_sni(),
            ms("zone-1", "redis", 6380).to_sni(),
            ms("zone-1", "redis2", 6379).to_sni(),
            SniTarget::new("default", "redis").to_sni(),
            mz.clone(),
        ];
        for other in &others {
            assert_ne!(&a, other);
            assert!(looks_like_meridian_sni(other), "{other}");
        }
        assert!(looks_like_meridian_sni(&a));
        let long = ms(&"z".repeat(63), &"n".repeat(300), 65535).to_sni();
        assert!(is_valid_dns_name(&long), "{long}");
        assert!(!looks_like_meridian_sni(
            "redis-0123456789abcdef.1.z.m.xx.mesh.meridian"
        ));
    }

    fn hash_of(t: &SniTarget) -> String {
        t.hash_hex()
    }

    #[test]
    fn table() {
        let cases: Vec<(SniTarget, &str)> = vec![
            (
                SniTarget::new("default", "backend_kuma-demo_svc_3001"),
                "backend-kuma-demo-svc-3001-{h}.default.mesh.meridian",
            ),
            (
                SniTarget::new("default", "backend").with_tag("version", "v2"),
                "backend-{h}.version-v2.default.mesh.meridian",
            ),
            (
                SniTarget::new("Prod.EU", "Web.Frontend")
                    .with_tag("kuma.io/zone", "east")
                    .with_tag("version", "v1"),
                "web-frontend-{h}.kuma-io-zone-east-version-v1.prod-eu.mesh.meridian",
            ),
            (SniTarget::new("", ""), "x-{h}.x.mesh.meridian"),
            (
                SniTarget::new("ünïcødé", "服务").with_tag("ключ", "значение"),
                "x-{h}.x.n-c-d.mesh.meridian",
            ),
            (
                SniTarget::new("--m--", "__a__b__"),
                "a-b-{h}.m.mesh.meridian",
            ),
        ];
        for (target, pattern) in cases {
            let expected = pattern.replace("{h}", &hash_of(&target));
            let sni = target.to_sni();
            assert_eq!(sni, expected, "{target:?}");
            assert!(is_valid_dns_name(&sni), "{sni}");
            assert!(looks_like_meridian_sni(&sni), "{sni}");
            assert_eq!(target.to_string(), sni);
        }
    }

    #[test]
    fn hash_is_pinned() {
        // The hash is part of the wire format: changing it breaks routing
        // between zones running different versions.
        let sni = SniTarget::new("default", "backend").to_sni();
        assert_eq!(
            sni.len(),
            "backend-".len() + 16 + ".default.mesh.meridian".len()
        );
        let expected_hash = {
            let mut h = Sha256::new();
            h.update(b"meridian-sni-v1\0");
            h.update(7u64.to_be_bytes());
            h.update(b"default");
            h.update(7u64.to_be_bytes());
            h.update(b"backend");
            h.update(0u64.to_be_bytes());
            let d = h.finalize();
            d.iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(
            sni,
            format!("backend-{expected_hash}.default.mesh.meridian")
        );
    }

    #[test]
    fn long_inputs_are_cut_to_labels() {
        let long = "Very_Long.Service-Name".repeat(40);
        let mut target = SniTarget::new(long.clone(), long.clone());
        for i in 0..200 {
            target = target.with_tag(format!("tag-{i}-{long}"), long.clone());
        }
        let sni = target.to_sni();
        assert!(is_valid_dns_name(&sni), "{sni}");
        assert!(looks_like_meridian_sni(&sni));
        let labels: Vec<&str> = sni.split('.').collect();
        assert_eq!(labels.len(), 5);
        assert_eq!(labels[0].len(), 63);
        assert_eq!(labels[1].len(), 63);
        assert!(labels[0].starts_with("very-long-service-namevery-long"));
        assert!(sni.len() <= 205, "{}", sni.len());
    }

    #[test]
    fn ambiguous_splits_differ() {
        let pairs = [
            (SniTarget::new("a", "b.c"), SniTarget::new("a.b", "c")),
            (SniTarget::new("a", "b_c"), SniTarget::new("a", "b.c")),
            (SniTarget::new("a", "B"), SniTarget::new("a", "b")),
            (
                SniTarget::new("m", "s").with_tag("a", "b-c"),
                SniTarget::new("m", "s").with_tag("a-b", "c"),
            ),
            (
                SniTarget::new("m", "s"),
                SniTarget::new("m", "s").with_tag("", ""),
            ),
            (
                SniTarget::new("m", "s").with_tag("k", "v"),
                SniTarget::new("m", "s")
                    .with_tag("k", "v")
                    .with_tag("l", ""),
            ),
        ];
        for (a, b) in pairs {
            assert_ne!(a.to_sni(), b.to_sni(), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn slug_rules() {
        assert_eq!(slug("Hello World", 63), "hello-world");
        assert_eq!(slug("a--b", 63), "a-b");
        assert_eq!(slug("abc-def", 4), "abc");
        assert_eq!(slug("abcdef", 3), "abc");
        assert_eq!(slug("...", 63), "x");
        assert_eq!(slug("a.b.c", 3), "a-b");
    }

    #[test]
    fn quick_rejects() {
        let good = SniTarget::new("default", "web").to_sni();
        assert!(looks_like_meridian_sni(&good));
        assert!(looks_like_meridian_sni(&good.to_ascii_uppercase()));
        for bad in [
            "",
            "example.com",
            "web.default.mesh.meridian",
            "web-0123456789abcdeg.default.mesh.meridian",
            "-0123456789abcdef.default.mesh.meridian",
            "0123456789abcdef.default.mesh.meridian",
            "web-0123456789abcdef.default.mesh.other",
            "web-0123456789abcdef.a.b.c.mesh.meridian",
            "web-0123456789abcdef..default.mesh.meridian",
            "web-0123456789abcdef.default.mesh.meridian.",
            "web_x-0123456789abcdef.default.mesh.meridian",
        ] {
            assert!(!looks_like_meridian_sni(bad), "{bad}");
        }
        assert!(looks_like_meridian_sni(
            "web-0123456789abcdef.v1.default.mesh.meridian"
        ));
    }

    #[test]
    fn dns_name_validation() {
        assert!(is_valid_dns_name("a.b-c.d"));
        assert!(!is_valid_dns_name("a..b"));
        assert!(!is_valid_dns_name("-a.b"));
        assert!(!is_valid_dns_name(&"a".repeat(64)));
        assert!(is_valid_dns_name(&"a".repeat(63)));
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(long.len(), 255);
        assert!(!is_valid_dns_name(&long));
    }
}
