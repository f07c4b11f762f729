//! The SNI proxy over real loopback sockets: rustls clients with a route's SNI,
//! self-signed TLS echo upstreams, configs fed through a `watch` channel.
//!
//! Every assertion is on what the sockets do (bytes echoed, connections closed,
//! which upstream served), never on metrics.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use meridian_sni::PeekLimits;
use meridian_zone_proxy::SniProxySettings;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

/// The peek timeout of the proxies in these tests: short, so a silent peer is
/// closed quickly.
const PEEK_TIMEOUT: Duration = Duration::from_millis(300);

fn settings() -> SniProxySettings {
    SniProxySettings {
        peek: PeekLimits {
            max_bytes: 24 * 1024,
            timeout: PEEK_TIMEOUT,
        },
        connect_timeout: Duration::from_secs(5),
        idle_timeout: None,
        max_connections: None,
    }
}

#[tokio::test]
async fn echo_small_and_multi_megabyte_with_half_close() {
    let name = sni("web");
    let pki = Pki::new(std::slice::from_ref(&name));
    let upstream = Upstream::start(&pki).await;
    let harness = Harness::start(
        Some(ingress(vec![(
            name.clone(),
            vec![endpoint(upstream.addr, "z1", 1)],
        )])),
        settings(),
    )
    .await;

    let mut small = connect(harness.addr(), &name, pki.client(vec![]))
        .await
        .unwrap();
    round_trip(&mut small, b"hello through the zone proxy").await;

    // 4 MiB written by one half while the other reads; the writer half-closes
    // (close_notify + FIN) and the reader still gets every byte, then end of stream.
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let big = connect(harness.addr(), &name, pki.client(vec![]))
        .await
        .unwrap();
    let (mut reader, mut writer) = tokio::io::split(big);
    let to_send = payload.clone();
    let write = tokio::spawn(async move {
        writer.write_all(&to_send).await.unwrap();
        writer.shutdown().await.unwrap();
    });
    let mut echoed = Vec::with_capacity(payload.len());
    tokio::time::timeout(GUARD, reader.read_to_end(&mut echoed))
        .await
        .expect("echo within the guard")
        .unwrap();
    write.await.unwrap();
    assert_eq!(echoed.len(), payload.len());
    assert!(
        echoed == payload,
        "the echoed bytes differ from the sent ones"
    );

    // The first connection is still usable.
    round_trip(&mut small, b"still here").await;
    assert_eq!(upstream.served(), 2);
    harness.proxy.shutdown().await;
}

#[tokio::test]
async fn bad_connections_close_alone_while_a_good_one_keeps_working() {
    let name = sni("web");
    let pki = Pki::new(std::slice::from_ref(&name));
    let upstream = Upstream::start(&pki).await;
    let harness = Harness::start(
        Some(ingress(vec![(
            name.clone(),
            vec![endpoint(upstream.addr, "z1", 1)],
        )])),
        settings(),
    )
    .await;
    let proxy = harness.addr();
    let mut good = connect(proxy, &name, pki.client(vec![])).await.unwrap();
    round_trip(&mut good, b"before").await;

    // Unknown SNI: the handshake never completes, the proxy closes.
    let unknown = connect(proxy, &sni("unknown"), pki.client(vec![])).await;
    assert!(
        unknown.is_err(),
        "a connection with an unknown SNI was answered"
    );
    round_trip(&mut good, b"after unknown sni").await;

    // No SNI: rustls sends none for an IP address.
    let tcp = TcpStream::connect(proxy).await.unwrap();
    let ip = ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert!(connect_with(tcp, ip, pki.client(vec![])).await.is_err());
    round_trip(&mut good, b"after no sni").await;

    // Not TLS at all.
    let mut garbage = TcpStream::connect(proxy).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_peer(&mut garbage).await.is_empty());
    round_trip(&mut good, b"after garbage").await;

    // A hello over the proxy's 24 KiB peek limit (a 40 KB ALPN list).
    let huge = pki.client(long_alpn(200));
    assert!(capture_hello(huge.clone(), dns(&name)).len() > 24 * 1024);
    assert!(connect(proxy, &name, huge).await.is_err());
    round_trip(&mut good, b"after a huge hello").await;

    // A peer that sends nothing is closed once the peek timeout passes.
    let started = Instant::now();
    let mut silent = TcpStream::connect(proxy).await.unwrap();
    assert!(closed_by_peer(&mut silent).await.is_empty());
    assert!(
        started.elapsed() >= PEEK_TIMEOUT,
        "closed after {:?}, before the peek timeout",
        started.elapsed()
    );
    round_trip(&mut good, b"after silence").await;

    // None of the bad connections reached the upstream.
    assert_eq!(upstream.served(), 1);
    harness.proxy.shutdown().await;
}

