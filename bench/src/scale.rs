//! Placeholder for the `scale` benchmark (being written).

/// Arguments of `meridian-bench scale`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the benchmark.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("the scale benchmark is not written yet")
}
