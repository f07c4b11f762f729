//! The load generator: the same three measurements against any path.
//!
//! - [`connection_rate`]: clients each opening connections back to back, with a
//!   full TLS handshake, one small request/response and a clean close.
//! - [`latency`]: persistent connections, each in a closed loop of one small
//!   message out and its echo back.
//! - [`bulk`]: a few connections, each writing large buffers while reading the
//!   echo back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The longest one connection of [`connection_rate`] may take, or one connection
/// setup elsewhere: a stuck connection counts as an error instead of hanging the run.
const CONNECTION_GUARD: Duration = Duration::from_secs(10);

/// Where the load goes: an address (the upstream or a proxy in front of it) and
/// how to speak TLS to the upstream behind it.
#[derive(Clone)]
pub struct Target {
    /// The address to dial.
    pub addr: SocketAddr,
    /// The client TLS config (full handshakes only).
    pub connector: TlsConnector,
    /// The SNI sent, which the proxies route by.
    pub name: ServerName<'static>,
}

impl Target {
    /// A TLS connection with `TCP_NODELAY`, handshake done.
    pub async fn open(&self) -> anyhow::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(self.connector.connect(self.name.clone(), tcp).await?)
    }

    /// One connection with one round trip of `message`, closed cleanly; retried
    /// until `within` passes (a proxy that is still starting refuses).
    pub async fn probe(&self, message: &[u8], within: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + within;
        loop {
            let attempt =
                tokio::time::timeout(CONNECTION_GUARD, one_connection(self, message)).await;
            match attempt {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) if Instant::now() >= until => {
                    return Err(error.context(format!("no echo through {}", self.addr)));
                }
                Err(_) if Instant::now() >= until => {
                    bail!("no echo through {}: timed out", self.addr)
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// Connects, sends `message`, reads its echo, sends close_notify and FIN and reads
/// until the upstream's close.
async fn one_connection(target: &Target, message: &[u8]) -> anyhow::Result<()> {
    let mut tls = target.open().await?;
    round_trip(&mut tls, message, &mut vec![0; message.len()]).await?;
    tls.shutdown().await?;
    let mut rest = [0u8; 64];
    while tls.read(&mut rest).await? != 0 {}
    Ok(())
}

async fn round_trip(
    tls: &mut TlsStream<TcpStream>,
    message: &[u8],
    back: &mut [u8],
) -> anyhow::Result<()> {
    tls.write_all(message).await?;
    tls.flush().await?;
    tls.read_exact(back).await?;
    if back != message {
        bail!("the echo differs from the message");
    }
    Ok(())
}

/// Result of [`connection_rate`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectionRate {
    /// Connections completed (handshake, round trip, close).
    pub completed: u64,
    /// Connections that failed or passed the guard.
    pub errors: u64,
    /// The measured interval.
    pub seconds: f64,
}

impl ConnectionRate {
    /// Completed connections per second.
    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.seconds
    }
}

/// `clients` concurrent clients, each opening connections one after another for
/// `duration` (a connection under way at the end is finished and counted).
pub async fn connection_rate(
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
            let (mut completed, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                match tokio::time::timeout(CONNECTION_GUARD, one_connection(&target, &message))
                    .await
                {
                    Ok(Ok(())) => completed += 1,
                    _ => {
                        errors += 1;
                        // Refused, out of ports…: do not spin while it lasts.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            (completed, errors)
        });
    }
    let (mut completed, mut errors) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (c, e) = joined.unwrap_or((0, 1));
        completed += c;
        errors += e;
    }
    ConnectionRate {
        completed,
        errors,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Result of [`latency`].
pub struct Latency {
    /// Round-trip times in nanoseconds, over all connections.
    pub histogram: Histogram<u64>,
    /// Round trips completed, the warm-up's included (the proxy's CPU time covers
    /// them all).
    pub round_trips: u64,
    /// Connections that failed during the measurement.
    pub errors: u64,
}

/// `connections` persistent connections, each sending `message` bytes and waiting
/// for the echo, back to back, for `duration`. The first tenth is a warm-up and is
/// not recorded.
pub async fn latency(
    target: &Target,
    connections: usize,
    message: usize,
    duration: Duration,
) -> anyhow::Result<Latency> {
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        streams.push(
            tokio::time::timeout(CONNECTION_GUARD, target.open())
                .await
                .context("opening a latency connection: timed out")??,
        );
    }
    let message: Arc<[u8]> = payload(message).into();
    let started = Instant::now();
    let record_from = started + duration / 10;
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for mut tls in streams {
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
                if round_trip(&mut tls, &message, &mut back).await.is_err() {
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
pub struct Bulk {
    /// Echoed bytes read back by the clients within the interval.
    pub bytes: u64,
    /// The measured interval.
    pub seconds: f64,
}

impl Bulk {
    /// Echoed payload in Gbit/s (each of these bytes crossed the path twice).
    pub fn gbit_per_second(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.seconds / 1e9
    }
}

/// `connections` connections, each writing `chunk`-byte buffers as fast as it can
/// while reading the echo back, for `duration`.
pub async fn bulk(
    target: &Target,
    connections: usize,
    chunk: usize,
    duration: Duration,
) -> anyhow::Result<Bulk> {
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        streams.push(
            tokio::time::timeout(CONNECTION_GUARD, target.open())
                .await
                .context("opening a bulk connection: timed out")??,
        );
    }
    let data: Arc<[u8]> = payload(chunk).into();
    let started = Instant::now();
    let deadline = started + duration;
    let mut readers = JoinSet::new();
    let mut writers = JoinSet::new();
    for tls in streams {
        let (mut read, mut write) = tokio::io::split(tls);
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
