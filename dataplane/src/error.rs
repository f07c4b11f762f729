//! [`DataplaneError`]: what can stop the sidecar from starting or a flag from
//! parsing, each variant naming the input it failed on.
//!
//! Per-connection failures are not errors of this type: a connection that
//! cannot be served is logged and closed, and never affects the others.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the sidecar, its admin server or its registration could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// A `--inbound`, `--outbound` or `--tag` value is malformed.
    #[error("{flag} {value:?}: {reason}")]
    Flag {
        /// The flag, e.g. `--inbound`.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The flags do not make a valid Dataplane document.
    #[error("the Dataplane built from the flags is invalid: {0}")]
    InvalidFlags(String),
    /// The `--dataplane-file` could not be read.
    #[error("reading the dataplane file {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The `--dataplane-file` is not a valid Dataplane document.
    #[error("the dataplane file {}: {reason}", path.display())]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The admin address could not be bound.
    #[error("binding the admin server to {addr}: {source}")]
    AdminBind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The zone CP client could not start (bad URL, plain HTTP to a remote host).
    #[error("starting the zone CP client: {0}")]
    Client(#[from] meridian_proxy_api::ClientError),
}
