//! [`Listeners`]: one TCP listener per configured inbound and outbound address.
//!
//! A listener is keyed by the address the config names and does not know
//! whether it serves an inbound or an outbound: for each accepted connection
//! it looks its address up in the latest [`Snapshot`](crate::state::Snapshot)
//! and hands the connection to [`inbound`](crate::inbound) or
//! [`outbound`](crate::outbound). So reconciling a new config only binds the
//! addresses that appeared and closes those that went away; everything else
//! keeps its socket, and connections already accepted run on as their own
//! tasks until they end (or the sidecar shuts down).
//!
//! A configured port 0 binds a free port; [`Listeners::bound`] reports it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::Shared;
use crate::telemetry::{LISTENER_BIND_FAILURES, LISTENERS};

/// Pause after a failed `accept` (e.g. out of file descriptors), so a
/// persistent error does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Where connection tasks run, so shutdown can drain or end them.
#[derive(Clone)]
pub(crate) struct Connections {
    /// Every connection task.
    pub(crate) tracker: TaskTracker,
    /// Ends every connection at once.
    pub(crate) cancel: CancellationToken,
}

impl Connections {
    pub(crate) fn new() -> Self {
        Self {
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
        }
    }

    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = work => {}
                () = cancel.cancelled() => {}
            }
        });
    }
}

struct Running {
    bound: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The open listeners of one sidecar.
pub(crate) struct Listeners {
    open: HashMap<SocketAddr, Running>,
    shared: Arc<Shared>,
    connections: Connections,
}

impl Listeners {
    pub(crate) fn new(shared: Arc<Shared>, connections: Connections) -> Self {
        Self {
            open: HashMap::new(),
            shared,
            connections,
        }
    }

    /// Configured address → bound address, for every open listener.
    pub(crate) fn bound(&self) -> BTreeMap<SocketAddr, SocketAddr> {
        self.open.iter().map(|(k, r)| (*k, r.bound)).collect()
    }

    /// Opens listeners on `wanted` addresses not open yet and closes those not
    /// wanted any more. A bind failure is logged and left for the next call.
    pub(crate) async fn reconcile(&mut self, wanted: &BTreeSet<SocketAddr>) {
        let gone: Vec<SocketAddr> = self
            .open
            .keys()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(running) = self.open.remove(&addr) {
                running.stop.cancel();
                // Waiting for the accept loop means the socket is closed when
                // this returns, so a following bind of the same port succeeds.
                let _ = running.task.await;
                tracing::info!(%addr, "listener closed");
            }
        }
        for &addr in wanted {
            if self.open.contains_key(&addr) {
                continue;
            }
            match bind(addr).await {
                Ok((listener, bound)) => {
                    let stop = CancellationToken::new();
                    let task = tokio::spawn(accept_loop(
                        listener,
                        addr,
                        Arc::clone(&self.shared),
                        self.connections.clone(),
                        stop.clone(),
                    ));
                    tracing::info!(%addr, %bound, "listener open");
                    self.open.insert(addr, Running { bound, stop, task });
                }
                Err(e) => {
                    tracing::error!(%addr, error = %e,
                        "cannot bind the listener; retried on the next config");
                    metrics::counter!(LISTENER_BIND_FAILURES, "address" => addr.to_string())
                        .increment(1);
                }
            }
        }
        metrics::gauge!(LISTENERS).set(self.open.len() as f64);
    }

    /// Closes every listener.
    pub(crate) async fn close_all(&mut self) {
        self.reconcile(&BTreeSet::new()).await;
    }
}

async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    connections: Connections,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, client)) => dispatch(stream, client, addr, &shared, &connections),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "accept failed");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => {}
                }
            }
        }
    }
}

fn dispatch(
    stream: TcpStream,
    client: SocketAddr,
    addr: SocketAddr,
    shared: &Arc<Shared>,
    connections: &Connections,
) {
    // Proxied bytes are forwarded as they come; Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    let snapshot = shared.snapshot();
    if let Some(inbound) = snapshot.inbounds.get(&addr) {
        connections.spawn(crate::inbound::serve(
            stream,
            client,
            Arc::clone(inbound),
            snapshot.mtls,
            Arc::clone(shared),
        ));
    } else if let Some(outbound) = snapshot.outbounds.get(&addr) {
        connections.spawn(crate::outbound::serve(
            stream,
            client,
            Arc::clone(outbound),
            snapshot.mesh.clone(),
            snapshot.mtls,
            Arc::clone(shared),
        ));
    } else {
        // The address left the config between the accept and this lookup.
        tracing::debug!(%addr, %client, "connection to a listener being removed; closed");
    }
}
