//! One client connection: peek the ClientHello, route it by server name, connect an
//! upstream (up to [`MAX_ATTEMPTS`] endpoints), replay the peeked bytes and splice.
//!
//! Allocations per connection are the peek's buffer and the relay's pipes; the
//! endpoints tried are kept in a fixed array.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use meridian_relay::{ConnectionPermit, RelayConfig, RelayError, relay_tcp};
use meridian_sni::{PeekedHello, peek_client_hello};
use tokio::net::TcpStream;

use crate::routes::{Route, RouteTable};
use crate::settings::SniProxySettings;
use crate::telemetry::{CONNECT_RETRIES, FORWARDED, Rejection};

/// Endpoints tried per connection before giving up.
pub(crate) const MAX_ATTEMPTS: usize = 3;

/// What every connection of one proxy shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: SniProxySettings,
    pub(crate) relay: RelayConfig,
}

/// Handles one accepted connection to the end; `_permit` holds its slot of the
/// connection limit until then.
pub(crate) async fn serve(
    mut client: TcpStream,
    peer: SocketAddr,
    routes: Arc<RouteTable>,
    shared: Arc<Shared>,
    _permit: ConnectionPermit,
) {
    let PeekedHello {
        server_name, bytes, ..
    } = match peek_client_hello(&mut client, &shared.settings.peek).await {
        Ok(hello) => hello,
        Err(error) => {
            tracing::debug!(%peer, reason = error.result_label(), %error, "connection closed: no usable ClientHello");
            Rejection::Peek(error.result_label()).count();
            return;
        }
    };
    let Some(mut sni) = server_name else {
        tracing::info!(%peer, reason = "no_sni", "connection closed: the ClientHello has no server name");
        Rejection::NoSni.count();
        return;
    };
    // rustls lowercases already; this keeps the lookup right whatever parses the hello.
    sni.make_ascii_lowercase();
    let Some(route) = routes.get(&sni) else {
        let rejection = if routes.is_configured() {
            Rejection::UnknownSni
        } else {
            Rejection::NoConfig
        };
        tracing::info!(%peer, %sni, reason = rejection.label(), "connection closed: no route for the server name");
        rejection.count();
        return;
    };
    let upstream = match connect_upstream(route, &shared.settings, peer, &sni).await {
        Ok(upstream) => upstream,
        Err(rejection) => {
            rejection.count();
            return;
        }
    };
    metrics::counter!(FORWARDED).increment(1);
    let upstream_addr = upstream.peer_addr().ok();
    match relay_tcp(client, upstream, &bytes, &shared.relay).await {
        Ok(stats) => tracing::debug!(
            %peer, %sni, upstream = ?upstream_addr,
            to_upstream = stats.client_to_upstream, to_client = stats.upstream_to_client,
            "connection finished"
        ),
        Err(error) => tracing::debug!(%peer, %sni, %error, "connection ended with an error"),
    }
}

/// Connects to an endpoint of `route`, trying up to [`MAX_ATTEMPTS`] different
/// ones and reporting each outcome to the route's balancer.
async fn connect_upstream(
    route: &Route,
    settings: &SniProxySettings,
    peer: SocketAddr,
    sni: &str,
) -> Result<TcpStream, Rejection> {
    let mut tried = [SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)); MAX_ATTEMPTS];
    let mut last_error: Option<RelayError> = None;
    for attempt in 0..MAX_ATTEMPTS {
        let Some(addr) = route.pick(&tried[..attempt]) else {
            break;
        };
        tried[attempt] = addr;
        match meridian_relay::connect(addr, settings.connect_timeout).await {
            Ok(stream) => {
                route.report(addr, true);
                return Ok(stream);
            }
            Err(error) => {
                metrics::counter!(CONNECT_RETRIES).increment(1);
                tracing::debug!(%peer, %sni, endpoint = %addr, attempt = attempt + 1, %error, "upstream connection failed");
                route.report(addr, false);
                last_error = Some(error);
            }
        }
    }
    match last_error {
        None => {
            tracing::info!(%peer, %sni, mesh = %route.mesh, service = %route.service, reason = "no_endpoints",
                "connection closed: the route has no endpoint");
            Err(Rejection::NoEndpoints)
        }
        Some(error) => {
            tracing::info!(%peer, %sni, mesh = %route.mesh, service = %route.service, reason = "upstream_unreachable",
                %error, "connection closed: no endpoint could be connected to");
            Err(Rejection::UpstreamUnreachable)
        }
    }
}
