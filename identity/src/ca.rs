//! Per-mesh certificate authorities and the trust bundles derived from them.
//!
//! Global generates one [`MeshCa`] per mesh with mTLS enabled (or loads a
//! user-provided one), stores it as a secret with [`MeshCa::to_pem`], and zone
//! control planes load it with [`MeshCa::from_pem`] to sign workload CSRs
//! ([`MeshCa::sign_csr`], in `csr.rs`). Data planes only ever see the CA
//! *certificate*, as a [`MeshTrust`].
//!
//! A generated CA is an ECDSA P-256 self-signed certificate with
//! `CN=<mesh>, O=Meridian`, basic constraints `CA:true, pathlen:0` (it signs
//! workload certificates only), key usages `keyCertSign, cRLSign,
//! digitalSignature`, and the URI SAN `spiffe://<mesh>` naming its trust
//! domain — which is how [`MeshCa::from_pem`] recovers the mesh. Its
//! `notBefore` is backdated by [`CLOCK_SKEW`] to tolerate clock skew.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{IdentityError, Result};
use crate::spiffe::{SPIFFE_PREFIX, validate_mesh};

/// How far `notBefore` is backdated on every certificate this crate issues,
/// so that a peer whose clock is slightly behind still accepts it.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// Default validity of a generated mesh CA: ten years.
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A mesh certificate authority: certificate and signing key.
///
/// Not `Clone`; share it behind an `Arc`. `Debug` never prints the key.
pub struct MeshCa {
    pub(crate) mesh: String,
    pub(crate) cert_pem: String,
    pub(crate) cert_der: CertificateDer<'static>,
    pub(crate) key_pem: String,
    pub(crate) issuer: Issuer<'static, KeyPair>,
    pub(crate) not_after: SystemTime,
}

