//! [`Registry`]: the proxies connected to this zone CP right now.
//!
//! Sessions claim a proxy's name when its stream starts (one live stream per
//! proxy) and release it when the stream ends. Each claim and release is also
//! sent, in order, to the reconciler, which owns every proxy's config channel
//! from then on: the registry's lock guards only the set of claimed names and
//! is never held while configs are computed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use meridian_model::NamedDataplane;
use meridian_proxy_api::{ProxyConfig, ProxyKind};
use meridian_store::ResourceKey;
use tokio::sync::{mpsc, watch};

/// A config as published to a session: its version and the config.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedConfig {
    /// Increases by one with every change of this proxy's config.
    pub version: u64,
    /// The config.
    pub config: Arc<ProxyConfig>,
}

/// A proxy that connected, as the reconciler receives it.
#[derive(Debug)]
pub struct Connection {
    /// What it is.
    pub kind: ProxyKind,
    /// Its registered resource.
    pub key: ResourceKey,
    /// For sidecars: its Dataplane.
    pub dataplane: Option<Arc<NamedDataplane>>,
    /// Where its session picks up configs.
    pub config: watch::Sender<Option<VersionedConfig>>,
}

/// What the reconciler hears from the registry, in order.
#[derive(Debug)]
pub enum RegistryEvent {
    /// A proxy's stream started.
    Connected(Connection),
    /// A proxy's stream ended.
    Released(ResourceKey),
}

/// The connected proxies' names.
#[derive(Debug, Clone)]
pub struct Registry {
    claimed: Arc<Mutex<HashSet<ResourceKey>>>,
    events: mpsc::UnboundedSender<RegistryEvent>,
}

/// The name is held by a live stream.
#[derive(Debug, thiserror::Error)]
#[error("{0} is already connected on another stream")]
pub struct AlreadyConnected(pub ResourceKey);

impl Registry {
    /// A registry, and the receiver of its events (for the reconciler).
    pub fn new() -> (Registry, mpsc::UnboundedReceiver<RegistryEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let registry = Registry {
            claimed: Arc::default(),
            events,
        };
        (registry, rx)
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<ResourceKey>> {
        // Every update is one insert or remove, so a poisoned lock is usable.
        self.claimed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims `key` for a new stream; fails while another stream holds it.
    pub fn claim(
        &self,
        kind: ProxyKind,
        key: ResourceKey,
        dataplane: Option<NamedDataplane>,
    ) -> Result<watch::Receiver<Option<VersionedConfig>>, AlreadyConnected> {
        let mut claimed = self.lock();
        if !claimed.insert(key.clone()) {
            return Err(AlreadyConnected(key));
        }
        let (config, rx) = watch::channel(None);
        // Sent under the lock, so a release and a new claim of one name
        // reach the reconciler in the order they happened.
        let _ = self.events.send(RegistryEvent::Connected(Connection {
            kind,
            key,
            dataplane: dataplane.map(Arc::new),
            config,
        }));
        drop(claimed);
        metrics::gauge!("meridian_zone_proxies_connected").increment(1.0);
        Ok(rx)
    }

    /// Releases `key` when its stream ends.
    pub fn release(&self, key: &ResourceKey) {
        let mut claimed = self.lock();
        if claimed.remove(key) {
            let _ = self.events.send(RegistryEvent::Released(key.clone()));
            drop(claimed);
            metrics::gauge!("meridian_zone_proxies_connected").decrement(1.0);
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

/// Publishes `config` on a proxy's channel unless it equals what it has;
/// returns whether it was published.
pub fn publish(channel: &watch::Sender<Option<VersionedConfig>>, config: Arc<ProxyConfig>) -> bool {
    channel.send_if_modified(|current| {
        if current.as_ref().is_some_and(|v| *v.config == *config) {
            return false;
        }
        let version = current.as_ref().map_or(1, |v| v.version + 1);
        *current = Some(VersionedConfig { version, config });
        true
    })
}
