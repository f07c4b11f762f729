//! `meridian delete TYPE NAME [-m MESH]`.

use meridian_model::ResourceKind;
use reqwest::Method;
use serde_json::Value;

use crate::client::ApiClient;
use crate::paths;

/// Arguments of `meridian delete`.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The resource type: its type name or plural (e.g. `meshtcproutes`).
    pub kind: ResourceKind,
    /// The resource name.
    pub name: String,
    /// The mesh, for mesh-scoped types.
    #[arg(short = 'm', long, default_value = "default")]
    pub mesh: String,
}

/// Runs `meridian delete`.
pub async fn run(client: &ApiClient, args: &DeleteArgs) -> anyhow::Result<()> {
    let response = client
        .send(
            Method::DELETE,
            &paths::item(args.kind, &args.mesh, &args.name),
            None,
        )
        .await?;
    let deleted = response
        .body
        .get("deleted")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    println!("deleted {} {}", args.kind, args.name);
    if deleted > 1 {
        println!("  and {} resource(s) it owned", deleted - 1);
    }
    Ok(())
}
