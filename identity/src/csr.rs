//! Workload keys, certificate signing requests and issued workload certificates.
//!
//! The flow keeps every private key on its data plane:
//!
//! 1. the proxy calls [`WorkloadKey::generate`] for the [`WorkloadId`] it was
//!    registered as, keeps the key and sends the CSR PEM to its zone control plane;
//! 2. the zone CP calls [`MeshCa::sign_csr`] with the identity **it** registered
//!    for that proxy, with the tags it registered ([`WorkloadTags`]). The CSR is
//!    parsed and its self-signature verified; every URI SAN it requests must be
//!    that identity's SPIFFE ID (required, exactly once), its Kuma service URI or
//!    one of its registered tag URIs — any other URI (another service, another
//!    mesh, a tag the zone CP did not register) is refused with
//!    [`IdentityError::IdentityMismatch`]. Nothing else in the CSR is copied: the
//!    certificate is built from scratch with only the CSR's public key;
//! 3. the proxy gets an [`IssuedCert`] back and rotates at [`renew_at`].
//!
//! An issued certificate has: an empty-CA basic constraint (`CA:false`), key
//! usages `digitalSignature, keyEncipherment`, extended key usages
//! `serverAuth, clientAuth` (the same certificate serves inbound and outbound
//! mTLS), the URI SANs `spiffe://<mesh>/<service>`,
//! `kuma://kuma.io/service/<service>` and `kuma://<tag>/<value>` for every other
//! registered tag value (as Kuma's certificates have them), the DNS SANs passed by the caller (e.g.
//! the service's SNI names), `O=<mesh>`, a random 128-bit serial, and the
//! validity `[now - CLOCK_SKEW, min(now + validity, CA notAfter)]`.

use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};

use crate::ca::{MeshCa, from_offset, random_serial, validity_window};
use crate::error::{IdentityError, Result};
use crate::spiffe::WorkloadId;
use crate::tags::WorkloadTags;

/// Default lifetime of a workload certificate: 24 hours.
pub const DEFAULT_WORKLOAD_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// A data plane's private key (ECDSA P-256). `Debug` never prints it.
pub struct WorkloadKey {
    key: KeyPair,
}

impl std::fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkloadKey(<redacted>)")
    }
}

impl WorkloadKey {
    /// Generates a fresh key and a CSR (PEM) requesting `id`.
    pub fn generate(id: &WorkloadId) -> Result<(Self, String)> {
        let key = KeyPair::generate().map_err(|e| IdentityError::Key {
            reason: format!("generating a key for {id}: {e}"),
        })?;
        let key = Self { key };
        let csr = key.csr_pem(id)?;
        Ok((key, csr))
    }

    /// Loads a key from PKCS#8 PEM (e.g. one kept across a restart).
    pub fn from_pem(pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(pem).map_err(|e| IdentityError::Key {
            reason: format!("loading the key PEM: {e}"),
        })?;
        Ok(Self { key })
    }

    /// A CSR (PEM) requesting `id` for this key, e.g. to renew without a new key.
    pub fn csr_pem(&self, id: &WorkloadId) -> Result<String> {
        let fail = |reason: String| IdentityError::Key {
            reason: format!("building the CSR for {id}: {reason}"),
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = identity_sans(id, &WorkloadTags::new()).map_err(fail)?;
        let csr = params
            .serialize_request(&self.key)
            .map_err(|e| fail(e.to_string()))?;
        csr.pem().map_err(|e| fail(e.to_string()))
    }

    /// The key as PKCS#8 PEM.
    pub fn private_key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The key in the form rustls takes.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }
}

/// A certificate issued to a workload by its mesh CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    /// The identity the certificate carries.
    pub id: WorkloadId,
    /// PEM: the workload certificate followed by the mesh CA certificate.
    pub cert_chain_pem: String,
    /// The certificate's `notBefore` plus [`crate::ca::CLOCK_SKEW`]: the `now` it was issued at (whole seconds).
    pub issued_at: SystemTime,
    /// The certificate's `notAfter`.
    pub not_after: SystemTime,
}

impl IssuedCert {
    /// When to request the next certificate; see [`renew_at`].
    pub fn renew_at(&self) -> SystemTime {
        renew_at(self.not_after, self.issued_at)
    }
}

/// When to rotate a certificate valid from `issued_at` to `not_after`: after
/// two thirds of its lifetime (16 h into a 24 h certificate), leaving a third
/// of it to retry the CSR if the control plane is unreachable. Returns
/// `issued_at` itself if the lifetime is empty or negative (renew now).
pub fn renew_at(not_after: SystemTime, issued_at: SystemTime) -> SystemTime {
    match not_after.duration_since(issued_at) {
        Ok(lifetime) => {
            let nanos = lifetime.as_nanos() * 2 / 3;
            let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
            let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
            issued_at
                .checked_add(Duration::new(secs, sub))
                .unwrap_or(not_after)
        }
        Err(_) => issued_at,
    }
}

