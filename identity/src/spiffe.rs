//! SPIFFE-style workload identities.
//!
//! A workload identity names a mesh and a service: [`WorkloadId`]
//! `{ mesh: "default", service: "web" }` is the URI `spiffe://default/web`.
//!
//! - The **mesh** is the SPIFFE trust domain. It must be a DNS-1123 label
//!   (lower-case ASCII letters, digits and `-`, starting and ending with a letter
//!   or digit, at most 63 characters) — the same rule the resource model applies
//!   to mesh names — so it never needs escaping.
//! - The **service** is the single path segment. Any non-empty UTF-8 string is
//!   accepted (Kuma service names such as `backend_kuma-demo_svc_8080` contain
//!   only unreserved characters and appear verbatim). Every byte of the UTF-8
//!   encoding that is not an RFC 3986 *unreserved* character (`A-Z a-z 0-9 - . _ ~`)
//!   is percent-encoded as `%XX` with **upper-case** hex digits; e.g. `a/b c` is
//!   `spiffe://default/a%2Fb%20c`.
//! - Parsing accepts only that canonical form (no lower-case hex, no encoded
//!   unreserved characters, no query, fragment, port, user info or extra path
//!   segments), so `parse(to_uri(id)) == id` and `to_uri(parse(s)) == s` for every
//!   accepted `s`: one identity has exactly one URI.
//!
//! Certificates also carry the Kuma-style URI SAN `kuma://kuma.io/service/<service>`
//! (service encoded the same way) for tooling that reads Kuma certificates; it is
//! informational only — authorization uses the SPIFFE ID.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{IdentityError, Result};

/// URI scheme prefix of SPIFFE IDs.
pub const SPIFFE_PREFIX: &str = "spiffe://";

/// Prefix of the Kuma-style service URI SAN.
pub const KUMA_SERVICE_PREFIX: &str = "kuma://kuma.io/service/";

/// The identity of a workload: a service inside a mesh.
///
/// Serialized (serde) as its SPIFFE URI string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkloadId {
    mesh: String,
    service: String,
}

impl WorkloadId {
    /// Builds an identity, validating the mesh (DNS-1123 label) and the
    /// service (non-empty).
    pub fn new(mesh: impl Into<String>, service: impl Into<String>) -> Result<Self> {
        let mesh = mesh.into();
        let service = service.into();
        validate_mesh(&mesh)?;
        if service.is_empty() {
            return Err(IdentityError::InvalidService {
                service,
                reason: "must not be empty".into(),
            });
        }
        Ok(Self { mesh, service })
    }

    /// The mesh (SPIFFE trust domain).
    pub fn mesh(&self) -> &str {
        &self.mesh
    }

    /// The service name, unescaped.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The canonical SPIFFE URI, `spiffe://<mesh>/<percent-encoded service>`.
    pub fn to_uri(&self) -> String {
        format!(
            "{SPIFFE_PREFIX}{}/{}",
            self.mesh,
            encode_segment(&self.service)
        )
    }

    /// The Kuma-style service URI, `kuma://kuma.io/service/<percent-encoded service>`.
    pub fn kuma_service_uri(&self) -> String {
        format!("{KUMA_SERVICE_PREFIX}{}", encode_segment(&self.service))
    }

