//! `meridian global-cp`: runs the global control plane until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use meridian_global_cp::auth::TokenOrigin;
use meridian_global_cp::{GlobalCp, GlobalCpConfig};
use meridian_store::{Store, StoreError, postgres::PostgresStore};

/// Arguments of `meridian global-cp`.
#[derive(clap::Args, Debug)]
pub struct GlobalCpArgs {
    /// PostgreSQL URL of the store (postgres://user@host/db).
    #[arg(long, env = "MERIDIAN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Address of the REST API.
    #[arg(long, default_value = "127.0.0.1:5681")]
    pub api_addr: SocketAddr,
    /// The admin token for writes; absent = generated at first start and printed once.
    #[arg(long, env = "MERIDIAN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Require the admin token for reads too (by default only writes need it).
    #[arg(long, env = "MERIDIAN_READS_NEED_TOKEN")]
    pub reads_need_token: bool,
    /// How many revisions the change log keeps so reconnecting zones get a delta.
    #[arg(long, default_value_t = 100_000)]
    pub changelog_retention: i64,
    /// Do not create the `default` mesh at the first start.
    #[arg(long)]
    pub skip_default_mesh: bool,
}

/// Connects to PostgreSQL, retrying while it is unreachable (it may still be
/// starting) and failing at once on errors a retry cannot fix (bad URL, bad password).
async fn connect_postgres(url: &str) -> anyhow::Result<PostgresStore> {
    let mut backoff = Duration::from_millis(250);
    loop {
        match PostgresStore::connect(url).await {
            Ok(store) => return Ok(store),
            Err(error @ StoreError::Unavailable(_)) => {
                tracing::warn!(%error, retry_in = ?backoff, "PostgreSQL not reachable yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error).context("connecting to PostgreSQL"),
        }
    }
}

/// Runs `meridian global-cp`.
pub async fn run(args: GlobalCpArgs) -> anyhow::Result<()> {
    let Some(url) = args.database_url.as_deref() else {
        bail!(
            "no --database-url (MERIDIAN_DATABASE_URL) given. The embedded store, the zero-dependency \
             default, is not in this build yet; run with --database-url postgres://USER@HOST/DB"
        );
    };
    tracing::info!("connecting to PostgreSQL");
    let store: Arc<dyn Store> = Arc::new(connect_postgres(url).await?);
    let config = GlobalCpConfig {
        api_addr: args.api_addr,
        admin_token: args.admin_token,
        reads_need_token: args.reads_need_token,
        changelog_retention: args.changelog_retention,
        create_default_mesh: !args.skip_default_mesh,
        ..GlobalCpConfig::default()
    };
    let global = GlobalCp::start(config, store).await?;
    println!(
        "meridian global-cp: REST API on http://{}",
        global.api_addr()
    );
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
