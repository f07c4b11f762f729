//! PostgreSQL load: how long global's PostgreSQL store takes to write `--policies`
//! policies through `Store::apply`, in transactions of `--batch` writes each — the
//! way KDS applies a zone's message and the `reconnect`/`scale` benchmarks load
//! global (500 per transaction).
//!
//! Runs on the database at `--database-url` (best a fresh one; `scripts/bench.sh`
//! creates `meridian_bench_load`). For each batch size, three timed phases over the
//! same names, each a real change (an unchanged put writes nothing):
//! - **create**: `--policies` new MeshTimeouts in mesh `default`;
//! - **update**: every one of them again with another spec (version 2);
//! - **delete**: every one of them.
//!
//! Nothing else runs against the store meanwhile; this measures the write path alone.

use std::time::Instant;

use anyhow::Context;
use meridian_model::ResourceKind;
use meridian_store::postgres::PostgresStore;
use meridian_store::{NewResource, Precondition, ResourceKey, Store, WriteOp};

use crate::reconnect::harness::{self, from_document, ms};

/// Arguments of `meridian-bench pg-load`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The PostgreSQL database to write into.
    #[arg(long, env = "MERIDIAN_BENCH_DATABASE_URL")]
    database_url: String,
    /// Policies to write per phase (MeshTimeouts in mesh `default`).
    #[arg(long, default_value_t = 10_000)]
    policies: usize,
    /// Writes per transaction, comma-separated: one measurement per size.
    #[arg(long, value_delimiter = ',', default_value = "500")]
    batch: Vec<usize>,
    /// A few seconds' run for CI: 500 policies.
    #[arg(long)]
    smoke: bool,
}

/// Runs the benchmark and prints one line per phase.
pub async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.smoke {
        args.policies = 500;
    }
    let store = PostgresStore::connect(&args.database_url)
        .await
        .context("connecting to PostgreSQL")?;
    let mesh = from_document(serde_json::json!({"type": "Mesh", "name": "default"}), None)?;
    store.put(mesh, Precondition::Any).await?;
    println!(
        "pg-load: {} MeshTimeouts into PostgreSQL through Store::apply, one writer",
        args.policies
    );
    println!("| batch | phase | policies | ms | policies/s |");
    println!("|---|---|---|---|---|");
    let run = harness::run_id();
    for &batch in &args.batch {
        let batch = batch.max(1);
        let names: Vec<String> = (0..args.policies)
            .map(|i| format!("load-{run}-b{batch}-{i}"))
            .collect();
        for (phase, round) in [("create", 0), ("update", 1)] {
            let ops = policies(&names, round)?
                .into_iter()
                .map(|p| WriteOp::Put(p, Precondition::Any))
                .collect();
            report(batch, phase, names.len(), write(&store, ops, batch).await?);
        }
        let deletes = names
            .iter()
            .map(|name| {
                WriteOp::Delete(
                    ResourceKey::in_mesh(ResourceKind::MeshTimeout, "default", name.as_str()),
                    Precondition::Version(2),
                )
            })
            .collect();
        report(
            batch,
            "delete",
            names.len(),
            write(&store, deletes, batch).await?,
        );
    }
    Ok(())
}

fn report(batch: usize, phase: &str, count: usize, elapsed_ms: f64) {
    let rate = count as f64 / (elapsed_ms / 1000.0).max(f64::EPSILON);
    println!("| {batch} | {phase} | {count} | {elapsed_ms:.0} | {rate:.0} |");
}

/// Applies `ops` in transactions of `batch`; returns the milliseconds it took.
async fn write(store: &dyn Store, ops: Vec<WriteOp>, batch: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        let chunk: Vec<WriteOp> = ops.by_ref().take(batch).collect();
        store.apply(chunk).await?;
    }
    Ok(ms(started, Instant::now()))
}

/// MeshTimeouts named `names`, validated as the REST API would; `round` makes each
/// round's spec differ from the last.
fn policies(names: &[String], round: usize) -> anyhow::Result<Vec<NewResource>> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            from_document(
                serde_json::json!({
                    "type": "MeshTimeout", "name": name, "mesh": "default",
                    "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"},
                             "default": {"idleTimeout": format!("{}s", round * 100_000 + i + 1)}}]}
                }),
                None,
            )
        })
        .collect()
}
