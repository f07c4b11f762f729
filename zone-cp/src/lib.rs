//! The zone control plane (`meridian zone-cp`).
//!
//! It will keep a zone's copy of the mesh in the embedded openraft store, sync with
//! global over KDS, and serve config to the zone's data planes. Empty until the KDS
//! work lands.
