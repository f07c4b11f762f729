//! Placeholder for the `fullpath` benchmark (being written).

/// Arguments of `meridian-bench fullpath`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the benchmark.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("the fullpath benchmark is not written yet")
}
