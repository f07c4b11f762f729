//! The inbound side: connections from other proxies to this sidecar's app.
//!
//! With mTLS on, the inbound terminates the mesh TLS (the peer must present a
//! certificate of the mesh), reads the client's service from its SPIFFE ID and
//! its tags from its `kuma://` URI SANs, and asks the inbound's
//! MeshTrafficPermission rules whether it may connect.
//! Only then does it dial the app and relay. A denied client, a client that
//! does not finish its handshake within [`HANDSHAKE_TIMEOUT`], or any
//! connection arriving before the first certificate is closed without the app
//! ever being contacted.
//!
//! With mTLS off there is no client identity to check (Kuma allows all such
//! traffic): bytes are relayed TCP to TCP, zero-copy on Linux.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meridian_identity::peer_workload;
use meridian_model::{Action, ClientView, Decider, TrafficPermissionRules};
use meridian_relay::{connect, relay, relay_tcp};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::state::{InboundState, Shared};
use crate::telemetry::{INBOUND_CONNECTIONS, INBOUND_DENIED, INBOUND_REFUSED};

/// How long a client has to complete the TLS handshake; a peer that stalls
/// holds only its own connection, and only this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    let Some((peer, tags)) = peer_workload(tls.get_ref().1) else {
        tracing::warn!(%client, service, "client certificate has no SPIFFE ID; connection closed");
        refuse("no_peer_identity");
        return;
    };
    let spiffe_id = peer.to_uri();
    let has_tag = |k: &str, v: &str| tags.has(k, v);
    let client_view = ClientView {
        service: peer.service(),
        spiffe_id: &spiffe_id,
        sni: tls.get_ref().1.server_name(),
        has_tag: &has_tag,
    };
    let (action, policy) = decide(&inbound.config.permissions, &client_view);
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
    // MeshTimeout `from`'s `connectionTimeout` (5 s by default).
    match connect(inbound.config.app, inbound.config.connect_timeout()).await {
        Ok(app) => Some(app),
        Err(e) => {
            tracing::warn!(%client, service = %inbound.config.service, error = %e,
                "cannot reach the app; connection closed");
            None
        }
    }
}

