//! End-to-end tests of the sidecar data path: real sockets, real mTLS with a
//! generated mesh CA, configs fed through the same `watch` channels the zone
//! CP client publishes on.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use meridian_dataplane::Sidecar;
use meridian_identity::{MeshCa, WorkloadId, WorkloadKey, WorkloadTags};
use meridian_model::{Action, PermissionRule, TargetRef, TrafficPermissionRules};
use meridian_proxy_api::{
    BackendConfig, EndpointConfig, InboundConfig, OutboundConfig, ProxyConfig, SidecarConfig, Via,
    WorkloadIdentity, ZoneProxyConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(10);
const MESH: &str = "default";

fn identity(ca: &MeshCa, service: &str) -> Arc<WorkloadIdentity> {
    let id = WorkloadId::new(MESH, service).unwrap();
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
    Arc::new(WorkloadIdentity {
        cert,
        key,
        trust: ca.trust(),
    })
}

/// A TCP server that echoes every connection, counting connections.
async fn echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    (addr, accepted)
}

/// A TCP server that writes `name` on every connection and closes it.
async fn namer(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(name.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// An address nothing listens on.
async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn rules(rules: Vec<(TargetRef, Action)>) -> TrafficPermissionRules {
    TrafficPermissionRules {
        rules: rules
            .into_iter()
            .enumerate()
            .map(|(i, (from, action))| PermissionRule {
                from,
                action,
                policy: format!("mtp-{i}"),
            })
            .collect(),
        mtls_enabled: true,
        matches: vec![],
    }
}

fn allow_all() -> TrafficPermissionRules {
    rules(vec![(TargetRef::mesh(), Action::Allow)])
}

fn inbound(app: SocketAddr, permissions: TrafficPermissionRules) -> InboundConfig {
    InboundConfig {
        listen: any(),
        app,
        service: "backend".into(),
        permissions,
        timeout: None,
        circuit_breaker: None,
    }
}

fn endpoint(address: SocketAddr) -> EndpointConfig {
    EndpointConfig {
        address,
        zone: "z1".into(),
        weight: 1,
        tags: BTreeMap::new(),
        via: Via::Direct,
    }
}

fn backend(service: &str, weight: u32, endpoints: Vec<SocketAddr>) -> BackendConfig {
    BackendConfig {
        service: service.into(),
        subset: BTreeMap::new(),
        weight,
        sni: format!("{service}.{MESH}.mesh"),
        endpoints: endpoints.into_iter().map(endpoint).collect(),
        resource: None,
    }
}

fn outbound(listen: SocketAddr, backends: Vec<BackendConfig>) -> OutboundConfig {
    OutboundConfig {
        listen,
        service: "backend".into(),
        backends,
        timeout: None,
        circuit_breaker: None,
        health_check: None,
        connect_attempts: Some(3),
        locality: None,
    }
}

fn sidecar(
    mtls: bool,
    inbounds: Vec<InboundConfig>,
    outbounds: Vec<OutboundConfig>,
) -> Arc<ProxyConfig> {
    Arc::new(ProxyConfig::Sidecar(SidecarConfig {
        mesh: MESH.into(),
        tags: Default::default(),
        zone: "z1".into(),
        mtls,
        inbounds,
        outbounds,
    }))
}

/// A sidecar with its two channels.
struct Node {
    config: watch::Sender<Option<Arc<ProxyConfig>>>,
    identity: watch::Sender<Option<Arc<WorkloadIdentity>>>,
    sidecar: Sidecar,
}

impl Node {
    fn new(identity: Option<Arc<WorkloadIdentity>>) -> Self {
        let (config, config_rx) = watch::channel(None);
        let (identity, identity_rx) = watch::channel(identity);
        let sidecar = Sidecar::start(config_rx, identity_rx);
        Self {
            config,
            identity,
            sidecar,
        }
    }

    /// Sends `config`, waits until applied, returns configured → bound addresses.
    async fn apply(&self, config: Arc<ProxyConfig>) -> BTreeMap<SocketAddr, SocketAddr> {
        self.config.send_replace(Some(Arc::clone(&config)));
        tokio::time::timeout(WAIT, self.sidecar.wait_applied(&config))
            .await
            .expect("config applied in time")
    }
}

/// A "backend" sidecar in front of an echo server (mTLS on), returning its
/// inbound's address and the echo server's connection count.
async fn backend_node(
    ca: &MeshCa,
    permissions: TrafficPermissionRules,
) -> (Node, SocketAddr, Arc<AtomicUsize>) {
    let (app, accepted) = echo().await;
    let node = Node::new(Some(identity(ca, "backend")));
    let listening = node
        .apply(sidecar(true, vec![inbound(app, permissions)], vec![]))
        .await;
    (node, listening[&any()], accepted)
}

/// A "frontend" sidecar with one outbound to `backends` (mTLS on), returning
/// its outbound's address.
async fn frontend_node(ca: &MeshCa, backends: Vec<BackendConfig>) -> (Node, SocketAddr) {
    let node = Node::new(Some(identity(ca, "frontend")));
    let listening = node
        .apply(sidecar(true, vec![], vec![outbound(any(), backends)]))
        .await;
    (node, listening[&any()])
}

/// Writes `payload`, half-closes, and reads until the peer closes.
async fn exchange(addr: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut r, mut w) = stream.into_split();
    let payload = payload.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&payload).await?;
        w.shutdown().await
    });
    let mut got = Vec::new();
    let read = tokio::time::timeout(WAIT, r.read_to_end(&mut got))
        .await
        .expect("the connection ended in time");
    // A peer that closes early may fail the write; the read result decides.
    let _ = writer.await;
    read.map(|_| got)
}

