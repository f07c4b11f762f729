//! [`relay_tcp`]: the zero-copy relay for TCP ↔ TCP when the proxy does not encrypt.
//!
//! # Why `tokio-splice2`
//!
//! `splice(2)` needs raw file descriptors and a pipe, and the workspace forbids
//! `unsafe` code, so the syscalls come from a crate. `tokio-splice2` (MIT/Apache-2.0,
//! maintained, the successor of `tokio-splice`) drives `splice(2)` through `rustix`'s
//! safe wrappers and tokio's readiness API, half-closes correctly (a direction that
//! reaches end of stream shuts down its writer; the other keeps going) and exposes the
//! per-direction byte counts. It has no idle timeout of its own, so this module does
//! not call its `copy_bidirectional`: it polls one `SpliceIo` per direction itself,
//! next to the shared idle timer, which gives the same idle timeout, `initial` bytes,
//! "which side closed first" and live byte metrics as the buffered relay.
//!
//! Bytes go socket → pipe → socket inside the kernel; the relay holds two pipes per
//! connection (four descriptors) and no user-space buffer. If pipes cannot be created
//! (e.g. the descriptor limit is reached) the connection falls back to the buffered
//! [`relay`](crate::relay) and says so at debug level. On other systems `relay_tcp` is
//! the buffered relay.

use tokio::net::TcpStream;

use crate::config::RelayConfig;
use crate::copy::RelayStats;
use crate::error::RelayError;
use crate::telemetry::ConnectionMetrics;

/// Whether [`relay_tcp`] uses `splice(2)` on this platform (Linux), rather than the
/// buffered relay.
pub const SPLICE_SUPPORTED: bool = cfg!(target_os = "linux");

/// Relays between two TCP streams with `splice(2)` on Linux (see the module docs),
/// with the same contract as [`relay`](crate::relay): `initial` goes to the upstream
/// first, half-close is propagated, the idle timeout applies, and errors carry the
/// peer addresses.
///
/// # Errors
/// As [`relay`](crate::relay), with [`RelayError::Splice`] for a failure while
/// splicing.
pub async fn relay_tcp(
    mut client: TcpStream,
    mut upstream: TcpStream,
    initial: &[u8],
    config: &RelayConfig,
) -> Result<RelayStats, RelayError> {
    let client_addr = client.peer_addr().ok();
    let upstream_addr = upstream.peer_addr().ok();
    let mut metrics = ConnectionMetrics::open();

    #[cfg(target_os = "linux")]
    let result = match linux::Pipes::new() {
        Ok(pipes) => {
            linux::splice(
                pipes,
                &mut client,
                &mut upstream,
                initial,
                config,
                &mut metrics,
            )
            .await
        }
        Err(e) => {
            tracing::debug!(
                error = %e,
                client = ?client_addr,
                upstream = ?upstream_addr,
                "cannot create splice pipes; relaying through buffers"
            );
            crate::copy::buffered(&mut client, &mut upstream, initial, config, &mut metrics).await
        }
    };
    #[cfg(not(target_os = "linux"))]
    let result =
        crate::copy::buffered(&mut client, &mut upstream, initial, config, &mut metrics).await;

    let result = result.map_err(|e| e.at(client_addr, upstream_addr));
    metrics.close(&result);
    result
}

#[cfg(target_os = "linux")]
mod linux {
    //! The splice loop: two `tokio_splice2::SpliceIo`, one per direction, polled
    //! together with the idle timer.

    use std::future::poll_fn;
    use std::io;
    use std::pin::{Pin, pin};
    use std::task::Poll;

    use tokio::io::AsyncWrite;
    use tokio::net::TcpStream;
    use tokio_splice2::{SpliceIo, SpliceIoCtx};

    use crate::config::RelayConfig;
    use crate::copy::{RelayStats, Side};
    use crate::error::{Direction, IoOp, RelayError};
    use crate::idle::IdleWatch;
    use crate::telemetry::ConnectionMetrics;

