//! Locality-aware load balancing: endpoint priorities, failover, weights by healthy instances.
//!
//! Being written; the crate exists so the workspace layout is stable.
