//! [`connect`]: dial an upstream with the `MeshTimeout` connection timeout.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::counter;
use tokio::net::TcpStream;

use crate::error::RelayError;
use crate::telemetry::{CONNECT_FAILURES, CONNECT_TIMEOUTS};

/// Opens a TCP connection to `addr`, giving up after `timeout`
/// (`MeshTimeout` `connectionTimeout`), and sets `TCP_NODELAY` on it.
///
/// The timeout is taken literally: `Duration::ZERO` fails unless the connection is
/// established on the first poll.
///
/// # Errors
/// [`RelayError::Connect`] when the connection fails (refused, unreachable, ...),
/// [`RelayError::ConnectTimeout`] when it does not complete in time, and
/// [`RelayError::Nodelay`] when the socket option cannot be set.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, RelayError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => {
            counter!(CONNECT_FAILURES).increment(1);
            return Err(RelayError::Connect { addr, source });
        }
        Err(_elapsed) => {
            counter!(CONNECT_TIMEOUTS).increment(1);
            return Err(RelayError::ConnectTimeout { addr, timeout });
        }
    };
    stream
        .set_nodelay(true)
        .map_err(|source| RelayError::Nodelay { addr, source })?;
    Ok(stream)
}
