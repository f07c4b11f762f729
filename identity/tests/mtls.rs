//! mTLS handshakes over real sockets on 127.0.0.1 between workloads whose
//! certificates come from the mesh CA through the CSR flow.

#![allow(clippy::unwrap_used)] // test helpers assert by panicking

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meridian_identity::{
    DEFAULT_CA_VALIDITY, DEFAULT_WORKLOAD_VALIDITY, IssuedCert, MeshCa, MeshTrust, WorkloadId,
    WorkloadKey, WorkloadTags, client_config, peer_identity, server_config,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

struct Workload {
    trust: MeshTrust,
    key: WorkloadKey,
    cert: IssuedCert,
}

fn id(mesh: &str, service: &str) -> WorkloadId {
    WorkloadId::new(mesh, service).unwrap()
}

/// Runs the CSR flow: key on the "proxy", signature by the "zone CP".
fn issue(ca: &MeshCa, service: &str, now: SystemTime) -> Workload {
    let wid = id(ca.mesh(), service);
    let (key, csr) = WorkloadKey::generate(&wid).unwrap();
    let cert = ca
        .sign_csr(
            &csr,
            &wid,
            &WorkloadTags::new(),
            &[],
            DEFAULT_WORKLOAD_VALIDITY,
            now,
        )
        .unwrap();
    // The data plane only receives the CA certificate.
    let trust = MeshTrust::from_pem(ca.mesh(), ca.cert_pem()).unwrap();
    Workload { trust, key, cert }
}

type Outcome = Result<WorkloadId, String>;

/// Both ends failed, and the server's error mentions `needle`.
fn assert_refused(server_saw: &Outcome, client_saw: &Outcome, needle: &str) {
    match server_saw {
        Ok(id) => panic!("server accepted {id}"),
        Err(e) => assert!(e.contains(needle), "server error {e:?} lacks {needle:?}"),
    }
    assert!(client_saw.is_err(), "client got through: {client_saw:?}");
}

/// One connection: returns what the server saw (the client's identity) and
/// what the client saw (the server's identity, after reading the greeting).
async fn connect(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> (Outcome, Outcome) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let peer = peer_identity(tls.get_ref().1).ok_or("no peer identity")?;
        tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    });
    let client_outcome = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        // The SNI is a routing name only; it is not in the certificate.
        let sni = ServerName::try_from("backend.default.mesh").unwrap();
        let mut tls = TlsConnector::from(client)
            .connect(sni, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let peer = peer_identity(tls.get_ref().1).ok_or("no peer identity")?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        if buf != b"hello" {
            return Err(format!("unexpected greeting {buf:?}"));
        }
        Ok(peer)
    }
    .await;
    let server_outcome = server_task.await.unwrap();
    (server_outcome, client_outcome)
}

#[tokio::test]
async fn mtls_between_web_and_backend_sees_both_identities() {
    let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
    let now = SystemTime::now();
    let backend = issue(&ca, "backend", now);
    let web = issue(&ca, "web", now);
    let server = server_config(&backend.trust, &backend.cert, &backend.key, None).unwrap();
    let client = client_config(
        &web.trust,
        &web.cert,
        &web.key,
        Some(id("default", "backend")),
    )
    .unwrap();
    let (server_saw, client_saw) = connect(server, client).await;
    assert_eq!(server_saw.unwrap(), id("default", "web"));
    assert_eq!(client_saw.unwrap(), id("default", "backend"));
}

#[tokio::test]
async fn client_without_expected_server_accepts_any_mesh_identity() {
    let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
    let now = SystemTime::now();
    let backend = issue(&ca, "backend", now);
    let web = issue(&ca, "web", now);
    let server = server_config(&backend.trust, &backend.cert, &backend.key, None).unwrap();
    let client = client_config(&web.trust, &web.cert, &web.key, None).unwrap();
    let (server_saw, client_saw) = connect(server, client).await;
    assert_eq!(server_saw.unwrap(), id("default", "web"));
    assert_eq!(client_saw.unwrap(), id("default", "backend"));
}

#[tokio::test]
async fn client_from_another_mesh_ca_is_refused() {
    let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
    let now = SystemTime::now();
    let backend = issue(&ca, "backend", now);
    // Another mesh's CA, and a forged CA with the same mesh name (same subject).
    for (mesh, needle) in [("other", "UnknownIssuer"), ("default", "BadSignature")] {
        let rogue = MeshCa::generate(mesh, DEFAULT_CA_VALIDITY).unwrap();
        let intruder = issue(&rogue, "web", now);
        let server = server_config(&backend.trust, &backend.cert, &backend.key, None).unwrap();
        // The intruder does not check the server; only its own certificate
        // is under test.
        let client = permissive_client(Some(&intruder));
        let (server_saw, client_saw) = connect(server, client).await;
        assert_refused(&server_saw, &client_saw, needle);
    }
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
    let backend = issue(&ca, "backend", SystemTime::now());
    let server = server_config(&backend.trust, &backend.cert, &backend.key, None).unwrap();
    // A plain rustls client presenting no certificate.
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAnything))
    .with_no_client_auth();
    let (server_saw, client_saw) = connect(server, Arc::new(client)).await;
    assert_refused(&server_saw, &client_saw, "peer sent no certificates");
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let ca = MeshCa::generate_at(
        "default",
        DEFAULT_CA_VALIDITY,
        SystemTime::now() - Duration::from_secs(7 * 24 * 3600),
    )
    .unwrap();
    let now = SystemTime::now();
    let backend = issue(&ca, "backend", now);
    // Issued two days ago for 24 h: expired yesterday.
    let old = issue(&ca, "web", now - Duration::from_secs(48 * 3600));
    assert!(old.cert.not_after < now);
    let server = server_config(&backend.trust, &backend.cert, &backend.key, None).unwrap();
    let client = client_config(&old.trust, &old.cert, &old.key, None).unwrap();
    let (server_saw, client_saw) = connect(server, client).await;
    assert_refused(&server_saw, &client_saw, "certificate expired");
}