/// The URI SANs of `id` with `tags`: the SPIFFE ID, the Kuma service URI, then
/// every other tag URI (the service tag's is the Kuma service URI already).
fn identity_uris(id: &WorkloadId, tags: &WorkloadTags) -> Vec<String> {
    let service = id.kuma_service_uri();
    let mut uris = vec![id.to_uri(), service.clone()];
    uris.extend(tags.uris().into_iter().filter(|u| *u != service));
    uris
}

fn identity_sans(
    id: &WorkloadId,
    tags: &WorkloadTags,
) -> std::result::Result<Vec<SanType>, String> {
    identity_uris(id, tags)
        .into_iter()
        .map(|u| {
            u.try_into()
                .map(SanType::URI)
                .map_err(|e| format!("URI SAN: {e}"))
        })
        .collect()
}

impl MeshCa {
    /// Signs a workload CSR for `expected`, the identity the zone control
    /// plane registered for the requesting proxy, with `tags`, the tags it
    /// registered (see the module docs for what is checked and what the
    /// certificate contains).
    ///
    /// `dns_names` become DNS SANs (e.g. the SNI names of the service);
    /// `now` is the issue time (tests pass times in the past).
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        expected: &WorkloadId,
        tags: &WorkloadTags,
        dns_names: &[String],
        validity: Duration,
        now: SystemTime,
    ) -> Result<IssuedCert> {
        if expected.mesh() != self.mesh {
            return Err(IdentityError::IdentityMismatch {
                expected: expected.to_string(),
                requested: format!("a certificate from the CA of mesh {:?}", self.mesh),
            });
        }
        let invalid = |reason: String| IdentityError::InvalidCsr {
            expected: expected.to_string(),
            reason,
        };
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| invalid(format!("{e}")))?;
        check_requested_identity(&csr.params, expected, tags)?;

        let sign_err = |reason: String| IdentityError::Sign {
            identity: expected.to_string(),
            reason,
        };
        let (not_before, mut not_after) =
            validity_window(now, validity).map_err(|reason| IdentityError::InvalidValidity {
                what: expected.to_string(),
                reason,
            })?;
        if from_offset(not_after) > self.not_after {
            not_after = time::OffsetDateTime::from_unix_timestamp(crate::ca::system_to_unix(
                self.not_after,
            ))
            .map_err(|e| sign_err(e.to_string()))?;
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, expected.mesh());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let mut sans = identity_sans(expected, tags).map_err(sign_err)?;
        for name in dns_names {
            let dns = name
                .clone()
                .try_into()
                .map_err(|e| sign_err(format!("DNS SAN {name:?}: {e}")))?;
            sans.push(SanType::DnsName(dns));
        }
        params.subject_alt_names = sans;
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| sign_err(e.to_string()))?;
        Ok(IssuedCert {
            id: expected.clone(),
            cert_chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            issued_at: from_offset(not_before) + crate::ca::CLOCK_SKEW,
            not_after: from_offset(not_after),
        })
    }
}

