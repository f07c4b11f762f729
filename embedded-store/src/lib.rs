//! The embedded store: the Store trait on an openraft state machine persisted in redb.
//!
//! Being written; the crate exists so the workspace layout is stable.
