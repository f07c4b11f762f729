//! [`bind_and_serve`] and [`serve`]: a whole zone proxy process — the config client, the [`SniProxy`]
//! and the optional [`AdminServer`] — until shutdown. `meridian zone-ingress` and
//! `meridian zone-egress` differ only in the [`Registration`] they pass.
//!
//! [`Registration`]: meridian_proxy_api::Registration

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use meridian_proxy_api::{ClientError, ClientSettings, ProxyClient, Registration};
use meridian_telemetry::BindError;
use tokio::net::TcpListener;

use crate::admin::AdminServer;
use crate::proxy::{SniProxy, StartError};
use crate::settings::SniProxySettings;

/// Why a zone proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The proxy's listen address could not be bound.
    #[error("binding the zone proxy listener on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The config client refused its settings (URL, CA).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The admin address could not be bound.
    #[error("admin server: {0}")]
    Admin(#[from] BindError),
    /// The proxy could not start on the listener.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Binds the proxy's listener on `addr` (port 0 picks a free port; read the one
/// chosen from the listener to register it).
///
/// # Errors
/// [`RunError::Bind`] when the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

/// Binds `listen`, registers with the zone CP at `zone_cp` what
/// `registration` makes of the bound address, and [`serve`]s with the default
/// [`SniProxySettings`] until `shutdown` completes: a whole zone ingress or
/// egress.
///
/// # Errors
/// As [`serve`], and [`RunError::Bind`] when `listen` cannot be bound.
pub async fn bind_and_serve(
    listen: SocketAddr,
    zone_cp: String,
    zone_cp_ca_pem: Option<String>,
    admin_addr: Option<SocketAddr>,
    registration: impl FnOnce(SocketAddr) -> Registration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let listener = bind(listen).await?;
    let bound = listener.local_addr().map_err(|source| RunError::Bind {
        addr: listen,
        source,
    })?;
    let client = ClientSettings {
        zone_cp,
        zone_cp_ca_pem,
        registration: registration(bound),
    };
    serve(
        listener,
        client,
        admin_addr,
        SniProxySettings::default(),
        shutdown,
    )
    .await
}

/// Registers with the zone CP as `client` says, routes the connections of
/// `listener` by the configs it receives, serves the admin endpoints on
/// `admin_addr` if given, and stops all of it when `shutdown` completes.
///
/// # Errors
/// [`RunError`] when something cannot start; once running it returns `Ok` at
/// shutdown (a lost zone CP is retried, not an error).
pub async fn serve(
    listener: TcpListener,
    client: ClientSettings,
    admin_addr: Option<SocketAddr>,
    settings: SniProxySettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    crate::telemetry::describe();
    meridian_relay::telemetry::describe();
    let name = client.registration.name.clone();
    let kind = client.registration.kind;
    let zone_cp = client.zone_cp.clone();
    let client = ProxyClient::spawn(client)?;
    let admin = match admin_addr {
        Some(addr) => match AdminServer::start(addr, client.config()).await {
            Ok(admin) => Some(admin),
            Err(error) => {
                client.shutdown().await;
                return Err(error.into());
            }
        },
        None => None,
    };
    let proxy = match SniProxy::start(listener, client.config(), settings) {
        Ok(proxy) => proxy,
        Err(error) => {
            stop_admin(admin).await;
            client.shutdown().await;
            return Err(error.into());
        }
    };
    tracing::info!(%name, listen = %proxy.local_addr(), "zone proxy running");
    // The one line an operator (and the end-to-end tests) wait for.
    println!(
        "meridian {}: {name} listening on {}, config from {zone_cp}",
        kind_label(kind),
        proxy.local_addr()
    );
    shutdown.await;
    tracing::info!(%name, "zone proxy shutting down");
    proxy.shutdown().await;
    client.shutdown().await;
    stop_admin(admin).await;
    Ok(())
}

async fn stop_admin(admin: Option<AdminServer>) {
    if let Some(admin) = admin
        && let Err(error) = admin.shutdown().await
    {
        tracing::warn!(%error, "admin server ended with an error");
    }
}

fn kind_label(kind: meridian_proxy_api::ProxyKind) -> &'static str {
    match kind {
        meridian_proxy_api::ProxyKind::Egress => "zone-egress",
        _ => "zone-ingress",
    }
}
