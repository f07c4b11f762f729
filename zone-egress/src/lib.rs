//! The zone egress (`meridian zone-egress`).
//!
//! It will peek the SNI of mesh traffic leaving the zone and pick a remote zone's
//! ingress by locality-aware weights. Empty until the data-path work lands.
