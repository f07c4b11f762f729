//! The outbound side: connections from this sidecar's app to a mesh service.
//!
//! For each connection the outbound picks a backend by MeshTCPRoute weight,
//! then an endpoint with the backend's locality-aware [`Balancer`](meridian_lb::Balancer).
//! A failed attempt (TCP connect, or the TLS handshake with mTLS on) is
//! reported to the balancer — enough of them eject the endpoint — and
//! another endpoint is tried, up to MeshRetry's `tcp.maxConnectAttempt` in
//! all (one without a MeshRetry, as in Kuma), never the same address twice
//! while others remain. The app sees a failure only when every
//! attempt failed, as a closed connection.
//!
//! With mTLS on, every endpoint gets the same TLS: the sidecar presents its
//! certificate, expects the backend service's SPIFFE ID, and sends the
//! backend's SNI name — which is what a zone ingress or egress routes by,
//! forwarding the bytes without terminating them. With mTLS off only other
//! sidecars' inbounds are dialled, in plain TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use meridian_lb::weighted_index;
use meridian_relay::{connect, relay, relay_tcp};
use rand::Rng;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::inbound::HANDSHAKE_TIMEOUT;
use crate::state::{BackendState, OutboundState, Shared, lock};
use crate::telemetry::{
    OUTBOUND_CONNECT_FAILURES, OUTBOUND_CONNECTIONS, OUTBOUND_NO_ENDPOINT, OUTBOUND_REFUSED,
};

/// Endpoints tried per connection without a MeshRetry (Kuma's, Envoy's
/// `max_connect_attempts` default).
pub const DEFAULT_ATTEMPTS: u32 = 1;

/// An established upstream.
enum Upstream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Serves one connection accepted from the app to its end.
pub(crate) async fn serve(
    stream: TcpStream,
    client: SocketAddr,
    outbound: Arc<OutboundState>,
    mesh: String,
    mtls: bool,
    shared: Arc<Shared>,
) {
    let service = outbound.config.service.as_str();
    let refuse = |reason: &'static str| {
        metrics::counter!(OUTBOUND_REFUSED, "service" => service.to_owned(), "reason" => reason)
            .increment(1);
    };
    let Some(_permit) = outbound.limiter.try_acquire() else {
        tracing::warn!(%client, service, max = ?outbound.limiter.max(),
            "outbound connection limit reached; connection closed");
        refuse("limit");
        return;
    };
    let Some(backend) = pick_backend(&outbound.backends, &mut rand::rng()) else {
        tracing::warn!(%client, service, "no backend with a weight above zero; connection closed");
        metrics::counter!(OUTBOUND_NO_ENDPOINT, "service" => service.to_owned()).increment(1);
        return;
    };
    let backend_name = backend.config.service.as_str();
    let tls = if mtls {
        let config = match shared.tls.client(&mesh, backend_name) {
            Ok(config) => config,
            Err(e) => {
                tracing::warn!(%client, service, backend = backend_name, reason = %e,
                    "mTLS is on but the outbound cannot originate TLS; connection closed");
                refuse("no_certificate");
                return;
            }
        };
        let sni = match ServerName::try_from(backend.config.sni.clone()) {
            Ok(sni) => sni,
            Err(e) => {
                tracing::error!(%client, service, sni = %backend.config.sni, error = %e,
                    "the backend's SNI is not a valid server name; connection closed");
                refuse("bad_sni");
                return;
            }
        };
        Some((TlsConnector::from(config), sni))
    } else {
        None
    };

    let Some((upstream, addr)) = establish(&outbound, backend, tls.as_ref(), client, service).await
    else {
        metrics::counter!(OUTBOUND_NO_ENDPOINT, "service" => service.to_owned()).increment(1);
        return;
    };
    metrics::counter!(OUTBOUND_CONNECTIONS, "service" => service.to_owned(),
        "backend" => backend_name.to_owned())
    .increment(1);
    let result = match upstream {
        Upstream::Plain(up) => relay_tcp(stream, up, &[], &outbound.relay).await,
        Upstream::Tls(up) => relay(stream, up, &[], &outbound.relay)
            .await
            .map_err(|e| e.at(Some(client), Some(addr))),
    };
    if let Err(e) = result {
        tracing::debug!(service, backend = backend_name, error = %e,
            "outbound connection ended with an error");
    }
}

