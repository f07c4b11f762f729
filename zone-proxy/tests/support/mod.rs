//! Test harness for the SNI proxy: self-signed TLS echo upstreams that count the
//! connections they serve, rustls clients with a chosen SNI, and a proxy fed
//! configs through a `watch` channel (no control plane). Loopback only.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use meridian_proxy_api::{EndpointConfig, ProxyConfig, SniRoute, Via, ZoneProxyConfig};
use meridian_sni::SniTarget;
use meridian_zone_proxy::{SniProxy, SniProxySettings};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Upper bound on anything a test waits for, so a bug fails the test instead of
/// hanging it. Never reached when the proxy works.
pub const GUARD: Duration = Duration::from_secs(20);

/// The SNI of `service` in mesh `default`, as sidecars send it.
pub fn sni(service: &str) -> String {
    SniTarget::new("default", service).to_sni()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for some names, with client and server configs.
pub struct Pki {
    cert: CertificateDer<'static>,
    server: Arc<rustls::ServerConfig>,
}

impl Pki {
    /// A certificate valid for every name in `names`.
    pub fn new(names: &[String]) -> Self {
        let cert = rcgen::generate_simple_self_signed(names.to_vec()).unwrap();
        let der = cert.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        Pki {
            cert: der,
            server: Arc::new(server),
        }
    }

    /// A client config trusting the certificate and offering `alpn`.
    pub fn client(&self, alpn: Vec<Vec<u8>>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn;
        Arc::new(config)
    }
}

/// A TLS echo server counting the connections whose handshake it completed.
pub struct Upstream {
    pub addr: SocketAddr,
    served: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// Starts an echo server on a free loopback port.
    pub async fn start(pki: &Pki) -> Upstream {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(Arc::clone(&pki.server));
        let served = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&served);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let (mut r, mut w) = tokio::io::split(tls);
                    if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                        let _ = w.shutdown().await;
                    }
                });
            }
        });
        Upstream { addr, served, task }
    }

    /// Connections served so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address nothing listens on (connections are refused).
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// An endpoint of zone `zone` at `addr` with `weight`.
pub fn endpoint(addr: SocketAddr, zone: &str, weight: u32) -> EndpointConfig {
    EndpointConfig {
        address: addr,
        zone: zone.to_owned(),
        weight,
        tags: BTreeMap::new(),
        via: Via::Direct,
    }
}

/// An ingress config of zone `z1` with one route per `(sni, endpoints)`.
pub fn ingress(routes: Vec<(String, Vec<EndpointConfig>)>) -> ProxyConfig {
    ProxyConfig::Ingress(zone_config(routes))
}

/// An egress config of zone `z1` with one route per `(sni, endpoints)`.
pub fn egress(routes: Vec<(String, Vec<EndpointConfig>)>) -> ProxyConfig {
    ProxyConfig::Egress(zone_config(routes))
}

fn zone_config(routes: Vec<(String, Vec<EndpointConfig>)>) -> ZoneProxyConfig {
    ZoneProxyConfig {
        zone: "z1".to_owned(),
        routes: routes
            .into_iter()
            .map(|(sni, endpoints)| SniRoute {
                sni,
                mesh: "default".to_owned(),
                service: "svc".to_owned(),
                subset: BTreeMap::new(),
                endpoints: endpoints.into(),
                locality: None,
            })
            .collect(),
    }
}

/// A running proxy and the sender of its config.
pub struct Harness {
    pub proxy: SniProxy,
    pub config: watch::Sender<Option<Arc<ProxyConfig>>>,
}

impl Harness {
    /// Starts a proxy on a free loopback port with `config`.
    pub async fn start(config: Option<ProxyConfig>, settings: SniProxySettings) -> Harness {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let (tx, rx) = watch::channel(config.map(Arc::new));
        let proxy = SniProxy::start(listener, rx, settings).unwrap();
        Harness { proxy, config: tx }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// Publishes a new config.
    pub fn update(&self, config: ProxyConfig) {
        self.config.send_replace(Some(Arc::new(config)));
    }
}

/// A TLS connection through the proxy to `server_name`, writes going out through `wrap`.
pub async fn connect_with<S>(
    stream: S,
    server_name: ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(
        GUARD,
        TlsConnector::from(config).connect(server_name, stream),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake guard"))?
}

/// A TLS connection through `proxy` with SNI `name`.
pub async fn connect(
    proxy: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(proxy).await?;
    connect_with(tcp, dns(name), config).await
}

/// `name` as a DNS server name.
pub fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).unwrap()
}

/// Writes `msg` and reads exactly as many bytes back.
pub async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, msg: &[u8]) {
    stream.write_all(msg).await.unwrap();
    stream.flush().await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(GUARD, stream.read_exact(&mut back))
        .await
        .expect("echo within the guard")
        .unwrap();
    assert_eq!(back, msg);
}

/// Waits until the peer closes `stream` (end of stream or a reset), returning
/// whatever was read before. Panics if the guard passes first.
pub async fn closed_by_peer(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(GUARD, stream.read(&mut buf))
            .await
            .expect("the proxy closes the connection within the guard")
        {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A stream that writes at most one byte per `poll_write`: with `TCP_NODELAY`
/// every byte leaves in its own segment.
pub struct OneByteWrites(pub TcpStream);

impl AsyncRead for OneByteWrites {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for OneByteWrites {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let one = &buf[..buf.len().min(1)];
        Pin::new(&mut self.0).poll_write(cx, one)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The first flight of a rustls client for `name` with `config`, captured without a socket.
pub fn capture_hello(config: Arc<rustls::ClientConfig>, name: ServerName<'static>) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// An ALPN list of `count` protocols of 200 bytes each.
pub fn long_alpn(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut p = format!("proto-{i:04}-").into_bytes();
            p.resize(200, b'x');
            p
        })
        .collect()
}