/// Refuses a CSR unless its URI SANs are `expected`'s SPIFFE ID (once) and
/// otherwise only its registered identity URIs.
fn check_requested_identity(
    params: &CertificateParams,
    expected: &WorkloadId,
    tags: &WorkloadTags,
) -> Result<()> {
    let spiffe = expected.to_uri();
    let allowed = identity_uris(expected, tags);
    let mut uris = Vec::new();
    for san in &params.subject_alt_names {
        if let SanType::URI(u) = san {
            uris.push(u.as_str().to_string());
        }
    }
    let foreign: Vec<&String> = uris.iter().filter(|u| !allowed.contains(u)).collect();
    let spiffe_count = uris.iter().filter(|u| **u == spiffe).count();
    if !foreign.is_empty() || spiffe_count != 1 {
        let requested = if uris.is_empty() {
            "no identity (no URI SAN)".to_string()
        } else {
            uris.join(", ")
        };
        return Err(IdentityError::IdentityMismatch {
            expected: spiffe,
            requested,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::DEFAULT_CA_VALIDITY;

    fn id(mesh: &str, service: &str) -> WorkloadId {
        WorkloadId::new(mesh, service).unwrap()
    }

    #[test]
    fn csr_for_web_is_signed() {
        let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
        let web = id("default", "web");
        let (_key, csr) = WorkloadKey::generate(&web).unwrap();
        let now = SystemTime::now();
        let dns = vec!["web.default.mesh".to_string()];
        let issued = ca
            .sign_csr(
                &csr,
                &web,
                &WorkloadTags::new(),
                &dns,
                DEFAULT_WORKLOAD_VALIDITY,
                now,
            )
            .unwrap();
        assert_eq!(issued.id, web);
        assert_eq!(
            issued.cert_chain_pem.matches("BEGIN CERTIFICATE").count(),
            2
        );
        let lifetime = issued.not_after.duration_since(issued.issued_at).unwrap();
        assert_eq!(lifetime, DEFAULT_WORKLOAD_VALIDITY);
        // The leaf carries the SPIFFE ID, the Kuma URI and the DNS name.
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(issued.cert_chain_pem.as_bytes())
                .unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let uris = crate::ca::cert_uri_sans(&cert);
        assert_eq!(
            uris,
            vec!["spiffe://default/web", "kuma://kuma.io/service/web"]
        );
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
    }

    use rustls::pki_types::pem::PemObject;

    #[test]
    fn registered_tags_are_in_the_certificate_and_unregistered_ones_are_refused() {
        let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
        let web = id("default", "web");
        let mut tags = WorkloadTags::new();
        tags.insert("kuma.io/service", "web");
        tags.insert("kuma.io/zone", "zone-1");
        tags.insert("version", "v1");
        let (key, csr) = WorkloadKey::generate(&web).unwrap();
        let now = SystemTime::now();
        let issued = ca
            .sign_csr(&csr, &web, &tags, &[], DEFAULT_WORKLOAD_VALIDITY, now)
            .unwrap();
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(issued.cert_chain_pem.as_bytes())
                .unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        assert_eq!(
            crate::ca::cert_uri_sans(&cert),
            vec![
                "spiffe://default/web",
                "kuma://kuma.io/service/web",
                "kuma://kuma.io/zone/zone-1",
                "kuma://version/v1",
            ]
        );
        // A CSR asking for a registered tag is signed; one asking for a tag the
        // zone CP did not register is refused, naming it.
        let csr_with = |uris: &[&str]| {
            let mut params = CertificateParams::default();
            params.subject_alt_names = uris
                .iter()
                .map(|u| SanType::URI((*u).to_owned().try_into().unwrap()))
                .collect();
            params.serialize_request(&key.key).unwrap().pem().unwrap()
        };
        let registered = csr_with(&["spiffe://default/web", "kuma://version/v1"]);
        ca.sign_csr(
            &registered,
            &web,
            &tags,
            &[],
            DEFAULT_WORKLOAD_VALIDITY,
            now,
        )
        .unwrap();
        let forged = csr_with(&["spiffe://default/web", "kuma://version/v2"]);
        let err = ca
            .sign_csr(&forged, &web, &tags, &[], DEFAULT_WORKLOAD_VALIDITY, now)
            .unwrap_err();
        assert!(
            matches!(err, IdentityError::IdentityMismatch { .. })
                && err.to_string().contains("kuma://version/v2"),
            "{err}"
        );
    }

    #[test]
    fn csr_claiming_another_service_is_refused() {
        let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
        let (_key, csr) = WorkloadKey::generate(&id("default", "backend")).unwrap();
        let err = ca
            .sign_csr(
                &csr,
                &id("default", "web"),
                &WorkloadTags::new(),
                &[],
                DEFAULT_WORKLOAD_VALIDITY,
                SystemTime::now(),
            )
            .unwrap_err();
        assert!(
            matches!(err, IdentityError::IdentityMismatch { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("spiffe://default/backend") && msg.contains("spiffe://default/web"));
    }

    #[test]
    fn csr_for_another_mesh_is_refused() {
        let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
        let other = id("other", "web");
        let (_key, csr) = WorkloadKey::generate(&other).unwrap();
        let now = SystemTime::now();
        assert!(matches!(
            ca.sign_csr(
                &csr,
                &other,
                &WorkloadTags::new(),
                &[],
                DEFAULT_WORKLOAD_VALIDITY,
                now
            ),
            Err(IdentityError::IdentityMismatch { .. })
        ));
        assert!(matches!(
            ca.sign_csr(
                &csr,
                &id("default", "web"),
                &WorkloadTags::new(),
                &[],
                DEFAULT_WORKLOAD_VALIDITY,
                now
            ),
            Err(IdentityError::IdentityMismatch { .. })
        ));
    }

    #[test]
    fn csr_without_identity_or_with_extra_identity_is_refused() {
        let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
        let web = id("default", "web");
        let key = KeyPair::generate().unwrap();
        let now = SystemTime::now();
        for sans in [
            vec![],
            vec![SanType::DnsName("web".try_into().unwrap())],
            vec![
                SanType::URI(web.to_uri().try_into().unwrap()),
                SanType::URI("spiffe://default/backend".try_into().unwrap()),
            ],
            vec![
                SanType::URI(web.to_uri().try_into().unwrap()),
                SanType::URI(web.to_uri().try_into().unwrap()),
            ],
        ] {
            let mut params = CertificateParams::default();
            params.subject_alt_names = sans;
            let csr = params.serialize_request(&key).unwrap().pem().unwrap();
            let err = ca
                .sign_csr(
                    &csr,
                    &web,
                    &WorkloadTags::new(),
                    &[],
                    DEFAULT_WORKLOAD_VALIDITY,
                    now,
                )
                .unwrap_err();
            assert!(
                matches!(err, IdentityError::IdentityMismatch { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn garbage_csr_gives_a_clear_error() {
        let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
        let web = id("default", "web");
        let now = SystemTime::now();
        let garbage = [
            String::new(),
            "not a pem".to_string(),
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                .to_string(),
            ca.cert_pem().to_string(),
        ];
        for csr in &garbage {
            let err = ca
                .sign_csr(
                    csr,
                    &web,
                    &WorkloadTags::new(),
                    &[],
                    DEFAULT_WORKLOAD_VALIDITY,
                    now,
                )
                .unwrap_err();
            assert!(matches!(err, IdentityError::InvalidCsr { .. }), "{err}");
            assert!(err.to_string().contains("spiffe://default/web"), "{err}");
        }
        // A CSR whose signature does not match its content.
        let (_k, csr) = WorkloadKey::generate(&web).unwrap();
        let der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
            .unwrap();
        let mut bytes = der.as_ref().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        let tampered = pem_wrap("CERTIFICATE REQUEST", &bytes);
        let err = ca
            .sign_csr(
                &tampered,
                &web,
                &WorkloadTags::new(),
                &[],
                DEFAULT_WORKLOAD_VALIDITY,
                now,
            )
            .unwrap_err();
        assert!(matches!(err, IdentityError::InvalidCsr { .. }), "{err}");
    }

    fn pem_wrap(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    }

    #[test]
    fn validity_is_capped_by_the_ca_and_zero_is_refused() {
        let ca = MeshCa::generate("default", Duration::from_secs(3600)).unwrap();
        let web = id("default", "web");
        let (_key, csr) = WorkloadKey::generate(&web).unwrap();
        let now = SystemTime::now();
        let issued = ca
            .sign_csr(
                &csr,
                &web,
                &WorkloadTags::new(),
                &[],
                DEFAULT_WORKLOAD_VALIDITY,
                now,
            )
            .unwrap();
        assert_eq!(issued.not_after, ca.not_after());
        assert!(matches!(
            ca.sign_csr(&csr, &web, &WorkloadTags::new(), &[], Duration::ZERO, now),
            Err(IdentityError::InvalidValidity { .. })
        ));
    }

    #[test]
    fn key_pem_round_trip_and_renewal_csr() {
        let web = id("default", "web");
        let (key, _) = WorkloadKey::generate(&web).unwrap();
        let again = WorkloadKey::from_pem(&key.private_key_pem()).unwrap();
        assert_eq!(again.private_key_pem(), key.private_key_pem());
        assert!(WorkloadKey::from_pem("garbage").is_err());
        assert!(!format!("{key:?}").contains("PRIVATE"));
        let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
        let csr = again.csr_pem(&web).unwrap();
        assert!(
            ca.sign_csr(
                &csr,
                &web,
                &WorkloadTags::new(),
                &[],
                DEFAULT_WORKLOAD_VALIDITY,
                SystemTime::now()
            )
            .is_ok()
        );
    }

    #[test]
    fn renew_at_is_two_thirds_of_the_lifetime() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(renew_at(t0 + day, t0), t0 + Duration::from_secs(16 * 3600));
        assert_eq!(
            renew_at(t0 + Duration::from_secs(3), t0),
            t0 + Duration::from_secs(2)
        );
        assert_eq!(
            renew_at(t0 + Duration::from_secs(1), t0),
            t0 + Duration::from_nanos(666_666_666)
        );
        assert_eq!(renew_at(t0, t0), t0);
        assert_eq!(renew_at(t0, t0 + day), t0 + day);
        let issued = IssuedCert {
            id: id("m", "s"),
            cert_chain_pem: String::new(),
            issued_at: t0,
            not_after: t0 + Duration::from_secs(90),
        };
        assert_eq!(issued.renew_at(), t0 + Duration::from_secs(60));
    }
}
