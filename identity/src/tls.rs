//! rustls configurations for mTLS inside a mesh, and peer identity extraction.
//!
//! Both ends use TLS 1.3 only and ring as the single crypto provider
//! (`rustls::crypto::ring::default_provider()`, passed explicitly, so nothing
//! depends on a process-wide default).
//!
//! - **Server** ([`server_config`]): a client certificate is mandatory. It is
//!   verified by rustls' `WebPkiClientVerifier` against the mesh CA(s) (chain,
//!   validity period, `clientAuth` usage); then it must carry a SPIFFE ID of the
//!   same mesh, and the optional [`Authorizer`] must accept that identity —
//!   otherwise the handshake fails. Finer per-connection decisions
//!   (MeshTrafficPermission) can also be made after the handshake with
//!   [`peer_identity`].
//! - **Client** ([`client_config`]): the server is authenticated by its
//!   **SPIFFE ID, not by DNS name**. A custom `ServerCertVerifier` verifies the
//!   chain with webpki against the mesh CA(s)
//!   (`rustls::client::verify_server_cert_signed_by_trust_anchor`: chain,
//!   validity, `serverAuth` usage), then requires a SPIFFE ID of the mesh and, if
//!   `expected_server` is given, exactly that identity. The `ServerName` the
//!   caller connects with is only used as SNI (routing through zone ingress),
//!   never for verification, so SNI names need not appear in the certificate.
//!
//! Certificate rotation: a config captures one certificate; build a new config
//! with the renewed [`IssuedCert`] and use it for new connections — established
//! connections are unaffected.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName,
    ServerConfig, SignatureScheme,
};

use crate::ca::{MeshTrust, cert_uri_sans};
use crate::csr::{IssuedCert, WorkloadKey};
use crate::error::{IdentityError, Result};
use crate::spiffe::{SPIFFE_PREFIX, WorkloadId};
use crate::tags::WorkloadTags;

/// Decides, during the handshake, whether a client identity may connect.
pub type Authorizer = Arc<dyn Fn(&WorkloadId) -> bool + Send + Sync>;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config for a workload: presents `cert`, requires a client
/// certificate from the same mesh, and applies `authorizer` (if any) to the
/// client's SPIFFE ID.
pub fn server_config(
    trust: &MeshTrust,
    cert: &IssuedCert,
    key: &WorkloadKey,
    authorizer: Option<Authorizer>,
) -> Result<Arc<ServerConfig>> {
    let fail = |reason: String| IdentityError::TlsConfig {
        identity: cert.id.to_string(),
        reason,
    };
    let chain = local_chain(trust, cert).map_err(fail)?;
    let provider = provider();
    let inner = WebPkiClientVerifier::builder_with_provider(trust.roots.clone(), provider.clone())
        .build()
        .map_err(|e| fail(format!("client verifier: {e}")))?;
    let verifier = Arc::new(MeshClientVerifier {
        inner,
        mesh: trust.mesh.clone(),
        authorizer,
    });
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| fail(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key.private_key_der())
        .map_err(|e| fail(format!("certificate and key: {e}")))?;
    Ok(Arc::new(config))
}

/// A client config for a workload: presents `cert` and accepts a server whose
/// certificate chains to the mesh CA and carries a SPIFFE ID of the mesh —
/// exactly `expected_server` when given.
pub fn client_config(
    trust: &MeshTrust,
    cert: &IssuedCert,
    key: &WorkloadKey,
    expected_server: Option<WorkloadId>,
) -> Result<Arc<ClientConfig>> {
    let fail = |reason: String| IdentityError::TlsConfig {
        identity: cert.id.to_string(),
        reason,
    };
    let chain = local_chain(trust, cert).map_err(fail)?;
    let provider = provider();
    let verifier = Arc::new(MeshServerVerifier {
        trust: trust.clone(),
        expected: expected_server,
        algs: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| fail(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key.private_key_der())
        .map_err(|e| fail(format!("certificate and key: {e}")))?;
    Ok(Arc::new(config))
}

/// The SPIFFE ID in the peer's (already verified) certificate, once the
/// handshake is complete. Pass a `ServerConnection` or `ClientConnection`
/// (they dereference to `CommonState`). `None` before the handshake or if the
/// certificate has no parseable SPIFFE ID.
pub fn peer_identity(conn: &CommonState) -> Option<WorkloadId> {
    let leaf = conn.peer_certificates()?.first()?;
    spiffe_id_of(leaf)
}

/// The peer's SPIFFE ID and the tags its certificate states (`kuma://<tag>/<value>`
/// URI SANs), from one parse of its leaf certificate, once the handshake is
/// complete; `None` as for [`peer_identity`]. The inbound calls this once per
/// connection.
pub fn peer_workload(conn: &CommonState) -> Option<(WorkloadId, WorkloadTags)> {
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let uris = cert_uri_sans(&cert);
    let id = uris
        .iter()
        .filter(|u| u.starts_with(SPIFFE_PREFIX))
        .find_map(|u| WorkloadId::parse(u).ok())?;
    Some((id, WorkloadTags::from_uris(uris.iter().map(String::as_str))))
}

/// The first valid `spiffe://<mesh>/<service>` URI SAN of a certificate.
fn spiffe_id_of(der: &CertificateDer<'_>) -> Option<WorkloadId> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    cert_uri_sans(&cert)
        .iter()
        .filter(|u| u.starts_with(SPIFFE_PREFIX))
        .find_map(|u| WorkloadId::parse(u).ok())
}

/// Parses the local chain and checks it names an identity of the trusted mesh.
fn local_chain(
    trust: &MeshTrust,
    cert: &IssuedCert,
) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    if cert.id.mesh() != trust.mesh {
        return Err(format!(
            "the certificate is for mesh {:?} but the trust bundle is mesh {:?}",
            cert.id.mesh(),
            trust.mesh
        ));
    }
    let chain = CertificateDer::pem_slice_iter(cert.cert_chain_pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate chain PEM: {e}"))?;
    let leaf = chain.first().ok_or("the certificate chain PEM is empty")?;
    if spiffe_id_of(leaf).as_ref() != Some(&cert.id) {
        return Err(format!(
            "the leaf certificate does not carry the SPIFFE ID {}",
            cert.id
        ));
    }
    Ok(chain)
}

/// Maps a verified peer certificate to its identity in `mesh`, or the rustls
/// error that aborts the handshake.
fn mesh_identity(der: &CertificateDer<'_>, mesh: &str) -> Result<WorkloadId, rustls::Error> {
    match spiffe_id_of(der) {
        Some(id) if id.mesh() == mesh => Ok(id),
        _ => Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        )),
    }
}

struct MeshClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    mesh: String,
    authorizer: Option<Authorizer>,
}

impl fmt::Debug for MeshClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshClientVerifier")
            .field("mesh", &self.mesh)
            .field("authorizer", &self.authorizer.is_some())
            .finish()
    }
}

impl ClientCertVerifier for MeshClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = mesh_identity(end_entity, &self.mesh)?;
        if let Some(authorize) = &self.authorizer
            && !authorize(&id)
        {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

struct MeshServerVerifier {
    trust: MeshTrust,
    expected: Option<WorkloadId>,
    algs: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for MeshServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshServerVerifier")
            .field("mesh", &self.trust.mesh)
            .field("expected", &self.expected)
            .finish()
    }
}

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.trust.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        let id = mesh_identity(end_entity, &self.trust.mesh)?;
        match &self.expected {
            Some(expected) if *expected != id => Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
