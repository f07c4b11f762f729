//! The data path end to end with the real binaries on loopback: global on
//! PostgreSQL, zone CPs, zone ingresses, sidecars (`meridian dp`) and demo echo
//! services, each its own process. Traffic crosses zones through the
//! destination zone's ingress with mTLS end to end; routes, permissions and
//! locality are applied by the proxies from what the control planes computed.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use meridian_tests::cluster::{Cluster, answered_by, exchange, tally};
use meridian_tests::eventually;
use meridian_tests::scratch::free_port;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn allow_all() -> Value {
    json!({"type": "MeshTrafficPermission", "name": "allow-all", "mesh": "default",
        "spec": {"targetRef": {"kind": "Mesh"},
                 "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}})
}

/// Waits until connections to `port` are answered by someone `who` accepts.
async fn until_answered(port: u16, what: &str, who: impl Fn(&str) -> bool) {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually(what, WAIT, || async {
        let answer = exchange(addr, b"ping").await.ok()?;
        who(&answered_by(&answer)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn cross_zone_traffic_follows_routes_and_permissions() {
    let cluster = Cluster::start("data-path", &["zone-a", "zone-b"]).await;
    cluster.apply(allow_all()).await;
    let (_ingress_b, _) = cluster.ingress("zone-b").await;
    let backend = "backend_kuma-demo_svc_3001";
    let (_v0_app, v0) = cluster.echo("zone-b/v0").await;
    let (_v1_app, v1) = cluster.echo("zone-b/v1").await;
    let _v0 = cluster
        .sidecar(
            "zone-b",
            "backend-v0",
            backend,
            Some(v0),
            &[],
            &["version=v0"],
        )
        .await;
    let _v1 = cluster
        .sidecar(
            "zone-b",
            "backend-v1",
            backend,
            Some(v1),
            &[],
            &["version=v1"],
        )
        .await;
    // Two outbounds: straight to the backend service, and to `backend`, which
    // only exists through seed 004's route.
    let (outbound, routed) = (free_port(), free_port());
    let _frontend = cluster
        .sidecar(
            "zone-a",
            "frontend",
            "frontend_kuma-demo_svc_8080",
            None,
            &[(outbound, backend), (routed, "backend")],
            &["app=frontend"],
        )
        .await;
    let addr = format!("127.0.0.1:{outbound}").parse().unwrap();
    let routed_addr = format!("127.0.0.1:{routed}").parse().unwrap();

    // (1) zone-a → zone-b's ingress → a zone-b instance, bytes intact both ways.
    // Both instances must serve (each has its certificate) before traffic is checked.
    for instance in ["zone-b/v0", "zone-b/v1"] {
        until_answered(outbound, instance, |who| who == instance).await;
    }
    let small = exchange(addr, b"hello across zones").await.unwrap();
    assert!(
        small.ends_with(b": hello across zones"),
        "{:?}",
        String::from_utf8_lossy(&small)
    );
    let large: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let echoed = exchange(addr, &large).await.unwrap();
    let prefix_len = echoed.len() - large.len();
    assert_eq!(
        &echoed[prefix_len..],
        &large[..],
        "4 MiB echoed intact after a half-close"
    );

    // (2) Seed 004's split (the universal document, unchanged): connections
    // to `backend` go 90 % to v0 and 10 % to v1 of backend_kuma-demo_svc_3001.
    let split: Value = serde_norway::from_str(include_str!("fixtures/tcp-route-1.yaml")).unwrap();
    cluster.apply(split.clone()).await;
    cluster.wait_synced("zone-a", &split).await;
    until_answered(routed, "the split is in force", |who| {
        who.starts_with("zone-b/v")
    })
    .await;
    let counts = tally(routed_addr, 400).await;
    let v0_share = counts.get("zone-b/v0").copied().unwrap_or(0) as f64 / 400.0;
    assert!(
        (0.83..=0.97).contains(&v0_share),
        "v0 share {v0_share} of {counts:?} (want 0.90 ± 0.07)"
    );
    assert_eq!(counts.get("(failed)"), None, "{counts:?}");

    // A redirect: every connection to the backend goes to another service.
    let (_new_app, new_addr) = cluster.echo("zone-b/new").await;
    let _new = cluster
        .sidecar(
            "zone-b",
            "backend-new",
            "backend-new",
            Some(new_addr),
            &[],
            &[],
        )
        .await;
    let redirect = json!({"type": "MeshTCPRoute", "name": "tcp-route-2", "mesh": "default",
        "spec": {"targetRef": {"kind": "Mesh"},
                 "to": [{"targetRef": {"kind": "MeshService", "name": backend},
                         "rules": [{"default": {"backendRefs": [{"kind": "MeshService", "name": "backend-new"}]}}]}]}});
    cluster.apply(redirect).await;
    until_answered(outbound, "the redirect", |who| who == "zone-b/new").await;
    let counts = tally(addr, 30).await;
    assert_eq!(counts.get("zone-b/new"), Some(&30), "{counts:?}");

    // (3) MeshTrafficPermission: deny frontend at the destination, then allow it.
    let deny = |action: &str| {
        json!({"type": "MeshTrafficPermission", "name": "frontend-to-new", "mesh": "default",
            "spec": {"targetRef": {"kind": "MeshService", "name": "backend-new"},
                     "from": [{"targetRef": {"kind": "MeshService", "name": "frontend_kuma-demo_svc_8080"},
                               "default": {"action": action}}]}})
    };
    cluster.apply(deny("Deny")).await;
    eventually("the deny is enforced", WAIT, || async {
        exchange(addr, b"ping").await.is_err().then_some(())
    })
    .await;
    let counts = tally(addr, 10).await;
    assert_eq!(
        counts.get("(failed)"),
        Some(&10),
        "denied connections never reach the app: {counts:?}"
    );
    cluster.apply(deny("Allow")).await;
    until_answered(outbound, "the allow", |who| who == "zone-b/new").await;

    // (4) A `from` subset on the client's tags, which its certificate states
    // (`kuma://kuma.io/zone/zone-a`, put there by zone-a's CP): denying zone-a
    // denies the frontend; denying another zone does not.
    let deny_zone = |zone: &str| {
        json!({"type": "MeshTrafficPermission", "name": "frontend-to-new", "mesh": "default",
            "spec": {"targetRef": {"kind": "MeshService", "name": "backend-new"},
                     "from": [{"targetRef": {"kind": "MeshSubset", "tags": {"kuma.io/zone": zone}},
                               "default": {"action": "Deny"}}]}})
    };
    cluster.apply(deny_zone("zone-a")).await;
    eventually("the deny of zone-a is enforced", WAIT, || async {
        exchange(addr, b"ping").await.is_err().then_some(())
    })
    .await;
    let counts = tally(addr, 10).await;
    assert_eq!(counts.get("(failed)"), Some(&10), "{counts:?}");
    cluster.apply(deny_zone("zone-c")).await;
    until_answered(outbound, "zone-a allowed again", |who| who == "zone-b/new").await;

    // (5) Kuma 2.10+ inbound `rules` by SPIFFE ID: once a policy with rules
    // selects the inbound, rules alone decide (the `from` allows above no longer
    // count), every deny before any allow.
    let rules = |denied: &str| {
        json!({"type": "MeshTrafficPermission", "name": "by-spiffe-id", "mesh": "default",
            "spec": {"targetRef": {"kind": "MeshService", "name": "backend-new"},
                     "rules": [{"default": {
                        "deny": [{"spiffeID": {"type": "Exact", "value": format!("spiffe://default/{denied}")}}],
                        "allow": [{"spiffeID": {"type": "Prefix", "value": "spiffe://default"}}]}}]}})
    };
    cluster.apply(rules("frontend_kuma-demo_svc_8080")).await;
    eventually(
        "the rules deny of the frontend is enforced",
        WAIT,
        || async { exchange(addr, b"ping").await.is_err().then_some(()) },
    )
    .await;
    let counts = tally(addr, 10).await;
    assert_eq!(counts.get("(failed)"), Some(&10), "{counts:?}");
    cluster.apply(rules("someone-else")).await;
    until_answered(outbound, "the rules allow", |who| who == "zone-b/new").await;
}

#[tokio::test]
async fn ingress_admits_only_mesh_mtls() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let cluster = Cluster::start("ingress-mtls", &["zone-a", "zone-b"]).await;
    cluster.apply(allow_all()).await;
    let (_ingress, ingress_addr) = cluster.ingress("zone-b").await;
    let (_app, app) = cluster.echo("zone-b/backend").await;
    let _backend = cluster
        .sidecar("zone-b", "backend-1", "backend", Some(app), &[], &[])
        .await;
    let outbound = free_port();
    let _web = cluster
        .sidecar("zone-a", "web", "web", None, &[(outbound, "backend")], &[])
        .await;
    // The path works for a mesh member...
    until_answered(outbound, "backend through the ingress", |who| {
        who == "zone-b/backend"
    })
    .await;

    // ...but not for plain TCP straight to the ingress,
    let mut plain = tokio::net::TcpStream::connect(ingress_addr).await.unwrap();
    let _ = plain.write_all(b"hello\n").await;
    let _ = plain.shutdown().await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut got))
        .await
        .unwrap();
    assert!(got.is_empty(), "plain TCP got an answer: {got:?}");

    // nor for TLS with the right SNI and a certificate from another CA.
    let sni = meridian_sni::SniTarget::new("default", "backend").to_sni();
    let rogue = rcgen::generate_simple_self_signed(vec!["rogue".to_owned()]).unwrap();
    let rogue_cert = rustls::pki_types::CertificateDer::from(rogue.cert.der().to_vec());
    let rogue_key =
        rustls::pki_types::PrivateKeyDer::try_from(rogue.signing_key.serialize_der()).unwrap();
    #[derive(Debug)]
    struct AcceptAnything;
    impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything))
        .with_client_auth_cert(vec![rogue_cert], rogue_key)
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(ingress_addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni).unwrap();
    let outcome = tokio::time::timeout(WAIT, async {
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"hello\n").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(answer)
    })
    .await
    .unwrap();
    match outcome {
        Ok(answer) => assert!(
            answer.is_empty(),
            "a foreign certificate got an answer: {answer:?}"
        ),
        Err(error) => assert!(!error.is_empty()),
    }
}

#[tokio::test]
async fn traffic_stays_local_then_fails_over_without_the_control_plane() {
    let mut cluster = Cluster::start("locality", &["zone-a", "zone-b", "zone-c"]).await;
    cluster.apply(allow_all()).await;
    let (ingress_b, _) = cluster.ingress("zone-b").await;
    let (_ingress_c, _) = cluster.ingress("zone-c").await;
    let mut apps = Vec::new();
    let mut sidecars = Vec::new();
    for zone in ["zone-a", "zone-b", "zone-c"] {
        let (app, addr) = cluster.echo(&format!("{zone}/echo")).await;
        apps.push(app);
        sidecars.push(
            cluster
                .sidecar(zone, &format!("echo-{zone}"), "echo", Some(addr), &[], &[])
                .await,
        );
    }
    let outbound = free_port();
    let _client = cluster
        .sidecar(
            "zone-a",
            "client",
            "client",
            None,
            &[(outbound, "echo")],
            &[],
        )
        .await;
    let addr = format!("127.0.0.1:{outbound}").parse().unwrap();
    // Both remote zones are known before the local instance goes away.
    for zone in ["zone-b", "zone-c"] {
        eventually(
            &format!("{zone}'s ingress advertised to zone-a"),
            WAIT,
            || async {
                let url = format!("{}/zoneingresses", cluster.zones["zone-a"].api);
                let list: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
                list["items"]
                    .as_array()?
                    .iter()
                    .any(|i| {
                        i["name"].as_str().is_some_and(|n| n.ends_with(zone))
                            && i["availableServices"]
                                .as_array()
                                .is_some_and(|s| !s.is_empty())
                    })
                    .then_some(())
            },
        )
        .await;
    }

    // (4) A local instance exists: every connection stays in zone-a.
    until_answered(outbound, "the local instance", |who| who == "zone-a/echo").await;
    let counts = tally(addr, 30).await;
    assert_eq!(counts.get("zone-a/echo"), Some(&30), "{counts:?}");

    // Scale zone-a to zero: traffic fails over to the other zones.
    sidecars.remove(0).terminate().await;
    // Both remote zones serve (zone-c is the one left when zone-b's ingress dies).
    for remote in ["zone-b/echo", "zone-c/echo"] {
        until_answered(outbound, remote, |who| who == remote).await;
    }

    // Global dies (zones stop learning anything new), then zone-b's ingress:
    // the client's proxy withdraws zone-b by itself and every connection lands in zone-c.
    cluster.kill_global().await;
    ingress_b.kill().await;
    let counts = tally(addr, 40).await;
    assert_eq!(
        counts.get("zone-c/echo"),
        Some(&40),
        "after zone-b's ingress died: {counts:?}"
    );
}

#[tokio::test]
async fn egress_routing_sends_cross_zone_traffic_through_the_local_egress() {
    let cluster = Cluster::start("egress", &["zone-a", "zone-b"]).await;
    cluster.apply(allow_all()).await;
    let mesh = json!({"type": "Mesh", "name": "default",
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
        "routing": {"zoneEgress": true}});
    cluster.apply(mesh.clone()).await;
    let (_ingress_b, _) = cluster.ingress("zone-b").await;
    let (_app, app) = cluster.echo("zone-b/backend").await;
    let _backend = cluster
        .sidecar("zone-b", "backend-1", "backend", Some(app), &[], &[])
        .await;
    let (egress, egress_admin) = cluster.egress("zone-a").await;
    let outbound = free_port();
    let _web = cluster
        .sidecar("zone-a", "web", "web", None, &[(outbound, "backend")], &[])
        .await;
    let addr = format!("127.0.0.1:{outbound}").parse().unwrap();

    until_answered(outbound, "zone-b through zone-a's egress", |who| {
        who == "zone-b/backend"
    })
    .await;
    let metrics = reqwest::get(format!("{egress_admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let forwarded: f64 = metrics
        .lines()
        .find(|l| l.starts_with("meridian_zone_proxy_connections_forwarded_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(forwarded >= 1.0, "the egress forwarded nothing:\n{metrics}");

    // The sidecar has no other way out: without the egress, nothing crosses.
    egress.kill().await;
    let counts = tally(addr, 5).await;
    assert_eq!(counts.get("(failed)"), Some(&5), "{counts:?}");
}

#[tokio::test]
async fn a_real_postgres_client_through_the_mesh() {
    let cluster = Cluster::start("psql", &["zone-a", "zone-b"]).await;
    cluster.apply(allow_all()).await;
    let (_ingress_b, _) = cluster.ingress("zone-b").await;
    // The PostgreSQL the tests use stands "in" zone-b.
    let server = meridian_tests::postgres::server_url();
    let pg_port: u16 = server
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
        .unwrap_or(5432);
    let pg = format!("127.0.0.1:{pg_port}").parse().unwrap();
    let _db = cluster
        .sidecar("zone-b", "postgres-1", "postgres", Some(pg), &[], &[])
        .await;
    let outbound = free_port();
    let _app = cluster
        .sidecar("zone-a", "app", "app", None, &[(outbound, "postgres")], &[])
        .await;
    let conninfo = format!(
        "host=127.0.0.1 port={outbound} user=postgres dbname=postgres sslmode=disable connect_timeout=5"
    );
    let psql = || async {
        let out = tokio::process::Command::new("psql")
            .args([conninfo.as_str(), "-tAc", "select 6 * 7"])
            .output()
            .await
            .expect("psql is installed with PostgreSQL");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    eventually("psql answers through the mesh", WAIT, || async {
        (psql().await == "42").then_some(())
    })
    .await;
    // pgbench initialises its tables (COPY included) and runs through the mesh.
    let database = meridian_tests::postgres::TestDatabase::create().await;
    let bench_conninfo = format!("{conninfo} dbname={}", database.name());
    for args in [
        vec!["-i", "-s", "1", "-q"],
        vec!["-n", "-S", "-c", "4", "-t", "100"],
    ] {
        let bench = tokio::process::Command::new("pgbench")
            .args(&args)
            .arg(&bench_conninfo)
            .output()
            .await
            .expect("pgbench is installed with PostgreSQL");
        assert!(
            bench.status.success(),
            "pgbench {args:?} through the mesh: {}\n{}",
            String::from_utf8_lossy(&bench.stdout),
            String::from_utf8_lossy(&bench.stderr)
        );
    }
}

/// The bytes of a TLS ClientHello whose server_name extension carries `name`
/// verbatim, whatever it is (an IP literal or `host:port` included, which TLS
/// clients never send): rustls writes a hello for a placeholder DNS name of the
/// same length, whose bytes are then replaced.
fn client_hello(name: &str) -> Vec<u8> {
    use std::sync::Arc;
    let placeholder: String = name
        .char_indices()
        .map(|(i, _)| if i % 60 == 59 { '.' } else { 'q' })
        .collect();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(placeholder.clone()).unwrap();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).unwrap();
    let at: Vec<usize> = hello
        .windows(placeholder.len())
        .enumerate()
        .filter(|(_, w)| *w == placeholder.as_bytes())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the placeholder appears once in the hello");
    hello[at[0]..at[0] + name.len()].copy_from_slice(name.as_bytes());
    hello
}

/// Sends `hello` to `proxy` and reads until the proxy closes; answers what came back.
async fn probe(proxy: std::net::SocketAddr, hello: &[u8]) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(proxy)
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(hello).await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        // A reset counts as closed, like an orderly close.
        let _ = stream.read_to_end(&mut answer).await;
        Ok(answer)
    };
    tokio::time::timeout(WAIT, attempt)
        .await
        .map_err(|_| "the proxy kept the connection open".to_owned())?
}

async fn proxy_metric(admin: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    meridian_tests::scrape::metric_value(&text, series).unwrap_or(0.0)
}

/// Every connection a zone proxy refused, whatever the reason.
async fn rejected_total(admin: &str) -> f64 {
    let text = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("meridian_zone_proxy_rejected_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A zone ingress or egress is not an open relay: a ClientHello naming anything
/// but a service of the mesh it routes (an IP, the address of a listener next to
/// it, a public name, a name shaped like a mesh service but unknown) gets the
/// connection closed, and not one connection reaches the listener the name points
/// at.
#[tokio::test]
async fn ingress_and_egress_are_not_open_relays() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use meridian_tests::cluster::ZoneProxyKind;

    const FORWARDED: &str = "meridian_zone_proxy_connections_forwarded_total";

    let cluster = Cluster::start("open-relay", &["zone-a", "zone-b"]).await;
    cluster.apply(allow_all()).await;
    let mesh = json!({"type": "Mesh", "name": "default",
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
        "routing": {"zoneEgress": true}});
    cluster.apply(mesh).await;
    let ingress = cluster.zone_proxy(ZoneProxyKind::Ingress, "zone-b").await;
    let egress = cluster.zone_proxy(ZoneProxyKind::Egress, "zone-a").await;
    let (_app, app) = cluster.echo("zone-b/backend").await;
    let _backend = cluster
        .sidecar("zone-b", "backend-1", "backend", Some(app), &[], &[])
        .await;

    // "The attacker's target": a listener that counts the connections it accepts.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = target.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let _target_task = tokio::spawn(async move {
        while let Ok((_stream, _)) = target.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });

    // Both proxies route the mesh's real service: a hello naming it is forwarded
    // (to the backend's sidecar, or to zone-b's ingress), so each proxy holds a
    // configured, non-empty route table before it is probed.
    let known = meridian_sni::SniTarget::new("default", "backend").to_sni();
    for (what, proxy) in [("ingress", &ingress), ("egress", &egress)] {
        eventually(&format!("the {what} routes {known}"), WAIT, || async {
            // The upstream answers the hello and then waits for the rest of the
            // handshake: look at the answer only briefly.
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                probe(proxy.listen, &client_hello(&known)),
            )
            .await;
            (proxy_metric(&proxy.admin, FORWARDED).await >= 1.0).then_some(())
        })
        .await;
    }

    let shaped_unknown = format!("backend-{}.default.mesh.meridian", "0".repeat(16));
    let names = [
        "127.0.0.1".to_owned(),
        target_addr.to_string(),
        format!("localhost:{}", target_addr.port()),
        "localhost".to_owned(),
        "example.com".to_owned(),
        shaped_unknown,
        meridian_sni::SniTarget::new("default", "attacker").to_sni(),
        meridian_sni::SniTarget::new("other-mesh", "backend").to_sni(),
        format!("{known}.example.com"),
    ];
    for (what, proxy) in [("ingress", &ingress), ("egress", &egress)] {
        let forwarded_before = proxy_metric(&proxy.admin, FORWARDED).await;
        let rejected_before = rejected_total(&proxy.admin).await;
        for name in &names {
            let answer = probe(proxy.listen, &client_hello(name))
                .await
                .unwrap_or_else(|e| panic!("{what}, SNI {name:?}: {e}"));
            assert!(
                answer.is_empty(),
                "{what} answered a hello for {name:?}: {answer:?}"
            );
        }
        // Plain bytes aimed at the target, no TLS at all.
        let raw = format!("CONNECT {target_addr} HTTP/1.1\r\nHost: {target_addr}\r\n\r\n");
        let answer = probe(proxy.listen, raw.as_bytes()).await.unwrap();
        assert!(answer.is_empty(), "{what} answered a CONNECT: {answer:?}");
        assert_eq!(
            proxy_metric(&proxy.admin, FORWARDED).await,
            forwarded_before,
            "the {what} forwarded none of them"
        );
        assert_eq!(
            rejected_total(&proxy.admin).await - rejected_before,
            (names.len() + 1) as f64,
            "the {what} counted every refused connection"
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "no connection reached the attacker's target"
    );
}
