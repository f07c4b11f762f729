//! `meridian dp` as a library: register with the zone CP, run the sidecar on
//! what it sends, serve the admin endpoints, stop cleanly.
//!
//! The CLI's `dp` command only parses flags into [`DpOptions`] and calls
//! [`run`]; everything it does is testable here.

use std::net::SocketAddr;
use std::path::PathBuf;

use meridian_proxy_api::{ClientSettings, ProxyClient, Registration};

use crate::admin::AdminServer;
use crate::error::DataplaneError;
use crate::registration::{DataplaneFlags, registration_from_file, registration_from_flags};
use crate::sidecar::Sidecar;

/// The default `--zone-cp`: a zone CP's data-plane address on this host.
pub const DEFAULT_ZONE_CP: &str = "http://127.0.0.1:5678";

/// Where the sidecar's Dataplane comes from.
#[derive(Debug, Clone)]
pub enum DataplaneSource {
    /// Built from `--mesh`, `--name`, `--service`, `--inbound`, `--outbound`, `--tag`.
    Flags(DataplaneFlags),
    /// Read from `--dataplane-file`.
    File(PathBuf),
}

/// Everything `meridian dp` was given.
#[derive(Debug, Clone)]
pub struct DpOptions {
    /// `--zone-cp`.
    pub zone_cp: String,
    /// `--zone-cp-ca`.
    pub zone_cp_ca: Option<PathBuf>,
    /// The Dataplane.
    pub dataplane: DataplaneSource,
    /// `--admin-addr`.
    pub admin_addr: Option<SocketAddr>,
}

/// [`DpOptions`] resolved: files read, the registration validated.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The zone CP's data-plane URL.
    pub zone_cp: String,
    /// PEM trust for the zone CP.
    pub zone_cp_ca_pem: Option<String>,
    /// What the sidecar registers as.
    pub registration: Registration,
    /// Where to serve `/healthz`, `/readyz`, `/metrics`, if anywhere.
    pub admin_addr: Option<SocketAddr>,
}

impl DpOptions {
    /// Reads the files and validates the Dataplane.
    ///
    /// # Errors
    /// A [`DataplaneError`] naming the file or flag at fault.
    pub fn settings(self) -> Result<RunSettings, DataplaneError> {
        let registration = match &self.dataplane {
            DataplaneSource::Flags(flags) => registration_from_flags(flags)?,
            DataplaneSource::File(path) => registration_from_file(path)?,
        };
        let zone_cp_ca_pem = self
            .zone_cp_ca
            .as_ref()
            .map(|path| {
                std::fs::read_to_string(path).map_err(|source| DataplaneError::ReadFile {
                    path: path.clone(),
                    source,
                })
            })
            .transpose()?;
        Ok(RunSettings {
            zone_cp: self.zone_cp,
            zone_cp_ca_pem,
            registration,
            admin_addr: self.admin_addr,
        })
    }
}

/// A started `meridian dp`: the CP client, the sidecar and the admin server.
pub struct Running {
    client: ProxyClient,
    sidecar: Sidecar,
    admin: Option<AdminServer>,
    summary: String,
}

impl Running {
    /// Spawns the zone CP client, starts the sidecar on its channels and the
    /// admin server. Returns at once: the config arrives later.
    ///
    /// # Errors
    /// [`DataplaneError::Client`] for an unusable `--zone-cp` URL,
    /// [`DataplaneError::AdminBind`] when the admin address is taken.
    pub async fn start(settings: RunSettings) -> Result<Running, DataplaneError> {
        let registration = settings.registration.clone();
        let client = ProxyClient::spawn(ClientSettings {
            zone_cp: settings.zone_cp.clone(),
            zone_cp_ca_pem: settings.zone_cp_ca_pem.clone(),
            registration: settings.registration,
        })?;
        let sidecar = Sidecar::start(client.config(), client.identity());
        let admin = match settings.admin_addr {
            Some(addr) => match AdminServer::start(addr, sidecar.readiness()).await {
                Ok(admin) => Some(admin),
                Err(e) => {
                    sidecar.shutdown().await;
                    client.shutdown().await;
                    return Err(e);
                }
            },
            None => None,
        };
        let summary = format!(
            "meridian dp: dataplane {} in mesh {}, zone CP {}{}",
            registration.name,
            registration.mesh,
            settings.zone_cp,
            admin
                .as_ref()
                .map(|a| format!(", admin on http://{}", a.local_addr()))
                .unwrap_or_default(),
        );
        Ok(Running {
            client,
            sidecar,
            admin,
            summary,
        })
    }

    /// A one-line description for stdout.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// The sidecar.
    pub fn sidecar(&self) -> &Sidecar {
        &self.sidecar
    }

    /// The admin server's address, if one runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminServer::local_addr)
    }

    /// Stops the sidecar (draining connections), the admin server, then the
    /// CP stream (so the CP deregisters the proxy last).
    pub async fn shutdown(self) {
        self.sidecar.shutdown().await;
        if let Some(admin) = self.admin {
            admin.shutdown().await;
        }
        self.client.shutdown().await;
    }
}

/// Runs `meridian dp` until `shutdown` resolves: starts everything, prints
/// the summary line on stdout, waits, stops.
///
/// # Errors
/// As [`Running::start`].
pub async fn run(
    settings: RunSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DataplaneError> {
    let running = Running::start(settings).await?;
    println!("{}", running.summary());
    shutdown.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}
