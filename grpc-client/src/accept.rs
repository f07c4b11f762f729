//! The server side's half of dialling: the connections a gRPC server accepts, with
//! `TCP_NODELAY` set on each, as [`crate::ChannelConfig`] sets it on the clients'.
//!
//! tonic applies its own `tcp_nodelay` option only to listeners it binds itself; the
//! servers here accept on listeners they bound (to report the port, or to hold it
//! from the start), so without this every accepted socket runs Nagle's algorithm. A
//! config larger than one segment then waits for the peer's delayed ACK (40 ms on
//! Linux) before its last segment leaves.

use std::io;

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::{Stream, StreamExt, wrappers::TcpListenerStream};

/// The connections `listener` accepts, each with `TCP_NODELAY` set. A socket that
/// refuses the option is served anyway (it only costs latency), with a debug log.
pub fn nodelay_incoming(listener: TcpListener) -> impl Stream<Item = io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|accepted| {
        if let Ok(stream) = &accepted
            && let Err(error) = stream.set_nodelay(true)
        {
            tracing::debug!(%error, "could not set TCP_NODELAY on an accepted connection");
        }
        accepted
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = Box::pin(nodelay_incoming(listener));
        let _client = TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
