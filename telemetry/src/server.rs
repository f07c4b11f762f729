//! Running a router: bind, serve until told to stop, then drain in-flight requests.
//! The control planes' REST API and the proxies' admin server both start with
//! [`serve`].
//!
//! Invariant: a [`HttpServer`] owns its serving task; [`HttpServer::shutdown`] stops
//! accepting connections and returns once in-flight requests are done.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The server's address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("binding the HTTP server to {addr}: {source}")]
pub struct BindError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// The OS error.
    pub source: std::io::Error,
}

/// A router being served; [`HttpServer::shutdown`] stops it.
pub struct HttpServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Binds `addr` (port 0 picks a free port) and serves `router` on it in a task.
///
/// # Errors
/// [`BindError`] when `addr` cannot be bound.
pub async fn serve(addr: SocketAddr, router: Router) -> Result<HttpServer, BindError> {
    let bind_error = |source| BindError { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    Ok(HttpServer {
        local_addr,
        shutdown,
        task,
    })
}

impl HttpServer {
    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits for in-flight requests to finish.
    ///
    /// # Errors
    /// The server's I/O error, or its task's panic as an I/O error.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        }
    }
}
