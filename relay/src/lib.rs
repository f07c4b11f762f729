//! The L4 relay loop shared by the sidecar, zone ingress and zone egress.
//!
//! Being written; the crate exists so the workspace layout is stable.
