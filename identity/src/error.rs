//! The error type of the identity crate.
//!
//! Every variant says what failed and, where there is one, for which mesh or
//! workload identity, so a zone control plane can log a refusal verbatim.

/// Result alias used throughout the crate.
pub type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// Everything that can go wrong while creating, loading, issuing or checking
/// mesh identities. No function of this crate panics on bad input; it returns
/// one of these instead.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A mesh name is not a DNS-1123 label, so it cannot be a SPIFFE trust domain.
    #[error("invalid mesh name {mesh:?}: {reason}")]
    InvalidMesh {
        /// The rejected mesh name.
        mesh: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A service name cannot be used in a workload identity (e.g. it is empty).
    #[error("invalid service name {service:?}: {reason}")]
    InvalidService {
        /// The rejected service name.
        service: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A string is not a SPIFFE ID in the canonical form this crate produces.
    #[error("invalid SPIFFE ID {uri:?}: {reason}")]
    InvalidSpiffeId {
        /// The rejected URI.
        uri: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A validity period is not usable (zero, or overflowing the clock).
    #[error("invalid validity for {what}: {reason}")]
    InvalidValidity {
        /// What was being issued (a mesh CA or a workload identity).
        what: String,
        /// Why the validity was rejected.
        reason: String,
    },
    /// Generating a mesh CA failed.
    #[error("generating the CA of mesh {mesh:?} failed: {reason}")]
    CaGenerate {
        /// The mesh whose CA was being generated.
        mesh: String,
        /// What failed.
        reason: String,
    },
    /// A stored CA certificate or key could not be loaded.
    #[error("loading the mesh CA failed: {reason}")]
    CaLoad {
        /// What was wrong with the PEM input.
        reason: String,
    },
    /// A certificate signing request could not be parsed or its signature is invalid.
    #[error("invalid CSR for {expected}: {reason}")]
    InvalidCsr {
        /// The identity the CSR was expected to request.
        expected: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A CSR (or a signing request) asks for an identity other than the
    /// one registered for that data plane: refused.
    #[error("CSR refused: it requests {requested} but the data plane is registered as {expected}")]
    IdentityMismatch {
        /// The identity the zone control plane registered for the proxy.
        expected: String,
        /// The identity (or identities) the request asked for.
        requested: String,
    },
    /// Signing a workload certificate failed.
    #[error("signing the certificate for {identity} failed: {reason}")]
    Sign {
        /// The identity being issued.
        identity: String,
        /// What failed.
        reason: String,
    },
    /// Generating or loading a workload private key failed.
    #[error("workload key: {reason}")]
    Key {
        /// What failed.
        reason: String,
    },
    /// A certificate (chain) PEM could not be used.
    #[error("invalid certificate: {reason}")]
    InvalidCertificate {
        /// What was wrong with it.
        reason: String,
    },
    /// Building a rustls configuration failed.
    #[error("building the TLS config for {identity} failed: {reason}")]
    TlsConfig {
        /// The local identity the configuration was built for.
        identity: String,
        /// What failed.
        reason: String,
    },
}
