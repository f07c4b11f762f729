//! Which resources flow on a stream. The sender sends only what is in scope, and the
//! receiver, after a snapshot, deletes only what is in scope: the same predicate
//! bounds both, so a snapshot can never delete what the stream does not carry.

use meridian_model::ResourceKind;
use meridian_store::ResourceKey;

/// A predicate on (key, owning zone).
pub trait Scope: Send + Sync {
    /// Whether a resource with this key and owner flows on the stream.
    fn includes(&self, key: &ResourceKey, owner: Option<&str>) -> bool;

    /// Every kind [`Scope::includes`] may admit, owners (meshes, zones) before what
    /// they own: a full sync reads only these kinds, in this order, so it never
    /// touches kinds the stream does not carry (global's data planes on the way
    /// down). Never leave out a kind `includes` admits.
    fn kinds(&self) -> Vec<ResourceKind> {
        ResourceKind::ALL.to_vec()
    }
}

/// global→zone for one zone: meshes, zones, policies, MeshMultiZoneServices, and
/// other zones' ingresses and MeshServices (as global names them, `<name>.<zone>`).
/// Never dataplanes or egresses, never the zone's own resources back, and never the
/// zone's own Zone record (deleting it on the zone would cascade to its dataplanes).
#[derive(Debug, Clone)]
pub struct GlobalToZone {
    /// The zone at the other end.
    pub zone: String,
}

impl Scope for GlobalToZone {
    fn includes(&self, key: &ResourceKey, owner: Option<&str>) -> bool {
        match key.kind {
            ResourceKind::Zone => key.name != self.zone,
            ResourceKind::ZoneIngress | ResourceKind::MeshService => {
                owner.is_some_and(|z| z != self.zone)
            }
            ResourceKind::Dataplane | ResourceKind::ZoneEgress => false,
            _ => true,
        }
    }

    fn kinds(&self) -> Vec<ResourceKind> {
        ResourceKind::ALL
            .into_iter()
            .filter(|k| !matches!(k, ResourceKind::Dataplane | ResourceKind::ZoneEgress))
            .collect()
    }
}

/// zone→global: the zone's own zone-owned resources.
#[derive(Debug, Clone)]
pub struct ZoneToGlobal {
    /// The sending zone.
    pub zone: String,
}

impl Scope for ZoneToGlobal {
    fn includes(&self, key: &ResourceKey, owner: Option<&str>) -> bool {
        key.kind.is_zone_owned() && owner == Some(self.zone.as_str())
    }

    fn kinds(&self) -> Vec<ResourceKind> {
        ResourceKind::ALL
            .into_iter()
            .filter(|k| k.is_zone_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_split_ownership() {
        let down = GlobalToZone { zone: "a".into() };
        let up = ZoneToGlobal { zone: "a".into() };
        let policy = ResourceKey::in_mesh(ResourceKind::MeshTcpRoute, "default", "r");
        let dataplane = ResourceKey::in_mesh(ResourceKind::Dataplane, "default", "dp");
        let ingress = ResourceKey::global(ResourceKind::ZoneIngress, "in");
        assert!(down.includes(&policy, None) && !up.includes(&policy, None));
        assert!(!down.includes(&dataplane, Some("b")) && !up.includes(&dataplane, Some("b")));
        assert!(up.includes(&dataplane, Some("a")));
        assert!(down.includes(&ingress, Some("b")) && !down.includes(&ingress, Some("a")));
        assert!(!down.includes(&ResourceKey::global(ResourceKind::Zone, "a"), None));
        assert!(down.includes(&ResourceKey::global(ResourceKind::Zone, "b"), None));
        // MeshServices go up from their zone and down to the others, never back.
        let service = ResourceKey::in_mesh(ResourceKind::MeshService, "default", "redis");
        assert!(up.includes(&service, Some("a")) && !up.includes(&service, Some("b")));
        assert!(down.includes(&service, Some("b")) && !down.includes(&service, Some("a")));
        assert!(!down.includes(&service, None));
        // MeshMultiZoneServices are global's, like policies.
        let multi = ResourceKey::in_mesh(ResourceKind::MeshMultiZoneService, "default", "r");
        assert!(down.includes(&multi, None) && !up.includes(&multi, None));
    }

    /// `kinds` must list every kind `includes` can admit, or a full sync would
    /// silently leave it out (and the receiver prune it).
    #[test]
    fn kinds_cover_what_the_scope_admits() {
        let scopes: [Box<dyn Scope>; 2] = [
            Box::new(GlobalToZone { zone: "a".into() }),
            Box::new(ZoneToGlobal { zone: "a".into() }),
        ];
        for scope in scopes {
            let kinds = scope.kinds();
            for kind in ResourceKind::ALL {
                let key = if kind.is_mesh_scoped() {
                    ResourceKey::in_mesh(kind, "default", "x")
                } else {
                    ResourceKey::global(kind, "x")
                };
                let admitted = [None, Some("a"), Some("b")]
                    .into_iter()
                    .any(|owner| scope.includes(&key, owner));
                assert!(
                    !admitted || kinds.contains(&kind),
                    "{kind} admitted but not listed"
                );
            }
            let mesh = kinds.iter().position(|k| *k == ResourceKind::Mesh);
            let zone = kinds.iter().position(|k| *k == ResourceKind::Zone);
            for owner in [mesh, zone].into_iter().flatten() {
                assert!(owner <= 1, "owners come first: {kinds:?}");
            }
        }
        assert!(
            !GlobalToZone { zone: "a".into() }
                .kinds()
                .contains(&ResourceKind::Dataplane)
        );
    }
}
