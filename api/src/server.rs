//! Running a router: bind, serve until told to stop, then drain in-flight requests.
//! Both control planes start their REST API with [`serve`].

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The API address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("binding the REST API to {addr}: {source}")]
pub struct BindError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// The OS error.
    pub source: std::io::Error,
}

/// A router being served; [`ApiServer::shutdown`] stops it.
pub struct ApiServer {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Binds `addr` (port 0 picks a free port) and serves `router` on it in a task.
pub async fn serve(addr: SocketAddr, router: Router) -> Result<ApiServer, BindError> {
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
    Ok(ApiServer {
        local_addr,
        shutdown,
        task,
    })
}

impl ApiServer {
    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits for in-flight requests to finish.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        }
    }
}
