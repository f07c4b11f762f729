//! [`SniProxySettings`]: the knobs of an [`SniProxy`](crate::SniProxy).

use std::time::Duration;

use meridian_proxy_api::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT};
use meridian_sni::PeekLimits;

/// How an [`SniProxy`](crate::SniProxy) treats each connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniProxySettings {
    /// Size and time bounds on reading the ClientHello.
    pub peek: PeekLimits,
    /// How long one upstream connection attempt may take.
    pub connect_timeout: Duration,
    /// End a connection over which nothing moved for this long; `None` never does.
    pub idle_timeout: Option<Duration>,
    /// The most connections handled at once (peeking or relaying); `None` is unlimited.
    pub max_connections: Option<usize>,
}

impl Default for SniProxySettings {
    /// The peek defaults (32 KiB, 5 s), Kuma's timeout defaults (connect 5 s,
    /// idle 1 h) and no connection limit.
    fn default() -> Self {
        Self {
            peek: PeekLimits::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_connections: None,
        }
    }
}
