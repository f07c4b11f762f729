//! [`ZoneView`]: what config computation reads, loaded from the zone's store
//! in one pass and parsed once.

use std::collections::{BTreeMap, BTreeSet};

use meridian_model::{
    DataplaneSpec, MeshSpec, Resource, ResourceKind, ResourceMeta, Spec, ZoneEgressSpec,
    ZoneIngressSpec, ZoneSpec,
};
use meridian_store::{ListQuery, Store, StoreError, StoredResource, list_all};

/// A zone ingress as the zone knows it: its own, or another zone's (via global).
#[derive(Debug, Clone, PartialEq)]
pub struct IngressEntry {
    /// The store name (`<name>.<zone>` for other zones' ingresses).
    pub name: String,
    /// The owning zone.
    pub zone: String,
    /// The spec.
    pub spec: ZoneIngressSpec,
}

/// The zone's state, parsed: everything a proxy's config depends on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZoneView {
    /// This zone's name.
    pub zone: String,
    /// Meshes by name.
    pub meshes: BTreeMap<String, MeshSpec>,
    /// Policies per mesh.
    pub policies: BTreeMap<String, Vec<Resource>>,
    /// This zone's data planes: (mesh, name) → spec.
    pub dataplanes: BTreeMap<(String, String), DataplaneSpec>,
    /// Every zone ingress known here.
    pub ingresses: Vec<IngressEntry>,
    /// This zone's egresses by name.
    pub egresses: BTreeMap<String, ZoneEgressSpec>,
    /// Zones with sync disabled (their ingresses are not used).
    pub disabled_zones: BTreeSet<String>,
    /// Secrets per (mesh, name), decoded.
    pub secrets: BTreeMap<(String, String), Vec<u8>>,
}

impl ZoneView {
    /// Reads the view of `zone` from `store`. Resources that fail to parse
    /// (which the store's write path prevents) are skipped with a warning.
    pub async fn load(store: &dyn Store, zone: &str) -> Result<ZoneView, StoreError> {
        let mut view = ZoneView {
            zone: zone.to_owned(),
            ..ZoneView::default()
        };
        for kind in ResourceKind::ALL {
            let mut query = ListQuery::all(kind);
            if kind == ResourceKind::Dataplane || kind == ResourceKind::ZoneEgress {
                query.zone = Some(zone.to_owned());
            }
            for stored in list_all(store, query).await? {
                view.add(stored);
            }
        }
        Ok(view)
    }

    fn add(&mut self, stored: StoredResource) {
        let spec = match Spec::from_value(stored.key.kind, stored.spec) {
            Ok(spec) => spec,
            Err(error) => {
                tracing::warn!(key = %stored.key, %error, "stored resource does not parse; ignored");
                return;
            }
        };
        let key = stored.key;
        let mesh = key.mesh.clone();
        match spec {
            Spec::Mesh(m) => {
                self.meshes.insert(key.name, m);
            }
            Spec::Zone(ZoneSpec {
                enabled: Some(false),
            }) => {
                self.disabled_zones.insert(key.name);
            }
            Spec::Zone(_) => {}
            Spec::Dataplane(d) => {
                self.dataplanes.insert((mesh, key.name), d);
            }
            Spec::ZoneIngress(spec) => {
                let zone = stored
                    .zone
                    .or_else(|| spec.zone.clone())
                    .unwrap_or_else(|| self.zone.clone());
                self.ingresses.push(IngressEntry {
                    name: key.name,
                    zone,
                    spec,
                });
            }
            Spec::ZoneEgress(e) => {
                self.egresses.insert(key.name, e);
            }
            Spec::Secret(s) => {
                if let Some(bytes) = s.to_bytes() {
                    self.secrets.insert((mesh, key.name), bytes);
                }
            }
            policy => {
                let meta = ResourceMeta {
                    kind: key.kind,
                    name: key.name,
                    mesh: Some(mesh.clone()),
                    labels: stored.labels,
                };
                self.policies
                    .entry(mesh)
                    .or_default()
                    .push(Resource { meta, spec: policy });
            }
        }
    }

    /// A secret's bytes as UTF-8 text.
    pub fn secret_text(&self, mesh: &str, name: &str) -> Option<&str> {
        self.secrets
            .get(&(mesh.to_owned(), name.to_owned()))
            .and_then(|b| std::str::from_utf8(b).ok())
    }
}