    /// Parses a SPIFFE URI in the canonical form (see the module docs).
    pub fn parse(uri: &str) -> Result<Self> {
        let bad = |reason: &str| IdentityError::InvalidSpiffeId {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        let rest = uri
            .strip_prefix(SPIFFE_PREFIX)
            .ok_or_else(|| bad("must start with spiffe://"))?;
        let (mesh, encoded) = rest
            .split_once('/')
            .ok_or_else(|| bad("missing the /<service> path"))?;
        validate_mesh(mesh).map_err(|e| bad(&e.to_string()))?;
        let service = decode_segment(encoded).map_err(|reason| bad(&reason))?;
        Self::new(mesh, service).map_err(|e| bad(&e.to_string()))
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

impl FromStr for WorkloadId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for WorkloadId {
    type Error = IdentityError;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<WorkloadId> for String {
    fn from(id: WorkloadId) -> String {
        id.to_uri()
    }
}

/// Checks that `mesh` is a DNS-1123 label, usable as a SPIFFE trust domain.
pub fn validate_mesh(mesh: &str) -> Result<()> {
    let bad = |reason: &str| IdentityError::InvalidMesh {
        mesh: mesh.to_string(),
        reason: reason.to_string(),
    };
    if mesh.is_empty() {
        return Err(bad("must not be empty"));
    }
    if mesh.len() > 63 {
        return Err(bad("must be at most 63 characters"));
    }
    if !mesh
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("only lower-case letters, digits and '-' are allowed"));
    }
    if mesh.starts_with('-') || mesh.ends_with('-') {
        return Err(bad("must start and end with a letter or digit"));
    }
    Ok(())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes every byte that is not unreserved, with upper-case hex.
fn encode_segment(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Decodes a canonical encoded segment; rejects anything `encode_segment`
/// would not have produced.
fn decode_segment(s: &str) -> std::result::Result<String, String> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    if s.is_empty() {
        return Err("the service path segment is empty".into());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_unreserved(b) {
            out.push(b);
            i += 1;
        } else if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(format!(
                    "bad percent-escape at byte {i} (two upper-case hex digits required)"
                ));
            };
            let decoded = (hi << 4) | lo;
            if is_unreserved(decoded) {
                return Err(format!(
                    "non-canonical escape at byte {i}: unreserved characters must not be encoded"
                ));
            }
            out.push(decoded);
            i += 3;
        } else {
            return Err(format!(
                "character {:?} at byte {i} must be percent-encoded",
                char::from(b)
            ));
        }
    }
    String::from_utf8(out).map_err(|_| "the decoded service is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_round_trip() {
        let id = WorkloadId::new("default", "backend_kuma-demo_svc_8080").unwrap();
        assert_eq!(id.to_uri(), "spiffe://default/backend_kuma-demo_svc_8080");
        assert_eq!(WorkloadId::parse(&id.to_uri()).unwrap(), id);
        assert_eq!(
            id.kuma_service_uri(),
            "kuma://kuma.io/service/backend_kuma-demo_svc_8080"
        );
    }

    #[test]
    fn escaped_round_trip() {
        for service in ["a/b c", "100%", "é-ü", "x?y#z", "~._-", "%2F"] {
            let id = WorkloadId::new("m1", service).unwrap();
            let uri = id.to_uri();
            assert_eq!(WorkloadId::parse(&uri).unwrap(), id, "{uri}");
        }
        assert_eq!(
            WorkloadId::new("m", "a/b c").unwrap().to_uri(),
            "spiffe://m/a%2Fb%20c"
        );
    }

    #[test]
    fn rejects_non_canonical_and_garbage() {
        for uri in [
            "",
            "spiffe://",
            "spiffe://default",
            "spiffe://default/",
            "spiffe://Default/web",
            "spiffe://default/a/b",
            "spiffe://default/a%2fb",
            "spiffe://default/%41",
            "spiffe://default/a%2",
            "spiffe://default/a%ZZ",
            "spiffe://default/%FF",
            "spiffe://default:443/web",
            "spiffe://default/web?x=1",
            "http://default/web",
            "spiffe://-bad/web",
        ] {
            assert!(WorkloadId::parse(uri).is_err(), "{uri} accepted");
        }
        assert!(WorkloadId::new("default", "").is_err());
        assert!(WorkloadId::new("a".repeat(64), "web").is_err());
    }

    #[test]
    fn serde_as_uri() {
        let id = WorkloadId::new("default", "web").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"spiffe://default/web\"");
        let back: WorkloadId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<WorkloadId>("\"spiffe://x\"").is_err());
    }
}