#[tokio::test]
async fn expired_server_certificate_is_refused_by_the_client() {
    let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
    let now = SystemTime::now();
    let backend = issue(&ca, "backend", now - Duration::from_secs(48 * 3600));
    let web = issue(&ca, "web", now);
    let server = server_config(&backend.trust, &backend.cert, &backend.key, None).unwrap();
    let client = client_config(&web.trust, &web.cert, &web.key, None).unwrap();
    let (server_saw, client_saw) = connect(server, client).await;
    let err = client_saw.unwrap_err();
    assert!(err.to_lowercase().contains("expired"), "{err}");
    assert!(server_saw.is_err());
}

#[tokio::test]
async fn client_refuses_a_server_with_another_identity() {
    let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
    let now = SystemTime::now();
    let impostor = issue(&ca, "payments", now);
    let web = issue(&ca, "web", now);
    let server = server_config(&impostor.trust, &impostor.cert, &impostor.key, None).unwrap();
    let client = client_config(
        &web.trust,
        &web.cert,
        &web.key,
        Some(id("default", "backend")),
    )
    .unwrap();
    let (server_saw, client_saw) = connect(server, client).await;
    assert!(client_saw.is_err(), "client accepted {client_saw:?}");
    assert!(server_saw.is_err());
}

#[tokio::test]
async fn authorizer_can_deny_a_client_identity() {
    let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
    let now = SystemTime::now();
    let backend = issue(&ca, "backend", now);
    let web = issue(&ca, "web", now);
    let only_frontend: meridian_identity::Authorizer =
        Arc::new(|peer: &WorkloadId| peer.service() == "frontend");
    let server = server_config(
        &backend.trust,
        &backend.cert,
        &backend.key,
        Some(only_frontend),
    )
    .unwrap();
    let client = client_config(&web.trust, &web.cert, &web.key, None).unwrap();
    let (server_saw, client_saw) = connect(server, client).await;
    assert_refused(&server_saw, &client_saw, "ApplicationVerificationFailure");

    let allow_web: meridian_identity::Authorizer =
        Arc::new(|peer: &WorkloadId| peer.service() == "web");
    let server =
        server_config(&backend.trust, &backend.cert, &backend.key, Some(allow_web)).unwrap();
    let client = client_config(&web.trust, &web.cert, &web.key, None).unwrap();
    let (server_saw, _) = connect(server, client).await;
    assert_eq!(server_saw.unwrap(), id("default", "web"));
}

#[test]
fn configs_refuse_mismatched_inputs() {
    let ca = MeshCa::generate("default", DEFAULT_CA_VALIDITY).unwrap();
    let other = MeshCa::generate("other", DEFAULT_CA_VALIDITY).unwrap();
    let web = issue(&ca, "web", SystemTime::now());
    let other_trust = other.trust();
    assert!(server_config(&other_trust, &web.cert, &web.key, None).is_err());
    assert!(client_config(&other_trust, &web.cert, &web.key, None).is_err());
    // A key that does not match the certificate.
    let (stranger, _) = WorkloadKey::generate(&id("default", "web")).unwrap();
    assert!(server_config(&web.trust, &web.cert, &stranger, None).is_err());
    // A chain PEM that is garbage.
    let mut broken = web.cert.clone();
    broken.cert_chain_pem = "garbage".into();
    assert!(client_config(&web.trust, &broken, &web.key, None).is_err());
    // A chain whose leaf names another identity than claimed.
    let backend = issue(&ca, "backend", SystemTime::now());
    let mut lying = backend.cert.clone();
    lying.id = id("default", "web");
    assert!(server_config(&web.trust, &lying, &backend.key, None).is_err());
}

/// A rustls client that accepts any server and presents `cert` (if any).
fn permissive_client(cert: Option<&Workload>) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAnything));
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some(w) => {
            let chain =
                rustls::pki_types::pem::PemObject::pem_slice_iter(w.cert.cert_chain_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
            builder
                .with_client_auth_cert(chain, w.key.private_key_der())
                .unwrap()
        }
    };
    Arc::new(config)
}

/// Test-only verifier for a client that does not care who the server is.
#[derive(Debug)]
struct AcceptAnything;

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
