//! Meridian's resource store.
//!
//! Every control plane keeps its resources behind the [`Store`] trait. A store is
//! type-agnostic: it keeps a resource's key, labels, owning zone and spec (a
//! `meridian_model::SpecBody`: typed once by whoever built the write, kept as its
//! canonical JSON, typed again only when a backend reads a row back) plus three pieces
//! of bookkeeping:
//!
//! - a per-resource **version** for optimistic concurrency (`Precondition::Version`);
//! - a store-wide, strictly increasing **revision**, one per change, committed in
//!   revision order (writers serialise on the revision counter), so "everything up to
//!   revision R" is a consistent cut;
//! - a **change log** of upserts and tombstones by revision, from which
//!   [`Store::changes_since`] answers "what changed after R" — the basis of KDS resume.
//!   [`Store::compact`] drops log entries up to a horizon; asking for changes older
//!   than the horizon yields [`StoreError::Compacted`] and the caller falls back to a
//!   full snapshot.
//!
//! Referential rules every backend enforces: a mesh-scoped resource needs its Mesh;
//! a zone-owned resource needs its Zone; deleting a Mesh or a Zone deletes what it
//! owns, each deletion logged as a tombstone in the same transaction.
//!
//! Status data (zone insights) and settings live apart from config rows so heartbeats
//! never contend with policy writes and never produce revisions.
//!
//! The write rules live once, in [`engine`]: every backend's `apply` hands its batch
//! to [`engine::apply`] over a small transaction trait ([`engine::WriteTxn`]).
//!
//! Backends: [`postgres::PostgresStore`] here; the embedded openraft store implements
//! the same trait. [`conformance`] (feature `conformance`) is the suite both pass.

pub mod engine;
mod error;
pub mod postgres;
mod resource;
pub mod rules;
mod store;
#[cfg(feature = "serde")]
mod wire;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::StoreError;
pub use resource::{
    Change, ChangeBatch, ListQuery, NewResource, Page, PutOutcome, ResourceKey, Revision, Snapshot,
    StoredResource, WriteOp, WriteOutcome, list_all,
};
pub use store::{Precondition, Store};
