//! One module per `meridian` subcommand.

pub mod apply;
pub mod delete;
pub mod demo_echo;
pub mod dp;
pub mod export;
pub mod get;
pub mod global_cp;
pub mod probe;
pub mod raft;
pub mod raft_flags;
pub mod up;
pub mod zone_cp;
pub mod zone_cp_link;
pub mod zone_egress;
pub mod zone_ingress;

/// Reads `--read-token-file`: one read-only token per line, blank lines and `#`
/// comments ignored. Absent = no read-only tokens.
pub(crate) fn read_token_file(
    path: Option<&std::path::Path>,
) -> anyhow::Result<meridian_global_cp::auth::ReadTokens> {
    use anyhow::Context;
    let Some(path) = path else {
        return Ok(Default::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the read-only tokens in {}", path.display()))?;
    let tokens = meridian_global_cp::auth::ReadTokens::parse(&text);
    if tokens.is_empty() {
        tracing::warn!(file = %path.display(), "the read-only token file holds no token");
    } else {
        tracing::info!(file = %path.display(), count = tokens.len(), "read-only tokens loaded");
    }
    Ok(tokens)
}
