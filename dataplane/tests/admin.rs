//! The admin endpoints over real HTTP: liveness, readiness as config and
//! certificate arrive, and Prometheus metrics.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meridian_dataplane::{AdminServer, Sidecar};
use meridian_identity::{MeshCa, WorkloadId, WorkloadKey, WorkloadTags};
use meridian_proxy_api::{ProxyConfig, SidecarConfig, WorkloadIdentity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// `GET path` over HTTP/1.1; the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn readyz_follows_config_and_certificate() {
    let (config_tx, config_rx) = watch::channel(None);
    let (identity_tx, identity_rx) = watch::channel(None);
    let sidecar = Sidecar::start(config_rx, identity_rx);
    let admin = AdminServer::start("127.0.0.1:0".parse().unwrap(), sidecar.readiness())
        .await
        .unwrap();
    let addr = admin.local_addr();

    assert_eq!(get(addr, "/healthz").await.0, 200);
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("no sidecar config"), "{body}");

    let config = Arc::new(ProxyConfig::Sidecar(SidecarConfig {
        mesh: "default".into(),
        tags: Default::default(),
        zone: "z1".into(),
        mtls: true,
        inbounds: vec![],
        outbounds: vec![],
    }));
    config_tx.send_replace(Some(Arc::clone(&config)));
    tokio::time::timeout(Duration::from_secs(10), sidecar.wait_applied(&config))
        .await
        .unwrap();
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("certificate"), "{body}");

    let ca = MeshCa::generate("default", Duration::from_secs(3600)).unwrap();
    let id = WorkloadId::new("default", "web").unwrap();
    let (key, csr) = WorkloadKey::generate(&id).unwrap();
    let cert = ca
        .sign_csr(
            &csr,
            &id,
            &WorkloadTags::new(),
            &[],
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
    identity_tx.send_replace(Some(Arc::new(WorkloadIdentity {
        cert,
        key,
        trust: ca.trust(),
    })));
    assert_eq!(get(addr, "/readyz").await.0, 200);

    // The sidecar's counters are in the process-wide recorder /metrics renders.
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("meridian_dp_configs_applied_total"), "{body}");

    admin.shutdown().await;
    sidecar.shutdown().await;
}
