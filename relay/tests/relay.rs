//! End-to-end tests of the relay loop on real loopback sockets (127.0.0.1 only):
//! a client, a proxy running `relay` or `relay_tcp`, and an upstream.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use meridian_relay::{
    RelayConfig, RelayError, RelayStats, SPLICE_SUPPORTED, Side, connect, relay, relay_tcp,
};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// Every test finishes well within this, or fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
enum Mode {
    Buffered,
    Tcp,
}

const MODES: [Mode; 2] = [Mode::Buffered, Mode::Tcp];

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("test exceeded its deadline")
}

fn payload(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    data
}

async fn loopback_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// An upstream accepting one connection and running `serve` on it.
async fn upstream<F, Fut, T>(serve: F) -> (SocketAddr, JoinHandle<T>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (listener, addr) = loopback_listener().await;
    let handle = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream).await
    });
    (addr, handle)
}

/// An upstream echoing everything until end of stream, then shutting down its write
/// half; returns how many bytes it echoed.
async fn echo_upstream() -> (SocketAddr, JoinHandle<u64>) {
    upstream(|mut stream| async move {
        let (mut r, mut w) = stream.split();
        let n = tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
        n
    })
    .await
}

/// A proxy accepting one client, connecting to `upstream` and relaying with `mode`.
async fn proxy(
    upstream: SocketAddr,
    mode: Mode,
    initial: Vec<u8>,
    config: RelayConfig,
) -> (SocketAddr, JoinHandle<Result<RelayStats, RelayError>>) {
    let (listener, addr) = loopback_listener().await;
    let handle = tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let up = connect(upstream, CONNECT_TIMEOUT).await?;
        match mode {
            Mode::Buffered => relay(client, up, &initial, &config).await,
            Mode::Tcp => relay_tcp(client, up, &initial, &config).await,
        }
    });
    (addr, handle)
}

/// Sends `data` (then half-closes) while reading the response to the end.
async fn exchange(proxy: SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    drop(writer.await.unwrap());
    got
}

#[tokio::test]
async fn eight_mib_both_ways_intact() {
    within(async {
        for mode in MODES {
            let data = payload(8 << 20);
            let (up, echoed) = echo_upstream().await;
            let (px, relayed) = proxy(up, mode, Vec::new(), RelayConfig::default()).await;
            let got = exchange(px, data.clone()).await;
            assert!(got == data, "{mode:?}: echoed payload differs");
            assert_eq!(echoed.await.unwrap(), 8 << 20);
            let stats = relayed.await.unwrap().unwrap();
            assert_eq!(stats.client_to_upstream, 8 << 20, "{mode:?}");
            assert_eq!(stats.upstream_to_client, 8 << 20, "{mode:?}");
            assert_eq!(stats.first_closed, Some(Side::Client), "{mode:?}");
            assert_eq!(stats.spliced, matches!(mode, Mode::Tcp) && SPLICE_SUPPORTED);
        }
    })
    .await;
}