/// The action for a client, with the policy that decided it (for logs). The
/// client is its service and SPIFFE ID, the SNI it sent, and the tags its
/// certificate states (`kuma://` URI SANs the zone CP put there from its
/// registration), so `from` subsets such as `kuma.io/zone: zone-2` or
/// `version: v1` and inbound `rules` matches by SPIFFE ID or SNI work as in Kuma.
pub(crate) fn decide(rules: &TrafficPermissionRules, client: &ClientView<'_>) -> (Action, String) {
    match rules.decide(client) {
        (action, Decider::Policy(p)) => (action, p.to_owned()),
        (action, Decider::Default) if !rules.matches.is_empty() => (
            action,
            "(none: no rule matched, denied as in Kuma)".to_owned(),
        ),
        (action, Decider::Default) if rules.mtls_enabled => {
            (action, "(none: denied by default with mTLS on)".to_owned())
        }
        (action, Decider::Default) => {
            (action, "(none: allowed by default without mTLS)".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_identity::WorkloadTags;
    use meridian_model::{PermissionMatch, PermissionRule, TargetRef, TargetRefKind};

    /// `decide` for a client of mesh `default` with `tags` and no SNI.
    fn decide_for(
        rules: &TrafficPermissionRules,
        service: &str,
        tags: &WorkloadTags,
    ) -> (Action, String) {
        let spiffe_id = format!("spiffe://default/{service}");
        let has_tag = |k: &str, v: &str| tags.has(k, v);
        decide(
            rules,
            &ClientView {
                service,
                spiffe_id: &spiffe_id,
                sni: None,
                has_tag: &has_tag,
            },
        )
    }

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
            matches: vec![],
        };
        let none_tags = WorkloadTags::new();
        assert_eq!(
            decide_for(&rules, "frontend", &none_tags),
            (Action::Deny, "deny-frontend".to_owned())
        );
        assert_eq!(
            decide_for(&rules, "web", &none_tags),
            (Action::Allow, "allow-all".to_owned())
        );
        let none = TrafficPermissionRules {
            rules: vec![],
            mtls_enabled: true,
            matches: vec![],
        };
        assert_eq!(decide_for(&none, "web", &none_tags).0, Action::Deny);
    }

    #[test]
    fn subsets_match_the_tags_the_client_certificate_states() {
        let subset = |kind: TargetRefKind, name: Option<&str>, tags: &[(&str, &str)]| TargetRef {
            name: name.map(str::to_owned),
            tags: Some(
                tags.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..TargetRef::of(kind)
        };
        let rules = TrafficPermissionRules {
            rules: vec![
                PermissionRule {
                    from: subset(
                        TargetRefKind::MeshSubset,
                        None,
                        &[("kuma.io/zone", "zone-2")],
                    ),
                    action: Action::Deny,
                    policy: "deny-zone-2".into(),
                },
                PermissionRule {
                    from: subset(
                        TargetRefKind::MeshServiceSubset,
                        Some("web"),
                        &[("version", "v1")],
                    ),
                    action: Action::Deny,
                    policy: "deny-web-v1".into(),
                },
                PermissionRule {
                    from: TargetRef::mesh(),
                    action: Action::Allow,
                    policy: "allow-all".into(),
                },
            ],
            mtls_enabled: true,
            matches: vec![],
        };
        let tags = |uris: &[&str]| WorkloadTags::from_uris(uris.iter().copied());
        let zone_2 = tags(&["kuma://kuma.io/zone/zone-2", "kuma://version/v2"]);
        let zone_1_v1 = tags(&["kuma://kuma.io/zone/zone-1", "kuma://version/v1"]);
        let zone_1_v2 = tags(&["kuma://kuma.io/zone/zone-1", "kuma://version/v2"]);
        assert_eq!(decide_for(&rules, "web", &zone_2).1, "deny-zone-2");
        assert_eq!(decide_for(&rules, "web", &zone_1_v1).1, "deny-web-v1");
        assert_eq!(decide_for(&rules, "api", &zone_1_v1).1, "allow-all");
        assert_eq!(decide_for(&rules, "web", &zone_1_v2).1, "allow-all");
        // No tags stated (a certificate from before tags were issued): no subset matches.
        assert_eq!(
            decide_for(&rules, "web", &WorkloadTags::new()).1,
            "allow-all"
        );
    }

    #[test]
    fn inbound_rules_decide_alone_denies_first_and_deny_when_nothing_matches() {
        let list = |action, ids: &[&str], policy: &str| PermissionMatch {
            action,
            matches: ids
                .iter()
                .map(|id| {
                    serde_json::from_value(serde_json::json!({"spiffeID": {
                        "type": if id.ends_with('/') { "Prefix" } else { "Exact" },
                        "value": id}}))
                    .expect("match")
                })
                .collect(),
            policy: policy.into(),
        };
        let rules = TrafficPermissionRules {
            // A `from` rule allowing everyone is not consulted once rules exist.
            rules: vec![PermissionRule {
                from: TargetRef::mesh(),
                action: Action::Allow,
                policy: "legacy-allow-all".into(),
            }],
            mtls_enabled: true,
            matches: vec![
                list(Action::Deny, &["spiffe://default/web"], "deny-web"),
                list(
                    Action::AllowWithShadowDeny,
                    &["spiffe://default/api"],
                    "shadow-api",
                ),
                list(Action::Allow, &["spiffe://default/"], "allow-mesh"),
            ],
        };
        let none = WorkloadTags::new();
        assert_eq!(
            decide_for(&rules, "web", &none),
            (Action::Deny, "deny-web".into())
        );
        assert_eq!(
            decide_for(&rules, "api", &none),
            (Action::AllowWithShadowDeny, "shadow-api".into())
        );
        assert_eq!(
            decide_for(&rules, "db", &none),
            (Action::Allow, "allow-mesh".into())
        );
        let other_mesh = ClientView {
            service: "db",
            spiffe_id: "spiffe://other/db",
            sni: None,
            has_tag: &|_, _| false,
        };
        assert_eq!(decide(&rules, &other_mesh).0, Action::Deny);
    }
}
