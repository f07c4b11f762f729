//! [`Registry`]: the proxies connected to this zone CP right now, and the
//! channel each session receives its computed config on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use meridian_model::DataplaneSpec;
use meridian_proxy_api::{ProxyConfig, ProxyKind};
use meridian_store::ResourceKey;
use tokio::sync::{Notify, watch};

/// A config as sent: its version and the JSON bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedConfig {
    /// Increases by one with every change of this proxy's config.
    pub version: u64,
    /// The config.
    pub config: Arc<ProxyConfig>,
}

/// One connected proxy.
#[derive(Debug)]
pub struct Connected {
    /// What it is.
    pub kind: ProxyKind,
    /// Its registered resource.
    pub key: ResourceKey,
    /// For sidecars: its Dataplane.
    pub dataplane: Option<DataplaneSpec>,
    /// Where its session picks up configs.
    pub config: watch::Sender<Option<VersionedConfig>>,
}

/// The connected proxies, by resource key.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<ResourceKey, Connected>>>,
    changed: Arc<Notify>,
}

/// The name is held by a live stream.
#[derive(Debug, thiserror::Error)]
#[error("{0} is already connected on another stream")]
pub struct AlreadyConnected(pub ResourceKey);

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<ResourceKey, Connected>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every update is one insert or remove), so a poisoned lock is usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims `key` for a new stream; fails while another stream holds it.
    pub fn claim(
        &self,
        kind: ProxyKind,
        key: ResourceKey,
        dataplane: Option<DataplaneSpec>,
    ) -> Result<watch::Receiver<Option<VersionedConfig>>, AlreadyConnected> {
        let mut map = self.lock();
        if map.contains_key(&key) {
            return Err(AlreadyConnected(key));
        }
        let (config, rx) = watch::channel(None);
        map.insert(
            key.clone(),
            Connected {
                kind,
                key,
                dataplane,
                config,
            },
        );
        drop(map);
        metrics::gauge!("meridian_zone_proxies_connected").increment(1.0);
        self.changed.notify_one();
        Ok(rx)
    }

    /// Releases `key` when its stream ends.
    pub fn release(&self, key: &ResourceKey) {
        if self.lock().remove(key).is_some() {
            metrics::gauge!("meridian_zone_proxies_connected").decrement(1.0);
        }
    }

    /// Resolves when a proxy connected (the reconciler computes its config).
    pub async fn connected(&self) {
        self.changed.notified().await;
    }

    /// Runs `f` on every connected proxy.
    pub fn for_each(&self, mut f: impl FnMut(&Connected)) {
        for c in self.lock().values() {
            f(c);
        }
    }

    /// How many proxies are connected.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Publishes `config` to a proxy unless it equals what it has; returns whether
/// it was sent.
pub fn publish(c: &Connected, config: ProxyConfig) -> bool {
    c.config.send_if_modified(|current| {
        if current.as_ref().is_some_and(|v| *v.config == config) {
            return false;
        }
        let version = current.as_ref().map_or(1, |v| v.version + 1);
        *current = Some(VersionedConfig {
            version,
            config: Arc::new(config),
        });
        true
    })
}
