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
//! - When a batch touches a mesh's Dataplanes, the Mesh or the zone's own
//!   MeshServices, the MeshService generator ([`super::mesh_services`]) writes
//!   what changed in that mesh's generated MeshServices (all meshes once at
//!   start). Its writes come back through the same stream; when they are what
//!   the generator wants, it writes nothing more.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use meridian_model::{ResourceKind, Spec, SpecBody};
use meridian_store::{NewResource, Precondition, ResourceKey, Store, StoreError};
use tokio::sync::{mpsc, watch};

use super::engine::Engine;
use super::mesh_services;
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

/// Writes the generated MeshServices of `meshes` that differ from what the zone's
/// Dataplanes call for, in one batch.
///
/// Answers when a deletion grace period ends (plan again then).
async fn refresh_mesh_services(
    store: &dyn Store,
    state: &ZoneState,
    meshes: &BTreeSet<String>,
    grace: Duration,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let plan = mesh_services::plan(state, meshes, Utc::now(), grace);
    let (ops, recheck_at) = (plan.ops, plan.recheck_at);
    if ops.is_empty() {
        return Ok(recheck_at);
    }
    let count = ops.len();
    match store.apply(ops).await {
        Ok(_) => {
            tracing::debug!(writes = count, "generated MeshServices updated");
            Ok(recheck_at)
        }
        // Lost a race with another writer (another replica, a REST write, a
        // cascade): that commit wakes the next round, which plans again.
        Err(
            e @ (StoreError::Conflict { .. }
            | StoreError::AlreadyExists(_)
            | StoreError::NotFound(_)
            | StoreError::MeshNotFound { .. }),
        ) => {
            tracing::debug!(error = %e, "generated MeshServices: a concurrent change won; planning again");
            Ok(recheck_at)
        }
        Err(e) => Err(e),
    }
}

/// Waits `RETRY`, or returns `false` when told to stop meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(RETRY) => true,
        _ = stop.changed() => false,
    }
}

/// What a catch-up asks the reconciler to refresh.
#[derive(Debug, Default)]
struct Refresh {
    /// This zone's ingresses' `availableServices`.
    available: bool,
    /// The generated MeshServices of these meshes.
    mesh_services: BTreeSet<String>,
}

/// Brings the engine up to the store's latest revision.
async fn catch_up(
    store: &dyn Store,
    engine: &mut Engine,
    refresh: &mut Refresh,
) -> Result<(), StoreError> {
    loop {
        match store.changes_since(engine.revision(), PAGE).await {
            Ok(batch) => {
                let more = batch.changes.len() >= PAGE;
                if batch.changes.is_empty() && batch.through <= engine.revision() {
                    return Ok(());
                }
                let touched = engine.apply(batch.changes, batch.through);
                refresh.available |= touched.available;
                refresh.mesh_services.extend(touched.mesh_services);
                if !more {
                    return Ok(());
                }
            }
            Err(StoreError::Compacted { .. }) => {
                tracing::info!(
                    revision = engine.revision(),
                    "the zone's change log was compacted past the reconciler; reloading"
                );
                engine.reset(ZoneState::load(store, &engine.state().zone).await?);
                refresh.available = true;
                refresh.mesh_services = mesh_services::all_meshes(engine.state());
                return Ok(());
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
    mesh_service_grace: Duration,
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
    // Everything once at start: what changed while no reconciler ran.
    let mut refresh = Refresh {
        available: true,
        mesh_services: mesh_services::all_meshes(engine.state()),
    };
    // When a generated MeshService's deletion grace period ends.
    let mut recheck_at: Option<DateTime<Utc>> = None;
    loop {
        stats.applied(engine.revision());
        if !Arc::ptr_eq(&ca.borrow(), &engine.state().ca) {
            ca.send_replace(engine.state().ca.clone());
        }
        if refresh.available {
            match refresh_ingresses(store.as_ref(), engine.state()).await {
                Ok(()) => refresh.available = false,
                Err(error) => {
                    tracing::warn!(%error, "updating the zone ingresses' available services failed")
                }
            }
        }
        if !refresh.mesh_services.is_empty() {
            match refresh_mesh_services(
                store.as_ref(),
                engine.state(),
                &refresh.mesh_services,
                mesh_service_grace,
            )
            .await
            {
                Ok(at) => {
                    refresh.mesh_services.clear();
                    // Keep the earliest (a stale one only plans again early).
                    recheck_at = match (recheck_at, at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Err(error) => {
                    tracing::warn!(%error, "writing the generated MeshServices failed; retrying");
                    // Wake again to retry even if nothing else commits.
                    changes.mark_changed();
                    if !pause(&mut stop).await {
                        return;
                    }
                }
            }
        }
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    return;
                }
                changes.borrow_and_update();
                match catch_up(store.as_ref(), &mut engine, &mut refresh).await {
                    Ok(()) => {}
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
            () = until(recheck_at) => {
                recheck_at = None;
                refresh.mesh_services = mesh_services::all_meshes(engine.state());
            }
            _ = stop.changed() => return,
        }
    }
}

/// Sleeps until `at` (a wall-clock time, as the grace label holds); forever
/// when `None`.
async fn until(at: Option<DateTime<Utc>>) {
    match at {
        Some(at) => {
            let left = (at - Utc::now()).to_std().unwrap_or_default();
            // A second past the end, so the plan then sees it expired.
            tokio::time::sleep(left + Duration::from_secs(1)).await;
        }
        None => std::future::pending().await,
    }
}

fn handle(engine: &mut Engine, event: RegistryEvent) {
    match event {
        RegistryEvent::Connected(c) => engine.connect(c),
        RegistryEvent::Released(key) => engine.disconnect(&key),
    }
}
