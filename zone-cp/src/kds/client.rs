//! Connecting to global and staying connected.
//!
//! Global may run as several replicas on one database; the zone knows their
//! addresses ([`KdsClientConfig::global_urls`]) and dials one at a time, starting with
//! the first. After a failed connect or an ended session it moves on to the next, so
//! a dead replica costs one attempt. Every replica resumes the zone from the same
//! positions: the zone keeps the global revision it applied in its store, global
//! keeps the zone revision it applied in the shared database.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meridian_grpc_client::{Backoff, ChannelConfig, ChannelError};
use meridian_proto::kds::kds_client::KdsClient;
use meridian_store::Store;
use tokio::sync::watch;
use tonic::transport::Channel;

use super::session;

/// How the zone reaches global.
#[derive(Clone)]
pub struct KdsClientConfig {
    /// This zone's name.
    pub zone: String,
    /// Global's KDS URLs (`https://host:5685`), one per global replica, tried in
    /// order (at least one).
    pub global_urls: Vec<String>,
    /// The CA that signed global's KDS certificate (PEM); `None` uses the system roots.
    pub global_ca_pem: Option<String>,
    /// The zone token issued by global.
    pub token: String,
    /// The file the token came from (`--zone-token`), read again before every
    /// connection attempt: replacing the file replaces the token (after a
    /// revocation or a key rotation) without restarting the zone. `None` keeps
    /// [`KdsClientConfig::token`].
    pub token_file: Option<PathBuf>,
    /// How often the zone→global stream sends a heartbeat when idle.
    pub heartbeat: Duration,
    /// The Raft term this replica leads in (0 for a single replica): a fencing
    /// token global uses to close the stream of a replica that no longer leads.
    pub leader_term: u64,
}

impl std::fmt::Debug for KdsClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a credential: never in logs.
        f.debug_struct("KdsClientConfig")
            .field("zone", &self.zone)
            .field("global_urls", &self.global_urls)
            .field("token_file", &self.token_file)
            .field("heartbeat", &self.heartbeat)
            .field("leader_term", &self.leader_term)
            .finish_non_exhaustive()
    }
}

/// Why a connection attempt or session ended.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or TLS settings are unusable.
    #[error("KDS client configuration: {0}")]
    Config(String),
    /// Could not dial global: a bad URL or CA, or no connection.
    #[error(transparent)]
    Connect(#[from] ChannelError),
    /// Global refused or ended a stream.
    #[error("{stream}: {status}")]
    Stream {
        /// Which stream.
        stream: &'static str,
        /// What global said.
        status: tonic::Status,
    },
    /// The local store failed.
    #[error("zone store: {0}")]
    Sync(#[from] meridian_kds::KdsError),
}

async fn connect(config: &KdsClientConfig, url: &str) -> Result<KdsClient<Channel>, ClientError> {
    let trust = config.global_ca_pem.as_ref();
    let channel = ChannelConfig::new(url).trust(trust).connect().await?;
    Ok(KdsClient::new(channel)
        .max_decoding_message_size(8 * 1024 * 1024)
        .max_encoding_message_size(8 * 1024 * 1024))
}

/// Reads the token again from [`KdsClientConfig::token_file`], if any, keeping the
/// previous one when the file cannot be read or is empty.
async fn reload_token(config: &mut KdsClientConfig) {
    let Some(path) = &config.token_file else {
        return;
    };
    match tokio::fs::read_to_string(path).await {
        Ok(text) if !text.trim().is_empty() => {
            let token = text.trim();
            if token != config.token {
                tracing::info!(file = %path.display(), "using the zone token now in the token file");
                config.token = token.to_owned();
            }
        }
        Ok(_) => {
            tracing::warn!(file = %path.display(), "the zone token file is empty; keeping the previous token")
        }
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "cannot read the zone token file; keeping the previous token")
        }
    }
}

/// Keeps KDS running until `shutdown` turns true: connect, run both streams, and on
/// any failure move to the next global URL, wait (exponential backoff from 100 ms to
/// 10 s, growing once per round of every URL, with full jitter so a restarted global
/// is not hit by every zone at once) and try again. The token is read again from its
/// file before every attempt.
pub async fn run(
    mut config: KdsClientConfig,
    store: Arc<dyn Store>,
    mut shutdown: watch::Receiver<bool>,
) {
    if config.global_urls.is_empty() {
        tracing::error!("KDS client started without a global URL; not syncing");
        return;
    }
    let mut backoff = Backoff::default();
    let connected = session::Connected::default();
    // One reader of this zone's change log for every session of this process.
    let fanout = meridian_kds::Fanout::start(store.clone());
    let (mut next, mut failed_in_round) = (0, 0);
    loop {
        reload_token(&mut config).await;
        let url = &config.global_urls[next];
        let attempt = async {
            let client = connect(&config, url).await?;
            tracing::info!(%url, "connected to global KDS");
            session::run_both(client, &config, store.clone(), &fanout, &connected).await
        };
        let outcome = tokio::select! {
            outcome = attempt => outcome,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        metrics::gauge!("meridian_kds_connected").set(0.0);
        match &outcome {
            Err(ClientError::Stream { status, .. })
                if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                tracing::error!(error = %outcome.as_ref().err().map(ToString::to_string).unwrap_or_default(), "global refused this zone; check --zone and --zone-token");
            }
            Err(error) => {
                tracing::warn!(%error, "KDS session ended; the zone keeps serving from its store")
            }
            Ok(()) => tracing::info!("KDS session ended"),
        }
        if connected.take() {
            backoff.reset();
            failed_in_round = 0;
        }
        next = (next + 1) % config.global_urls.len();
        let jittered = backoff.delay();
        tracing::info!(retry_in = ?jittered, url = %config.global_urls[next], "reconnecting to global");
        tokio::select! {
            _ = tokio::time::sleep(jittered) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        failed_in_round += 1;
        if failed_in_round >= config.global_urls.len() {
            failed_in_round = 0;
            backoff.grow();
        }
    }
}