/// The PEM form of a [`MeshCa`], as stored in a secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshCaPem {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl fmt::Debug for MeshCaPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshCaPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for MeshCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshCa")
            .field("mesh", &self.mesh)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl MeshCa {
    /// Generates a new CA for `mesh`, valid from now for `validity`.
    pub fn generate(mesh: &str, validity: Duration) -> Result<Self> {
        Self::generate_at(mesh, validity, SystemTime::now())
    }

    /// Generates a new CA for `mesh` as if the current time were `now`.
    pub fn generate_at(mesh: &str, validity: Duration, now: SystemTime) -> Result<Self> {
        validate_mesh(mesh)?;
        let fail = |reason: String| IdentityError::CaGenerate {
            mesh: mesh.to_string(),
            reason,
        };
        let (not_before, not_after) =
            validity_window(now, validity).map_err(|reason| IdentityError::InvalidValidity {
                what: format!("the CA of mesh {mesh:?}"),
                reason,
            })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, mesh);
        dn.push(DnType::OrganizationName, "Meridian");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let uri = format!("{SPIFFE_PREFIX}{mesh}");
        params.subject_alt_names = vec![SanType::URI(
            uri.try_into()
                .map_err(|e| fail(format!("trust domain URI: {e}")))?,
        )];
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial());
        let key = KeyPair::generate().map_err(|e| fail(format!("key generation: {e}")))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| fail(format!("self-signing: {e}")))?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let not_after = from_offset(params.not_after);
        Ok(Self {
            mesh: mesh.to_string(),
            cert_pem,
            cert_der: cert.der().clone(),
            key_pem,
            issuer: Issuer::new(params, key),
            not_after,
        })
    }

    /// Loads a CA stored with [`MeshCa::to_pem`]. The mesh is read from the
    /// certificate's `spiffe://<mesh>` URI SAN; use [`MeshCa::from_pem_for_mesh`]
    /// for a user-provided CA without one.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        Self::load(None, cert_pem, key_pem)
    }

    /// Loads a (possibly user-provided) CA and assigns it to `mesh`.
    pub fn from_pem_for_mesh(mesh: &str, cert_pem: &str, key_pem: &str) -> Result<Self> {
        validate_mesh(mesh)?;
        Self::load(Some(mesh), cert_pem, key_pem)
    }

    fn load(mesh: Option<&str>, cert_pem: &str, key_pem: &str) -> Result<Self> {
        let bad = |reason: String| IdentityError::CaLoad { reason };
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| bad(format!("CA certificate PEM: {e}")))?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| bad(format!("CA key PEM: {e}")))?;
        let (mesh, not_after) = {
            let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
                .map_err(|e| bad(format!("CA certificate DER: {e}")))?;
            if !cert.is_ca() {
                return Err(bad(
                    "the certificate is not a CA (basicConstraints CA:false)".into(),
                ));
            }
            if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(bad(
                    "the private key does not match the CA certificate".into()
                ));
            }
            let mesh = match mesh {
                Some(m) => m.to_string(),
                None => mesh_from_uris(&cert_uri_sans(&cert)).ok_or_else(|| {
                    bad("the CA certificate has no spiffe://<mesh> URI SAN; \
                         load it with from_pem_for_mesh"
                        .into())
                })?,
            };
            let ts = cert.validity().not_after.timestamp();
            (mesh, unix_to_system(ts))
        };
        let issuer =
            Issuer::from_ca_cert_der(&der, key).map_err(|e| bad(format!("CA certificate: {e}")))?;
        let key_pem = issuer.key().serialize_pem();
        Ok(Self {
            mesh,
            cert_pem: pem_of(&der),
            cert_der: der,
            key_pem,
            issuer,
            not_after,
        })
    }

    /// The PEM form (certificate and key) to store as a secret.
    pub fn to_pem(&self) -> MeshCaPem {
        MeshCaPem {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }

    /// The CA certificate, PEM (what data planes trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The mesh this CA belongs to.
    pub fn mesh(&self) -> &str {
        &self.mesh
    }

    /// When the CA certificate expires; issued certificates never outlive it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The trust bundle for this mesh (CA certificate only).
    pub fn trust(&self) -> MeshTrust {
        let mut roots = RootCertStore::empty();
        // The certificate was produced or parsed above; a failure here would
        // only make the bundle empty, which refuses every peer (fail closed).
        let _ = roots.add(self.cert_der.clone());
        MeshTrust {
            mesh: self.mesh.clone(),
            roots: Arc::new(roots),
            ca_pem: self.cert_pem.clone(),
        }
    }
}

/// The trust bundle of one mesh: the CA certificate(s) peers must chain to.
///
/// Several CA certificates may be given (e.g. old and new during a CA
/// rotation); a peer chaining to any of them is accepted.
#[derive(Clone)]
pub struct MeshTrust {
    pub(crate) mesh: String,
    pub(crate) roots: Arc<RootCertStore>,
    ca_pem: String,
}

impl fmt::Debug for MeshTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshTrust")
            .field("mesh", &self.mesh)
            .field("roots", &self.roots.len())
            .finish()
    }
}

impl MeshTrust {
    /// Builds the trust bundle of `mesh` from one or more PEM CA certificates.
    pub fn from_pem(mesh: &str, ca_pem: &str) -> Result<Self> {
        validate_mesh(mesh)?;
        let bad = |reason: String| IdentityError::InvalidCertificate { reason };
        let mut roots = RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let der = der.map_err(|e| bad(format!("CA bundle PEM of mesh {mesh:?}: {e}")))?;
            roots
                .add(der)
                .map_err(|e| bad(format!("CA bundle of mesh {mesh:?}: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad(format!(
                "CA bundle of mesh {mesh:?} holds no certificate"
            )));
        }
        Ok(Self {
            mesh: mesh.to_string(),
            roots: Arc::new(roots),
            ca_pem: ca_pem.to_string(),
        })
    }

    /// The mesh whose CA this is.
    pub fn mesh(&self) -> &str {
        &self.mesh
    }

    /// The CA certificate(s), PEM, as given.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

