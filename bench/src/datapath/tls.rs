//! The TLS ends of the benchmark: a self-signed certificate, the echo upstream that
//! terminates TLS, and the client config of the load generator.
//!
//! Every connection makes a full handshake: the client keeps no session cache and
//! the server issues no tickets, so no path can be faster through resumption.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The server name every client sends and every proxy routes by.
pub const SNI: &str = "echo.bench.meridian";

/// Pause after a failed `accept`.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// The echo upstream's read buffer, also the most it writes back at once.
const ECHO_BUFFER: usize = 64 * 1024;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for [`SNI`] (rcgen's default key: ECDSA P-256) and the
/// rustls configs of both ends.
pub struct Pki {
    /// The echo server's config: the certificate, no session storage, no tickets.
    pub server: Arc<rustls::ServerConfig>,
    /// The load generator's: trusts only the certificate, resumption disabled.
    pub client: Arc<rustls::ClientConfig>,
}

impl Pki {
    /// Generates the certificate and both configs.
    pub fn new() -> anyhow::Result<Pki> {
        let certified = rcgen::generate_simple_self_signed(vec![SNI.to_owned()])
            .context("generating the upstream certificate")?;
        let der: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)?;
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;

        let mut roots = rustls::RootCertStore::empty();
        roots.add(der)?;
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.resumption = rustls::client::Resumption::disabled();
        Ok(Pki {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// A connector for the load generator.
    pub fn connector(&self) -> TlsConnector {
        TlsConnector::from(Arc::clone(&self.client))
    }
}

/// [`SNI`] as a rustls server name.
pub fn server_name() -> anyhow::Result<ServerName<'static>> {
    Ok(ServerName::try_from(SNI)?)
}

/// A TLS echo server on a loopback port, running on a runtime of its own: it
/// terminates TLS and writes back every byte it reads until the client closes.
pub struct EchoUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl EchoUpstream {
    /// Binds a fresh port (each path gets its own, so no path inherits another's
    /// TIME_WAIT sockets) and starts accepting on `runtime`.
    pub fn start(runtime: &Runtime, pki: &Pki) -> anyhow::Result<EchoUpstream> {
        let listener = runtime.block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::clone(&pki.server));
        let accept = runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    // Out of descriptors, say: do not spin while it lasts.
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        echo(tls).await;
                    }
                });
            }
        });
        Ok(EchoUpstream { addr, accept })
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        // Connections still open end when their clients close.
        self.accept.abort();
    }
}

/// Reads and writes back until end of stream or an error.
async fn echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut tls: S) {
    let mut buffer = vec![0u8; ECHO_BUFFER];
    loop {
        match tls.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tls.write_all(&buffer[..n]).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = tls.shutdown().await;
}
