//! Tests of `peek_client_hello` over real loopback sockets (127.0.0.1 only) and
//! in-memory streams: real rustls clients, slow and split hellos, 16 KB hellos,
//! garbage, silence, half-close and size limits.

#![allow(clippy::unwrap_used)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use meridian_sni::peek::PEEK_TOTAL_METRIC;
use meridian_sni::{PeekError, PeekLimits, PeekedHello, SniTarget, peek_client_hello};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config trusting `roots` (none: the handshake never completes, but
/// the client still sends its hello) and offering `alpn`.
fn client_config(
    roots: &[CertificateDer<'static>],
    alpn: Vec<Vec<u8>>,
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    Arc::new(config)
}

/// The exact first flight of a rustls client, captured without a socket.
fn capture_hello(config: Arc<rustls::ClientConfig>, name: ServerName<'static>) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).unwrap()
}

fn sni() -> String {
    SniTarget::new("default", "backend_kuma-demo_svc_3001")
        .with_tag("version", "v2")
        .to_sni()
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Connects to `addr`, writes `bytes` (one byte per write when `trickle`),
/// optionally half-closes, then waits for the peer to close before dropping.
async fn send_raw(addr: SocketAddr, bytes: Vec<u8>, trickle: bool, half_close: bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    if trickle {
        for byte in &bytes {
            stream.write_all(std::slice::from_ref(byte)).await.unwrap();
            stream.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
    } else {
        stream.write_all(&bytes).await.unwrap();
    }
    if half_close {
        stream.shutdown().await.unwrap();
    }
    // Keep the connection open until the peeking side is done with it.
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink).await;
}

/// Accepts one connection from a task running `client` and peeks it.
async fn peek_one<F>(
    client: impl FnOnce(SocketAddr) -> F,
    limits: PeekLimits,
) -> Result<PeekedHello, PeekError>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (listener, addr) = listener().await;
    let client = tokio::spawn(client(addr));
    let (mut stream, _) = listener.accept().await.unwrap();
    let result = peek_client_hello(&mut stream, &limits).await;
    drop(stream);
    client.await.unwrap();
    result
}

/// A stream that first yields `prefix`, then reads from `inner`; writes go to `inner`.
struct Rewind<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An in-memory stream that returns `Pending` then one byte, alternately.
struct OneByteReader {
    data: Vec<u8>,
    pos: usize,
    ready: bool,
}

impl AsyncRead for OneByteReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.ready {
            self.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = false;
        if self.pos < self.data.len() {
            let pos = self.pos;
            buf.put_slice(&self.data[pos..pos + 1]);
            self.pos += 1;
        }
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn real_client_sni_and_replayed_bytes_complete_the_handshake() {
    let name = sni();
    let cert = rcgen::generate_simple_self_signed(vec![name.clone()]).unwrap();
    let cert_der = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let server_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .unwrap();
    let client_config = client_config(&[cert_der], vec![b"h2".to_vec(), b"http/1.1".to_vec()]);

    let (listener, addr) = listener().await;
    let client_name = dns(&name);
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = TlsConnector::from(client_config)
            .connect(client_name, tcp)
            .await
            .unwrap();
        tls.write_all(b"ping").await.unwrap();
        let mut reply = [0u8; 4];
        tls.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"pong");
    });

    let (mut tcp, _) = listener.accept().await.unwrap();
    let hello = peek_client_hello(&mut tcp, &PeekLimits::default())
        .await
        .unwrap();
    assert_eq!(hello.server_name.as_deref(), Some(name.as_str()));
    assert_eq!(hello.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(hello.bytes[0], 0x16, "a handshake record");
    let record_len = usize::from(u16::from_be_bytes([hello.bytes[3], hello.bytes[4]]));
    assert_eq!(
        hello.bytes.len(),
        5 + record_len,
        "exactly the client's first flight"
    );

    // Replaying the bytes unchanged lets a real server finish the handshake:
    // TLS 1.3 authenticates the transcript, so any changed byte would fail.
    let replayed = Rewind {
        prefix: hello.bytes,
        pos: 0,
        inner: tcp,
    };
    let mut tls = TlsAcceptor::from(Arc::new(server_config))
        .accept(replayed)
        .await
        .unwrap();
    let mut request = [0u8; 4];
    tls.read_exact(&mut request).await.unwrap();
    assert_eq!(&request, b"ping");
    tls.write_all(b"pong").await.unwrap();
    tls.flush().await.unwrap();
    client.await.unwrap();
}

#[tokio::test]
async fn hello_written_one_byte_at_a_time() {
    let name = sni();
    let captured = capture_hello(client_config(&[], vec![b"h2".to_vec()]), dns(&name));
    let sent = captured.clone();
    let hello = peek_one(
        move |addr| send_raw(addr, sent, true, false),
        PeekLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(hello.server_name.as_deref(), Some(name.as_str()));
    assert_eq!(hello.alpn, vec![b"h2".to_vec()]);
    assert_eq!(hello.bytes, captured);
}

#[tokio::test]
async fn hello_read_one_byte_per_read() {
    let name = sni();
    let captured = capture_hello(client_config(&[], Vec::new()), dns(&name));
    let mut reader = OneByteReader {
        data: captured.clone(),
        pos: 0,
        ready: false,
    };
    let hello = peek_client_hello(&mut reader, &PeekLimits::default())
        .await
        .unwrap();
    assert_eq!(hello.server_name.as_deref(), Some(name.as_str()));
    assert!(hello.alpn.is_empty());
    assert_eq!(hello.bytes, captured);
}

/// A ClientHello of about 16 KB (a long ALPN list), split by the client over two records.
fn large_alpn() -> Vec<Vec<u8>> {
    (0..200)
        .map(|i| format!("{i:03}-{}", "p".repeat(76)).into_bytes())
        .collect()
}

#[tokio::test]
async fn sixteen_kilobyte_hello_from_a_real_client() {
    let name = sni();
    let alpn = large_alpn();
    let config = client_config(&[], alpn.clone());
    let captured_len = capture_hello(config.clone(), dns(&name)).len();
    assert!(captured_len > 16 * 1024, "hello is {captured_len} bytes");
    let client_name = dns(&name);
    let hello = peek_one(
        move |addr| async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            // The handshake fails once the peeking side closes; only the hello matters.
            let _ = TlsConnector::from(config).connect(client_name, tcp).await;
        },
        PeekLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(hello.server_name.as_deref(), Some(name.as_str()));
    assert_eq!(hello.alpn, alpn);
    assert_eq!(hello.bytes.len(), captured_len);
    // More than one record: the first record's length is below the whole.
    let first_record = 5 + usize::from(u16::from_be_bytes([hello.bytes[3], hello.bytes[4]]));
    assert!(first_record < hello.bytes.len());
}

#[tokio::test]
async fn sixteen_kilobyte_hello_over_a_small_limit_is_too_large() {
    let captured = capture_hello(client_config(&[], large_alpn()), dns(&sni()));
    let limits = PeekLimits {
        max_bytes: 8 * 1024,
        ..PeekLimits::default()
    };
    let err = peek_one(move |addr| send_raw(addr, captured, false, false), limits)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PeekError::TooLarge {
                max_bytes: 8192,
                read: 8192
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn ip_address_server_name_gives_none() {
    let config = client_config(&[], Vec::new());
    let hello = peek_one(
        move |addr| async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let ip = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
            let _ = TlsConnector::from(config).connect(ip, tcp).await;
        },
        PeekLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(hello.server_name, None);
}

#[tokio::test]
async fn client_without_sni_gives_none() {
    let mut config = (*client_config(&[], Vec::new())).clone();
    config.enable_sni = false;
    let captured = capture_hello(Arc::new(config), dns(&sni()));
    let hello = peek_one(
        move |addr| send_raw(addr, captured, false, false),
        PeekLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(hello.server_name, None);
}

/// Deterministic pseudo-random bytes (xorshift64).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn random_bytes_are_not_tls() {
    let bytes = noise(1000, 0x5eed_1234_abcd_0001);
    let err = peek_one(
        move |addr| send_raw(addr, bytes, false, false),
        PeekLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PeekError::NotTls { .. }), "{err}");
    assert!(err.bytes_read() > 0 && err.bytes_read() <= 1000);
}

#[tokio::test]
async fn random_handshake_body_is_not_tls() {
    // A plausible handshake record header, then noise.
    let mut bytes = vec![0x16, 0x03, 0x01, 0x00, 0x80];
    bytes.extend(noise(0x80, 42));
    let err = peek_one(
        move |addr| send_raw(addr, bytes, false, false),
        PeekLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PeekError::NotTls { read: 133, .. }), "{err}");
}

#[tokio::test]
async fn plain_http_is_not_tls() {
    let request = b"GET / HTTP/1.1\r\nHost: backend.default.mesh.meridian\r\n\r\n".to_vec();
    let err = peek_one(
        move |addr| send_raw(addr, request, false, false),
        PeekLimits::default(),
    )
    .await
    .unwrap_err();
    let PeekError::NotTls { reason, read } = &err else {
        panic!("{err}");
    };
    assert!(!reason.is_empty());
    assert!(*read > 0);
    assert!(err.to_string().contains("not a TLS ClientHello"), "{err}");
}

#[tokio::test]
async fn silent_client_times_out() {
    let limits = PeekLimits {
        timeout: Duration::from_millis(200),
        ..PeekLimits::default()
    };
    let err = peek_one(move |addr| send_raw(addr, Vec::new(), false, false), limits)
        .await
        .unwrap_err();
    assert!(matches!(err, PeekError::Timeout { read: 0, .. }), "{err}");
    assert!(err.to_string().contains("200ms"), "{err}");
}

#[tokio::test]
async fn stalled_hello_times_out_with_bytes_counted() {
    let captured = capture_hello(client_config(&[], Vec::new()), dns(&sni()));
    let partial = captured[..10].to_vec();
    let limits = PeekLimits {
        timeout: Duration::from_millis(200),
        ..PeekLimits::default()
    };
    let err = peek_one(move |addr| send_raw(addr, partial, false, false), limits)
        .await
        .unwrap_err();
    assert!(matches!(err, PeekError::Timeout { read: 10, .. }), "{err}");
}

#[tokio::test]
async fn eof_mid_hello_is_closed() {
    let captured = capture_hello(client_config(&[], Vec::new()), dns(&sni()));
    let half = captured[..captured.len() / 2].to_vec();
    let expected = half.len();
    let err = peek_one(
        move |addr| send_raw(addr, half, false, true),
        PeekLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, PeekError::Closed { read } if read == expected),
        "{err}"
    );
}

#[tokio::test]
async fn immediate_eof_is_closed() {
    let err = peek_one(
        move |addr| send_raw(addr, Vec::new(), false, true),
        PeekLimits::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PeekError::Closed { read: 0 }), "{err}");
}

