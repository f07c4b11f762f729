//! [`relay`]: the buffered bidirectional copy for any pair of async streams.
//!
//! Each direction is a [`Pump`]: one buffer allocated when the connection starts,
//! filled by a read and emptied by writes, with no allocation afterwards. The two
//! pumps are polled from one future, so a connection is one task and needs no
//! synchronisation between directions.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::RelayConfig;
use crate::error::{Direction, IoOp, RelayError};
use crate::idle::IdleWatch;
use crate::telemetry::ConnectionMetrics;

/// One end of a relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The downstream peer that connected to the proxy.
    Client,
    /// The peer the proxy connected to.
    Upstream,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        })
    }
}

/// What a relayed connection moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayStats {
    /// Bytes written to the upstream, including the `initial` bytes.
    pub client_to_upstream: u64,
    /// Bytes written to the client.
    pub upstream_to_client: u64,
    /// The side whose end of stream was seen first; `None` if neither had ended (only
    /// in the stats of an [`RelayError::Idle`]).
    pub first_closed: Option<Side>,
    /// Whether the bytes moved with `splice(2)` ([`relay_tcp`](crate::relay_tcp) on
    /// Linux) rather than through user-space buffers.
    pub spliced: bool,
}

/// Relays bytes between `client` and `upstream` until both directions have ended.
///
/// `initial` (bytes already read from the client, e.g. a peeked TLS ClientHello) is
/// written to the upstream before anything else read from the client. Each direction
/// gets one buffer of [`RelayConfig::buffer_size`] bytes for the whole connection.
///
/// When one side reaches end of stream, everything read from it is written, the other
/// side's write half is shut down, and the opposite direction keeps going until it
/// ends too. The streams are dropped (closed) when the function returns.
///
/// # Errors
/// [`RelayError::Io`] when reading, writing or shutting down either side fails (the
/// address is unknown here: add it with [`RelayError::at`]), and
/// [`RelayError::Idle`] when nothing moved for [`RelayConfig::idle_timeout`].
pub async fn relay<A, B>(
    mut client: A,
    mut upstream: B,
    initial: &[u8],
    config: &RelayConfig,
) -> Result<RelayStats, RelayError>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut metrics = ConnectionMetrics::open();
    let result = buffered(&mut client, &mut upstream, initial, config, &mut metrics).await;
    metrics.close(&result);
    result
}