/// Tries endpoints of `backend` until one answers, reporting each outcome to
/// its balancer. `None` when no endpoint exists or every attempt failed.
async fn establish(
    outbound: &OutboundState,
    backend: &BackendState,
    tls: Option<&(TlsConnector, ServerName<'static>)>,
    client: SocketAddr,
    service: &str,
) -> Option<(Upstream, SocketAddr)> {
    let backend_name = backend.config.service.as_str();
    let attempts = outbound
        .config
        .connect_attempts
        .unwrap_or(DEFAULT_ATTEMPTS)
        .max(1);
    let mut tried: Vec<SocketAddr> = Vec::new();
    for _ in 0..attempts {
        let Some(addr) = next_endpoint(backend, &tried) else {
            break;
        };
        tried.push(addr);
        match attempt(addr, outbound, tls).await {
            Ok(upstream) => {
                lock(&backend.balancer).report_success(addr, Instant::now());
                return Some((upstream, addr));
            }
            Err(e) => {
                let ejected = lock(&backend.balancer).report_failure(addr, Instant::now());
                metrics::counter!(OUTBOUND_CONNECT_FAILURES, "service" => service.to_owned(),
                    "backend" => backend_name.to_owned())
                .increment(1);
                tracing::info!(%client, service, backend = backend_name, endpoint = %addr,
                    error = %e, ejected, "outbound endpoint failed; trying another");
            }
        }
    }
    if tried.is_empty() {
        tracing::warn!(%client, service, backend = backend_name,
            "no endpoint for the backend; connection closed");
    } else {
        tracing::warn!(%client, service, backend = backend_name, ?tried,
            "every attempted endpoint failed; connection closed");
    }
    None
}

/// One attempt at one endpoint: TCP, then TLS when mTLS is on.
async fn attempt(
    addr: SocketAddr,
    outbound: &OutboundState,
    tls: Option<&(TlsConnector, ServerName<'static>)>,
) -> Result<Upstream, String> {
    let tcp = connect(addr, outbound.config.connect_timeout())
        .await
        .map_err(|e| e.to_string())?;
    let Some((connector, sni)) = tls else {
        return Ok(Upstream::Plain(tcp));
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(sni.clone(), tcp)).await {
        Ok(Ok(stream)) => Ok(Upstream::Tls(Box::new(stream))),
        Ok(Err(e)) => Err(format!("TLS handshake with {addr} (SNI {sni:?}): {e}")),
        Err(_) => Err(format!(
            "TLS handshake with {addr} not completed within {HANDSHAKE_TIMEOUT:?}"
        )),
    }
}

/// The next endpoint to try: one not tried yet
/// ([`Balancer::pick_untried`](meridian_lb::Balancer::pick_untried)); a tried
/// one again only when none is left.
fn next_endpoint(backend: &BackendState, tried: &[SocketAddr]) -> Option<SocketAddr> {
    let mut rng = rand::rng();
    let mut lb = lock(&backend.balancer);
    if let Some(untried) = lb.pick_untried(tried, &mut rng) {
        return Some(untried.address);
    }
    lb.pick(&mut rng).map(|e| e.address)
}

/// A backend drawn by weight; weight 0 never, `None` when all are 0.
pub(crate) fn pick_backend<'a>(
    backends: &'a [BackendState],
    rng: &mut impl Rng,
) -> Option<&'a BackendState> {
    let weights = backends.iter().map(|b| u64::from(b.config.weight));
    backends.get(weighted_index(weights, rng)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use meridian_lb::{Balancer, Endpoint, HealthConfig, Plan};
    use meridian_proxy_api::BackendConfig;
    use rand::SeedableRng;

    fn backend(name: &str, weight: u32, endpoints: &[&str]) -> BackendState {
        let eps = endpoints
            .iter()
            .map(|a| Endpoint::new(a.parse().unwrap(), "z1", 1))
            .collect();
        BackendState {
            config: BackendConfig {
                service: name.into(),
                subset: BTreeMap::new(),
                weight,
                sni: format!("{name}.sni"),
                endpoints: vec![].into(),
                resource: None,
            },
            balancer: Arc::new(Mutex::new(Balancer::new(
                Plan::build("z1", &BTreeMap::new(), eps, None),
                HealthConfig::default(),
            ))),
        }
    }

    #[test]
    fn weights_split_and_zero_never_wins() {
        let backends = [
            backend("a", 3, &[]),
            backend("zero", 0, &[]),
            backend("b", 1, &[]),
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = BTreeMap::new();
        for _ in 0..4000 {
            let b = pick_backend(&backends, &mut rng).unwrap();
            *counts.entry(b.config.service.clone()).or_insert(0) += 1;
        }
        assert!(!counts.contains_key("zero"));
        let a = counts["a"];
        assert!((2800..3200).contains(&a), "{counts:?}");
        assert!(pick_backend(&[backend("zero", 0, &[])], &mut rng).is_none());
        assert!(pick_backend(&[], &mut rng).is_none());
    }

    #[test]
    fn retries_never_repeat_an_address_while_others_remain() {
        let b = backend("a", 1, &["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"]);
        for _ in 0..50 {
            let mut tried = vec![];
            for _ in 0..3 {
                let next = next_endpoint(&b, &tried).unwrap();
                assert!(!tried.contains(&next), "{next} twice in {tried:?}");
                tried.push(next);
            }
        }
        let single = backend("s", 1, &["10.0.0.9:1"]);
        let only: SocketAddr = "10.0.0.9:1".parse().unwrap();
        assert_eq!(next_endpoint(&single, &[only]), Some(only));
        assert_eq!(next_endpoint(&backend("e", 1, &[]), &[]), None);
    }
}
