//! The admin server over a real socket: health, readiness before and after the
//! first config, and the rejection counter in `/metrics`.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use meridian_zone_proxy::{AdminServer, SniProxy, SniProxySettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use support::{GUARD, closed_by_peer, ingress};

/// `GET path` over HTTP/1.1; the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(GUARD, stream.read_to_string(&mut response))
        .await
        .expect("response within the guard")
        .unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (tx, rx) = watch::channel(None);
    let admin = AdminServer::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), rx.clone())
        .await
        .unwrap();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let proxy = SniProxy::start(listener, rx, SniProxySettings::default()).unwrap();

    assert_eq!(get(admin.local_addr(), "/healthz").await.0, 200);
    assert_eq!(get(admin.local_addr(), "/readyz").await.0, 503);

    // A connection before any config is refused, and counted.
    let mut early = TcpStream::connect(proxy.local_addr()).await.unwrap();
    early.write_all(b"not tls").await.unwrap();
    closed_by_peer(&mut early).await;

    tx.send_replace(Some(Arc::new(ingress(vec![]))));
    assert_eq!(get(admin.local_addr(), "/readyz").await.0, 200);

    let (status, body) = get(admin.local_addr(), "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("meridian_zone_proxy_rejected_total{reason=\"not_tls\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("meridian_zone_proxy_connections_accepted_total 1"),
        "{body}"
    );

    proxy.shutdown().await;
    admin.shutdown().await.unwrap();
}
