//! Where each resource lives in the REST API.

use meridian_model::ResourceKind;

/// The collection path of a kind (`/meshes`, `/zones`, `/meshes/{mesh}/{plural}`).
pub fn collection(kind: ResourceKind, mesh: &str) -> String {
    if kind.is_mesh_scoped() {
        format!("/meshes/{mesh}/{}", kind.plural())
    } else {
        format!("/{}", kind.plural())
    }
}

/// The path of one resource.
pub fn item(kind: ResourceKind, mesh: &str, name: &str) -> String {
    format!("{}/{name}", collection(kind, mesh))
}
