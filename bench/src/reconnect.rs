//! Placeholder for the `reconnect` benchmark (being written).

/// Arguments of `meridian-bench reconnect`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the benchmark.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("the reconnect benchmark is not written yet")
}
