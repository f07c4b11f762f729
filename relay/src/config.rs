//! [`RelayConfig`]: the per-connection knobs of the relay loop.

use std::time::Duration;

/// The buffer size of each direction of [`relay`](crate::relay) unless configured: 16 KiB.
pub const DEFAULT_BUFFER_SIZE: usize = 16 * 1024;

/// How one relayed connection behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// End the connection with [`RelayError::Idle`](crate::RelayError::Idle) when no byte
    /// has moved in either direction for this long (`MeshTimeout` `idleTimeout`).
    /// `None` never times out.
    pub idle_timeout: Option<Duration>,
    /// Size of the one buffer allocated per direction by the buffered relay. A size of
    /// zero is treated as one byte (correct, but slow). The splice path does not use it.
    pub buffer_size: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            idle_timeout: None,
            buffer_size: DEFAULT_BUFFER_SIZE,
        }
    }
}

impl RelayConfig {
    /// The default configuration with the given idle timeout.
    pub fn with_idle_timeout(idle_timeout: Option<Duration>) -> Self {
        Self {
            idle_timeout,
            ..Self::default()
        }
    }
}
