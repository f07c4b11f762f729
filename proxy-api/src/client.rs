//! The proxy side of the config stream: register, keep the latest config and
//! certificate, reconnect when the zone control plane goes away.
//!
//! [`ProxyClient::spawn`] runs one task that connects to the zone CP, sends the
//! proxy's [`Registration`], and publishes what it receives on two `watch`
//! channels: the latest accepted [`ProxyConfig`] and the latest
//! [`WorkloadIdentity`]. Proxies read those and never block on the CP: when
//! the stream breaks, the last config and certificate stay in force while the
//! task reconnects (exponential backoff from 100 ms to 10 s, full jitter:
//! [`meridian_grpc_client::Backoff`]).
//!
//! A sidecar whose mesh has mTLS on asks for a certificate as soon as its
//! config says so, with a fresh key each time, and again at
//! [`meridian_identity::renew_at`] (two thirds into the lifetime); new
//! connections use the new certificate, established ones keep theirs.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meridian_grpc_client::{Backoff, ChannelConfig, ChannelError};
use meridian_identity::{IssuedCert, MeshTrust, WorkloadId, WorkloadKey};
use meridian_proto::dp::control_message::Message as FromCp;
use meridian_proto::dp::dataplane_config_client::DataplaneConfigClient;
use meridian_proto::dp::proxy_message::Message as ToCp;
use meridian_proto::dp::{
    Ack, CertificateRequest, ControlMessage, Hello, Nack, ProxyKind, ProxyMessage,
};
use meridian_proto::fragment::{self, FragmentError, Reassembler};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::config::{ENDPOINT_UPDATES, EndpointChanges, Endpoints, ProxyConfig};

/// Retry delay after the CP refuses a CSR.
const CSR_RETRY: Duration = Duration::from_secs(5);

/// What a proxy tells the zone CP about itself.
#[derive(Debug, Clone)]
pub struct Registration {
    /// What kind of proxy it is.
    pub kind: ProxyKind,
    /// The mesh (sidecars); empty for zone proxies.
    pub mesh: String,
    /// The proxy's name, unique in its mesh (sidecars) or zone.
    pub name: String,
    /// Its `Dataplane`, `ZoneIngress` or `ZoneEgress` document.
    pub resource: serde_json::Value,
}

/// Where and how to reach the zone CP.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The zone CP's data-plane URL (`--zone-cp`): `https://…`, or `http://`
    /// for loopback addresses only. Several, comma-separated, for the replicas of
    /// a zone CP: the client moves to the next when a connection fails or ends.
    pub zone_cp: String,
    /// PEM trust for the zone CP's certificate (`--zone-cp-ca`).
    pub zone_cp_ca_pem: Option<String>,
    /// The registration sent on every (re)connect.
    pub registration: Registration,
}

/// A certificate with its key and the mesh trust: what mTLS needs.
#[derive(Debug)]
pub struct WorkloadIdentity {
    /// The issued certificate.
    pub cert: IssuedCert,
    /// Its private key (generated here, never sent).
    pub key: WorkloadKey,
    /// The mesh CA bundle peers must chain to.
    pub trust: MeshTrust,
}

