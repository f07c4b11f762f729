//! The zone egress (`meridian zone-egress`).
//!
//! Sidecars send cross-zone traffic through their zone's egress with mTLS whose
//! server name (SNI) names mesh, service and subset. The egress peeks that name and
//! passes the bytes, still encrypted, to an ingress of a zone that has instances of
//! the service: remote zones are priority 1 (the egress's own zone would be 0) or as
//! the `MeshLoadBalancingStrategy` failover rules say, each ingress weighted by its
//! zone's healthy instances. The routing is [`meridian_zone_proxy::SniProxy`]; this
//! crate adds the `ZoneEgress` document it registers with, and [`run`].

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;

use meridian_model::{
    Resource, ResourceKind, ResourceMeta, Spec, ZoneEgressNetworking, ZoneEgressSpec,
};
use meridian_proxy_api::{ProxyKind, Registration};
use meridian_zone_proxy::RunError;

/// How a zone egress runs.
#[derive(Debug, Clone)]
pub struct EgressSettings {
    /// The zone CP's data-plane URL (`https://…`, or `http://` to loopback).
    pub zone_cp: String,
    /// PEM trust for the zone CP's certificate.
    pub zone_cp_ca_pem: Option<String>,
    /// The egress's name, unique in its zone.
    pub name: String,
    /// Where the egress listens (port 0 picks a free port, which is registered).
    pub listen: SocketAddr,
    /// Where the admin endpoints (`/healthz`, `/readyz`, `/metrics`) listen; `None`: nowhere.
    pub admin_addr: Option<SocketAddr>,
}

/// The egress's registration: a Kuma universal `ZoneEgress` document listening on
/// `listen`, rendered from the model's typed [`ZoneEgressSpec`].
pub fn registration(name: &str, listen: SocketAddr) -> Registration {
    let spec = ZoneEgressSpec {
        zone: None,
        networking: ZoneEgressNetworking {
            address: listen.ip().to_string(),
            port: listen.port().into(),
            admin: None,
        },
    };
    let resource = Resource {
        meta: ResourceMeta {
            kind: ResourceKind::ZoneEgress,
            name: name.to_owned(),
            mesh: None,
            labels: BTreeMap::new(),
        },
        spec: Spec::ZoneEgress(spec),
    };
    Registration {
        kind: ProxyKind::Egress,
        mesh: String::new(),
        name: name.to_owned(),
        resource: resource.to_document(),
    }
}

/// Binds the listener, registers with the zone CP and routes connections out of
/// the zone until `shutdown` completes.
///
/// # Errors
/// [`RunError`] when the listen or admin address cannot be bound or the zone CP
/// settings are unusable.
pub async fn run(
    settings: EgressSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    tracing::info!(name = %settings.name, listen = %settings.listen, "starting the zone egress");
    let name = settings.name;
    meridian_zone_proxy::bind_and_serve(
        settings.listen,
        settings.zone_cp,
        settings.zone_cp_ca_pem,
        settings.admin_addr,
        move |listen| registration(&name, listen),
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_model::parse_document;
    use serde_json::json;

    #[test]
    fn registration_is_a_valid_zone_egress_document() {
        let reg = registration("egress-1", "10.0.0.6:10002".parse().unwrap());
        assert_eq!(reg.kind, ProxyKind::Egress);
        assert_eq!(reg.mesh, "");
        assert_eq!(reg.name, "egress-1");
        assert_eq!(
            reg.resource,
            json!({
                "type": "ZoneEgress",
                "name": "egress-1",
                "networking": {"address": "10.0.0.6", "port": 10002},
            })
        );
        let parsed = parse_document(reg.resource.clone()).unwrap();
        assert_eq!(parsed.meta.kind, ResourceKind::ZoneEgress);
        assert_eq!(parsed.meta.name, "egress-1");
        let Spec::ZoneEgress(spec) = parsed.spec else {
            panic!("not a ZoneEgress spec");
        };
        assert_eq!(spec.networking.address, "10.0.0.6");
        assert_eq!(spec.networking.port, 10002);
    }
}
