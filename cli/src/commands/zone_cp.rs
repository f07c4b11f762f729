//! `meridian zone-cp`: runs a zone control plane on the embedded store, syncing with
//! global over KDS when `--global-kds` is given, until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use meridian_embedded_store::EmbeddedStore;
use meridian_global_cp::auth::TokenOrigin;
use meridian_zone_cp::kds::KdsClientConfig;
use meridian_zone_cp::{ZoneCp, ZoneCpConfig};

/// Arguments of `meridian zone-cp`.
#[derive(clap::Args, Debug)]
pub struct ZoneCpArgs {
    /// This zone's name (a DNS label).
    #[arg(long)]
    pub zone: String,
    /// Global's KDS URL, e.g. https://127.0.0.1:5685; absent = run standalone. For
    /// several global replicas give each one's URL, comma-separated or by repeating
    /// the flag: the zone dials them in order and moves to the next after a failed
    /// connect or an ended session.
    #[arg(long, requires = "zone_token", value_delimiter = ',')]
    pub global_kds: Vec<String>,
    /// CA certificate (PEM) that signed global's KDS certificate.
    #[arg(long)]
    pub global_kds_ca: Option<PathBuf>,
    /// File holding the zone token issued by global (`POST /tokens/zone`).
    #[arg(long)]
    pub zone_token: Option<PathBuf>,
    /// Address of the zone's REST API.
    #[arg(long, default_value = "127.0.0.1:5682")]
    pub api_addr: SocketAddr,
    /// Where the zone's proxies (sidecars, ingresses, egresses) get their config.
    #[arg(long, default_value = "127.0.0.1:5678")]
    pub dp_addr: SocketAddr,
    /// The data-plane server's certificate (PEM); absent = plain HTTP/2 on a
    /// loopback --dp-addr, else a private CA and certificate generated into --data-dir.
    #[arg(long, requires = "dp_tls_key")]
    pub dp_tls_cert: Option<PathBuf>,
    /// The data-plane server's private key (PEM).
    #[arg(long, requires = "dp_tls_cert")]
    pub dp_tls_key: Option<PathBuf>,
    /// Where the zone's embedded store lives (default meridian-data/zone-<zone>).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The admin token for the zone API's writes; absent = generated and printed once.
    #[arg(long, env = "MERIDIAN_ZONE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Require a token for reads too (by default only writes need one): the admin
    /// token or a read-only token.
    #[arg(long, env = "MERIDIAN_ZONE_READS_NEED_TOKEN")]
    pub reads_need_token: bool,
    /// File of read-only tokens, one per line (blank lines and `#` comments
    /// ignored): accepted for GET and HEAD, refused with 403 on writes.
    #[arg(long)]
    pub read_token_file: Option<PathBuf>,
    /// How long a generated MeshService outlives its last Dataplane (Kuma's
    /// deletion grace period), so a restart or reconnect does not make it go
    /// and come back in every zone; `0s` deletes at once.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub mesh_service_deletion_grace: std::time::Duration,
    /// Running as one replica of several.
    #[command(flatten)]
    pub raft: super::raft_flags::RaftFlags,
}

fn read(path: &PathBuf, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// Runs `meridian zone-cp`.
pub async fn run(args: ZoneCpArgs) -> anyhow::Result<()> {
    let global_urls: Vec<String> = args
        .global_kds
        .iter()
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
        .collect();
    let kds = if global_urls.is_empty() {
        None
    } else {
        let token_file = args
            .zone_token
            .as_ref()
            .context("--global-kds needs --zone-token")?;
        if global_urls.iter().any(|url| url.starts_with("http://")) {
            bail!("KDS is served over TLS: use an https:// URL for --global-kds");
        }
        Some(KdsClientConfig {
            zone: args.zone.clone(),
            global_urls: global_urls.clone(),
            global_ca_pem: args
                .global_kds_ca
                .as_ref()
                .map(|p| read(p, "KDS CA"))
                .transpose()?,
            token: read(token_file, "zone token")?.trim().to_owned(),
            token_file: Some(token_file.clone()),
            heartbeat: Duration::from_secs(5),
            leader_term: 0,
        })
    };
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("meridian-data/zone-{}", args.zone)));
    let store_dir = data_dir.join("store");
    // Before the store opens, so its first Raft metrics (a snapshot installed while
    // catching up) are recorded too.
    meridian_global_cp::telemetry::prometheus();
    tracing::info!(dir = %store_dir.display(), "opening the embedded store");
    let store = EmbeddedStore::open_with(&store_dir, args.raft.store_options()?)
        .await
        .with_context(|| format!("opening the embedded store in {}", store_dir.display()))?;
    let mut config = ZoneCpConfig::new(&args.zone);
    config.mesh_service_grace = args.mesh_service_deletion_grace;
    config.api_addr = args.api_addr;
    config.admin_token = args.admin_token.clone();
    config.reads_need_token = args.reads_need_token;
    config.read_tokens = super::read_token_file(args.read_token_file.as_deref())?;
    config.kds = kds;
    config.dp_addr = Some(args.dp_addr);
    config.replica = args
        .raft
        .raft_id
        .map(|_| meridian_zone_cp::Replica::of(&store));
    config.dp_tls = if args.dp_tls_cert.is_some() || !args.dp_addr.ip().is_loopback() {
        Some(meridian_identity::serving::load_or_generate(
            args.dp_tls_cert.as_deref(),
            args.dp_tls_key.as_deref(),
            &data_dir,
            "dp",
            &format!("Meridian zone {} data-plane server", args.zone),
            &[args.dp_addr.ip().to_string()],
        )?)
    } else {
        None
    };
    let dp_ca = config.dp_tls.as_ref().map(|t| t.generated_ca.clone());
    let zone = ZoneCp::start(config, Arc::new(store.clone())).await?;
    println!(
        "meridian zone-cp: zone {}, REST API on http://{}",
        args.zone,
        zone.api_addr()
    );
    match (zone.dp_addr(), &dp_ca) {
        (Some(dp), None) => println!("meridian zone-cp: proxies connect to http://{dp}"),
        (Some(dp), Some(ca)) => println!(
            "meridian zone-cp: proxies connect to https://{dp} (--zone-cp-ca {})",
            ca.as_ref().map_or_else(
                || "<the CA of --dp-tls-cert>".to_owned(),
                |p| p.display().to_string()
            )
        ),
        (None, _) => {}
    }
    if global_urls.is_empty() {
        println!("meridian zone-cp: running standalone (no --global-kds)");
    } else {
        println!(
            "meridian zone-cp: syncing with global at {}",
            global_urls.join(", ")
        );
    }
    println!(
        "meridian zone-cp: store: embedded ({})",
        store_dir.display()
    );
    if let (Some(id), Some(addr)) = (args.raft.raft_id, store.raft_addr()) {
        println!("meridian zone-cp: Raft replica {id} serving peers on {addr}");
    }
    if let TokenOrigin::Generated(token) = zone.token_origin() {
        println!("meridian zone-cp: admin token (printed once, keep it): {token}");
    }
    crate::shutdown_signal().await;
    tracing::info!("shutting down");
    zone.shutdown()
        .await
        .context("shutting down the zone API")?;
    store.shutdown().await;
    Ok(())
}
