//! The reconciler: one task that turns store changes into proxy configs.
//!
//! On every store revision (and whenever a proxy connects) it reloads the
//! [`ZoneView`], refreshes what this zone's ingresses advertise
//! (`availableServices`, which KDS carries to other zones), and recomputes the
//! configs of the proxies the change can affect:
//! - a sidecar, when the inputs of its mesh changed (the mesh, its policies,
//!   its data planes, any ingress or egress) or it just connected;
//! - an ingress or egress, when anything it routes by changed.
//!
//! Configs equal to what a proxy already has are not sent again.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use meridian_model::{ResourceKind, Spec};
use meridian_proxy_api::{ProxyConfig, ProxyKind};
use meridian_store::{NewResource, Precondition, ResourceKey, Store, StoreError};
use tokio::sync::watch;

use super::registry::{Registry, publish};
use super::view::ZoneView;

/// Fingerprints of the last round's inputs.
#[derive(Debug, Default)]
struct Fingerprints {
    meshes: HashMap<String, u64>,
    zone_proxies: u64,
}

fn hash_of(parts: &[String]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// What a mesh's sidecar configs are computed from.
fn mesh_fingerprint(view: &ZoneView, mesh: &str) -> u64 {
    let mut parts = vec![
        json(&view.meshes.get(mesh)),
        json(
            &view
                .ingresses
                .iter()
                .map(|i| (&i.zone, &i.spec))
                .collect::<Vec<_>>(),
        ),
        json(&view.egresses),
        json(&view.disabled_zones),
    ];
    for p in view.policies.get(mesh).into_iter().flatten() {
        parts.push(format!("{}/{}", p.meta.kind, p.meta.name));
        parts.push(json(&p.spec.to_value()));
    }
    for ((m, name), dp) in &view.dataplanes {
        if m == mesh {
            parts.push(name.clone());
            parts.push(json(dp));
        }
    }
    hash_of(&parts)
}

/// What ingress and egress configs are computed from (every mesh).
fn zone_proxy_fingerprint(meshes: &HashMap<String, u64>) -> u64 {
    let sorted: BTreeMap<_, _> = meshes.iter().collect();
    hash_of(&[json(&sorted)])
}

/// Recomputes and publishes the configs of the proxies affected since `last`.
fn push(view: &ZoneView, registry: &Registry, last: &mut Fingerprints) {
    let meshes: HashMap<String, u64> = view
        .meshes
        .keys()
        .map(|m| (m.clone(), mesh_fingerprint(view, m)))
        .collect();
    let zone_proxies = zone_proxy_fingerprint(&meshes);
    let mut sent = 0u64;
    registry.for_each(|c| {
        let is_new = c.config.borrow().is_none();
        let config = match (c.kind, &c.dataplane) {
            (ProxyKind::Sidecar, Some(dp)) => {
                let mesh = &c.key.mesh;
                let changed = meshes.get(mesh) != last.meshes.get(mesh);
                if !(is_new || changed) {
                    return;
                }
                match view.sidecar_config(mesh, dp) {
                    Ok(cfg) => ProxyConfig::Sidecar(cfg),
                    Err(error) => {
                        tracing::warn!(proxy = %c.key, %error, "cannot compute the sidecar's config");
                        return;
                    }
                }
            }
            (ProxyKind::Ingress, _) if is_new || zone_proxies != last.zone_proxies => {
                ProxyConfig::Ingress(view.ingress_config())
            }
            (ProxyKind::Egress, _) if is_new || zone_proxies != last.zone_proxies => {
                ProxyConfig::Egress(view.egress_config())
            }
            _ => return,
        };
        metrics::counter!("meridian_zone_config_computations_total").increment(1);
        if publish(c, config) {
            sent += 1;
        }
    });
    if sent > 0 {
        tracing::debug!(sent, "proxy configs updated");
    }
    last.meshes = meshes;
    last.zone_proxies = zone_proxies;
}

/// Writes the `availableServices` of this zone's ingresses when they changed.
async fn refresh_ingresses(store: &dyn Store, view: &ZoneView) -> Result<(), StoreError> {
    let available = view.available_services();
    for ingress in view.ingresses.iter().filter(|i| i.zone == view.zone) {
        if ingress.spec.available_services.as_ref() == Some(&available) {
            continue;
        }
        let key = ResourceKey::global(ResourceKind::ZoneIngress, ingress.name.clone());
        let Some(stored) = store.get(&key).await? else {
            continue;
        };
        let mut spec = ingress.spec.clone();
        spec.available_services = Some(available.clone());
        let new = NewResource {
            key,
            labels: stored.labels,
            spec: Spec::ZoneIngress(spec).to_value(),
            zone: stored.zone,
        };
        match store.put(new, Precondition::Version(stored.version)).await {
            // A concurrent change wakes the next round, which retries.
            Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs the reconciler until `stop` turns true. The latest view is published
/// on `views` (certificate signing reads mesh CAs from it).
pub async fn run(
    store: Arc<dyn Store>,
    zone: String,
    registry: Registry,
    views: watch::Sender<Arc<ZoneView>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut changes = store.watch();
    let mut last = Fingerprints::default();
    loop {
        changes.borrow_and_update();
        match ZoneView::load(store.as_ref(), &zone).await {
            Ok(view) => {
                if let Err(error) = refresh_ingresses(store.as_ref(), &view).await {
                    tracing::warn!(%error, "updating the zone ingresses' available services failed");
                }
                push(&view, &registry, &mut last);
                views.send_replace(Arc::new(view));
            }
            Err(error) => {
                tracing::warn!(%error, "loading the zone's state for proxy configs failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            () = registry.connected() => {}
            _ = stop.changed() => return,
        }
    }
}
