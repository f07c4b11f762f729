//! The zone ingress end to end against a fake zone control plane (a real tonic
//! server speaking `meridian.dp.v1`): it registers its actual listen port, applies
//! the config it is sent, routes a real TLS connection by SNI to a TLS echo
//! server, and stops on shutdown. Also the errors `run` reports before running.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use meridian_proto::dp::control_message::Message as FromCp;
use meridian_proto::dp::dataplane_config_server::{DataplaneConfig, DataplaneConfigServer};
use meridian_proto::dp::proxy_message::Message as ToCp;
use meridian_proto::dp::{Config, ControlMessage, Hello, ProxyKind, ProxyMessage};
use meridian_proxy_api::{EndpointConfig, ProxyConfig, SniRoute, Via, ZoneProxyConfig};
use meridian_zone_ingress::{IngressSettings, run};
use meridian_zone_proxy::RunError;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

const GUARD: Duration = Duration::from_secs(20);

/// A zone CP that reports each Hello and ACK and answers every Hello with `config`.
struct FakeCp {
    config: Vec<u8>,
    hellos: mpsc::Sender<Hello>,
    acks: mpsc::Sender<u64>,
}

#[tonic::async_trait]
impl DataplaneConfig for FakeCp {
    type StreamStream = ReceiverStream<Result<ControlMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let (config, hellos, acks) = (self.config.clone(), self.hellos.clone(), self.acks.clone());
        tokio::spawn(async move {
            while let Ok(Some(msg)) = inbound.message().await {
                match msg.message {
                    Some(ToCp::Hello(hello)) => {
                        let _ = hellos.send(hello).await;
                        let reply = ControlMessage {
                            message: Some(FromCp::Config(Config {
                                version: 1,
                                config: config.clone(),
                            })),
                        };
                        let _ = tx.send(Ok(reply)).await;
                    }
                    Some(ToCp::Ack(ack)) => {
                        let _ = acks.send(ack.version).await;
                    }
                    _ => {}
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[tokio::test]
async fn registers_its_port_applies_the_config_and_routes_by_sni() {
    let name = meridian_sni::SniTarget::new("default", "web").to_sni();

    // A TLS echo upstream.
    let cert = rcgen::generate_simple_self_signed(vec![name.clone()]).unwrap();
    let der = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let upstream = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = upstream.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let (mut r, mut w) = tokio::io::split(tls);
                    if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                        let _ = w.shutdown().await;
                    }
                }
            });
        }
    });

    // The fake zone CP, configured to route `name` to the upstream.
    let config = ProxyConfig::Ingress(ZoneProxyConfig {
        zone: "z1".to_owned(),
        routes: vec![SniRoute {
            sni: name.clone(),
            mesh: "default".to_owned(),
            service: "web".to_owned(),
            subset: BTreeMap::new(),
            endpoints: vec![EndpointConfig {
                address: upstream_addr,
                zone: "z1".to_owned(),
                weight: 1,
                tags: BTreeMap::new(),
                via: Via::Direct,
            }]
            .into(),
            locality: None,
        }],
    });
    let (hellos_tx, mut hellos) = mpsc::channel(4);
    let (acks_tx, mut acks) = mpsc::channel(4);
    let cp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let cp_addr = cp.local_addr().unwrap();
    let fake = FakeCp {
        config: serde_json::to_vec(&config).unwrap(),
        hellos: hellos_tx,
        acks: acks_tx,
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DataplaneConfigServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(cp)),
    );

    let (stop, stopped) = oneshot::channel::<()>();
    let ingress = tokio::spawn(run(
        IngressSettings {
            zone_cp: format!("http://{cp_addr}"),
            zone_cp_ca_pem: None,
            name: "ingress-1".to_owned(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            advertise: None,
            admin_addr: None,
        },
        async move {
            let _ = stopped.await;
        },
    ));

    let hello = tokio::time::timeout(GUARD, hellos.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hello.kind, ProxyKind::Ingress as i32);
    assert_eq!(hello.name, "ingress-1");
    assert_eq!(hello.mesh, "");
    let doc: serde_json::Value = serde_json::from_slice(&hello.resource).unwrap();
    assert_eq!(doc["type"], "ZoneIngress");
    assert_eq!(doc["name"], "ingress-1");
    let port = doc["networking"]["port"].as_u64().unwrap();
    assert_ne!(port, 0, "the bound port is registered, not 0");
    assert_eq!(doc["networking"]["address"], "127.0.0.1");
    assert_eq!(doc["networking"]["advertisedAddress"], "127.0.0.1");
    assert_eq!(doc["networking"]["advertisedPort"].as_u64(), Some(port));
    meridian_model::parse_document(doc.clone()).unwrap();

    // The ACK is sent after the config is published to the proxy.
    assert_eq!(
        tokio::time::timeout(GUARD, acks.recv()).await.unwrap(),
        Some(1)
    );

    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, u16::try_from(port).unwrap()));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(listen).await.unwrap();
    let mut tls = tokio::time::timeout(
        GUARD,
        TlsConnector::from(Arc::new(client))
            .connect(ServerName::try_from(name.clone()).unwrap(), tcp),
    )
    .await
    .unwrap()
    .unwrap();
    tls.write_all(b"into the zone").await.unwrap();
    let mut back = [0u8; 13];
    tokio::time::timeout(GUARD, tls.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"into the zone");

    stop.send(()).unwrap();
    tokio::time::timeout(GUARD, ingress)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(listen).await.is_err(),
        "still listening after shutdown"
    );
}

fn settings(zone_cp: &str, listen: SocketAddr) -> IngressSettings {
    IngressSettings {
        zone_cp: zone_cp.to_owned(),
        zone_cp_ca_pem: None,
        name: "ingress-1".to_owned(),
        listen,
        advertise: None,
        admin_addr: None,
    }
}

#[tokio::test]
async fn a_taken_listen_address_is_a_bind_error() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = taken.local_addr().unwrap();
    let result = run(settings("http://127.0.0.1:1", addr), std::future::pending()).await;
    match result {
        Err(RunError::Bind { addr: a, .. }) => assert_eq!(a, addr),
        other => panic!("expected a bind error, got {other:?}"),
    }
}

#[tokio::test]
async fn plain_http_to_a_remote_zone_cp_is_refused() {
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let result = run(
        settings("http://10.1.2.3:5678", listen),
        std::future::pending(),
    )
    .await;
    assert!(matches!(result, Err(RunError::Client(_))), "{result:?}");
}
