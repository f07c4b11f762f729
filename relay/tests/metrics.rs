//! The relay's metrics, observed with a local debugging recorder on a current-thread
//! runtime (so every task records into it).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use meridian_relay::{RelayConfig, relay_tcp, telemetry};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn counters(recorder: &DebuggingRecorder) -> HashMap<String, u64> {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => Some((key.key().name().to_string(), n)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_relayed_connection_is_counted() {
    let recorder = DebuggingRecorder::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let upstream_addr = upstream.local_addr().unwrap();
            let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let front_addr = front.local_addr().unwrap();
            let echo = tokio::spawn(async move {
                let (mut s, _) = upstream.accept().await.unwrap();
                let (mut r, mut w) = s.split();
                tokio::io::copy(&mut r, &mut w).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let proxy = tokio::spawn(async move {
                let (client, _) = front.accept().await.unwrap();
                let up = meridian_relay::connect(upstream_addr, std::time::Duration::from_secs(5))
                    .await
                    .unwrap();
                relay_tcp(client, up, b"ab", &RelayConfig::default()).await
            });
            let mut client = TcpStream::connect(front_addr).await.unwrap();
            client.write_all(b"cde").await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"abcde");
            proxy.await.unwrap().unwrap();
            echo.await.unwrap();
        });
    });
    let counters = counters(&recorder);
    assert_eq!(counters.get(telemetry::CONNECTIONS_OPENED), Some(&1));
    assert_eq!(counters.get(telemetry::CONNECTIONS_CLOSED), Some(&1));
    assert_eq!(counters.get(telemetry::BYTES_CLIENT_TO_UPSTREAM), Some(&5));
    assert_eq!(counters.get(telemetry::BYTES_UPSTREAM_TO_CLIENT), Some(&5));
    assert_eq!(counters.get(telemetry::ERRORS).copied().unwrap_or(0), 0);
    for name in counters.keys() {
        assert!(name.starts_with("meridian_relay_"), "{name}");
    }
}
