//! The values a store keeps and returns: keys, stored resources, writes, changes.
//!
//! A resource's spec is a [`SpecBody`]: typed and validated by whoever built the
//! value (the REST layer, the KDS receiver, a backend reading its rows back), with its
//! canonical JSON beside it. Stores write those bytes and compare them to tell an
//! unchanged put; nothing downstream parses the spec again.
//!
//! With the `serde` feature, the values a write carries (keys, resources, ops,
//! outcomes) derive serde: a key's kind is its Kuma type name, a spec is its canonical
//! JSON, and the JSON is the embedded store's Raft log format, so a field's name or
//! shape never changes. Deserialising a resource validates its spec against its key's
//! kind (the Raft log is an edge like any other).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use meridian_model::{ResourceKind, SpecBody};

/// A store-wide change counter. Every committed change gets the next revision.
pub type Revision = i64;

/// Identifies one resource: its kind, its mesh (empty for global kinds such as Mesh
/// and Zone) and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ResourceKey {
    /// The resource type.
    pub kind: ResourceKind,
    /// The mesh it lives in; `""` for global (non mesh-scoped) kinds.
    pub mesh: String,
    /// Its name, unique per kind and mesh.
    pub name: String,
}

impl ResourceKey {
    /// The key of a global (non mesh-scoped) resource, such as a Mesh or a Zone.
    pub fn global(kind: ResourceKind, name: impl Into<String>) -> Self {
        ResourceKey {
            kind,
            mesh: String::new(),
            name: name.into(),
        }
    }

    /// The key of a resource inside `mesh`.
    pub fn in_mesh(kind: ResourceKind, mesh: impl Into<String>, name: impl Into<String>) -> Self {
        ResourceKey {
            kind,
            mesh: mesh.into(),
            name: name.into(),
        }
    }

    /// The mesh, or `None` for global kinds.
    pub fn mesh(&self) -> Option<&str> {
        (!self.mesh.is_empty()).then_some(self.mesh.as_str())
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mesh.is_empty() {
            write!(f, "{} {:?}", self.kind, self.name)
        } else {
            write!(f, "{} {:?} in mesh {:?}", self.kind, self.name, self.mesh)
        }
    }
}

/// A resource as stored, with its bookkeeping.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "crate::wire::StoredResourceWire"))]
pub struct StoredResource {
    /// Which resource this is.
    pub key: ResourceKey,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its spec, typed, with its canonical JSON.
    pub spec: SpecBody,
    /// The zone that owns it, for zone-owned kinds (Dataplane, ZoneIngress, ZoneEgress).
    pub zone: Option<String>,
    /// Starts at 1 and grows by one with every change of this resource.
    pub version: i64,
    /// The store revision of its last change.
    pub revision: Revision,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub modified_at: DateTime<Utc>,
}

/// A resource to write.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "crate::wire::NewResourceWire"))]
pub struct NewResource {
    /// Which resource to write.
    pub key: ResourceKey,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its validated spec; its kind is the key's (the store refuses a mismatch).
    pub spec: SpecBody,
    /// The owning zone; required for zone-owned kinds, refused for the others.
    pub zone: Option<String>,
}

/// One operation of an atomic batch ([`crate::Store::apply`]).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum WriteOp {
    /// Create or update a resource.
    Put(NewResource, crate::Precondition),
    /// Delete a resource (and, for a Mesh or Zone, what it owns).
    Delete(ResourceKey, crate::Precondition),
    /// Set a setting, atomically with the rest of the batch (e.g. a zone's "last
    /// global revision applied" together with the changes of that revision). Settings
    /// are not resources: no revision, no change log.
    SetSetting {
        /// The setting's name.
        key: String,
        /// Its new value.
        value: String,
    },
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PutOutcome {
    /// The resource did not exist and was created.
    Created,
    /// The resource existed and changed.
    Updated,
    /// The resource existed with the same labels and spec: nothing was written and no
    /// revision was used, so idempotent re-applies cause no churn downstream.
    Unchanged,
}

/// The result of one [`WriteOp`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum WriteOutcome {
    /// A put, with the resource as now stored.
    Put(PutOutcome, StoredResource),
    /// A delete, with every key removed (the target first, then what it owned) and the
    /// revision of the target's tombstone.
    Deleted {
        /// Keys removed, target first.
        keys: Vec<ResourceKey>,
        /// Revision of the target's tombstone.
        revision: Revision,
    },
    /// A setting was written.
    SettingSet,
}

/// A list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// The kind to list.
    pub kind: ResourceKind,
    /// Only this mesh (mesh-scoped kinds); `None` lists every mesh.
    pub mesh: Option<String>,
    /// Only resources owned by this zone.
    pub zone: Option<String>,
    /// Only resources carrying all these labels with these values.
    pub labels: BTreeMap<String, String>,
    /// Items to skip.
    pub offset: u64,
    /// Items to return at most.
    pub limit: u64,
}

impl ListQuery {
    /// Everything of one kind, first 1000 items.
    pub fn all(kind: ResourceKind) -> Self {
        ListQuery {
            kind,
            mesh: None,
            zone: None,
            labels: BTreeMap::new(),
            offset: 0,
            limit: 1000,
        }
    }
}

/// Every item matching `query`, reading page after page of `query.limit`
/// items from `query.offset` on (for callers that need the whole set, such as
/// config computation).
pub async fn list_all(
    store: &dyn crate::Store,
    mut query: ListQuery,
) -> Result<Vec<StoredResource>, crate::StoreError> {
    let mut items = Vec::new();
    loop {
        let page = store.list(&query).await?;
        let got = page.items.len() as u64;
        items.extend(page.items);
        query.offset += got;
        if got == 0 || query.offset >= page.total {
            return Ok(items);
        }
    }
}

/// One page of a list, ordered by mesh then name.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Matching items in total, across all pages.
    pub total: u64,
    /// This page's items.
    pub items: Vec<StoredResource>,
}

/// One entry of [`crate::Store::changes_since`]: the latest state of a key changed
/// after the asked revision.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The resource exists, as it is now.
    Upsert(StoredResource),
    /// The resource was deleted (a tombstone).
    Delete {
        /// The deleted resource.
        key: ResourceKey,
        /// The zone that owned it, if any (lets KDS avoid echoing a zone's own
        /// deletions back to it).
        zone: Option<String>,
        /// The tombstone's revision.
        revision: Revision,
    },
}

impl Change {
    /// The revision of this change.
    pub fn revision(&self) -> Revision {
        match self {
            Change::Upsert(r) => r.revision,
            Change::Delete { revision, .. } => *revision,
        }
    }

    /// The key changed.
    pub fn key(&self) -> &ResourceKey {
        match self {
            Change::Upsert(r) => &r.key,
            Change::Delete { key, .. } => key,
        }
    }
}

/// Every resource at one revision: what a reader needs when the change log no longer
/// reaches back to its revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Every resource, ordered by type name, mesh and name.
    pub resources: Vec<StoredResource>,
    /// The revision the snapshot is consistent at; continue with `changes_since` it.
    pub revision: Revision,
}

/// Changes after some revision, at most one per key (its latest), in revision order.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeBatch {
    /// The changes.
    pub changes: Vec<Change>,
    /// The batch is complete through this revision: ask again with it to continue.
    /// Equal to the store's revision when nothing more is pending.
    pub through: Revision,
}
