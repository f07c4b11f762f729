//! Mesh CAs: global generates one for every mesh whose mTLS backend is
//! `builtin`, and stores it as two `Secret`s in the mesh (certificate and key,
//! PEM). KDS carries them to every zone, whose control plane signs its proxies'
//! certificates with it; the key never leaves the control planes.
//!
//! The CA is created once (create-only writes, so concurrent global replicas
//! cannot overwrite each other's CA) and kept for the mesh's lifetime;
//! deleting the mesh deletes its secrets with it.

use std::sync::Arc;
use std::time::Duration;

use meridian_identity::{DEFAULT_CA_VALIDITY, MeshCa};
use meridian_model::{
    CaBackendType, MeshSpec, ResourceKind, SecretSpec, Spec, SpecBody, ca_cert_secret_name,
    ca_key_secret_name,
};
use meridian_store::{
    ListQuery, NewResource, Precondition, ResourceKey, Store, StoreError, WriteOp, list_all,
};

/// Why a mesh's CA could not be ensured.
#[derive(Debug, thiserror::Error)]
pub enum MeshCaError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Generating the CA failed.
    #[error("generating the CA of mesh {mesh:?}: {source}")]
    Generate {
        /// The mesh.
        mesh: String,
        /// What failed.
        source: meridian_identity::IdentityError,
    },
}

/// Creates the missing CAs of every mesh with a `builtin` mTLS backend enabled.
/// Returns how many it created.
pub async fn ensure_mesh_cas(store: &dyn Store) -> Result<usize, MeshCaError> {
    let mut created = 0;
    for mesh in list_all(store, ListQuery::all(ResourceKind::Mesh)).await? {
        let Spec::Mesh(spec) = mesh.spec.spec() else {
            continue;
        };
        if ensure_one(store, &mesh.key.name, spec).await? {
            created += 1;
        }
    }
    Ok(created)
}

async fn ensure_one(store: &dyn Store, mesh: &str, spec: &MeshSpec) -> Result<bool, MeshCaError> {
    let Some(mtls) = &spec.mtls else {
        return Ok(false);
    };
    let Some(enabled) = &mtls.enabled_backend else {
        return Ok(false);
    };
    let Some(backend) = mtls.backends.iter().find(|b| &b.name == enabled) else {
        return Ok(false);
    };
    if backend.type_ != CaBackendType::Builtin {
        tracing::warn!(mesh, backend = %backend.name, "provided CA backends are not supported yet; the mesh gets no certificates");
        return Ok(false);
    }
    let cert_key = ResourceKey::in_mesh(ResourceKind::Secret, mesh, ca_cert_secret_name(enabled));
    if store.get(&cert_key).await?.is_some() {
        return Ok(false);
    }
    let validity = backend
        .conf
        .as_ref()
        .and_then(|c| c.ca_cert.as_ref())
        .and_then(|c| c.expiration.as_ref())
        .map_or(DEFAULT_CA_VALIDITY, meridian_model::Duration::as_duration);
    let ca = MeshCa::generate(mesh, validity).map_err(|source| MeshCaError::Generate {
        mesh: mesh.to_owned(),
        source,
    })?;
    let pem = ca.to_pem();
    let secret = |name: String, bytes: &[u8]| {
        WriteOp::Put(
            NewResource {
                key: ResourceKey::in_mesh(ResourceKind::Secret, mesh, name),
                labels: Default::default(),
                spec: SpecBody::new(Spec::Secret(SecretSpec::from_bytes(bytes))),
                zone: None,
            },
            Precondition::Absent,
        )
    };
    let ops = vec![
        secret(ca_cert_secret_name(enabled), pem.cert_pem.as_bytes()),
        secret(ca_key_secret_name(enabled), pem.key_pem.as_bytes()),
    ];
    match store.apply(ops).await {
        Ok(_) => {
            tracing::info!(mesh, backend = %enabled, "mesh CA generated");
            metrics::counter!("meridian_mesh_ca_generated_total").increment(1);
            Ok(true)
        }
        // Another replica created it first, or the mesh went away meanwhile.
        Err(StoreError::AlreadyExists(_) | StoreError::MeshNotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Runs [`ensure_mesh_cas`] now and after every store change, forever.
pub async fn run(store: Arc<dyn Store>) {
    let mut changes = store.watch();
    loop {
        if let Err(error) = ensure_mesh_cas(store.as_ref()).await {
            tracing::warn!(%error, "ensuring mesh CAs failed; will retry");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}
