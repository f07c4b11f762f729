//! Checks every backend applies to a write before touching storage, so all backends
//! refuse the same writes with the same errors.

use crate::{NewResource, Precondition, ResourceKey, StoreError, StoredResource};

/// Refuses writes whose key and owner do not fit the kind: a mesh-scoped kind needs a
/// mesh and a global kind must have none; a zone-owned kind needs its zone and other
/// kinds must have none.
pub fn check_write(resource: &NewResource) -> Result<(), StoreError> {
    let key = &resource.key;
    let invalid = |reason: &str| StoreError::Invalid {
        key: key.clone(),
        reason: reason.to_owned(),
    };
    if key.name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if resource.spec.kind() != key.kind {
        return Err(StoreError::Invalid {
            key: key.clone(),
            reason: format!("the spec is a {} spec", resource.spec.kind()),
        });
    }
    match (key.kind.is_mesh_scoped(), key.mesh.is_empty()) {
        (true, true) => return Err(invalid("a mesh-scoped resource needs a mesh")),
        (false, false) => return Err(invalid("a global resource cannot have a mesh")),
        _ => {}
    }
    match (key.kind.is_zone_owned(), &resource.zone) {
        (true, None) => Err(invalid("a zone-owned resource needs its zone")),
        (false, Some(_)) => Err(invalid("only zone-owned resources have a zone")),
        _ => Ok(()),
    }
}

/// Checks `precondition` against the stored resource (`None` if it does not exist).
pub fn check_precondition(
    key: &ResourceKey,
    existing: Option<&StoredResource>,
    precondition: Precondition,
) -> Result<(), StoreError> {
    match (precondition, existing) {
        (Precondition::Any, _) | (Precondition::Absent, None) => Ok(()),
        (Precondition::Absent, Some(_)) => Err(StoreError::AlreadyExists(key.clone())),
        (Precondition::Version(expected), found) if found.map(|r| r.version) != Some(expected) => {
            Err(StoreError::Conflict {
                key: key.clone(),
                expected,
                actual: found.map(|r| r.version),
            })
        }
        (Precondition::Version(_), _) => Ok(()),
    }
}

/// The stored resource when a put would change nothing: same labels, spec and owner.
/// Such a put writes nothing and uses no revision, so re-applies cause no churn.
pub fn unchanged<'a>(
    existing: Option<&'a StoredResource>,
    resource: &NewResource,
) -> Option<&'a StoredResource> {
    existing.filter(|e| {
        e.labels == resource.labels && e.spec == resource.spec && e.zone == resource.zone
    })
}
