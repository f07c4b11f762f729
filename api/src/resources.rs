//! Resource endpoints: get, list, put and delete for every kind, in Kuma's universal
//! document shape (`type`, `mesh`, `name`, `labels`, `spec` or top-level fields).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meridian_model::{FieldViolation, ORIGIN_LABEL, ResourceKind, ResourceMeta, Spec, SpecBody};
use meridian_store::{
    ListQuery, NewResource, Precondition, PutOutcome, ResourceKey, Store, StoreError,
    StoredResource, WriteOp, WriteOutcome,
};
use serde::Serialize;

use crate::body;
use crate::problem::Problem;
use crate::query::ListParams;
use crate::router::Role;

pub use meridian_model::ZONE_LABEL;

/// Renders a stored resource as the API shows it: the universal document plus
/// `creationTime` and `modificationTime`.
pub fn render(stored: &StoredResource) -> serde_json::Value {
    let meta = ResourceMeta {
        kind: stored.key.kind,
        name: stored.key.name.clone(),
        mesh: stored.key.mesh().map(str::to_owned),
        labels: stored.labels.clone(),
    };
    let document = meridian_model::render_document(&meta, &stored.spec.to_value());
    let mut out = serde_json::Map::new();
    for key in ["type", "mesh", "name"] {
        if let Some(value) = document.get(key) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    out.insert(
        "creationTime".into(),
        stored
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into(),
    );
    out.insert(
        "modificationTime".into(),
        stored
            .modified_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into(),
    );
    for (key, value) in document {
        out.entry(key).or_insert(value);
    }
    serde_json::Value::Object(out)
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn with_etag(status: StatusCode, stored: &StoredResource) -> Response {
    answer(status, render(stored), stored.version)
}

/// A JSON answer about a resource at `version`, with its ETag.
fn answer(status: StatusCode, body: serde_json::Value, version: i64) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    response
}

/// `GET` one resource.
pub async fn get(store: &dyn Store, key: ResourceKey) -> Result<Response, Problem> {
    let stored = store
        .get(&key)
        .await?
        .ok_or_else(|| Problem::not_found(format!("{key} not found")))?;
    Ok(with_etag(StatusCode::OK, &stored))
}

/// A page of resources.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ListResponse {
    /// How many resources match, across all pages.
    pub total: u64,
    /// This page.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<serde_json::Value>,
    /// The URL of the next page, or null on the last page.
    pub next: Option<String>,
}

/// `GET` a list of one kind, optionally inside one mesh.
pub async fn list(
    store: &dyn Store,
    kind: ResourceKind,
    mesh: Option<String>,
    path: &str,
    query: &[(String, String)],
) -> Result<Json<ListResponse>, Problem> {
    let params = ListParams::parse(query)?;
    if let Some(mesh) = &mesh {
        ensure_mesh_exists(store, mesh).await?;
    }
    let page = store
        .list(&ListQuery {
            kind,
            mesh,
            zone: None,
            labels: params.labels.clone(),
            offset: params.offset,
            limit: params.size,
        })
        .await?;
    let next = (params.offset + params.size < page.total)
        .then(|| format!("{path}?{}", params.next_page_query()));
    Ok(Json(ListResponse {
        total: page.total,
        items: page.items.iter().map(render).collect(),
        next,
    }))
}

/// 404 unless the mesh exists, so a typo in a mesh name is not an empty list.
pub async fn ensure_mesh_exists(store: &dyn Store, mesh: &str) -> Result<(), Problem> {
    match store
        .get(&ResourceKey::global(ResourceKind::Mesh, mesh))
        .await?
    {
        Some(_) => Ok(()),
        None => Err(Problem::not_found(format!("mesh {mesh:?} does not exist"))),
    }
}