/// `spiffe://<mesh>` (no path) among URIs, if any.
fn mesh_from_uris(uris: &[String]) -> Option<String> {
    uris.iter().find_map(|u| {
        let td = u.strip_prefix(SPIFFE_PREFIX)?;
        validate_mesh(td).ok()?;
        Some(td.to_string())
    })
}

/// URI SANs of a parsed certificate (empty if it has none or they are malformed).
pub(crate) fn cert_uri_sans(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                x509_parser::extensions::GeneralName::URI(u) => Some((*u).to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A random positive 128-bit serial number.
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// `[now - CLOCK_SKEW, now + validity]`, whole seconds, as rcgen dates.
pub(crate) fn validity_window(
    now: SystemTime,
    validity: Duration,
) -> std::result::Result<(OffsetDateTime, OffsetDateTime), String> {
    if validity.is_zero() {
        return Err("validity must be greater than zero".into());
    }
    let now = system_to_unix(now);
    let before = now.saturating_sub(secs_i64(CLOCK_SKEW));
    let after = now
        .checked_add(secs_i64(validity).max(1))
        .ok_or("validity overflows the clock")?;
    let to = |s: i64| {
        OffsetDateTime::from_unix_timestamp(s).map_err(|e| format!("date out of range: {e}"))
    };
    Ok((to(before)?, to(after)?))
}

fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Seconds since the Unix epoch (negative before it).
pub(crate) fn system_to_unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => secs_i64(d),
        Err(e) => -secs_i64(e.duration()),
    }
}

pub(crate) fn unix_to_system(secs: i64) -> SystemTime {
    let abs = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(abs).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(abs).unwrap_or(UNIX_EPOCH)
    }
}

pub(crate) fn from_offset(t: OffsetDateTime) -> SystemTime {
    unix_to_system(t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_and_pem_round_trip() {
        let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
        assert_eq!(ca.mesh(), "default");
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let pem = ca.to_pem();
        let json = serde_json::to_string(&pem).unwrap();
        let pem: MeshCaPem = serde_json::from_str(&json).unwrap();
        let loaded = MeshCa::from_pem(&pem.cert_pem, &pem.key_pem).unwrap();
        assert_eq!(loaded.mesh(), "default");
        assert_eq!(loaded.cert_der(), ca.cert_der());
        assert_eq!(loaded.not_after(), ca.not_after());
        assert_eq!(loaded.to_pem(), ca.to_pem());
        assert!(!format!("{ca:?}{pem:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn load_rejects_bad_input() {
        let ca = MeshCa::generate("m1", DEFAULT_CA_VALIDITY).unwrap();
        let other = MeshCa::generate("m2", DEFAULT_CA_VALIDITY).unwrap();
        let pem = ca.to_pem();
        assert!(MeshCa::from_pem("garbage", &pem.key_pem).is_err());
        assert!(MeshCa::from_pem(&pem.cert_pem, "garbage").is_err());
        assert!(MeshCa::from_pem("", "").is_err());
        let mismatched = MeshCa::from_pem(&pem.cert_pem, &other.to_pem().key_pem).unwrap_err();
        assert!(
            mismatched.to_string().contains("does not match"),
            "{mismatched}"
        );
        assert!(MeshCa::generate("Not_A_Mesh", DEFAULT_CA_VALIDITY).is_err());
        assert!(MeshCa::generate("m", Duration::ZERO).is_err());
        let renamed = MeshCa::from_pem_for_mesh("other", &pem.cert_pem, &pem.key_pem).unwrap();
        assert_eq!(renamed.mesh(), "other");
    }

    #[test]
    fn trust_bundle() {
        let ca = MeshCa::generate("m1", DEFAULT_CA_VALIDITY).unwrap();
        let t = MeshTrust::from_pem("m1", ca.cert_pem()).unwrap();
        assert_eq!(t.mesh(), "m1");
        assert!(MeshTrust::from_pem("m1", "").is_err());
        assert!(MeshTrust::from_pem("m1", "-----BEGIN CERTIFICATE-----\nzz\n").is_err());
    }
}
