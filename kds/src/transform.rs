//! How a receiver turns what it was sent into what it stores. This is where a zone's
//! identity is enforced: global renames and stamps every resource a zone sends with
//! that zone's name, so nothing a zone sends can land on another zone's resource.

use meridian_model::validate_name;
use meridian_store::{NewResource, ResourceKey};

use crate::convert::Received;
use crate::scope::{GlobalToZone, Scope};

pub use meridian_model::{DISPLAY_NAME_LABEL, ORIGIN_LABEL, ZONE_LABEL};

/// Maps received resources and removals to local ones; `Err` is a NACK reason.
pub trait Transform: Send + Sync {
    /// The resource to store for a received one.
    fn resource(&self, received: Received) -> Result<NewResource, String>;
    /// The local key a received removal refers to.
    fn key(&self, key: ResourceKey) -> Result<ResourceKey, String>;
}

/// A zone applying what global sends: stored as sent, within the global→zone scope.
#[derive(Debug, Clone)]
pub struct FromGlobal {
    /// This zone.
    pub zone: String,
}

impl Transform for FromGlobal {
    fn resource(&self, received: Received) -> Result<NewResource, String> {
        let scope = GlobalToZone {
            zone: self.zone.clone(),
        };
        if !scope.includes(&received.key, received.zone.as_deref()) {
            return Err(format!(
                "{} does not flow from global to zone {}",
                received.key, self.zone
            ));
        }
        let zone = if received.key.kind.is_zone_owned() {
            received.zone
        } else {
            None
        };
        Ok(NewResource {
            key: received.key,
            labels: received.labels,
            spec: received.spec,
            zone,
        })
    }

    fn key(&self, key: ResourceKey) -> Result<ResourceKey, String> {
        Ok(key)
    }
}

/// Global applying what one zone sends: only zone-owned kinds, renamed
/// `<name>.<zone>` (zone names are DNS labels, so this never collides), owned by and
/// labelled with the sending zone whatever the message claims.
#[derive(Debug, Clone)]
pub struct FromZone {
    /// The authenticated sending zone.
    pub zone: String,
}

impl FromZone {
    fn global_key(&self, key: ResourceKey) -> Result<ResourceKey, String> {
        if !key.kind.is_zone_owned() {
            return Err(format!(
                "zones may only send Dataplane, ZoneIngress, ZoneEgress and MeshService resources, not {}",
                key.kind
            ));
        }
        let name = format!("{}.{}", key.name, self.zone);
        validate_name(&name).map_err(|e| format!("the global name {name:?} is invalid: {e}"))?;
        Ok(ResourceKey { name, ..key })
    }
}

impl Transform for FromZone {
    fn resource(&self, received: Received) -> Result<NewResource, String> {
        if let Some(claimed) = &received.zone
            && claimed != &self.zone
        {
            return Err(format!(
                "zone {} cannot send a resource of zone {claimed}",
                self.zone
            ));
        }
        let display_name = received.key.name.clone();
        let key = self.global_key(received.key)?;
        let mut labels = received.labels;
        labels.insert(ZONE_LABEL.to_owned(), self.zone.clone());
        labels.insert(ORIGIN_LABEL.to_owned(), "zone".to_owned());
        labels.insert(DISPLAY_NAME_LABEL.to_owned(), display_name);
        Ok(NewResource {
            key,
            labels,
            spec: received.spec,
            zone: Some(self.zone.clone()),
        })
    }

    fn key(&self, key: ResourceKey) -> Result<ResourceKey, String> {
        self.global_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_model::ResourceKind;

    fn received(kind: ResourceKind, mesh: &str, name: &str, zone: Option<&str>) -> Received {
        Received {
            key: ResourceKey {
                kind,
                mesh: mesh.into(),
                name: name.into(),
            },
            labels: Default::default(),
            spec: meridian_model::minimal_spec(kind),
            zone: zone.map(str::to_owned),
        }
    }

    #[test]
    fn global_stamps_and_renames_what_a_zone_sends() {
        let from_a = FromZone { zone: "a".into() };
        let stored = from_a
            .resource(received(ResourceKind::Dataplane, "default", "dp-1", None))
            .unwrap();
        assert_eq!(stored.key.name, "dp-1.a");
        assert_eq!(stored.zone.as_deref(), Some("a"));
        assert_eq!(stored.labels[ZONE_LABEL], "a");
        assert_eq!(stored.labels[DISPLAY_NAME_LABEL], "dp-1");

        // Claiming another zone, or sending a policy, is refused.
        assert!(
            from_a
                .resource(received(
                    ResourceKind::Dataplane,
                    "default",
                    "dp",
                    Some("b")
                ))
                .is_err()
        );
        assert!(
            from_a
                .resource(received(ResourceKind::MeshTimeout, "default", "t", None))
                .is_err()
        );
        // A name crafted to look like zone b's lands in zone a's namespace anyway.
        let crafted = from_a
            .resource(received(ResourceKind::Dataplane, "default", "dp-1.b", None))
            .unwrap();
        assert_eq!(crafted.key.name, "dp-1.b.a");

        // A zone's MeshService is renamed and labelled like its Dataplanes, and a
        // MeshMultiZoneService (global's) is refused.
        let service = from_a
            .resource(received(
                ResourceKind::MeshService,
                "default",
                "redis",
                None,
            ))
            .unwrap();
        assert_eq!(service.key.name, "redis.a");
        assert_eq!(service.zone.as_deref(), Some("a"));
        assert_eq!(service.labels[ORIGIN_LABEL], "zone");
        assert_eq!(service.labels[DISPLAY_NAME_LABEL], "redis");
        assert!(
            from_a
                .resource(received(
                    ResourceKind::MeshMultiZoneService,
                    "default",
                    "m",
                    None
                ))
                .is_err()
        );
    }

    #[test]
    fn zones_accept_only_what_flows_down() {
        let zone_a = FromGlobal { zone: "a".into() };
        assert!(
            zone_a
                .resource(received(ResourceKind::MeshTimeout, "default", "t", None))
                .is_ok()
        );
        assert!(
            zone_a
                .resource(received(
                    ResourceKind::Dataplane,
                    "default",
                    "dp",
                    Some("b")
                ))
                .is_err()
        );
        let ingress = zone_a
            .resource(received(ResourceKind::ZoneIngress, "", "in.b", Some("b")))
            .unwrap();
        assert_eq!(ingress.zone.as_deref(), Some("b"));
        assert!(
            zone_a
                .resource(received(ResourceKind::ZoneIngress, "", "in.a", Some("a")))
                .is_err()
        );
        // Other zones' MeshServices arrive with their owner; the zone's own never do.
        let service = zone_a
            .resource(received(
                ResourceKind::MeshService,
                "default",
                "redis.b",
                Some("b"),
            ))
            .unwrap();
        assert_eq!(service.zone.as_deref(), Some("b"));
        assert!(
            zone_a
                .resource(received(
                    ResourceKind::MeshService,
                    "default",
                    "redis.a",
                    Some("a")
                ))
                .is_err()
        );
    }
}