/// 405 unless `role` lets this server write resources of `key`'s kind. `on_global`
/// says, for a refused write on global, what to do instead.
fn ensure_writable(role: &Role, key: &ResourceKey, on_global: &str) -> Result<(), Problem> {
    if role.writes(key.kind) {
        return Ok(());
    }
    Err(Problem::read_only(match role {
        Role::Global => format!(
            "{} resources are read-only on the global control plane: {on_global}",
            key.kind
        ),
        Role::Zone { name } => format!(
            "{} is managed on the global control plane; this is zone {name}'s read-only copy",
            key.kind
        ),
    }))
}

/// On a zone, 405 when the stored resource at `key` belongs to another zone (a copy
/// synced from global), so a zone never overwrites or deletes another zone's proxies.
async fn ensure_own(store: &dyn Store, role: &Role, key: &ResourceKey) -> Result<(), Problem> {
    let Some(zone) = role.zone() else {
        return Ok(());
    };
    match store.get(key).await? {
        Some(stored) if stored.zone.as_deref().is_some_and(|owner| owner != zone) => {
            Err(Problem::read_only(format!(
                "{key} belongs to zone {:?}; this is zone {zone}'s control plane",
                stored.zone.as_deref().unwrap_or_default()
            )))
        }
        _ => Ok(()),
    }
}

/// `PUT` (create or update) a resource: 201 when created, 200 otherwise.
///
/// On a zone, zone-owned resources are stamped with the zone: `zone` on the stored
/// row and the labels `kuma.io/zone: <zone>` and `kuma.io/origin: zone`.
pub async fn put(
    store: &dyn Store,
    role: &Role,
    key: ResourceKey,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    ensure_writable(role, &key, "zones report them")?;
    let precondition = body::precondition(headers)?;
    let document = body::parse_document(headers, body)?;
    let resource = meridian_model::parse_document(document)?;
    let mut mismatches = path_mismatches(&key, &resource.meta);
    let named_zone = match &resource.spec {
        Spec::ZoneIngress(s) => s.zone.as_deref(),
        Spec::ZoneEgress(s) => s.zone.as_deref(),
        _ => None,
    };
    if let (Some(zone), Some(in_doc)) = (role.zone(), named_zone) {
        // A ZoneIngress or ZoneEgress may name its zone; it must be this one.
        if in_doc != zone {
            mismatches.push(FieldViolation {
                field: "zone".to_owned(),
                reason: format!("is {in_doc:?} but this is zone {zone:?}'s control plane"),
            });
        }
    }
    if !mismatches.is_empty() {
        return Err(Problem {
            detail: "the document does not match the URL it was sent to".to_owned(),
            ..Problem::invalid(mismatches)
        });
    }
    // Parts that do not apply to TCP traffic: kept, and named in the answer.
    let warnings = meridian_model::warnings(&resource.spec);
    let mut labels = resource.meta.labels;
    let zone = role.zone().map(str::to_owned);
    if let Some(zone) = &zone {
        ensure_own(store, role, &key).await?;
        labels.insert(ZONE_LABEL.to_owned(), zone.clone());
        labels.insert(ORIGIN_LABEL.to_owned(), "zone".to_owned());
    }
    let new = NewResource {
        key,
        labels,
        spec: SpecBody::new(resource.spec),
        zone,
    };
    // A new mesh on global comes with Kuma's initial policies (zones get both
    // from global).
    let new_mesh = new.key.kind == ResourceKind::Mesh
        && role.zone().is_none()
        && store.get(&new.key).await?.is_none();
    let (outcome, stored) = if new_mesh {
        create_mesh(store, new, precondition).await?
    } else {
        store.put(new, precondition).await?
    };
    tracing::info!(resource = %stored.key, version = stored.version, revision = stored.revision, ?outcome, "resource written");
    let status = match outcome {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Updated | PutOutcome::Unchanged => StatusCode::OK,
    };
    if warnings.is_empty() {
        return Ok(with_etag(status, &stored));
    }
    // Kuma's API answers a PUT with `warnings: [string]`; here they sit beside the
    // stored resource.
    let mut body = render(&stored);
    if let serde_json::Value::Object(map) = &mut body {
        map.insert(
            "warnings".into(),
            warnings
                .iter()
                .map(|w| serde_json::Value::from(format!("{}: {}", w.field, w.reason)))
                .collect(),
        );
    }
    Ok(answer(status, body, stored.version))
}