    /// The pipe of each direction, created before the connection is committed to
    /// splicing so a failure can fall back to buffers.
    pub(super) struct Pipes {
        to_upstream: SpliceIo<TcpStream, TcpStream>,
        to_client: SpliceIo<TcpStream, TcpStream>,
    }

    impl Pipes {
        pub(super) fn new() -> io::Result<Self> {
            Ok(Self {
                to_upstream: SpliceIoCtx::prepare()?.into_io(),
                to_client: SpliceIoCtx::prepare()?.into_io(),
            })
        }
    }

    /// Splices both directions until both ended, an error, or the idle timeout.
    pub(super) async fn splice(
        pipes: Pipes,
        client: &mut TcpStream,
        upstream: &mut TcpStream,
        initial: &[u8],
        config: &RelayConfig,
        metrics: &mut ConnectionMetrics,
    ) -> Result<RelayStats, RelayError> {
        let mut to_upstream = pin!(pipes.to_upstream);
        let mut to_client = pin!(pipes.to_client);
        let mut initial_rest = initial;
        let initial_len = initial.len() as u64;
        let (mut upstream_done, mut client_done) = (false, false);
        let mut first_closed = None;
        let (mut idle, sleep) = IdleWatch::new(config.idle_timeout);
        let mut sleep = pin!(sleep);

        poll_fn(|cx| {
            // `initial` reaches the upstream before anything spliced from the client.
            while !initial_rest.is_empty() {
                match Pin::new(&mut *upstream).poll_write(cx, initial_rest) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        initial_rest = initial_rest.get(n..).unwrap_or_default();
                    }
                    Poll::Ready(Ok(_)) => {
                        return Poll::Ready(Err(io_error(
                            IoOp::Write,
                            io::ErrorKind::WriteZero.into(),
                        )));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(io_error(IoOp::Write, e))),
                    Poll::Pending => break,
                }
            }
            if initial_rest.is_empty() && !upstream_done {
                match to_upstream.as_mut().poll_execute(
                    cx,
                    Pin::new(&mut *client),
                    Pin::new(&mut *upstream),
                ) {
                    Poll::Ready(Ok(())) => {
                        upstream_done = true;
                        first_closed.get_or_insert(Side::Client);
                    }
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Err(splice_error(Direction::ClientToUpstream, e)));
                    }
                    Poll::Pending => {}
                }
            }
            if !client_done {
                match to_client.as_mut().poll_execute(
                    cx,
                    Pin::new(&mut *upstream),
                    Pin::new(&mut *client),
                ) {
                    Poll::Ready(Ok(())) => {
                        client_done = true;
                        first_closed.get_or_insert(Side::Upstream);
                    }
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Err(splice_error(Direction::UpstreamToClient, e)));
                    }
                    Poll::Pending => {}
                }
            }

            let sent_initial = initial_len - initial_rest.len() as u64;
            let stats = RelayStats {
                client_to_upstream: sent_initial + to_upstream.has_written() as u64,
                upstream_to_client: to_client.has_written() as u64,
                first_closed,
                spliced: true,
            };
            metrics.bytes(stats.client_to_upstream, stats.upstream_to_client);
            if upstream_done && client_done {
                return Poll::Ready(Ok(stats));
            }
            idle.observe(
                stats.client_to_upstream
                    + stats.upstream_to_client
                    + to_upstream.has_read() as u64
                    + to_client.has_read() as u64,
            );
            match (idle.poll_expired(sleep.as_mut(), cx), config.idle_timeout) {
                (Poll::Ready(()), Some(timeout)) => Poll::Ready(Err(RelayError::Idle {
                    timeout,
                    client: None,
                    upstream: None,
                    stats,
                })),
                _ => Poll::Pending,
            }
        })
        .await
    }

    fn io_error(op: IoOp, source: io::Error) -> RelayError {
        RelayError::Io {
            side: Side::Upstream,
            op,
            peer: None,
            source,
        }
    }

    fn splice_error(direction: Direction, source: io::Error) -> RelayError {
        RelayError::Splice {
            direction,
            from: None,
            to: None,
            source,
        }
    }
}
