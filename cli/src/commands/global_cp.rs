//! `meridian global-cp`: runs the global control plane until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meridian_embedded_store::EmbeddedStore;
use meridian_global_cp::auth::TokenOrigin;
use meridian_global_cp::kds::tls;
use meridian_global_cp::{DutyElection, GlobalCp, GlobalCpConfig, KdsSettings};
use meridian_grpc_client::Backoff;
use meridian_store::{Store, StoreError, postgres::PostgresStore};

/// Arguments of `meridian global-cp`.
#[derive(clap::Args, Debug)]
pub struct GlobalCpArgs {
    /// PostgreSQL URL of the store (postgres://user@host/db); absent = the embedded
    /// store in --data-dir.
    #[arg(long, env = "MERIDIAN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Where the embedded store and the generated KDS certificate live.
    #[arg(long, default_value = "meridian-data/global")]
    pub data_dir: PathBuf,
    /// Address of the REST API.
    #[arg(long, default_value = "127.0.0.1:5681")]
    pub api_addr: SocketAddr,
    /// Address of KDS, the gRPC sync service zones dial (TLS).
    #[arg(long, default_value = "127.0.0.1:5685")]
    pub kds_addr: SocketAddr,
    /// KDS TLS certificate (PEM); absent = a self-signed pair generated into --data-dir.
    #[arg(long, requires = "kds_tls_key")]
    pub kds_tls_cert: Option<PathBuf>,
    /// KDS TLS private key (PEM).
    #[arg(long, requires = "kds_tls_cert")]
    pub kds_tls_key: Option<PathBuf>,
    /// The admin token for writes; absent = generated at first start and printed once.
    #[arg(long, env = "MERIDIAN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Require a token for reads too (by default only writes need one): the admin
    /// token or a read-only token.
    #[arg(long, env = "MERIDIAN_READS_NEED_TOKEN")]
    pub reads_need_token: bool,
    /// File of read-only tokens, one per line (blank lines and `#` comments
    /// ignored): accepted for GET and HEAD, refused with 403 on writes.
    #[arg(long)]
    pub read_token_file: Option<PathBuf>,
    /// How many revisions the change log keeps so reconnecting zones get a delta.
    #[arg(long, default_value_t = 100_000)]
    pub changelog_retention: i64,
    /// How many zones may receive a full snapshot at once; the rest wait their turn
    /// (bounds memory when every zone reconnects together).
    #[arg(long, default_value_t = 4)]
    pub max_concurrent_full_syncs: usize,
    /// Do not create the `default` mesh at the first start.
    #[arg(long)]
    pub skip_default_mesh: bool,
}

/// Connects to PostgreSQL, retrying while it is unreachable (it may still be
/// starting) and failing at once on errors a retry cannot fix (bad URL, bad password).
/// The wait doubles from 250 ms to 5 s, without jitter: one process, its own database.
async fn connect_postgres(url: &str) -> anyhow::Result<PostgresStore> {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    loop {
        match PostgresStore::connect(url).await {
            Ok(store) => return Ok(store),
            Err(error @ StoreError::Unavailable(_)) => {
                let retry_in = backoff.ceiling();
                tracing::warn!(%error, ?retry_in, "PostgreSQL not reachable yet");
                tokio::time::sleep(retry_in).await;
                backoff.grow();
            }
            Err(error) => return Err(error).context("connecting to PostgreSQL"),
        }
    }
}

/// Runs `meridian global-cp`.
pub async fn run(args: GlobalCpArgs) -> anyhow::Result<()> {
    // On PostgreSQL several replicas may share the database: they elect the one that
    // runs the background duties with an advisory lock.
    let (store, store_description, duty_election): (Arc<dyn Store>, String, DutyElection) =
        match args.database_url.as_deref() {
            Some(url) => {
                tracing::info!("connecting to PostgreSQL");
                let store = connect_postgres(url).await?;
                let election = DutyElection::Postgres(store.pool().clone());
                (Arc::new(store), "PostgreSQL".to_owned(), election)
            }
            None => {
                let dir = args.data_dir.join("store");
                tracing::info!(dir = %dir.display(), "opening the embedded store");
                let store = EmbeddedStore::open(&dir)
                    .await
                    .with_context(|| format!("opening the embedded store in {}", dir.display()))?;
                (
                    Arc::new(store),
                    format!("embedded ({})", dir.display()),
                    DutyElection::Sole,
                )
            }
        };
    let identity = tls::load_or_generate(
        args.kds_tls_cert.as_deref(),
        args.kds_tls_key.as_deref(),
        &args.data_dir,
        &[],
    )
    .context("setting up KDS TLS")?;
    let ca = identity.generated_ca.clone();
    let read_tokens = super::read_token_file(args.read_token_file.as_deref())?;
    let config = GlobalCpConfig {
        api_addr: args.api_addr,
        admin_token: args.admin_token,
        reads_need_token: args.reads_need_token,
        read_tokens,
        changelog_retention: args.changelog_retention,
        max_concurrent_full_syncs: args.max_concurrent_full_syncs,
        create_default_mesh: !args.skip_default_mesh,
        kds: Some(KdsSettings {
            addr: args.kds_addr,
            identity,
        }),
        duty_election,
        ..GlobalCpConfig::default()
    };
    let global = GlobalCp::start(config, store).await?;
    println!(
        "meridian global-cp: REST API on http://{}",
        global.api_addr()
    );
    if let Some(kds) = global.kds_addr() {
        match &ca {
            Some(ca) => println!(
                "meridian global-cp: KDS on https://{kds} (zones trust {})",
                ca.display()
            ),
            None => println!("meridian global-cp: KDS on https://{kds}"),
        }
    }
    println!("meridian global-cp: store: {store_description}");
    match global.token_origin() {
        TokenOrigin::Generated(token) => println!(
            "meridian global-cp: admin token (printed once, keep it; use it with --token or MERIDIAN_TOKEN): {token}"
        ),
        TokenOrigin::Stored => {
            println!("meridian global-cp: using the admin token generated at first start")
        }
        TokenOrigin::Configured => println!("meridian global-cp: using the configured admin token"),
    }
    crate::shutdown_signal().await;
    tracing::info!("shutting down");
    global
        .shutdown()
        .await
        .context("shutting down the REST API")?;
    Ok(())
}
