//! SNI for cross-zone traffic: the name format and peeking the TLS ClientHello without terminating it.
//!
//! Being written; the crate exists so the workspace layout is stable.
