//! `meridian export [-m MESH] [--profile all|policies]`: every resource global
//! holds that `meridian apply -f` can restore, as one multi-document YAML stream
//! on stdout — meshes (and zones) first, so a restore creates owners before what
//! they own.
//!
//! Left out, and said so on stderr: zone-owned kinds (Dataplane, ZoneIngress,
//! ZoneEgress, MeshService), which global only mirrors and refuses to write —
//! each zone CP sends them again — and secrets, which the REST API never serves
//! (each Mesh's CA stays with its global).

use meridian_model::ResourceKind;

use crate::client::ApiClient;
use crate::paths;

/// Which resources to write.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Meshes, zones, policies and MeshMultiZoneServices.
    All,
    /// Policies only (for a mesh that exists on the target already).
    Policies,
}

/// Arguments of `meridian export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Only this mesh (its Mesh and what it holds); all meshes when absent.
    #[arg(short = 'm', long)]
    pub mesh: Option<String>,
    /// Which resources.
    #[arg(long, value_enum, default_value_t = Profile::All)]
    pub profile: Profile,
}

/// The kinds a profile writes, owners first.
pub fn kinds(profile: Profile) -> Vec<ResourceKind> {
    ResourceKind::ALL
        .into_iter()
        .filter(|k| !k.is_internal() && !k.is_zone_owned())
        .filter(|k| profile == Profile::All || k.is_policy())
        .collect()
}

/// Runs `meridian export`.
pub async fn run(client: &ApiClient, args: &ExportArgs) -> anyhow::Result<()> {
    let meshes: Vec<String> = match &args.mesh {
        Some(m) => vec![m.clone()],
        None => client
            .list_all(&paths::collection(ResourceKind::Mesh, ""))
            .await?
            .iter()
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect(),
    };
    let mut written = 0usize;
    for kind in kinds(args.profile) {
        let items = match (kind, &args.mesh) {
            // One mesh: its Mesh only, and no zones (they are not the mesh's).
            (ResourceKind::Mesh, Some(m)) => {
                vec![
                    client
                        .send(reqwest::Method::GET, &paths::item(kind, "", m), None)
                        .await?
                        .body,
                ]
            }
            (ResourceKind::Zone, Some(_)) => continue,
            _ if kind.is_mesh_scoped() => {
                let mut all = Vec::new();
                for mesh in &meshes {
                    all.extend(client.list_all(&paths::collection(kind, mesh)).await?);
                }
                all
            }
            _ => client.list_all(&paths::collection(kind, "")).await?,
        };
        for item in &items {
            print!("---\n{}", serde_norway::to_string(item)?);
        }
        written += items.len();
    }
    eprintln!(
        "exported {written} resource(s); not exported: zone-owned resources (Dataplane, \
         ZoneIngress, ZoneEgress, MeshService: each zone sends them again) and secrets"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_write_owners_first_and_nothing_global_refuses() {
        let all = kinds(Profile::All);
        assert_eq!(all[..2], [ResourceKind::Mesh, ResourceKind::Zone]);
        assert!(all.contains(&ResourceKind::MeshMultiZoneService));
        assert!(all.iter().all(|k| !k.is_zone_owned() && !k.is_internal()));
        let policies = kinds(Profile::Policies);
        assert!(!policies.is_empty() && policies.iter().all(|k| k.is_policy()));
    }
}
