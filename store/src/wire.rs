//! Deserialising the resources a write carries (feature `serde`): the spec arrives as
//! raw JSON and is validated against the key's kind, once, into a [`SpecBody`].
//! Serialising needs nothing special: a `SpecBody` writes its canonical JSON.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use meridian_model::SpecBody;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{NewResource, ResourceKey, Revision, StoredResource};

/// A [`NewResource`] as it reads off the wire, spec not yet parsed.
#[derive(Deserialize)]
pub(crate) struct NewResourceWire {
    key: ResourceKey,
    labels: BTreeMap<String, String>,
    spec: Box<RawValue>,
    zone: Option<String>,
}

/// A [`StoredResource`] as it reads off the wire, spec not yet parsed.
#[derive(Deserialize)]
pub(crate) struct StoredResourceWire {
    key: ResourceKey,
    labels: BTreeMap<String, String>,
    spec: Box<RawValue>,
    zone: Option<String>,
    version: i64,
    revision: Revision,
    created_at: DateTime<Utc>,
    modified_at: DateTime<Utc>,
}

/// The spec of `key`, parsed from raw JSON; the error names the resource.
fn body(key: &ResourceKey, spec: &RawValue) -> Result<SpecBody, String> {
    SpecBody::parse_stored_json(key.kind, spec.get().as_bytes()).map_err(|e| format!("{key}: {e}"))
}

impl TryFrom<NewResourceWire> for NewResource {
    type Error = String;

    fn try_from(w: NewResourceWire) -> Result<Self, String> {
        Ok(NewResource {
            spec: body(&w.key, &w.spec)?,
            key: w.key,
            labels: w.labels,
            zone: w.zone,
        })
    }
}

impl TryFrom<StoredResourceWire> for StoredResource {
    type Error = String;

    fn try_from(w: StoredResourceWire) -> Result<Self, String> {
        Ok(StoredResource {
            spec: body(&w.key, &w.spec)?,
            key: w.key,
            labels: w.labels,
            zone: w.zone,
            version: w.version,
            revision: w.revision,
            created_at: w.created_at,
            modified_at: w.modified_at,
        })
    }
}
