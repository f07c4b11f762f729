//! The inbound side: connections from other proxies to this sidecar's app.
//!
//! With mTLS on, the inbound terminates the mesh TLS (the peer must present a
//! certificate of the mesh), reads the client's service from its SPIFFE ID,
//! and asks the inbound's MeshTrafficPermission rules whether it may connect.
//! Only then does it dial the app and relay. A denied client, a client that
//! does not finish its handshake within [`HANDSHAKE_TIMEOUT`], or any
//! connection arriving before the first certificate is closed without the app
//! ever being contacted.
//!
//! With mTLS off there is no client identity to check (Kuma allows all such
//! traffic): bytes are relayed TCP to TCP, zero-copy on Linux.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meridian_identity::peer_identity;
use meridian_model::{Action, TrafficPermissionRules};
use meridian_relay::{connect, relay, relay_tcp};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::state::{InboundState, Shared};
use crate::telemetry::{INBOUND_CONNECTIONS, INBOUND_DENIED, INBOUND_REFUSED};

/// How long a client has to complete the TLS handshake; a peer that stalls
/// holds only its own connection, and only this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long dialling the local app may take.
pub const APP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one accepted inbound connection to its end.
pub(crate) async fn serve(
    stream: TcpStream,
    client: SocketAddr,
    inbound: Arc<InboundState>,
    mtls: bool,
    shared: Arc<Shared>,
) {
    let service = inbound.config.service.as_str();
    let refuse = |reason: &'static str| {
        metrics::counter!(INBOUND_REFUSED, "service" => service.to_owned(), "reason" => reason)
            .increment(1);
    };
    let Some(_permit) = inbound.limiter.try_acquire() else {
        tracing::warn!(%client, service, max = ?inbound.limiter.max(),
            "inbound connection limit reached; connection closed");
        refuse("limit");
        return;
    };
    metrics::counter!(INBOUND_CONNECTIONS, "service" => service.to_owned()).increment(1);
    if !mtls {
        let Some(app) = dial_app(&inbound, client).await else {
            refuse("app_unreachable");
            return;
        };
        if let Err(e) = relay_tcp(stream, app, &[], &inbound.relay).await {
            tracing::debug!(%client, service, error = %e, "inbound connection ended with an error");
        }
        return;
    }

    let config = match shared.tls.server() {
        Ok(config) => config,
        Err(e) => {
            tracing::warn!(%client, service, reason = %e,
                "mTLS is on but the inbound cannot terminate TLS; connection closed");
            refuse("no_certificate");
            return;
        }
    };
    let accepted =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(stream)).await;
    let tls = match accepted {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%client, service, error = %e, "inbound TLS handshake failed");
            refuse("handshake");
            return;
        }
        Err(_) => {
            tracing::info!(%client, service, timeout = ?HANDSHAKE_TIMEOUT,
                "inbound TLS handshake not completed in time");
            refuse("handshake_timeout");
            return;
        }
    };
    // The server verifier only completes handshakes whose client certificate
    // carries a SPIFFE ID of the mesh; checked again rather than trusted.
    let Some(peer) = peer_identity(tls.get_ref().1) else {
        tracing::warn!(%client, service, "client certificate has no SPIFFE ID; connection closed");
        refuse("no_peer_identity");
        return;
    };
    let (action, policy) = decide(&inbound.config.permissions, peer.service());
    match action {
        Action::Deny => {
            tracing::info!(%client, peer = %peer, service, policy,
                "connection denied by MeshTrafficPermission");
            metrics::counter!(INBOUND_DENIED, "service" => service.to_owned(),
                "client" => peer.service().to_owned())
            .increment(1);
            return;
        }
        Action::AllowWithShadowDeny => {
            tracing::info!(%client, peer = %peer, service, policy,
                "connection would be denied (shadow deny); allowed");
        }
        Action::Allow => {}
    }
    let Some(app) = dial_app(&inbound, client).await else {
        refuse("app_unreachable");
        return;
    };
    let app_addr = inbound.config.app;
    if let Err(e) = relay(tls, app, &[], &inbound.relay).await {
        let e = e.at(Some(client), Some(app_addr));
        tracing::debug!(peer = %peer, service, error = %e, "inbound connection ended with an error");
    }
}

async fn dial_app(inbound: &InboundState, client: SocketAddr) -> Option<TcpStream> {
    match connect(inbound.config.app, APP_CONNECT_TIMEOUT).await {
        Ok(app) => Some(app),
        Err(e) => {
            tracing::warn!(%client, service = %inbound.config.service, error = %e,
                "cannot reach the app; connection closed");
            None
        }
    }
}

/// The action for a client service, with the policy that decided it (for logs).
pub(crate) fn decide(rules: &TrafficPermissionRules, client_service: &str) -> (Action, String) {
    let no_tags = BTreeMap::new();
    let action = rules.action_for(client_service, &no_tags);
    let policy = rules
        .rules
        .iter()
        .find(|r| r.from.selects(client_service, &no_tags))
        .map_or_else(
            || {
                if rules.mtls_enabled {
                    "(none: denied by default with mTLS on)".to_owned()
                } else {
                    "(none: allowed by default without mTLS)".to_owned()
                }
            },
            |r| r.policy.clone(),
        );
    (action, policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_model::{PermissionRule, TargetRef};

    #[test]
    fn the_first_selecting_rule_decides_and_is_named() {
        let rules = TrafficPermissionRules {
            rules: vec![
                PermissionRule {
                    from: TargetRef::service("frontend"),
                    action: Action::Deny,
                    policy: "deny-frontend".into(),
                },
                PermissionRule {
                    from: TargetRef::mesh(),
                    action: Action::Allow,
                    policy: "allow-all".into(),
                },
            ],
            mtls_enabled: true,
        };
        assert_eq!(
            decide(&rules, "frontend"),
            (Action::Deny, "deny-frontend".to_owned())
        );
        assert_eq!(
            decide(&rules, "web"),
            (Action::Allow, "allow-all".to_owned())
        );
        let none = TrafficPermissionRules {
            rules: vec![],
            mtls_enabled: true,
        };
        assert_eq!(decide(&none, "web").0, Action::Deny);
    }
}
