//! Mesh identity: per-mesh CAs, workload certificates and mTLS configs.
//!
//! Being written; the crate exists so the workspace layout is stable.