#[tokio::test]
async fn initial_bytes_arrive_first() {
    within(async {
        for mode in MODES {
            let initial = b"\x16\x03\x01 peeked ClientHello".to_vec();
            let rest = payload(100_000);
            let (up, _) = echo_upstream().await;
            let (px, relayed) = proxy(up, mode, initial.clone(), RelayConfig::default()).await;
            let got = exchange(px, rest.clone()).await;
            let mut expected = initial.clone();
            expected.extend_from_slice(&rest);
            assert!(got == expected, "{mode:?}: initial bytes not first");
            let stats = relayed.await.unwrap().unwrap();
            assert_eq!(stats.client_to_upstream, expected.len() as u64, "{mode:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn client_half_close_still_receives_the_full_response() {
    within(async {
        for mode in MODES {
            let response = payload(3 << 20);
            let reply = response.clone();
            // The upstream answers only once it saw the client's end of stream.
            let (up, served) = upstream(move |mut stream| async move {
                let mut request = Vec::new();
                stream.read_to_end(&mut request).await.unwrap();
                stream.write_all(&reply).await.unwrap();
                stream.shutdown().await.unwrap();
                request
            })
            .await;
            let (px, relayed) = proxy(up, mode, Vec::new(), RelayConfig::default()).await;

            let mut client = TcpStream::connect(px).await.unwrap();
            client.write_all(b"GET everything").await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();

            assert!(got == response, "{mode:?}: response truncated or altered");
            assert_eq!(served.await.unwrap(), b"GET everything");
            let stats = relayed.await.unwrap().unwrap();
            assert_eq!(stats.first_closed, Some(Side::Client), "{mode:?}");
            assert_eq!(stats.upstream_to_client, response.len() as u64);
        }
    })
    .await;
}

#[tokio::test]
async fn upstream_half_closes_first_and_the_client_direction_goes_on() {
    within(async {
        for mode in MODES {
            let (up, served) = upstream(|mut stream| async move {
                stream
                    .write_all(b"banner, then I am done talking")
                    .await
                    .unwrap();
                stream.shutdown().await.unwrap();
                let mut request = Vec::new();
                stream.read_to_end(&mut request).await.unwrap();
                request
            })
            .await;
            let (px, relayed) = proxy(up, mode, Vec::new(), RelayConfig::default()).await;

            let mut client = TcpStream::connect(px).await.unwrap();
            let mut banner = Vec::new();
            client.read_to_end(&mut banner).await.unwrap();
            assert_eq!(banner, b"banner, then I am done talking", "{mode:?}");
            // The upstream stopped writing; the client can still talk to it.
            let late = payload(1 << 20);
            client.write_all(&late).await.unwrap();
            client.shutdown().await.unwrap();

            assert!(served.await.unwrap() == late, "{mode:?}: late request lost");
            let stats = relayed.await.unwrap().unwrap();
            assert_eq!(stats.first_closed, Some(Side::Upstream), "{mode:?}");
            assert_eq!(stats.client_to_upstream, late.len() as u64);
        }
    })
    .await;
}

#[tokio::test]
async fn upstream_closing_entirely_ends_the_relay() {
    within(async {
        for mode in MODES {
            let (up, _) = upstream(|mut stream| async move {
                stream.write_all(b"bye").await.unwrap();
                drop(stream);
            })
            .await;
            let (px, relayed) = proxy(up, mode, Vec::new(), RelayConfig::default()).await;
            let mut client = TcpStream::connect(px).await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"bye", "{mode:?}");
            drop(client);
            // The relay ends on its own (cleanly, both sides having closed).
            let stats = relayed.await.unwrap().unwrap();
            assert_eq!(stats.first_closed, Some(Side::Upstream), "{mode:?}");
            assert_eq!(stats.upstream_to_client, 3);
        }
    })
    .await;
}

#[tokio::test]
async fn idle_timeout_ends_a_silent_connection() {
    within(async {
        for mode in MODES {
            let idle = Duration::from_millis(200);
            // An upstream that accepts and then never sends; it holds the connection
            // until the relay closes it.
            let (up, held) = upstream(|mut stream| async move {
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink).await;
                sink
            })
            .await;
            let config = RelayConfig {
                idle_timeout: Some(idle),
                ..RelayConfig::default()
            };
            let (px, relayed) = proxy(up, mode, Vec::new(), config).await;
            let started = tokio::time::Instant::now();
            let mut client = TcpStream::connect(px).await.unwrap();

            let err = relayed.await.unwrap().unwrap_err();
            assert!(started.elapsed() >= idle, "{mode:?}: fired early");
            match &err {
                RelayError::Idle {
                    timeout,
                    client,
                    upstream,
                    stats,
                } => {
                    assert_eq!(*timeout, idle);
                    assert_eq!(stats.client_to_upstream + stats.upstream_to_client, 0);
                    if matches!(mode, Mode::Tcp) {
                        assert!(client.is_some() && *upstream == Some(up));
                    }
                }
                other => panic!("{mode:?}: expected an idle timeout, got {other}"),
            }
            assert!(err.to_string().contains("idle"), "{err}");
            // Both connections were closed by the relay.
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
            assert!(held.await.unwrap().is_empty());
        }
    })
    .await;
}

#[tokio::test]
async fn activity_keeps_the_idle_timer_from_firing() {
    within(async {
        for mode in MODES {
            let (up, _) = echo_upstream().await;
            let config = RelayConfig {
                idle_timeout: Some(Duration::from_millis(400)),
                ..RelayConfig::default()
            };
            let (px, relayed) = proxy(up, mode, Vec::new(), config).await;
            let mut client = TcpStream::connect(px).await.unwrap();
            // Ping-pong for well over the idle timeout, each exchange far within it.
            let started = tokio::time::Instant::now();
            let mut byte = [0u8; 1];
            while started.elapsed() < Duration::from_millis(1000) {
                client.write_all(b"x").await.unwrap();
                client.read_exact(&mut byte).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            client.shutdown().await.unwrap();
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.unwrap();
            let stats = relayed.await.unwrap().unwrap();
            assert!(stats.client_to_upstream > 0, "{mode:?}");
            assert_eq!(stats.client_to_upstream, stats.upstream_to_client);
        }
    })
    .await;
}

#[tokio::test]
async fn relay_errors_name_the_failing_side_and_address() {
    within(async {
        for mode in MODES {
            // The upstream resets the connection (SO_LINGER 0) after one read.
            let (up, _) = upstream(|mut stream| async move {
                let mut first = [0u8; 5];
                stream.read_exact(&mut first).await.unwrap();
                stream.set_zero_linger().unwrap();
                drop(stream);
            })
            .await;
            let (px, relayed) = proxy(up, mode, Vec::new(), RelayConfig::default()).await;
            let mut client = TcpStream::connect(px).await.unwrap();
            client.write_all(b"hello").await.unwrap();
            let mut rest = Vec::new();
            let _ = client.read_to_end(&mut rest).await;
            match relayed.await.unwrap() {
                Err(err @ (RelayError::Io { .. } | RelayError::Splice { .. })) => {
                    let message = err.to_string();
                    assert!(message.contains("upstream"), "{mode:?}: {message}");
                    if matches!(mode, Mode::Tcp) {
                        assert!(message.contains(&up.to_string()), "{mode:?}: {message}");
                    }
                }
                other => panic!("{mode:?}: expected an I/O error, got {other:?}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn connect_to_a_closed_port_is_a_clear_error() {
    within(async {
        let (listener, addr) = loopback_listener().await;
        drop(listener);
        match connect(addr, CONNECT_TIMEOUT).await {
            Err(err @ RelayError::Connect { .. }) => {
                let message = err.to_string();
                assert!(message.contains(&addr.to_string()), "{message}");
                let RelayError::Connect { addr: a, source } = err else {
                    unreachable!()
                };
                assert_eq!(a, addr);
                assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            other => panic!("expected a refused connection, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn connect_sets_nodelay() {
    within(async {
        let (listener, addr) = loopback_listener().await;
        let accept = tokio::spawn(async move { listener.accept().await.unwrap() });
        let stream = connect(addr, CONNECT_TIMEOUT).await.unwrap();
        assert!(stream.nodelay().unwrap());
        drop(accept.await.unwrap());
    })
    .await;
}

/// A listener with a backlog of 1 that never accepts: once its accept queue is full,
/// Linux drops further SYNs, so a connection attempt hangs until the timeout.
#[tokio::test]
async fn connect_times_out_against_a_full_backlog() {
    within(async {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let _listener = socket.listen(1).unwrap();
        let timeout = Duration::from_millis(300);
        let mut held = Vec::new();
        for _ in 0..16 {
            match connect(addr, timeout).await {
                Ok(stream) => held.push(stream),
                Err(err @ RelayError::ConnectTimeout { .. }) => {
                    let message = err.to_string();
                    assert!(message.contains(&addr.to_string()), "{message}");
                    assert!(!held.is_empty(), "timed out before the queue filled");
                    return;
                }
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        eprintln!("SKIPPED: this kernel accepted 16 connections on a backlog of 1");
    })
    .await;
}

/// The generic relay over in-memory streams, with a tiny buffer forcing many short
/// reads and writes.
#[tokio::test]
async fn relay_works_on_any_stream_with_a_tiny_buffer() {
    within(async {
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (upstream, mut upstream_peer) = tokio::io::duplex(64);
        let config = RelayConfig {
            buffer_size: 7,
            ..RelayConfig::default()
        };
        let relayed =
            tokio::spawn(async move { relay(client, upstream, b"first:", &config).await });
        let echo = tokio::spawn(async move {
            let mut got = Vec::new();
            upstream_peer.read_to_end(&mut got).await.unwrap();
            upstream_peer.write_all(&got).await.unwrap();
            upstream_peer.shutdown().await.unwrap();
            got
        });
        let data = payload(10_000);
        client_peer.write_all(&data).await.unwrap();
        client_peer.shutdown().await.unwrap();
        let mut back = Vec::new();
        client_peer.read_to_end(&mut back).await.unwrap();
        let mut expected = b"first:".to_vec();
        expected.extend_from_slice(&data);
        assert!(echo.await.unwrap() == expected);
        assert!(back == expected);
        let stats = relayed.await.unwrap().unwrap();
        assert_eq!(stats.client_to_upstream, expected.len() as u64);
        assert_eq!(stats.upstream_to_client, expected.len() as u64);
    })
    .await;
}

/// A zero buffer size must not be mistaken for end of stream.
#[tokio::test]
async fn zero_buffer_size_still_relays() {
    within(async {
        let (up, _) = echo_upstream().await;
        let config = RelayConfig {
            buffer_size: 0,
            ..RelayConfig::default()
        };
        let (px, relayed) = proxy(up, Mode::Buffered, Vec::new(), config).await;
        assert_eq!(exchange(px, b"abc".to_vec()).await, b"abc");
        assert_eq!(relayed.await.unwrap().unwrap().upstream_to_client, 3);
    })
    .await;
}
