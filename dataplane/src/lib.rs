//! The sidecar data plane (`meridian dp`).
//!
//! It will take its config from the zone control plane, terminate and originate mTLS,
//! enforce MeshTrafficPermission and route by MeshTCPRoute. Empty until the data-path
//! work lands.
