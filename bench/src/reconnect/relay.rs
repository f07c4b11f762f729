//! A TCP relay between a zone CP and global's KDS port that counts the bytes in each
//! direction and can be cut (every connection dropped, new ones closed at once) and
//! restored.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running relay; it stops accepting when dropped.
pub(crate) struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    target: SocketAddr,
    /// Bytes read from global and written to the zone.
    to_zone: AtomicU64,
    /// Bytes read from the zone and written to global.
    to_global: AtomicU64,
    /// `true` while cut.
    cut: watch::Sender<bool>,
    /// The first connection accepted (and relayed) since the last reset.
    first_accept: Mutex<Option<Instant>>,
}

/// Bytes relayed so far, per direction.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bytes {
    /// global → zone.
    pub(crate) to_zone: u64,
    /// zone → global.
    pub(crate) to_global: u64,
}

impl std::ops::Sub for Bytes {
    type Output = Bytes;
    fn sub(self, earlier: Bytes) -> Bytes {
        Bytes {
            to_zone: self.to_zone.saturating_sub(earlier.to_zone),
            to_global: self.to_global.saturating_sub(earlier.to_global),
        }
    }
}

impl Relay {
    /// Listens on a free loopback port and relays every connection to `target`.
    pub(crate) async fn start(target: SocketAddr) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            to_zone: AtomicU64::new(0),
            to_global: AtomicU64::new(0),
            cut: watch::channel(false).0,
            first_accept: Mutex::new(None),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Relay {
            addr,
            shared,
            accept,
        })
    }

    /// Where zones dial.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes relayed so far.
    pub(crate) fn bytes(&self) -> Bytes {
        Bytes {
            to_zone: self.shared.to_zone.load(Ordering::SeqCst),
            to_global: self.shared.to_global.load(Ordering::SeqCst),
        }
    }

    /// Drops every connection and closes new ones as soon as they are accepted.
    pub(crate) fn cut(&self) {
        self.shared.cut.send_replace(true);
    }

    /// Relays again; [`Relay::first_accept`] then reports the first new connection.
    pub(crate) fn restore(&self) {
        self.reset_first_accept();
        self.shared.cut.send_replace(false);
    }

    /// Forgets the first accepted connection, so the next one is reported.
    pub(crate) fn reset_first_accept(&self) {
        if let Ok(mut first) = self.shared.first_accept.lock() {
            *first = None;
        }
    }

    /// When the first connection since the last reset or restore was accepted.
    pub(crate) fn first_accept(&self) -> Option<Instant> {
        self.shared.first_accept.lock().ok().and_then(|f| *f)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.cut.send_replace(true);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *shared.cut.borrow() {
            // Refused: closed before a single byte is relayed.
            drop(client);
            continue;
        }
        if let Ok(mut first) = shared.first_accept.lock() {
            first.get_or_insert_with(Instant::now);
        }
        tokio::spawn(relay(client, shared.clone()));
    }
}

async fn relay(client: TcpStream, shared: Arc<Shared>) {
    let mut cut = shared.cut.subscribe();
    let Ok(upstream) = TcpStream::connect(shared.target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let both = async {
        tokio::join!(
            pump(upstream_read, client_write, &shared.to_zone),
            pump(client_read, upstream_write, &shared.to_global),
        )
    };
    // On a cut both sockets are dropped: each end sees its connection close.
    tokio::select! {
        _ = both => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, counter: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                counter.fetch_add(n as u64, Ordering::SeqCst);
            }
        }
    }
    let _ = to.shutdown().await;
}
