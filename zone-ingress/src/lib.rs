//! The zone ingress (`meridian zone-ingress`).
//!
//! It will peek the TLS ClientHello's SNI of cross-zone connections and pass the
//! bytes, still encrypted, to a local endpoint of the named service. Empty until the
//! data-path work lands.
