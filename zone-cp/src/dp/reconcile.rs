//! The reconciler: one task that turns the store's change stream and proxy
//! connections into proxy configs, through the incremental [`Engine`].
//!
//! - At start it reads one snapshot of the zone's store ([`ZoneState::load`]).
//! - Then, on every commit ([`Store::watch`]), it reads what changed since
//!   the revision it is at ([`Store::changes_since`], as KDS does) and hands
//!   the batch to the engine, which recomputes only the proxies the batch
//!   reaches. A change log compacted past its revision makes it reload the
//!   snapshot (every proxy is recomputed, reason `resync`).
//! - Connections and disconnections arrive from the [`super::Registry`] in
//!   order; a new proxy gets its config at once.
//! - When this zone's ready instances change, it writes the new
//!   `availableServices` into this zone's ingresses (KDS carries them to the
//!   other zones), and it republishes the [`CaView`] certificate signing reads
//!   when meshes or CA secrets change.

use std::sync::Arc;
use std::time::Duration;

use meridian_model::{ResourceKind, Spec, SpecBody};
use meridian_store::{NewResource, Precondition, ResourceKey, Store, StoreError};
use tokio::sync::{mpsc, watch};

use super::engine::Engine;
use super::registry::RegistryEvent;
use super::state::{CaView, ZoneState};
use super::stats::DpStats;

/// Changes read per `changes_since` call.
const PAGE: usize = 1000;
/// Pause before retrying after a store error.
const RETRY: Duration = Duration::from_secs(1);

/// Writes the `availableServices` of this zone's ingresses when they changed.
async fn refresh_ingresses(store: &dyn Store, state: &ZoneState) -> Result<(), StoreError> {
    let available = state.available_services();
    for ingress in state.ingresses.values().filter(|i| i.zone == state.zone) {
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
            spec: SpecBody::new(Spec::ZoneIngress(spec)),
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

/// Waits `RETRY`, or returns `false` when told to stop meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(RETRY) => true,
        _ = stop.changed() => false,
    }
}

/// Brings the engine up to the store's latest revision.
async fn catch_up(store: &dyn Store, engine: &mut Engine) -> Result<bool, StoreError> {
    let mut available = false;
    loop {
        match store.changes_since(engine.revision(), PAGE).await {
            Ok(batch) => {
                let more = batch.changes.len() >= PAGE;
                if batch.changes.is_empty() && batch.through <= engine.revision() {
                    return Ok(available);
                }
                available |= engine.apply(batch.changes, batch.through).available;
                if !more {
                    return Ok(available);
                }
            }
            Err(StoreError::Compacted { .. }) => {
                tracing::info!(
                    revision = engine.revision(),
                    "the zone's change log was compacted past the reconciler; reloading"
                );
                engine.reset(ZoneState::load(store, &engine.state().zone).await?);
                return Ok(true);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs the reconciler until `stop` turns true. The latest [`CaView`] is
/// published on `ca`.
pub async fn run(
    store: Arc<dyn Store>,
    zone: String,
    mut events: mpsc::UnboundedReceiver<RegistryEvent>,
    ca: watch::Sender<Arc<CaView>>,
    stats: Arc<DpStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut changes = store.watch();
    changes.borrow_and_update();
    let state = loop {
        match ZoneState::load(store.as_ref(), &zone).await {
            Ok(state) => break state,
            Err(error) => {
                tracing::warn!(%error, "loading the zone's state for proxy configs failed; retrying");
                if !pause(&mut stop).await {
                    return;
                }
            }
        }
    };
    let mut engine = Engine::new(state).with_stats(stats.clone());
    let mut refresh = true;
    loop {
        stats.applied(engine.revision());
        if !Arc::ptr_eq(&ca.borrow(), &engine.state().ca) {
            ca.send_replace(engine.state().ca.clone());
        }
        if refresh {
            match refresh_ingresses(store.as_ref(), engine.state()).await {
                Ok(()) => refresh = false,
                Err(error) => {
                    tracing::warn!(%error, "updating the zone ingresses' available services failed")
                }
            }
        }
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    return;
                }
                changes.borrow_and_update();
                match catch_up(store.as_ref(), &mut engine).await {
                    Ok(available) => refresh |= available,
                    Err(error) => {
                        tracing::warn!(%error, "reading the zone's changes failed; retrying");
                        // Wake again to retry even if nothing else commits.
                        changes.mark_changed();
                        if !pause(&mut stop).await {
                            return;
                        }
                    }
                }
            }
            event = events.recv() => {
                let Some(event) = event else { return };
                handle(&mut engine, event);
                while let Ok(event) = events.try_recv() {
                    handle(&mut engine, event);
                }
            }
            _ = stop.changed() => return,
        }
    }
}

fn handle(engine: &mut Engine, event: RegistryEvent) {
    match event {
        RegistryEvent::Connected(c) => engine.connect(c),
        RegistryEvent::Released(key) => engine.disconnect(&key),
    }
}