#[tokio::test]
async fn a_hello_in_one_byte_segments_and_a_16_kb_hello_still_route() {
    let name = sni("web");
    let pki = Pki::new(std::slice::from_ref(&name));
    let upstream = Upstream::start(&pki).await;
    let harness = Harness::start(
        Some(ingress(vec![(
            name.clone(),
            vec![endpoint(upstream.addr, "z1", 1)],
        )])),
        settings(),
    )
    .await;

    let tcp = TcpStream::connect(harness.addr()).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut trickled = connect_with(OneByteWrites(tcp), dns(&name), pki.client(vec![]))
        .await
        .unwrap();
    round_trip(&mut trickled, b"one byte at a time").await;

    // ~18 KB of ALPN: the hello spans two TLS records.
    let big_hello = pki.client(long_alpn(90));
    let hello_len = capture_hello(big_hello.clone(), dns(&name)).len();
    assert!(
        (16 * 1024..24 * 1024).contains(&hello_len),
        "hello of {hello_len} bytes"
    );
    let mut big = connect(harness.addr(), &name, big_hello).await.unwrap();
    round_trip(&mut big, b"a large hello").await;

    assert_eq!(upstream.served(), 2);
    harness.proxy.shutdown().await;
}

#[tokio::test]
async fn a_refusing_endpoint_is_retried_to_a_live_one() {
    let name = sni("web");
    let all_dead = sni("gone");
    let pki = Pki::new(&[name.clone(), all_dead.clone()]);
    let upstream = Upstream::start(&pki).await;
    let dead = dead_addr().await;
    let harness = Harness::start(
        Some(ingress(vec![
            // The dead endpoint takes almost all the weight, so it is tried first.
            (
                name.clone(),
                vec![endpoint(dead, "z1", 1000), endpoint(upstream.addr, "z1", 1)],
            ),
            (all_dead.clone(), vec![endpoint(dead, "z1", 1)]),
        ])),
        settings(),
    )
    .await;

    for i in 0..5 {
        let mut conn = connect(harness.addr(), &name, pki.client(vec![]))
            .await
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        round_trip(&mut conn, b"via the live endpoint").await;
    }
    assert_eq!(upstream.served(), 5);

    // A route whose every endpoint refuses closes the client's connection.
    assert!(
        connect(harness.addr(), &all_dead, pki.client(vec![]))
            .await
            .is_err()
    );
    harness.proxy.shutdown().await;
}

#[tokio::test]
async fn connections_are_spread_by_weight() {
    let name = sni("web");
    let pki = Pki::new(std::slice::from_ref(&name));
    let heavy = Upstream::start(&pki).await;
    let light = Upstream::start(&pki).await;
    // An egress: both endpoints are other zones' ingresses (priority 1 together).
    let harness = Harness::start(
        Some(egress(vec![(
            name.clone(),
            vec![endpoint(heavy.addr, "z2", 3), endpoint(light.addr, "z3", 1)],
        )])),
        settings(),
    )
    .await;

    const TOTAL: usize = 400;
    const BATCH: usize = 20;
    let client = pki.client(vec![]);
    for _ in 0..TOTAL / BATCH {
        let mut batch = Vec::new();
        for _ in 0..BATCH {
            let (addr, name, client) = (harness.addr(), name.clone(), client.clone());
            batch.push(tokio::spawn(async move {
                let mut conn = connect(addr, &name, client).await.unwrap();
                round_trip(&mut conn, b"x").await;
            }));
        }
        for task in batch {
            task.await.unwrap();
        }
    }
    let (h, l) = (heavy.served(), light.served());
    assert_eq!(h + l, TOTAL);
    let share = h as f64 / TOTAL as f64;
    // Expected 0.75; the standard deviation over 400 draws is about 0.022.
    assert!((0.65..=0.85).contains(&share), "heavy got {h}, light {l}");
    harness.proxy.shutdown().await;
}

