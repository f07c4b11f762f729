//! `meridian get TYPE [NAME] [-m MESH] [-o table|json|yaml]`.
//!
//! YAML output of a list is a multi-document stream, so `get -o yaml > f` followed by
//! `apply -f f` restores it.

use meridian_model::ResourceKind;
use reqwest::Method;
use serde_json::Value;

use crate::client::ApiClient;
use crate::paths;
use crate::table;

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// A table for people.
    Table,
    /// The API's JSON.
    Json,
    /// YAML documents, ready for `meridian apply`.
    Yaml,
}

/// Arguments of `meridian get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// The resource type: its type name or plural (e.g. `meshtcproutes`, `MeshTCPRoute`).
    pub kind: ResourceKind,
    /// One resource's name; all of the type when absent.
    pub name: Option<String>,
    /// The mesh, for mesh-scoped types.
    #[arg(short = 'm', long, default_value = "default")]
    pub mesh: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Runs `meridian get`.
pub async fn run(client: &ApiClient, args: &GetArgs) -> anyhow::Result<()> {
    let items = match &args.name {
        Some(name) => vec![
            client
                .send(Method::GET, &paths::item(args.kind, &args.mesh, name), None)
                .await?
                .body,
        ],
        None => {
            client
                .list_all(&paths::collection(args.kind, &args.mesh))
                .await?
        }
    };
    match args.output {
        Output::Table => print!("{}", table::render(args.kind, &items, chrono::Utc::now())),
        Output::Json => {
            let value = if args.name.is_some() {
                items.into_iter().next().unwrap_or(Value::Null)
            } else {
                serde_json::json!({"total": items.len(), "items": items})
            };
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Output::Yaml => {
            for item in &items {
                print!("---\n{}", serde_norway::to_string(item)?);
            }
        }
    }
    Ok(())
}
