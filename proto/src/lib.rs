//! Meridian's wire protocols.
//!
//! This crate will hold the KDS service (two bidirectional gRPC streams per zone:
//! global→zone resources and zone→global resources, delta messages with ACK/NACK)
//! and the data-plane config stream, generated with tonic/prost. It is empty until
//! the KDS work lands; the crate exists so the workspace layout is stable.
