//! The zone ingress (`meridian zone-ingress`).
//!
//! Other zones' sidecars and egresses dial the ingress with mTLS whose server name
//! (SNI) names mesh, service and subset. The ingress peeks that name, picks a local
//! instance of the service and passes the bytes through still encrypted: it never
//! terminates TLS. The routing is [`meridian_zone_proxy::SniProxy`]; this crate adds
//! what makes it an ingress: the `ZoneIngress` document it registers with (its
//! listen address, and the address other zones dial), and [`run`].
//!
//! The zone control plane answers the registration with
//! [`ProxyConfig::Ingress`](meridian_proxy_api::ProxyConfig::Ingress): one route per
//! service and subset the zone serves, each with the zone's local instances.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;

use meridian_model::{
    Resource, ResourceKind, ResourceMeta, Spec, ZoneIngressNetworking, ZoneIngressSpec,
};
use meridian_proxy_api::{ProxyKind, Registration};
use meridian_zone_proxy::RunError;

/// How a zone ingress runs.
#[derive(Debug, Clone)]
pub struct IngressSettings {
    /// The zone CP's data-plane URL (`https://…`, or `http://` to loopback).
    pub zone_cp: String,
    /// PEM trust for the zone CP's certificate.
    pub zone_cp_ca_pem: Option<String>,
    /// The ingress's name, unique in its zone.
    pub name: String,
    /// Where the ingress listens (port 0 picks a free port, which is registered).
    pub listen: SocketAddr,
    /// The address other zones dial; `None` advertises the bound listen address.
    pub advertise: Option<SocketAddr>,
    /// Where the admin endpoints (`/healthz`, `/readyz`, `/metrics`) listen; `None`: nowhere.
    pub admin_addr: Option<SocketAddr>,
}

/// The ingress's registration: a Kuma universal `ZoneIngress` document listening on
/// `listen` and reached by other zones at `advertise`, rendered from the model's
/// typed [`ZoneIngressSpec`] (the zone CP fills in the zone and available services).
pub fn registration(name: &str, listen: SocketAddr, advertise: SocketAddr) -> Registration {
    let spec = ZoneIngressSpec {
        zone: None,
        networking: ZoneIngressNetworking {
            address: listen.ip().to_string(),
            port: listen.port().into(),
            advertised_address: Some(advertise.ip().to_string()),
            advertised_port: Some(advertise.port().into()),
            admin: None,
        },
        available_services: None,
    };
    let resource = Resource {
        meta: ResourceMeta {
            kind: ResourceKind::ZoneIngress,
            name: name.to_owned(),
            mesh: None,
            labels: BTreeMap::new(),
        },
        spec: Spec::ZoneIngress(spec),
    };
    Registration {
        kind: ProxyKind::Ingress,
        mesh: String::new(),
        name: name.to_owned(),
        resource: resource.to_document(),
    }
}

/// Binds the listener, registers with the zone CP and routes connections into the
/// zone until `shutdown` completes.
///
/// # Errors
/// [`RunError`] when the listen or admin address cannot be bound or the zone CP
/// settings are unusable.
pub async fn run(
    settings: IngressSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    tracing::info!(name = %settings.name, listen = %settings.listen, "starting the zone ingress");
    let (name, advertise) = (settings.name, settings.advertise);
    meridian_zone_proxy::bind_and_serve(
        settings.listen,
        settings.zone_cp,
        settings.zone_cp_ca_pem,
        settings.admin_addr,
        move |listen| registration(&name, listen, advertise.unwrap_or(listen)),
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
    fn registration_is_a_valid_zone_ingress_document() {
        let reg = registration(
            "ingress-1",
            "10.0.0.5:10001".parse().unwrap(),
            "203.0.113.7:443".parse().unwrap(),
        );
        assert_eq!(reg.kind, ProxyKind::Ingress);
        assert_eq!(reg.mesh, "");
        assert_eq!(reg.name, "ingress-1");
        assert_eq!(
            reg.resource,
            json!({
                "type": "ZoneIngress",
                "name": "ingress-1",
                "networking": {
                    "address": "10.0.0.5", "port": 10001,
                    "advertisedAddress": "203.0.113.7", "advertisedPort": 443,
                },
            })
        );
        let parsed = parse_document(reg.resource.clone()).unwrap();
        assert_eq!(parsed.meta.kind, ResourceKind::ZoneIngress);
        assert_eq!(parsed.meta.name, "ingress-1");
        assert_eq!(parsed.meta.mesh, None);
        let meridian_model::Spec::ZoneIngress(spec) = parsed.spec else {
            panic!("not a ZoneIngress spec");
        };
        assert_eq!(spec.public_endpoint(), ("203.0.113.7", 443));
        assert_eq!(spec.networking.address, "10.0.0.5");
        assert_eq!(spec.networking.port, 10001);
    }
}