#[tokio::test]
async fn more_than_max_bytes_is_too_large() {
    let captured = capture_hello(client_config(&[], Vec::new()), dns(&sni()));
    assert!(captured.len() > 100);
    let limits = PeekLimits {
        max_bytes: 100,
        ..PeekLimits::default()
    };
    let err = peek_one(move |addr| send_raw(addr, captured, false, false), limits)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PeekError::TooLarge {
                max_bytes: 100,
                read: 100
            }
        ),
        "{err}"
    );
    assert_eq!(err.bytes_read(), 100);
}

#[tokio::test]
async fn hello_of_exactly_max_bytes_passes() {
    let captured = capture_hello(client_config(&[], Vec::new()), dns(&sni()));
    let limits = PeekLimits {
        max_bytes: captured.len(),
        ..PeekLimits::default()
    };
    let sent = captured.clone();
    let hello = peek_one(move |addr| send_raw(addr, sent, false, false), limits)
        .await
        .unwrap();
    assert_eq!(hello.bytes, captured);
}

#[test]
fn results_are_counted() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let captured = capture_hello(client_config(&[], Vec::new()), dns(&sni()));
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let limits = PeekLimits::default();
            peek_client_hello(&mut &captured[..], &limits)
                .await
                .unwrap();
            peek_client_hello(&mut &captured[..], &limits)
                .await
                .unwrap();
            let err = peek_client_hello(&mut &b"GET / HTTP/1.1\r\n"[..], &limits)
                .await
                .unwrap_err();
            assert_eq!(err.result_label(), "not_tls");
            let err = peek_client_hello(&mut &captured[..20], &limits)
                .await
                .unwrap_err();
            assert_eq!(err.result_label(), "closed");
        });
    });
    let mut counts: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == PEEK_TOTAL_METRIC)
        .map(|(key, _, _, value)| {
            let result = key
                .key()
                .labels()
                .find(|l| l.key() == "result")
                .map(|l| l.value().to_owned())
                .unwrap();
            let metrics_util::debugging::DebugValue::Counter(n) = value else {
                panic!("not a counter");
            };
            (result, n)
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![
            ("closed".to_owned(), 1),
            ("not_tls".to_owned(), 1),
            ("ok".to_owned(), 2)
        ]
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Whatever happened, the reported byte count is within what was offered,
    /// and a success returns a prefix of the input.
    fn check(input: &[u8], result: &Result<PeekedHello, PeekError>) -> Result<(), TestCaseError> {
        match result {
            Ok(hello) => {
                prop_assert!(input.starts_with(&hello.bytes));
            }
            Err(err) => {
                prop_assert!(err.bytes_read() <= input.len());
                prop_assert!(
                    !matches!(err, PeekError::Timeout { .. } | PeekError::Io { .. }),
                    "{err}"
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..6000)) {
            let rt = runtime();
            let result = rt.block_on(peek_client_hello(&mut &input[..], &PeekLimits::default()));
            check(&input, &result)?;
        }

        #[test]
        fn arbitrary_handshake_records_never_panic(
            len in 0u16..2000,
            version in any::<u8>(),
            body in prop::collection::vec(any::<u8>(), 0..2000),
        ) {
            let mut input = vec![0x16, 0x03, version, (len >> 8) as u8, len as u8];
            input.extend(&body);
            let rt = runtime();
            let result = rt.block_on(peek_client_hello(&mut &input[..], &PeekLimits::default()));
            check(&input, &result)?;
        }

        #[test]
        fn mutated_real_hellos_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
            one_byte_reads in any::<bool>(),
        ) {
            let mut input = capture_hello(client_config(&[], vec![b"h2".to_vec()]), dns("a.mesh.meridian"));
            for (at, value) in flips {
                let i = at.index(input.len());
                input[i] = value;
            }
            input.truncate(cut.index(input.len() + 1).max(1));
            let rt = runtime();
            let result = if one_byte_reads {
                let mut reader = OneByteReader { data: input.clone(), pos: 0, ready: false };
                rt.block_on(peek_client_hello(&mut reader, &PeekLimits::default()))
            } else {
                rt.block_on(peek_client_hello(&mut &input[..], &PeekLimits::default()))
            };
            check(&input, &result)?;
        }
    }
}
