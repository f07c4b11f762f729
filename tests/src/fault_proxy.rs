//! A loopback TCP relay between a component and its dependency that a test can cut
//! (refusing new connections and closing live ones) and restore, or slow down (the
//! upstream→client direction delivered at a few bytes per second) — real network
//! faults without touching the shared PostgreSQL server or needing root.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, copy_bidirectional};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the link behaves now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    up: bool,
    /// Bytes per second upstream→client; `None` for full speed.
    downstream_rate: Option<u64>,
}

/// A running relay from [`FaultProxy::addr`] to an upstream address.
pub struct FaultProxy {
    addr: SocketAddr,
    link: Arc<watch::Sender<Link>>,
    accept_loop: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts relaying 127.0.0.1:(free port) → `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fault proxy");
        let addr = listener.local_addr().expect("fault proxy address");
        let link = Arc::new(
            watch::channel(Link {
                up: true,
                downstream_rate: None,
            })
            .0,
        );
        let accept_link = link.clone();
        let accept_loop = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !accept_link.borrow().up {
                    drop(client);
                    continue;
                }
                let mut cut = accept_link.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let relay = relay(client, server, cut.clone());
                    // On a cut both sockets are dropped, closing the relayed connection.
                    tokio::select! {
                        _ = relay => {}
                        _ = cut.wait_for(|link| !link.up) => {}
                    }
                });
            }
        });
        FaultProxy {
            addr,
            link,
            accept_loop,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts the link: live connections are closed, new ones refused.
    pub fn cut(&self) {
        self.link.send_modify(|link| link.up = false);
    }

    /// Restores the link.
    pub fn restore(&self) {
        self.link.send_modify(|link| link.up = true);
    }

    /// Delivers upstream→client bytes at `bytes_per_second` (`None`: full speed) on
    /// connections made from now on; the rate of a throttled connection follows
    /// later changes.
    pub fn throttle_downstream(&self, bytes_per_second: Option<u64>) {
        self.link
            .send_modify(|link| link.downstream_rate = bytes_per_second);
    }
}

/// Relays both ways; the upstream→client direction honours the link's rate.
async fn relay(mut client: TcpStream, mut server: TcpStream, link: watch::Receiver<Link>) {
    // A connection keeps the speed it started with: switching would drop the bytes
    // buffered inside the copy.
    if link.borrow().downstream_rate.is_none() {
        let _ = copy_bidirectional(&mut client, &mut server).await;
        return;
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upward = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let downward = async {
        // Ten slices a second, each at most a tenth of the rate.
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let rate = link.borrow().downstream_rate;
            if !link.borrow().up {
                break;
            }
            let slice = rate.map_or(buf.len(), |r| usize::try_from(r / 10).unwrap_or(1).max(1));
            let slice = slice.min(buf.len());
            let n = match server_read.read(&mut buf[..slice]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            if rate.is_some() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upward, downward);
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
        self.cut();
    }
}