/// Whether a connection was closed without an answer (EOF or reset).
fn closed_without_answer(result: &std::io::Result<Vec<u8>>) -> bool {
    match result {
        Ok(bytes) => bytes.is_empty(),
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
    }
}

#[tokio::test]
async fn mtls_between_two_sidecars_echoes_large_payloads_with_half_close() {
    let ca = MeshCa::generate(MESH, Duration::from_secs(3600)).unwrap();
    let (_server, inbound_addr, accepted) = backend_node(&ca, allow_all()).await;
    let (_client, outbound_addr) =
        frontend_node(&ca, vec![backend("backend", 100, vec![inbound_addr])]).await;

    // A peer that connects and never starts its handshake holds only itself.
    let _silent = TcpStream::connect(inbound_addr).await.unwrap();

    let small = exchange(outbound_addr, b"hello mesh").await.unwrap();
    assert_eq!(small, b"hello mesh");

    // 6 MiB of non-repeating bytes, so a dropped or reordered chunk shows.
    let big: Vec<u8> = (0..6 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let echoed = exchange(outbound_addr, &big).await.unwrap();
    assert_eq!(echoed.len(), big.len());
    assert!(echoed == big, "payload corrupted");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn traffic_permission_deny_closes_before_the_app_and_allow_passes() {
    let ca = MeshCa::generate(MESH, Duration::from_secs(3600)).unwrap();

    // Deny "frontend" explicitly, allow everyone else.
    let deny_frontend = rules(vec![
        (TargetRef::service("frontend"), Action::Deny),
        (TargetRef::mesh(), Action::Allow),
    ]);
    let (_server, inbound_addr, accepted) = backend_node(&ca, deny_frontend).await;
    let (_client, outbound_addr) =
        frontend_node(&ca, vec![backend("backend", 1, vec![inbound_addr])]).await;
    let result = exchange(outbound_addr, b"let me in").await;
    assert!(closed_without_answer(&result), "{result:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the app was contacted");

    // mTLS on and no rule at all: denied by default.
    let (_server, inbound_addr, accepted) = backend_node(&ca, rules(vec![])).await;
    let (_client, outbound_addr) =
        frontend_node(&ca, vec![backend("backend", 1, vec![inbound_addr])]).await;
    let result = exchange(outbound_addr, b"let me in").await;
    assert!(closed_without_answer(&result), "{result:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the app was contacted");

    // Allowing "frontend" by name lets it through.
    let allow_frontend = rules(vec![(TargetRef::service("frontend"), Action::Allow)]);
    let (_server, inbound_addr, accepted) = backend_node(&ca, allow_frontend).await;
    let (_client, outbound_addr) =
        frontend_node(&ca, vec![backend("backend", 1, vec![inbound_addr])]).await;
    assert_eq!(
        exchange(outbound_addr, b"let me in").await.unwrap(),
        b"let me in"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_plain_tcp_client_or_a_foreign_certificate_is_refused_by_an_mtls_inbound() {
    let ca = MeshCa::generate(MESH, Duration::from_secs(3600)).unwrap();
    let (_server, inbound_addr, accepted) = backend_node(&ca, allow_all()).await;

    // The inbound answers a non-TLS client with at most a TLS alert record
    // (content type 21), never with anything from the app.
    let result = exchange(inbound_addr, b"GET / HTTP/1.0\r\n\r\n").await;
    let alert_only = matches!(&result, Ok(bytes) if bytes.first() == Some(&21));
    assert!(alert_only || closed_without_answer(&result), "{result:?}");

    // A sidecar whose certificate comes from another CA of the same mesh name.
    let other_ca = MeshCa::generate(MESH, Duration::from_secs(3600)).unwrap();
    let impostor = Node::new(Some(identity(&other_ca, "frontend")));
    let listening = impostor
        .apply(sidecar(
            true,
            vec![],
            vec![outbound(
                any(),
                vec![backend("backend", 1, vec![inbound_addr])],
            )],
        ))
        .await;
    let result = exchange(listening[&any()], b"hello").await;
    assert!(closed_without_answer(&result), "{result:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the app was contacted");
}

#[tokio::test]
async fn without_an_identity_an_mtls_inbound_refuses_until_one_arrives() {
    let ca = MeshCa::generate(MESH, Duration::from_secs(3600)).unwrap();
    let (app, accepted) = echo().await;
    let server = Node::new(None);
    let listening = server
        .apply(sidecar(true, vec![inbound(app, allow_all())], vec![]))
        .await;
    let (client, outbound_addr) =
        frontend_node(&ca, vec![backend("backend", 1, vec![listening[&any()]])]).await;
    let result = exchange(outbound_addr, b"early").await;
    assert!(closed_without_answer(&result), "{result:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0);

    server.identity.send_replace(Some(identity(&ca, "backend")));
    assert_eq!(exchange(outbound_addr, b"later").await.unwrap(), b"later");

    // A new client certificate applies to the next connection: one from a
    // foreign CA is refused, a good one works again.
    let foreign = MeshCa::generate(MESH, Duration::from_secs(3600)).unwrap();
    client
        .identity
        .send_replace(Some(identity(&foreign, "frontend")));
    let result = exchange(outbound_addr, b"foreign").await;
    assert!(closed_without_answer(&result), "{result:?}");
    client
        .identity
        .send_replace(Some(identity(&ca, "frontend")));
    assert_eq!(
        exchange(outbound_addr, b"rotated").await.unwrap(),
        b"rotated"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn weighted_backends_split_connections_by_weight() {
    let a = namer("A").await;
    let b = namer("B").await;
    let node = Node::new(None);
    let listening = node
        .apply(sidecar(
            false,
            vec![],
            vec![outbound(
                any(),
                vec![
                    backend("a", 80, vec![a]),
                    backend("never", 0, vec![a]),
                    backend("b", 20, vec![b]),
                ],
            )],
        ))
        .await;
    let addr = listening[&any()];
    let total = 400;
    let mut to_a = 0;
    for _ in 0..total {
        match exchange(addr, b"").await.unwrap().as_slice() {
            b"A" => to_a += 1,
            b"B" => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let share = f64::from(to_a) / f64::from(total);
    assert!(
        (0.72..=0.88).contains(&share),
        "{to_a}/{total} went to the 80% backend"
    );
}

#[tokio::test]
async fn all_zero_weights_close_the_connection() {
    let a = namer("A").await;
    let node = Node::new(None);
    let listening = node
        .apply(sidecar(
            false,
            vec![],
            vec![outbound(any(), vec![backend("a", 0, vec![a])])],
        ))
        .await;
    let result = exchange(listening[&any()], b"x").await;
    assert!(closed_without_answer(&result), "{result:?}");
}

#[tokio::test]
async fn a_dead_endpoint_is_retried_on_the_live_one() {
    let ca = MeshCa::generate(MESH, Duration::from_secs(3600)).unwrap();
    let (_server, inbound_addr, accepted) = backend_node(&ca, allow_all()).await;
    let dead = dead_addr().await;
    // The dead endpoint outweighs the live one 1000 to 1, so it is the first
    // pick until passive health ejects it: the first connections must retry.
    let mut weighted = backend("backend", 1, vec![dead, inbound_addr]);
    weighted.endpoints[0].weight = 1000;
    let (_client, outbound_addr) = frontend_node(&ca, vec![weighted]).await;
    for i in 0..30 {
        let payload = format!("request {i}");
        let got = exchange(outbound_addr, payload.as_bytes()).await.unwrap();
        assert_eq!(got, payload.as_bytes(), "connection {i}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 30);

    // Plain TCP takes the same path.
    let live = namer("live").await;
    let node = Node::new(None);
    let listening = node
        .apply(sidecar(
            false,
            vec![],
            vec![outbound(any(), vec![backend("b", 1, vec![dead, live])])],
        ))
        .await;
    for _ in 0..20 {
        assert_eq!(exchange(listening[&any()], b"").await.unwrap(), b"live");
    }
}

#[tokio::test]
async fn a_config_update_moves_new_connections_and_keeps_established_ones() {
    let (first, _) = echo().await;
    let second = namer("second").await;
    let node = Node::new(None);
    let listen = dead_addr().await; // a fixed, free port
    let before = node
        .apply(sidecar(
            false,
            vec![],
            vec![outbound(listen, vec![backend("b", 1, vec![first])])],
        ))
        .await;

    // An established connection through the outbound, relaying to `first`.
    let mut open = TcpStream::connect(before[&listen]).await.unwrap();
    open.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    open.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    let after = node
        .apply(sidecar(
            false,
            vec![],
            vec![outbound(listen, vec![backend("b", 1, vec![second])])],
        ))
        .await;
    assert_eq!(before, after, "the listener was kept");
    assert_eq!(exchange(after[&listen], b"").await.unwrap(), b"second");

    // The connection opened before the update still works.
    open.write_all(b"pong").await.unwrap();
    open.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");

    // Removing the outbound closes its listener.
    let none = node.apply(sidecar(false, vec![], vec![])).await;
    assert!(none.is_empty());
    assert!(TcpStream::connect(listen).await.is_err());
}

#[tokio::test]
async fn a_busy_address_is_retried_on_the_next_config_and_other_kinds_are_ignored() {
    let a = namer("A").await;
    let squatter = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let busy = squatter.local_addr().unwrap();
    let node = Node::new(None);
    let config = |listen| {
        sidecar(
            false,
            vec![],
            vec![outbound(listen, vec![backend("a", 1, vec![a])])],
        )
    };
    let listening = node.apply(config(busy)).await;
    assert!(listening.is_empty(), "bound a busy address: {listening:?}");

    drop(squatter);
    let listening = node.apply(config(busy)).await;
    assert_eq!(listening.get(&busy), Some(&busy));
    assert_eq!(exchange(busy, b"").await.unwrap(), b"A");

    // An ingress config changes nothing.
    let ingress = Arc::new(ProxyConfig::Ingress(ZoneProxyConfig {
        zone: "z1".into(),
        routes: vec![],
    }));
    assert_eq!(node.apply(ingress).await, listening);
    assert_eq!(exchange(busy, b"").await.unwrap(), b"A");
}

#[tokio::test]
async fn plain_inbound_relays_to_the_app_and_shutdown_closes_listeners() {
    let (app, accepted) = echo().await;
    let node = Node::new(None);
    let mut config = inbound(app, TrafficPermissionRules::default());
    config.permissions.mtls_enabled = false;
    let listening = node.apply(sidecar(false, vec![config], vec![])).await;
    let addr = listening[&any()];
    assert_eq!(exchange(addr, b"plain").await.unwrap(), b"plain");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    node.sidecar.shutdown_within(Duration::from_secs(1)).await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn connection_limit_refuses_beyond_max() {
    let (app, _) = echo().await;
    let node = Node::new(None);
    let mut out = outbound(any(), vec![backend("b", 1, vec![app])]);
    out.circuit_breaker = Some(
        serde_json::from_value(serde_json::json!({"connectionLimits": {"maxConnections": 1}}))
            .unwrap(),
    );
    let listening = node.apply(sidecar(false, vec![], vec![out])).await;
    let addr = listening[&any()];
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(b"1").await.unwrap();
    let mut buf = [0u8; 1];
    first.read_exact(&mut buf).await.unwrap();
    // `first` holds the only slot (it is relaying, proven by the echo).
    let result = exchange(addr, b"2").await;
    assert!(closed_without_answer(&result), "{result:?}");
    drop(first);
    // The slot frees when the first connection's relay ends; poll for it.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if exchange(addr, b"3").await.is_ok_and(|got| got == b"3") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
