//! A loopback TCP relay between a component and its dependency that a test can cut
//! (refusing new connections and closing live ones) and restore — a real network
//! outage without touching the shared PostgreSQL server.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running relay from [`FaultProxy::addr`] to an upstream address.
pub struct FaultProxy {
    addr: SocketAddr,
    up: Arc<watch::Sender<bool>>,
    accept_loop: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts relaying 127.0.0.1:(free port) → `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fault proxy");
        let addr = listener.local_addr().expect("fault proxy address");
        let up = Arc::new(watch::channel(true).0);
        let accept_up = up.clone();
        let accept_loop = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*accept_up.borrow() {
                    drop(client);
                    continue;
                }
                let mut cut = accept_up.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    // On a cut both sockets are dropped, closing the relayed connection.
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        FaultProxy {
            addr,
            up,
            accept_loop,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts the link: live connections are closed, new ones refused.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Restores the link.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
        self.cut();
    }
}
