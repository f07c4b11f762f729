//! The plain-TCP load generator (the app's side of the mesh): the same three
//! measurements against the client sidecar's outbound and against the echo app.
//!
//! The demo echo answers every connection with `<identity>: ` once, at its start,
//! then echoes; so a connection's first answer is that prefix plus the echo, and
//! every later round trip is exactly the message.
//!
//! - [`connection_rate`]: clients each opening connections back to back: connect,
//!   write the message, read prefix + echo, half-close, read until the far end's
//!   close;
//! - [`latency`]: persistent connections (prefix read during set-up), each in a
//!   closed loop of one message out and its echo back;
//! - [`bulk`]: a few connections (prefix read during set-up), each writing large
//!   buffers while reading the echo back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The longest one connection may take (set-up, or a whole connection of the
/// rate measurement): a stuck one counts as an error instead of hanging the run.
const CONNECTION_GUARD: Duration = Duration::from_secs(10);

/// Where the load goes, and the prefix the echo sends first.
#[derive(Clone)]
pub(crate) struct Target {
    /// The address to dial.
    pub(crate) addr: SocketAddr,
    /// `<identity>: `.
    pub(crate) prefix: Arc<[u8]>,
}

impl Target {
    pub(crate) fn new(addr: SocketAddr, identity: &str) -> Target {
        Target {
            addr,
            prefix: format!("{identity}: ").into_bytes().into(),
        }
    }

    /// A connection with `TCP_NODELAY`, its first round trip of `message` done
    /// (the prefix consumed).
    async fn open(&self, message: &[u8]) -> anyhow::Result<TcpStream> {
        let mut tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        tcp.write_all(message).await?;
        let mut first = vec![0; self.prefix.len() + message.len()];
        tcp.read_exact(&mut first)
            .await
            .context("reading the first answer")?;
        if first[..self.prefix.len()] != *self.prefix || first[self.prefix.len()..] != *message {
            bail!(
                "unexpected first answer: {:?}",
                String::from_utf8_lossy(&first)
            );
        }
        Ok(tcp)
    }
}

/// One connection through `addr` answered by `identity`, within a few seconds.
pub(crate) async fn probe(addr: SocketAddr, identity: &str) -> anyhow::Result<()> {
    let target = Target::new(addr, identity);
    tokio::time::timeout(
        Duration::from_secs(5),
        one_connection(&target, &payload(64)),
    )
    .await
    .context("timed out")??;
    Ok(())
}

/// Connects, one round trip (prefix + echo), half-close, reads until the close;
/// returns the time from the connect call to the whole first answer.
async fn one_connection(target: &Target, message: &[u8]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut tcp = target.open(message).await?;
    let answered = started.elapsed();
    tcp.shutdown().await?;
    let mut rest = [0u8; 64];
    while tcp.read(&mut rest).await? != 0 {}
    Ok(answered)
}

/// Result of [`connection_rate`].
pub(crate) struct ConnectionRate {
    /// Per completed connection, nanoseconds from the connect call to the whole
    /// first answer (prefix + echo).
    pub(crate) first_answer: Histogram<u64>,
    /// Connections completed.
    pub(crate) completed: u64,
    /// Connections that failed or passed the guard.
    pub(crate) errors: u64,
    /// The measured interval.
    pub(crate) seconds: f64,
}

impl ConnectionRate {
    /// Completed connections per second.
    pub(crate) fn per_second(&self) -> f64 {
        self.completed as f64 / self.seconds
    }
}