/// Why the client could not talk to the zone CP.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The settings are unusable (bad URL, plain HTTP to a remote host, bad CA).
    #[error("zone CP settings: {0}")]
    Settings(String),
    /// Dialling failed: a bad URL or CA, or no connection.
    #[error("zone CP: {0}")]
    Connect(#[from] ChannelError),
    /// The CP ended or broke the stream.
    #[error("config stream: {0}")]
    Stream(#[from] tonic::Status),
    /// The CP closed the stream.
    #[error("the zone CP closed the config stream")]
    Closed,
    /// The CP's fragments did not make a message (a protocol violation).
    #[error("config stream: {0}")]
    Fragment(#[from] FragmentError),
}

/// A running client: the latest config and identity, and the task behind them.
pub struct ProxyClient {
    config: watch::Receiver<Option<Arc<ProxyConfig>>>,
    identity: watch::Receiver<Option<Arc<WorkloadIdentity>>>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ProxyClient {
    /// Checks `settings` and starts the client task.
    ///
    /// # Errors
    /// [`ClientError::Settings`] for a URL that is not `https://`, or not
    /// `http://` to a loopback address.
    pub fn spawn(settings: ClientSettings) -> Result<ProxyClient, ClientError> {
        let urls = zone_cp_urls(&settings.zone_cp);
        if urls.is_empty() {
            return Err(ClientError::Settings("--zone-cp: no URL given".to_owned()));
        }
        for url in &urls {
            check_url(url)?;
        }
        let (config_tx, config) = watch::channel(None);
        let (identity_tx, identity) = watch::channel(None);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(run(settings, config_tx, identity_tx, shutdown_rx));
        Ok(ProxyClient {
            config,
            identity,
            shutdown,
            task,
        })
    }

    /// The latest accepted config (`None` until the first arrives).
    pub fn config(&self) -> watch::Receiver<Option<Arc<ProxyConfig>>> {
        self.config.clone()
    }

    /// The latest workload identity (`None` until a certificate arrives).
    pub fn identity(&self) -> watch::Receiver<Option<Arc<WorkloadIdentity>>> {
        self.identity.clone()
    }

    /// Ends the stream (the CP then removes the registration) and waits.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// The URLs of `--zone-cp` (comma-separated).
fn zone_cp_urls(zone_cp: &str) -> Vec<&str> {
    zone_cp
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

fn check_url(url: &str) -> Result<(), ClientError> {
    meridian_grpc_client::check_url(url)
        .map_err(|why| ClientError::Settings(format!("--zone-cp {url:?}: {why}")))
}

async fn connect(
    settings: &ClientSettings,
    url: &str,
) -> Result<DataplaneConfigClient<Channel>, ClientError> {
    let trust = settings.zone_cp_ca_pem.as_ref();
    let channel = ChannelConfig::new(url).trust(trust).connect().await?;
    Ok(DataplaneConfigClient::new(channel))
}

async fn run(
    settings: ClientSettings,
    config_tx: watch::Sender<Option<Arc<ProxyConfig>>>,
    identity_tx: watch::Sender<Option<Arc<WorkloadIdentity>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::default();
    let urls = zone_cp_urls(&settings.zone_cp);
    let mut attempt = 0usize;
    loop {
        let url = urls[attempt % urls.len()];
        attempt += 1;
        let mut session = Session {
            settings: &settings,
            url,
            config_tx: &config_tx,
            identity_tx: &identity_tx,
            pending_key: None,
            renew_at: None,
            applied: None,
        };
        let started = tokio::time::Instant::now();
        match session.run(&mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                metrics::gauge!("meridian_proxy_cp_connected").set(0.0);
                tracing::warn!(error = %e, zone_cp = %url, "config stream ended");
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff.reset();
        }
        // Another replica is tried at once; the backoff applies once per round.
        if !attempt.is_multiple_of(urls.len()) {
            continue;
        }
        let jittered = backoff.next_delay();
        tracing::info!(retry_in = ?jittered, "reconnecting to the zone CP");
        tokio::select! {
            _ = tokio::time::sleep(jittered) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One connection's worth of state.
struct Session<'a> {
    settings: &'a ClientSettings,
    /// The zone CP replica this session dials.
    url: &'a str,
    config_tx: &'a watch::Sender<Option<Arc<ProxyConfig>>>,
    identity_tx: &'a watch::Sender<Option<Arc<WorkloadIdentity>>>,
    /// The key of the CSR in flight, with the identity it asked for.
    pending_key: Option<(WorkloadId, WorkloadKey)>,
    /// When to send the next CSR (`None`: no certificate needed yet).
    renew_at: Option<SystemTime>,
    /// The version of the config this stream last applied (endpoint updates
    /// name the version they apply to; versions are per stream).
    applied: Option<u64>,
}

impl Session<'_> {
    async fn run(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<(), ClientError> {
        let mut client = connect(self.settings, self.url).await?;
        let (tx, rx) = mpsc::channel::<ProxyMessage>(16);
        let reg = &self.settings.registration;
        let hello = Hello {
            kind: reg.kind as i32,
            mesh: reg.mesh.clone(),
            name: reg.name.clone(),
            resource: serde_json::to_vec(&reg.resource).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            features: vec![ENDPOINT_UPDATES.to_owned(), fragment::FEATURE.to_owned()],
        };
        // The channel is fresh and has room: this cannot fail.
        let _ = tx.try_send(message(ToCp::Hello(hello)));
        let mut inbound = client.stream(ReceiverStream::new(rx)).await?.into_inner();
        let mut fragments = Reassembler::default();
        metrics::gauge!("meridian_proxy_cp_connected").set(1.0);
        tracing::info!(zone_cp = %self.url, name = %reg.name, "registered with the zone CP");
        // A reconnect re-requests the certificate if one is due or in use.
        if self.identity_tx.borrow().is_some() {
            self.renew_at = Some(SystemTime::now());
        }
        loop {
            let renew_in = self
                .renew_at
                .filter(|_| self.pending_key.is_none())
                .map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
            tokio::select! {
                msg = inbound.message() => {
                    let Some(msg) = msg? else { return Err(ClientError::Closed) };
                    let Some(msg) = fragments.push(msg)? else { continue };
                    if let Some(reply) = self.handle(msg)
                        && tx.send(reply).await.is_err()
                    {
                        return Err(ClientError::Closed);
                    }
                }
                () = sleep_or_never(renew_in) => {
                    if let Some(csr) = self.new_csr()
                        && tx.send(csr).await.is_err()
                    {
                        return Err(ClientError::Closed);
                    }
                }
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    fn handle(&mut self, msg: ControlMessage) -> Option<ProxyMessage> {
        match msg.message? {
            FromCp::Config(c) => Some(self.on_config(c.version, &c.config)),
            FromCp::Endpoints(u) => Some(self.on_endpoints(u)),
            FromCp::Certificate(c) => {
                self.on_certificate(c);
                None
            }
            // The reassembler never yields one.
            FromCp::Fragment(_) => None,
            FromCp::Error(e) => {
                tracing::warn!(detail = %e.detail, "the zone CP refused a request");
                if self.pending_key.take().is_some() {
                    self.renew_at = Some(SystemTime::now() + CSR_RETRY);
                }
                None
            }
        }
    }

    fn on_config(&mut self, version: u64, bytes: &[u8]) -> ProxyMessage {
        let parsed = serde_json::from_slice::<ProxyConfig>(bytes)
            .map_err(|e| format!("config version {version} is not a valid ProxyConfig: {e}"))
            .and_then(|c| self.check_kind(c));
        match parsed {
            Ok(config) => {
                if let ProxyConfig::Sidecar(s) = &config
                    && s.mtls
                    && self.renew_at.is_none()
                    && self.pending_key.is_none()
                {
                    self.renew_at = Some(SystemTime::now());
                }
                tracing::info!(version, "config applied");
                metrics::counter!("meridian_proxy_config_updates_total", "result" => "ack")
                    .increment(1);
                self.config_tx.send_replace(Some(Arc::new(config)));
                self.applied = Some(version);
                message(ToCp::Ack(Ack { version }))
            }
            Err(detail) => {
                tracing::warn!(version, %detail, "config rejected");
                metrics::counter!("meridian_proxy_config_updates_total", "result" => "nack")
                    .increment(1);
                message(ToCp::Nack(Nack { version, detail }))
            }
        }
    }

    /// Applies new endpoint lists on top of the config of `base_version`.
    fn on_endpoints(&mut self, u: meridian_proto::dp::EndpointUpdate) -> ProxyMessage {
        let version = u.version;
        let result = self.patched(&u).map(|config| {
            self.config_tx.send_replace(Some(Arc::new(config)));
            self.applied = Some(version);
        });
        match result {
            Ok(()) => {
                tracing::debug!(
                    version,
                    clusters = u.clusters.len(),
                    "endpoint update applied"
                );
                metrics::counter!("meridian_proxy_config_updates_total", "result" => "ack")
                    .increment(1);
                message(ToCp::Ack(Ack { version }))
            }
            Err(detail) => {
                tracing::warn!(version, %detail, "endpoint update rejected");
                metrics::counter!("meridian_proxy_config_updates_total", "result" => "nack")
                    .increment(1);
                message(ToCp::Nack(Nack { version, detail }))
            }
        }
    }

    /// The current config with `u` applied.
    fn patched(&self, u: &meridian_proto::dp::EndpointUpdate) -> Result<ProxyConfig, String> {
        if self.applied != Some(u.base_version) {
            return Err(format!(
                "endpoint update {} applies to config version {}, but this proxy holds {:?}",
                u.version, u.base_version, self.applied
            ));
        }
        let mut changes = EndpointChanges::new();
        for c in &u.clusters {
            let endpoints: Endpoints = serde_json::from_slice(&c.endpoints)
                .map_err(|e| format!("endpoints of cluster {:?} are not valid: {e}", c.sni))?;
            changes.insert(c.sni.clone(), endpoints);
        }
        let current = self.config_tx.borrow().clone();
        let mut config = current
            .as_deref()
            .cloned()
            .ok_or("endpoint update before any config")?;
        config
            .apply_endpoint_changes(&changes)
            .map_err(|e| e.to_string())?;
        Ok(config)
    }

    fn check_kind(&self, config: ProxyConfig) -> Result<ProxyConfig, String> {
        let matches = matches!(
            (&config, self.settings.registration.kind),
            (ProxyConfig::Sidecar(_), ProxyKind::Sidecar)
                | (ProxyConfig::Ingress(_), ProxyKind::Ingress)
                | (ProxyConfig::Egress(_), ProxyKind::Egress)
        );
        if matches {
            Ok(config)
        } else {
            Err(format!(
                "config is for another kind of proxy than {:?}",
                self.settings.registration.kind
            ))
        }
    }

    /// A CSR for the identity the current config implies, with a fresh key.
    fn new_csr(&mut self) -> Option<ProxyMessage> {
        let config = self.config_tx.borrow().clone();
        let Some(ProxyConfig::Sidecar(s)) = config.as_deref() else {
            self.renew_at = None;
            return None;
        };
        let Some(service) = s.inbounds.first().map(|i| i.service.clone()) else {
            self.renew_at = None;
            return None;
        };
        let generated = WorkloadId::new(s.mesh.clone(), service)
            .and_then(|id| WorkloadKey::generate(&id).map(|(key, csr)| (id, key, csr)));
        match generated {
            Ok((id, key, csr_pem)) => {
                tracing::info!(identity = %id, "requesting a certificate");
                self.pending_key = Some((id, key));
                Some(message(ToCp::CertificateRequest(CertificateRequest {
                    csr_pem,
                })))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot build a CSR");
                self.renew_at = Some(SystemTime::now() + CSR_RETRY);
                None
            }
        }
    }

    fn on_certificate(&mut self, c: meridian_proto::dp::Certificate) {
        let Some((id, key)) = self.pending_key.take() else {
            tracing::warn!("certificate received without a request in flight; ignored");
            return;
        };
        let cert = IssuedCert {
            id: id.clone(),
            cert_chain_pem: c.cert_pem,
            issued_at: unix_time(c.issued_at_unix),
            not_after: unix_time(c.not_after_unix),
        };
        match MeshTrust::from_pem(id.mesh(), &c.ca_pem) {
            Ok(trust) => {
                let renew = cert.renew_at();
                tracing::info!(identity = %id, expires = ?c.not_after_unix, "certificate installed");
                metrics::counter!("meridian_proxy_certificates_total").increment(1);
                self.renew_at = Some(renew);
                self.identity_tx
                    .send_replace(Some(Arc::new(WorkloadIdentity { cert, key, trust })));
            }
            Err(e) => {
                tracing::warn!(error = %e, "certificate bundle rejected");
                self.renew_at = Some(SystemTime::now() + CSR_RETRY);
            }
        }
    }
}

fn message(m: ToCp) -> ProxyMessage {
    ProxyMessage { message: Some(m) }
}

fn unix_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:5678",
            "http://localhost:5678",
            "http://[::1]:5678",
            "https://cp.example:5678",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:5678",
            "http://cp.example",
            "ftp://x",
            "127.0.0.1:5678",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