/// The writes that create mesh `mesh` with its initial policies
/// ([`meridian_model::initial_policies`]) in one atomic batch; the mesh's own
/// put comes first. A mesh that does not exist has no policies, so theirs are
/// `Absent`-conditioned.
pub fn mesh_with_initial_policies(mesh: NewResource, precondition: Precondition) -> Vec<WriteOp> {
    let policies = match mesh.spec.spec() {
        Spec::Mesh(spec) => meridian_model::initial_policies(&mesh.key.name, spec),
        _ => Vec::new(),
    };
    let name = mesh.key.name.clone();
    std::iter::once(WriteOp::Put(mesh, precondition))
        .chain(policies.into_iter().map(|p| {
            WriteOp::Put(
                NewResource {
                    key: ResourceKey::in_mesh(p.kind, name.clone(), p.name),
                    labels: Default::default(),
                    spec: SpecBody::new(p.spec),
                    zone: None,
                },
                Precondition::Absent,
            )
        }))
        .collect()
}

/// Creates a mesh with its initial policies; when a concurrent write created
/// the mesh (or one of them) first, falls back to the plain put, which then
/// answers as any write to an existing mesh.
pub async fn create_mesh(
    store: &dyn Store,
    mesh: NewResource,
    precondition: Precondition,
) -> Result<(PutOutcome, StoredResource), StoreError> {
    let ops = mesh_with_initial_policies(mesh.clone(), precondition);
    let policies = ops.len() - 1;
    match store.apply(ops).await {
        Ok(outcomes) => match outcomes.into_iter().next() {
            Some(WriteOutcome::Put(outcome, stored)) => {
                tracing::info!(mesh = %stored.key.name, policies, "mesh created with its initial policies");
                Ok((outcome, stored))
            }
            other => Err(StoreError::Backend(format!(
                "a mesh creation batch answered {other:?} for the mesh"
            ))),
        },
        Err(StoreError::AlreadyExists(_)) => store.put(mesh, precondition).await,
        Err(error) => Err(error),
    }
}

fn path_mismatches(key: &ResourceKey, meta: &ResourceMeta) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    let mut check = |field: &str, in_doc: &str, in_path: &str| {
        if in_doc != in_path {
            violations.push(FieldViolation {
                field: field.to_owned(),
                reason: format!("is {in_doc:?} but the URL says {in_path:?}"),
            });
        }
    };
    check("type", meta.kind.type_name(), key.kind.type_name());
    check("mesh", meta.mesh.as_deref().unwrap_or(""), &key.mesh);
    check("name", &meta.name, &key.name);
    violations
}

/// What a delete removed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeleteResponse {
    /// Every resource removed: the one named, then what it owned.
    pub deleted: Vec<DeletedResource>,
}

/// One removed resource.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeletedResource {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its mesh, for mesh-scoped types.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    /// Its name.
    pub name: String,
}

/// `DELETE` a resource and what it owns.
pub async fn delete(
    store: &dyn Store,
    role: &Role,
    key: ResourceKey,
    headers: &HeaderMap,
) -> Result<Json<DeleteResponse>, Problem> {
    ensure_writable(role, &key, "delete their zone or let the zone remove them")?;
    let precondition = body::precondition(headers)?;
    ensure_own(store, role, &key).await?;
    let removed = store.delete(&key, precondition).await?;
    tracing::info!(resource = %key, removed = removed.len(), "resource deleted");
    Ok(Json(DeleteResponse {
        deleted: removed
            .into_iter()
            .map(|key| DeletedResource {
                kind: key.kind.type_name().to_owned(),
                mesh: key.mesh().map(str::to_owned),
                name: key.name,
            })
            .collect(),
    }))
}
