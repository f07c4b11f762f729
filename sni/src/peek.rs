//! Peeking a connection's TLS ClientHello without terminating TLS.
//!
//! A zone ingress or egress routes passthrough TLS by the server name (SNI) of
//! the client's first flight. [`peek_client_hello`] reads from the connection
//! until the ClientHello is whole, lets rustls parse it (a
//! [`rustls::server::Acceptor`] fed with copies of the bytes read; nothing here
//! slices TLS bytes by hand), and returns the server name, the ALPN protocols
//! and every byte read, which the caller writes to the upstream before copying
//! the rest of the connection.
//!
//! Every way a peek can end is counted in the `meridian_sni_peek_total`
//! counter, labelled `result` = `ok`, `timeout`, `too_large`, `not_tls`,
//! `closed` or `io` (see [`PeekError::result_label`]).
//!
//! Bounds: the peek reads at most [`PeekLimits::max_bytes`] bytes and takes at
//! most [`PeekLimits::timeout`] in all (not per read), so a peer that trickles a
//! byte at a time cannot hold a connection open for longer.

use std::io;
use std::time::Duration;

use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Name of the counter of finished peeks, labelled by `result`.
pub const PEEK_TOTAL_METRIC: &str = "meridian_sni_peek_total";

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 4096;

/// Bounds on one peek.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeekLimits {
    /// The most bytes read before giving up with [`PeekError::TooLarge`].
    /// Default 32 KiB: ordinary ClientHellos are well under 2 KiB, post-quantum
    /// key shares add about 1.2 KiB, and 16 KiB hellos (long ALPN lists, many
    /// cipher suites or extensions, split over several records) must pass.
    pub max_bytes: usize,
    /// The longest time the whole peek may take before [`PeekError::Timeout`].
    /// Default 5 s.
    pub timeout: Duration,
}

impl Default for PeekLimits {
    fn default() -> Self {
        Self {
            max_bytes: 32 * 1024,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A ClientHello read from a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeekedHello {
    /// The server name (SNI) the client asked for, lowercased by rustls; `None`
    /// when the client sent none, or sent an IP address (which RFC 6066 forbids
    /// and rustls ignores).
    pub server_name: Option<String>,
    /// The ALPN protocols the client offered, in its order; empty when it sent
    /// no ALPN extension.
    pub alpn: Vec<Vec<u8>>,
    /// Every byte read from the connection, unchanged: the ClientHello records
    /// and anything that arrived with them. Write them to the upstream first.
    pub bytes: Vec<u8>,
}

/// Why a ClientHello could not be peeked. Every variant tells how many bytes
/// were read from the connection (they are lost to the caller: close it).
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    /// The ClientHello was not whole within [`PeekLimits::timeout`].
    #[error("no complete TLS ClientHello within {timeout:?} ({read} bytes read)")]
    Timeout {
        /// The time limit that passed.
        timeout: Duration,
        /// Bytes read before it passed.
        read: usize,
    },
    /// [`PeekLimits::max_bytes`] bytes were read and the ClientHello was still not whole.
    #[error("TLS ClientHello larger than the {max_bytes}-byte limit ({read} bytes read)")]
    TooLarge {
        /// The limit.
        max_bytes: usize,
        /// Bytes read.
        read: usize,
    },
    /// The bytes are not the start of a TLS connection, or rustls rejected the ClientHello.
    #[error("not a TLS ClientHello: {reason} ({read} bytes read)")]
    NotTls {
        /// What rustls found wrong.
        reason: String,
        /// Bytes read.
        read: usize,
    },
    /// The peer closed (or half-closed) the connection before the ClientHello was whole.
    #[error("connection closed before a complete TLS ClientHello ({read} bytes read)")]
    Closed {
        /// Bytes read before end of stream.
        read: usize,
    },
    /// Reading from the connection failed.
    #[error("I/O error reading the TLS ClientHello ({read} bytes read): {source}")]
    Io {
        /// The error.
        #[source]
        source: io::Error,
        /// Bytes read before it.
        read: usize,
    },
}

impl PeekError {
    /// How many bytes were read from the connection before the peek failed.
    pub fn bytes_read(&self) -> usize {
        match self {
            Self::Timeout { read, .. }
            | Self::TooLarge { read, .. }
            | Self::NotTls { read, .. }
            | Self::Closed { read }
            | Self::Io { read, .. } => *read,
        }
    }

    /// The `result` label of `meridian_sni_peek_total` for this error.
    pub fn result_label(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::TooLarge { .. } => "too_large",
            Self::NotTls { .. } => "not_tls",
            Self::Closed { .. } => "closed",
            Self::Io { .. } => "io",
        }
    }
}

/// Reads `stream` until it holds a whole TLS ClientHello, within `limits`, and
/// returns the hello's server name and ALPN with every byte read.
///
/// The stream is left just after the last byte read; [`PeekedHello::bytes`] must
/// be replayed to whoever continues the connection. On error, the connection
/// should be closed. Never panics, whatever the peer sends.
pub async fn peek_client_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    limits: &PeekLimits,
) -> Result<PeekedHello, PeekError> {
    let mut progress = Progress {
        acceptor: Acceptor::default(),
        bytes: Vec::new(),
    };
    let outcome =
        match tokio::time::timeout(limits.timeout, read_hello(stream, &mut progress, limits)).await
        {
            Ok(Ok((server_name, alpn))) => Ok(PeekedHello {
                server_name,
                alpn,
                bytes: progress.bytes,
            }),
            Ok(Err(err)) => Err(err),
            Err(_elapsed) => Err(PeekError::Timeout {
                timeout: limits.timeout,
                read: progress.bytes.len(),
            }),
        };
    let label = match &outcome {
        Ok(_) => "ok",
        Err(err) => err.result_label(),
    };
    metrics::counter!(PEEK_TOTAL_METRIC, "result" => label).increment(1);
    outcome
}

