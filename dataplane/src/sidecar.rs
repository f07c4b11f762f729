//! [`Sidecar`]: follows the config and identity channels and keeps the
//! listeners, balancers and health checks in line with them.
//!
//! ```text
//!  config watch ──▶ reconcile task ──▶ Snapshot (per-address state) ──▶ Shared
//!                        │                                               │
//!                        ├─▶ Listeners: bind new / close removed         │ looked up per
//!                        └─▶ HealthChecks: start / replace / stop        ▼ connection
//!  identity watch ─────────────────────────────────────────────▶ TlsCache (lazy)
//! ```
//!
//! Invariants: a config that is not `ProxyConfig::Sidecar` is ignored (logged)
//! and leaves everything as it was; an address that cannot be bound is retried
//! on the next config; a listener whose address stays is never re-bound, and
//! no update closes an established connection.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meridian_proxy_api::{ProxyConfig, WorkloadIdentity};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::health_check::HealthChecks;
use crate::listeners::{Connections, Listeners};
use crate::state::{Shared, Snapshot};
use crate::telemetry::CONFIGS_APPLIED;
use crate::tls::TlsCache;

/// How long [`Sidecar::shutdown`] lets established connections finish.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the sidecar has applied so far.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The last config the reconcile task looked at (whatever its kind).
    pub config: Option<Arc<ProxyConfig>>,
    /// Whether a sidecar config has been applied (listeners reconciled).
    pub sidecar_applied: bool,
    /// Whether the applied sidecar config has mTLS on.
    pub mtls: bool,
    /// Configured listen address → bound address (they differ for port 0).
    pub listening: BTreeMap<SocketAddr, SocketAddr>,
}

/// Whether the sidecar can carry traffic, for `/readyz`.
#[derive(Clone)]
pub struct Readiness {
    applied: watch::Receiver<Applied>,
    identity: watch::Receiver<Option<Arc<WorkloadIdentity>>>,
}

impl Readiness {
    /// `Ok` once a sidecar config is applied and, with mTLS on, a certificate
    /// is present; otherwise what is missing.
    pub fn check(&self) -> Result<(), &'static str> {
        let applied = self.applied.borrow();
        if !applied.sidecar_applied {
            return Err("no sidecar config applied yet");
        }
        if applied.mtls && self.identity.borrow().is_none() {
            return Err("mTLS is on and no workload certificate has been issued yet");
        }
        Ok(())
    }
}

/// A running sidecar data plane.
pub struct Sidecar {
    applied: watch::Receiver<Applied>,
    identity: watch::Receiver<Option<Arc<WorkloadIdentity>>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    connections: Connections,
}

impl Sidecar {
    /// Starts following `config` and `identity` (as published by
    /// [`ProxyClient`](meridian_proxy_api::ProxyClient)); the current config,
    /// if any, is applied right away. Must be called within a tokio runtime.
    pub fn start(
        config: watch::Receiver<Option<Arc<ProxyConfig>>>,
        identity: watch::Receiver<Option<Arc<WorkloadIdentity>>>,
    ) -> Sidecar {
        let shared = Arc::new(Shared::new(TlsCache::new(identity.clone())));
        let connections = Connections::new();
        let (applied_tx, applied) = watch::channel(Applied::default());
        let stop = CancellationToken::new();
        let reconciler = Reconciler {
            listeners: Listeners::new(Arc::clone(&shared), connections.clone()),
            health: HealthChecks::default(),
            shared,
            applied: applied_tx,
        };
        let task = tokio::spawn(reconciler.run(config, stop.clone()));
        Sidecar {
            applied,
            identity,
            stop,
            task,
            connections,
        }
    }

    /// What has been applied so far; changes each time a config is reconciled.
    pub fn applied(&self) -> watch::Receiver<Applied> {
        self.applied.clone()
    }

    /// Configured listen address → bound address, as of the last reconcile.
    pub fn listening(&self) -> BTreeMap<SocketAddr, SocketAddr> {
        self.applied.borrow().listening.clone()
    }

    /// Waits until `config` (the very `Arc` sent on the config channel) has
    /// been reconciled, and returns the listeners then open. Never returns if
    /// a newer config replaced it first; callers bound the wait.
    pub async fn wait_applied(
        &self,
        config: &Arc<ProxyConfig>,
    ) -> BTreeMap<SocketAddr, SocketAddr> {
        let mut applied = self.applied.clone();
        let seen = applied
            .wait_for(|a| a.config.as_ref().is_some_and(|c| Arc::ptr_eq(c, config)))
            .await;
        match seen {
            Ok(a) => a.listening.clone(),
            // The reconcile task ended (shutdown): nothing more will be applied.
            Err(_) => std::future::pending().await,
        }
    }

    /// The readiness check for `/readyz`.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            applied: self.applied.clone(),
            identity: self.identity.clone(),
        }
    }

    /// Stops accepting, lets established connections finish for up to
    /// [`DEFAULT_DRAIN_TIMEOUT`], then closes the rest.
    pub async fn shutdown(self) {
        self.shutdown_within(DEFAULT_DRAIN_TIMEOUT).await;
    }

    /// As [`Sidecar::shutdown`], draining for up to `drain`.
    pub async fn shutdown_within(self, drain: Duration) {
        self.stop.cancel();
        let _ = self.task.await;
        let tracker = &self.connections.tracker;
        tracker.close();
        if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
            tracing::info!(
                open = tracker.len(),
                "closing connections still open after the drain"
            );
            self.connections.cancel.cancel();
            tracker.wait().await;
        }
    }
}

/// The state the reconcile task owns.
struct Reconciler {
    listeners: Listeners,
    health: HealthChecks,
    shared: Arc<Shared>,
    applied: watch::Sender<Applied>,
}

impl Reconciler {
    async fn run(
        mut self,
        mut config: watch::Receiver<Option<Arc<ProxyConfig>>>,
        stop: CancellationToken,
    ) {
        loop {
            let current = config.borrow_and_update().clone();
            if let Some(current) = current {
                self.apply(current).await;
            }
            tokio::select! {
                () = stop.cancelled() => break,
                changed = config.changed() => {
                    if changed.is_err() {
                        // The client is gone: keep serving the last config until stopped.
                        stop.cancelled().await;
                        break;
                    }
                }
            }
        }
        self.health.stop_all();
        self.listeners.close_all().await;
        self.applied.send_modify(|a| a.listening.clear());
    }

    async fn apply(&mut self, config: Arc<ProxyConfig>) {
        let ProxyConfig::Sidecar(sidecar) = config.as_ref() else {
            tracing::warn!("received a config for a zone ingress or egress; a sidecar ignores it");
            self.applied.send_modify(|a| a.config = Some(config));
            return;
        };
        let previous = self.shared.snapshot();
        let next = Arc::new(Snapshot::build(sidecar, &previous));
        // Published before binding, so the first connection on a new listener
        // finds its config.
        self.shared.publish(Arc::clone(&next));
        let wanted: BTreeSet<SocketAddr> = next.addresses().collect();
        self.listeners.reconcile(&wanted).await;
        self.health.reconcile(&next);
        metrics::counter!(CONFIGS_APPLIED).increment(1);
        tracing::info!(
            inbounds = sidecar.inbounds.len(),
            outbounds = sidecar.outbounds.len(),
            mtls = sidecar.mtls,
            listening = self.listeners.bound().len(),
            "sidecar config applied"
        );
        let listening = self.listeners.bound();
        self.applied.send_modify(|a| {
            a.config = Some(config.clone());
            a.sidecar_applied = true;
            a.mtls = sidecar.mtls;
            a.listening = listening;
        });
    }
}