/// `clients` concurrent clients, each opening connections one after another for
/// `duration` (a connection under way at the end is finished and counted).
pub(crate) async fn connection_rate(
    target: &Target,
    clients: usize,
    message: usize,
    duration: Duration,
) -> ConnectionRate {
    let message: Arc<[u8]> = payload(message).into();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let target = target.clone();
        let message = Arc::clone(&message);
        tasks.spawn(async move {
            let mut first_answer = new_histogram();
            let (mut completed, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                match tokio::time::timeout(CONNECTION_GUARD, one_connection(&target, &message))
                    .await
                {
                    Ok(Ok(answered)) => {
                        completed += 1;
                        first_answer.saturating_record(
                            u64::try_from(answered.as_nanos()).unwrap_or(u64::MAX),
                        );
                    }
                    _ => {
                        errors += 1;
                        // Refused, out of ports…: do not spin while it lasts.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            (first_answer, completed, errors)
        });
    }
    let mut first_answer = new_histogram();
    let (mut completed, mut errors) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((part, c, e)) => {
                // Same bounds on both sides: adding cannot fail.
                let _ = first_answer.add(part);
                completed += c;
                errors += e;
            }
            Err(_) => errors += 1,
        }
    }
    ConnectionRate {
        first_answer,
        completed,
        errors,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Result of [`latency`].
pub(crate) struct Latency {
    /// Round-trip times in nanoseconds, over all connections.
    pub(crate) histogram: Histogram<u64>,
    /// Round trips completed, the warm-up's included.
    pub(crate) round_trips: u64,
    /// Connections that failed during the measurement.
    pub(crate) errors: u64,
}

/// `connections` persistent connections, each sending `message` bytes and waiting
/// for exactly that many back, back to back, for `duration`. The first tenth is a
/// warm-up and is not recorded.
pub(crate) async fn latency(
    target: &Target,
    connections: usize,
    message: usize,
    duration: Duration,
) -> anyhow::Result<Latency> {
    let message: Arc<[u8]> = payload(message).into();
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        streams.push(
            tokio::time::timeout(CONNECTION_GUARD, target.open(&message))
                .await
                .context("opening a latency connection: timed out")??,
        );
    }
    let started = Instant::now();
    let record_from = started + duration / 10;
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for mut tcp in streams {
        let message = Arc::clone(&message);
        tasks.spawn(async move {
            let mut histogram = new_histogram();
            let mut back = vec![0u8; message.len()];
            let mut round_trips = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= deadline {
                    return (histogram, round_trips, 0);
                }
                let trip = async {
                    tcp.write_all(&message).await?;
                    tcp.read_exact(&mut back).await?;
                    std::io::Result::Ok(())
                };
                if trip.await.is_err() || *back != *message {
                    return (histogram, round_trips, 1);
                }
                round_trips += 1;
                if sent >= record_from {
                    let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    histogram.saturating_record(nanos);
                }
            }
        });
    }
    let mut histogram = new_histogram();
    let (mut round_trips, mut errors) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((part, done, failed)) => {
                histogram.add(part).context("merging latency histograms")?;
                round_trips += done;
                errors += failed;
            }
            Err(_) => errors += 1,
        }
    }
    Ok(Latency {
        histogram,
        round_trips,
        errors,
    })
}

/// Result of [`bulk`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bulk {
    /// Echoed bytes read back within the interval.
    pub(crate) bytes: u64,
    /// The measured interval.
    pub(crate) seconds: f64,
}

impl Bulk {
    /// Echoed payload in Gbit/s (each of these bytes crossed the path twice).
    pub(crate) fn gbit_per_second(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.seconds / 1e9
    }
}

/// `connections` connections, each writing `chunk`-byte buffers as fast as it can
/// while reading the echo back, for `duration`.
pub(crate) async fn bulk(
    target: &Target,
    connections: usize,
    chunk: usize,
    duration: Duration,
) -> anyhow::Result<Bulk> {
    let first = payload(64);
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        streams.push(
            tokio::time::timeout(CONNECTION_GUARD, target.open(&first))
                .await
                .context("opening a bulk connection: timed out")??,
        );
    }
    let data: Arc<[u8]> = payload(chunk).into();
    let started = Instant::now();
    let deadline = started + duration;
    let mut readers = JoinSet::new();
    let mut writers = JoinSet::new();
    for tcp in streams {
        let (mut read, mut write) = tcp.into_split();
        let data = Arc::clone(&data);
        writers.spawn(async move {
            while Instant::now() < deadline {
                if write.write_all(&data).await.is_err() {
                    return;
                }
            }
        });
        readers.spawn(async move {
            let mut buffer = vec![0u8; 256 * 1024];
            let mut bytes = 0u64;
            loop {
                match tokio::time::timeout_at(deadline, read.read(&mut buffer)).await {
                    Ok(Ok(n)) if n > 0 => bytes += n as u64,
                    Ok(_) | Err(_) => return bytes,
                }
            }
        });
    }
    let mut bytes = 0;
    while let Some(joined) = readers.join_next().await {
        bytes += joined.unwrap_or(0);
    }
    let seconds = started.elapsed().as_secs_f64();
    // Writers blocked on a full pipe at the deadline are dropped with their halves.
    writers.shutdown().await;
    Ok(Bulk { bytes, seconds })
}

/// Nanoseconds from 1 ns to 60 s, 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("constant, valid histogram bounds")
}

/// `len` bytes of a repeating, non-zero pattern.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}