#[tokio::test]
async fn a_config_update_changes_routing_for_new_connections() {
    let web = sni("web");
    let api = sni("api");
    let pki = Pki::new(&[web.clone(), api.clone()]);
    let a = Upstream::start(&pki).await;
    let b = Upstream::start(&pki).await;
    let harness = Harness::start(None, settings()).await;

    // No config yet: refused.
    assert!(
        connect(harness.addr(), &web, pki.client(vec![]))
            .await
            .is_err()
    );

    harness.update(ingress(vec![(
        web.clone(),
        vec![endpoint(a.addr, "z1", 1)],
    )]));
    let mut first = connect(harness.addr(), &web, pki.client(vec![]))
        .await
        .unwrap();
    round_trip(&mut first, b"to a").await;
    assert_eq!((a.served(), b.served()), (1, 0));
    assert!(
        connect(harness.addr(), &api, pki.client(vec![]))
            .await
            .is_err()
    );

    harness.update(ingress(vec![
        (web.clone(), vec![endpoint(b.addr, "z1", 1)]),
        (api.clone(), vec![endpoint(a.addr, "z1", 1)]),
    ]));
    let mut second = connect(harness.addr(), &web, pki.client(vec![]))
        .await
        .unwrap();
    round_trip(&mut second, b"to b").await;
    assert_eq!((a.served(), b.served()), (1, 1));
    let mut third = connect(harness.addr(), &api, pki.client(vec![]))
        .await
        .unwrap();
    round_trip(&mut third, b"api to a").await;
    assert_eq!((a.served(), b.served()), (2, 1));

    // The connection made under the first config keeps its upstream.
    round_trip(&mut first, b"still to a").await;

    // A removed name is refused again.
    harness.update(ingress(vec![(
        api.clone(),
        vec![endpoint(a.addr, "z1", 1)],
    )]));
    assert!(
        connect(harness.addr(), &web, pki.client(vec![]))
            .await
            .is_err()
    );
    harness.proxy.shutdown().await;
}

#[tokio::test]
async fn the_connection_limit_refuses_connections_beyond_it() {
    let name = sni("web");
    let pki = Pki::new(std::slice::from_ref(&name));
    let upstream = Upstream::start(&pki).await;
    let harness = Harness::start(
        Some(ingress(vec![(
            name.clone(),
            vec![endpoint(upstream.addr, "z1", 1)],
        )])),
        SniProxySettings {
            max_connections: Some(1),
            ..settings()
        },
    )
    .await;
    let mut first = connect(harness.addr(), &name, pki.client(vec![]))
        .await
        .unwrap();
    round_trip(&mut first, b"holding the only slot").await;
    let mut second = TcpStream::connect(harness.addr()).await.unwrap();
    assert!(closed_by_peer(&mut second).await.is_empty());
    round_trip(&mut first, b"unaffected").await;
    harness.proxy.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_connections_and_stops_accepting() {
    let name = sni("web");
    let pki = Pki::new(std::slice::from_ref(&name));
    let upstream = Upstream::start(&pki).await;
    let harness = Harness::start(
        Some(ingress(vec![(
            name.clone(),
            vec![endpoint(upstream.addr, "z1", 1)],
        )])),
        settings(),
    )
    .await;
    let addr = harness.addr();
    let mut conn = connect(addr, &name, pki.client(vec![])).await.unwrap();
    round_trip(&mut conn, b"before shutdown").await;
    harness.proxy.shutdown().await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(GUARD, conn.read_to_end(&mut rest))
        .await
        .expect("closed within the guard");
    assert!(read.is_err() || rest.is_empty());
    assert!(TcpStream::connect(addr).await.is_err());
}
