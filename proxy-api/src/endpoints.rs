//! [`Endpoints`]: one cluster's endpoint list, shared between every config that
//! routes to it and encoded once.
//!
//! A zone CP computes the endpoint list of a (mesh, service, subset) once per change
//! and hands the same list to each of the hundreds of sidecars calling that service.
//! Holding it behind an `Arc` keeps one copy in memory however many configs carry it,
//! and caching its JSON keeps one encoding however many streams send it: serialising
//! a config (or an endpoint update) writes the cached bytes.
//!
//! Invariants:
//! - the cached JSON is always the list's current encoding: every mutable access goes
//!   through [`std::ops::DerefMut`], which copies the list if it is shared (so other
//!   configs never see the change) and drops the cache;
//! - equality is the lists' equality (pointer equality is only a shortcut).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::config::EndpointConfig;

/// One cluster's endpoints: cheap to clone, encoded at most once.
#[derive(Clone, Default)]
pub struct Endpoints(Arc<Shared>);

#[derive(Default)]
struct Shared {
    list: Vec<EndpointConfig>,
    json: OnceLock<Box<RawValue>>,
}

impl Clone for Shared {
    fn clone(&self) -> Self {
        Shared {
            list: self.list.clone(),
            json: OnceLock::new(),
        }
    }
}

impl Endpoints {
    /// Wraps a list.
    pub fn new(list: Vec<EndpointConfig>) -> Self {
        Endpoints(Arc::new(Shared {
            list,
            json: OnceLock::new(),
        }))
    }

    /// The list's JSON, encoded on first use and reused after.
    pub fn json(&self) -> &RawValue {
        self.0.json.get_or_init(|| {
            // A list of plain structs of strings and numbers always encodes.
            serde_json::value::to_raw_value(&self.0.list).unwrap_or_default()
        })
    }

    /// Whether both handles share one list (no comparison needed).
    pub fn ptr_eq(&self, other: &Endpoints) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for Endpoints {
    type Target = Vec<EndpointConfig>;

    fn deref(&self) -> &Vec<EndpointConfig> {
        &self.0.list
    }
}

impl DerefMut for Endpoints {
    fn deref_mut(&mut self) -> &mut Vec<EndpointConfig> {
        let shared = Arc::make_mut(&mut self.0);
        shared.json = OnceLock::new();
        &mut shared.list
    }
}

impl PartialEq for Endpoints {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other) || self.0.list == other.0.list
    }
}

impl Eq for Endpoints {}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.list.fmt(f)
    }
}

impl From<Vec<EndpointConfig>> for Endpoints {
    fn from(list: Vec<EndpointConfig>) -> Self {
        Endpoints::new(list)
    }
}

impl FromIterator<EndpointConfig> for Endpoints {
    fn from_iter<I: IntoIterator<Item = EndpointConfig>>(iter: I) -> Self {
        Endpoints::new(iter.into_iter().collect())
    }
}

impl Serialize for Endpoints {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Endpoints {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::deserialize(deserializer).map(Endpoints::new)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::Via;

    fn endpoint(port: u16) -> EndpointConfig {
        EndpointConfig {
            address: ([10, 0, 0, 1], port).into(),
            zone: "zone-1".into(),
            weight: 1,
            tags: Default::default(),
            via: Via::Direct,
        }
    }

    #[test]
    fn encodes_like_the_list_and_reads_back() {
        let eps = Endpoints::new(vec![endpoint(1), endpoint(2)]);
        let json = serde_json::to_string(&eps).unwrap();
        assert_eq!(json, serde_json::to_string(&*eps).unwrap());
        let back: Endpoints = serde_json::from_str(&json).unwrap();
        assert_eq!(back, eps);
        assert!(!back.ptr_eq(&eps));
    }

    #[test]
    fn a_change_copies_a_shared_list_and_drops_its_encoding() {
        let a = Endpoints::new(vec![endpoint(1)]);
        let before = a.json().get().to_owned();
        let mut b = a.clone();
        assert!(b.ptr_eq(&a));
        b.push(endpoint(2));
        assert_eq!(a.len(), 1, "the other holder's list is untouched");
        assert_eq!(a.json().get(), before);
        assert_eq!(b.len(), 2);
        assert_eq!(b.json().get(), serde_json::to_string(&*b).unwrap());
        assert_ne!(a, b);
    }
}