/// What a peek has read so far; kept outside the timed future so a timeout can
/// still tell how many bytes were read.
struct Progress {
    acceptor: Acceptor,
    bytes: Vec<u8>,
}

/// What the peek takes from a parsed ClientHello: server name and ALPN protocols.
type HelloFields = (Option<String>, Vec<Vec<u8>>);

/// Reads and feeds rustls until the ClientHello is whole.
async fn read_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    progress: &mut Progress,
    limits: &PeekLimits,
) -> Result<HelloFields, PeekError> {
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let read = progress.bytes.len();
        let room = limits.max_bytes.saturating_sub(read);
        if room == 0 {
            return Err(PeekError::TooLarge {
                max_bytes: limits.max_bytes,
                read,
            });
        }
        let want = room.min(READ_CHUNK);
        let n = match stream.read(&mut chunk[..want]).await {
            Ok(0) => return Err(PeekError::Closed { read }),
            Ok(n) => n.min(want),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(PeekError::Io { source, read }),
        };
        let fresh = &chunk[..n];
        progress.bytes.extend_from_slice(fresh);
        let read = progress.bytes.len();
        if let Some(hello) = feed(&mut progress.acceptor, fresh, read)? {
            return Ok(hello);
        }
    }
}

/// Gives `fresh` to the acceptor, asking after each of its reads whether the
/// ClientHello is whole. `read` is the total read so far, for errors.
fn feed(
    acceptor: &mut Acceptor,
    mut fresh: &[u8],
    read: usize,
) -> Result<Option<HelloFields>, PeekError> {
    let not_tls = |reason: String| PeekError::NotTls { reason, read };
    while !fresh.is_empty() {
        // `accept` must run between reads: rustls only lets its buffer grow
        // past one record once it knows a handshake message spans records.
        match acceptor.read_tls(&mut fresh) {
            Ok(0) => return Err(not_tls("rustls took no more bytes".to_owned())),
            Ok(_) => {}
            Err(err) => return Err(not_tls(err.to_string())),
        }
        match acceptor.accept() {
            Ok(None) => {}
            Ok(Some(accepted)) => {
                let hello = accepted.client_hello();
                let server_name = hello.server_name().map(str::to_owned);
                let alpn = hello
                    .alpn()
                    .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
                    .unwrap_or_default();
                return Ok(Some((server_name, alpn)));
            }
            Err((err, _alert)) => return Err(not_tls(err.to_string())),
        }
    }
    Ok(None)
}
