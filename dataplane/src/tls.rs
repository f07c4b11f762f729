//! [`TlsCache`]: the rustls configs built from the current workload identity.
//!
//! Building a rustls config parses the certificate chain and key, so it is done
//! once per identity, not per connection: the cache remembers which identity
//! (by `Arc` pointer) its configs were built from and rebuilds them the first
//! time a connection sees a new one. A rotated certificate therefore applies
//! to new connections; established ones keep the session they negotiated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use meridian_identity::{IdentityError, WorkloadId, client_config, server_config};
use meridian_proxy_api::WorkloadIdentity;
use rustls::{ClientConfig, ServerConfig};
use tokio::sync::watch;

/// Why no TLS config can be had for a connection.
#[derive(Debug, thiserror::Error)]
pub enum TlsUnavailable {
    /// No certificate has been issued yet.
    #[error("no workload certificate yet")]
    NoIdentity,
    /// The destination service does not make a valid identity.
    #[error("the expected server identity (mesh {mesh:?}, service {service:?}): {source}")]
    BadPeer {
        /// The mesh.
        mesh: String,
        /// The destination service.
        service: String,
        /// Why the identity is invalid.
        source: IdentityError,
    },
    /// The certificate, key and trust do not make a config.
    #[error("building the TLS config: {0}")]
    Config(#[source] IdentityError),
}

/// Configs built from one identity.
#[derive(Default)]
struct Built {
    identity: Option<Arc<WorkloadIdentity>>,
    server: Option<Arc<ServerConfig>>,
    /// Client configs by the SPIFFE ID they expect of the server.
    clients: HashMap<WorkloadId, Arc<ClientConfig>>,
}

/// The current identity and the TLS configs made from it.
pub(crate) struct TlsCache {
    identity: watch::Receiver<Option<Arc<WorkloadIdentity>>>,
    built: Mutex<Built>,
}

impl TlsCache {
    /// A cache following `identity`.
    pub(crate) fn new(identity: watch::Receiver<Option<Arc<WorkloadIdentity>>>) -> Self {
        Self {
            identity,
            built: Mutex::new(Built::default()),
        }
    }

    /// The identity in force now, if any.
    pub(crate) fn identity(&self) -> Option<Arc<WorkloadIdentity>> {
        self.identity.borrow().clone()
    }

    /// The locked cache, reset if the identity changed since it was filled.
    fn built_for(&self, identity: &Arc<WorkloadIdentity>) -> std::sync::MutexGuard<'_, Built> {
        // A panic while holding the lock cannot leave a half-built entry (entries are
        // inserted whole), so a poisoned lock is still usable.
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        let same = built
            .identity
            .as_ref()
            .is_some_and(|b| Arc::ptr_eq(b, identity));
        if !same {
            *built = Built {
                identity: Some(Arc::clone(identity)),
                ..Built::default()
            };
        }
        built
    }

    /// The server config (inbound mTLS) for the current identity.
    pub(crate) fn server(&self) -> Result<Arc<ServerConfig>, TlsUnavailable> {
        let identity = self.identity().ok_or(TlsUnavailable::NoIdentity)?;
        let mut built = self.built_for(&identity);
        if let Some(config) = &built.server {
            return Ok(Arc::clone(config));
        }
        let config = server_config(&identity.trust, &identity.cert, &identity.key, None)
            .map_err(TlsUnavailable::Config)?;
        built.server = Some(Arc::clone(&config));
        Ok(config)
    }

    /// The client config (outbound mTLS) for the current identity, accepting
    /// only a server with the identity of `service` in `mesh`.
    pub(crate) fn client(
        &self,
        mesh: &str,
        service: &str,
    ) -> Result<Arc<ClientConfig>, TlsUnavailable> {
        let identity = self.identity().ok_or(TlsUnavailable::NoIdentity)?;
        let expected =
            WorkloadId::new(mesh, service).map_err(|source| TlsUnavailable::BadPeer {
                mesh: mesh.to_owned(),
                service: service.to_owned(),
                source,
            })?;
        let mut built = self.built_for(&identity);
        if let Some(config) = built.clients.get(&expected) {
            return Ok(Arc::clone(config));
        }
        let config = client_config(
            &identity.trust,
            &identity.cert,
            &identity.key,
            Some(expected.clone()),
        )
        .map_err(TlsUnavailable::Config)?;
        built.clients.insert(expected, Arc::clone(&config));
        Ok(config)
    }
}
