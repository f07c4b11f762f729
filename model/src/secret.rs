//! The `Secret` resource: opaque, base64-encoded bytes in a mesh (as Kuma's).
//!
//! Meridian keeps each mesh's CA certificate and key in secrets that global
//! creates and KDS carries to zones (which sign workload certificates). Secrets
//! are internal: the REST API does not serve them (see
//! [`ResourceKind::is_internal`](crate::ResourceKind::is_internal)).

use crate::error::{Validate, Violations};

/// The body of a `Secret`.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretSpec {
    /// The secret bytes, standard base64 with padding.
    pub data: String,
}

/// The name of the secret holding the CA certificate (PEM) of a mesh's
/// `builtin` mTLS backend `backend` (Kuma's naming, without the mesh prefix:
/// secrets are mesh-scoped already).
pub fn ca_cert_secret_name(backend: &str) -> String {
    format!("ca-builtin-cert-{backend}")
}

/// The name of the secret holding the CA private key (PEM) of backend `backend`.
pub fn ca_key_secret_name(backend: &str) -> String {
    format!("ca-builtin-key-{backend}")
}

impl SecretSpec {
    /// A secret holding `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        use base64::Engine as _;
        Self {
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// The secret's bytes; `None` if `data` is not valid base64.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&self.data)
            .ok()
    }
}

impl std::fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretSpec(<{} base64 characters>)", self.data.len())
    }
}

impl Validate for SecretSpec {
    fn validate(&self, path: &str, v: &mut Violations) {
        let field = if path.is_empty() {
            "data".to_owned()
        } else {
            format!("{path}.data")
        };
        let chars_ok = self
            .data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if self.data.is_empty() {
            v.add(field, "must be set");
        } else if !chars_ok || !self.data.len().is_multiple_of(4) {
            v.add(field, "must be standard base64 with padding");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_must_be_base64() {
        for (data, ok) in [
            ("aGVsbG8=", true),
            ("", false),
            ("not base64!", false),
            ("abc", false),
        ] {
            let mut v = Violations::default();
            SecretSpec { data: data.into() }.validate("", &mut v);
            assert_eq!(v.0.is_empty(), ok, "{data:?}");
        }
    }

    #[test]
    fn bytes_round_trip() {
        let s = SecretSpec::from_bytes(b"-----BEGIN CERTIFICATE-----\n");
        assert_eq!(
            s.to_bytes().as_deref(),
            Some(&b"-----BEGIN CERTIFICATE-----\n"[..])
        );
        assert_eq!(
            SecretSpec {
                data: "!!!!".into()
            }
            .to_bytes(),
            None
        );
    }

    #[test]
    fn debug_hides_the_data() {
        let s = SecretSpec {
            data: "c2VjcmV0".into(),
        };
        assert!(!format!("{s:?}").contains("c2VjcmV0"));
    }
}