/// The buffered relay without the opened/closed accounting, shared with the splice
/// path's fallback.
pub(crate) async fn buffered<A, B>(
    client: &mut A,
    upstream: &mut B,
    initial: &[u8],
    config: &RelayConfig,
    metrics: &mut ConnectionMetrics,
) -> Result<RelayStats, RelayError>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let size = config.buffer_size.max(1);
    let mut to_upstream = Pump::new(size, initial);
    let mut to_client = Pump::new(size, &[]);
    let mut first_closed = None;
    let (mut idle, sleep) = IdleWatch::new(config.idle_timeout);
    let mut sleep = pin!(sleep);

    poll_fn(|cx| {
        if !to_upstream.done
            && let Poll::Ready(Err(e)) = to_upstream.poll_pump(cx, client, upstream)
        {
            return Poll::Ready(Err(e.into_relay(Direction::ClientToUpstream)));
        }
        if !to_client.done
            && let Poll::Ready(Err(e)) = to_client.poll_pump(cx, upstream, client)
        {
            return Poll::Ready(Err(e.into_relay(Direction::UpstreamToClient)));
        }
        if first_closed.is_none() {
            if to_upstream.read_eof {
                first_closed = Some(Side::Client);
            } else if to_client.read_eof {
                first_closed = Some(Side::Upstream);
            }
        }
        metrics.bytes(to_upstream.written, to_client.written);
        let stats = RelayStats {
            client_to_upstream: to_upstream.written,
            upstream_to_client: to_client.written,
            first_closed,
            spliced: false,
        };
        if to_upstream.done && to_client.done {
            return Poll::Ready(Ok(stats));
        }
        idle.observe(to_upstream.progress() + to_client.progress());
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

/// Which operation of a pump failed.
enum PumpError {
    Read(io::Error),
    Write(io::Error),
    Shutdown(io::Error),
}

impl PumpError {
    fn into_relay(self, direction: Direction) -> RelayError {
        let (side, op, source) = match self {
            PumpError::Read(e) => (direction.source(), IoOp::Read, e),
            PumpError::Write(e) => (direction.destination(), IoOp::Write, e),
            PumpError::Shutdown(e) => (direction.destination(), IoOp::Shutdown, e),
        };
        RelayError::Io {
            side,
            op,
            peer: None,
            source,
        }
    }
}

/// One direction of the buffered relay.
struct Pump<'a> {
    /// Bytes to write before anything read (the caller's `initial`).
    initial: &'a [u8],
    buf: Box<[u8]>,
    /// `buf[pos..cap]` is read but not yet written.
    pos: usize,
    cap: usize,
    read_eof: bool,
    need_flush: bool,
    done: bool,
    read: u64,
    written: u64,
}

impl<'a> Pump<'a> {
    fn new(size: usize, initial: &'a [u8]) -> Self {
        Self {
            initial,
            buf: vec![0; size].into_boxed_slice(),
            pos: 0,
            cap: 0,
            read_eof: false,
            need_flush: false,
            done: false,
            read: 0,
            written: 0,
        }
    }

    /// Bytes read plus bytes written: grows whenever this direction moves anything.
    fn progress(&self) -> u64 {
        self.read.wrapping_add(self.written)
    }

    /// Writes `data` once; the number of bytes taken, never more than `data.len()`.
    fn poll_write_some<W: AsyncWrite + Unpin + ?Sized>(
        cx: &mut Context<'_>,
        writer: &mut W,
        data: &[u8],
    ) -> Poll<Result<usize, PumpError>> {
        match Pin::new(writer).poll_write(cx, data) {
            Poll::Ready(Ok(0)) => Poll::Ready(Err(PumpError::Write(io::Error::new(
                io::ErrorKind::WriteZero,
                "the stream accepted no bytes",
            )))),
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(n.min(data.len()))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(PumpError::Write(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Moves bytes from `reader` to `writer` until either would block (`Pending`), the
    /// reader ended and the writer was shut down (`Ready(Ok)`), or an operation failed.
    fn poll_pump<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<Result<(), PumpError>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        while !self.initial.is_empty() {
            let n = match Self::poll_write_some(cx, writer, self.initial) {
                Poll::Ready(r) => r?,
                Poll::Pending => return Poll::Pending,
            };
            self.initial = self.initial.get(n..).unwrap_or_default();
            self.written += n as u64;
            self.need_flush = true;
        }
        loop {
            if self.pos == self.cap && !self.read_eof {
                let mut buf = ReadBuf::new(&mut self.buf);
                match Pin::new(&mut *reader).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        let n = buf.filled().len();
                        if n == 0 {
                            self.read_eof = true;
                        } else {
                            self.pos = 0;
                            self.cap = n;
                            self.read += n as u64;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(PumpError::Read(e))),
                    Poll::Pending => {
                        // Nothing to read for now: push out what was written.
                        if self.need_flush {
                            match Pin::new(&mut *writer).poll_flush(cx) {
                                Poll::Ready(Ok(())) => self.need_flush = false,
                                Poll::Ready(Err(e)) => {
                                    return Poll::Ready(Err(PumpError::Write(e)));
                                }
                                Poll::Pending => {}
                            }
                        }
                        return Poll::Pending;
                    }
                }
            }

            while self.pos < self.cap {
                let pending = self.buf.get(self.pos..self.cap).unwrap_or_default();
                let n = match Self::poll_write_some(cx, writer, pending) {
                    Poll::Ready(r) => r?,
                    Poll::Pending => return Poll::Pending,
                };
                self.pos += n;
                self.written += n as u64;
                self.need_flush = true;
            }

            if self.read_eof && self.pos == self.cap {
                if self.need_flush {
                    match Pin::new(&mut *writer).poll_flush(cx) {
                        Poll::Ready(Ok(())) => self.need_flush = false,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(PumpError::Write(e))),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                match Pin::new(&mut *writer).poll_shutdown(cx) {
                    Poll::Ready(Ok(())) => {}
                    // The peer is already gone: its write half needs no shutting down.
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(PumpError::Shutdown(e))),
                    Poll::Pending => return Poll::Pending,
                }
                self.done = true;
                return Poll::Ready(Ok(()));
            }
        }
    }
}
