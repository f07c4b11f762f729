//! The router: routes, their adapters onto [`crate::resources`], and the layers
//! around them (auth, limits, tracing, metrics), shaped by the server's [`Role`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequestParts, OriginalUri, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use meridian_model::ResourceKind;
use meridian_store::{ResourceKey, Store};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::{AdminAuth, require_token};
use crate::problem::Problem;
use crate::zone_token::ZoneTokens;
use crate::{body, health, openapi, resources, telemetry, tokens, zones};

/// Which control plane a server is, and so which writes it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The global control plane: meshes, policies and zones are written here;
    /// zone-owned kinds are read-only (zones report them).
    Global,
    /// A zone control plane: reads as on global; only zone-owned kinds (Dataplane,
    /// ZoneIngress, ZoneEgress) may be written, stamped with this zone.
    Zone {
        /// The zone's name.
        name: String,
    },
}

impl Role {
    /// The zone's name, for a zone control plane.
    pub fn zone(&self) -> Option<&str> {
        match self {
            Role::Global => None,
            Role::Zone { name } => Some(name),
        }
    }

    /// Whether resources of `kind` may be written (PUT, DELETE) through this server.
    pub fn writes(&self, kind: ResourceKind) -> bool {
        match self {
            Role::Global => !kind.is_zone_owned(),
            Role::Zone { .. } => kind.is_zone_owned(),
        }
    }

    /// The component name shown at `GET /` and in the OpenAPI title.
    pub fn component(&self) -> &'static str {
        match self {
            Role::Global => "global-cp",
            Role::Zone { .. } => "zone-cp",
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The resource store.
    pub store: Arc<dyn Store>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Which control plane this is.
    pub role: Role,
    /// Issues zone tokens; `None` on zones, which do not issue them.
    pub zone_tokens: Option<ZoneTokens>,
    /// The zone CP's replica group, when it runs several replicas (`/raft`).
    pub raft: Option<crate::raft::SharedRaftAdmin>,
}

/// Path parameters, with decoding failures reported as problems.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub struct ApiPath<T>(pub T);

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        Problem::bad_request(format!("invalid path: {}", rejection.body_text()))
    }
}

fn query_pairs(raw: Option<String>) -> Result<Vec<(String, String)>, Problem> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| Problem::bad_request(format!("invalid query string: {e}")))
}

fn mesh_kind(plural: &str) -> Result<ResourceKind, Problem> {
    ResourceKind::from_plural(plural)
        .filter(|kind| kind.is_mesh_scoped() && !kind.is_internal())
        .ok_or_else(|| {
            let known: Vec<_> = ResourceKind::ALL
                .iter()
                .filter(|k| k.is_mesh_scoped() && !k.is_internal())
                .map(|k| k.plural())
                .collect();
            Problem::not_found(format!(
                "no resource collection {plural:?} in a mesh; known: {}",
                known.join(", ")
            ))
        })
}

/// Builds the whole API router for `state.role`.
pub fn router(state: AppState, auth: AdminAuth) -> Router {
    let openapi = openapi::rendered(&state.role);
    let mut guarded = Router::new()
        .route("/meshes", get(list_meshes))
        .route(
            "/meshes/{mesh}",
            get(get_mesh).put(put_mesh).delete(delete_mesh),
        )
        .route("/meshes/{mesh}/{plural}", get(list_in_mesh))
        .route(
            "/meshes/{mesh}/{plural}/{name}",
            get(get_in_mesh).put(put_in_mesh).delete(delete_in_mesh),
        )
        .route("/zones/{name}/insight", get(zones::insight))
        .route("/zones+insights", get(zones::list_with_insights));
    if state.role == Role::Global {
        guarded = guarded
            .route("/tokens/zone", axum::routing::post(tokens::issue))
            .route("/tokens/zone/revoke", axum::routing::post(tokens::revoke))
            .route(
                "/tokens/zone/rotate-key",
                axum::routing::post(tokens::rotate_key),
            );
    }
    // Zones always route `/raft` (as documented); a single replica answers 404.
    if state.raft.is_some() || state.role.zone().is_some() {
        guarded = guarded
            .route("/raft", get(crate::raft::status))
            .route(
                "/raft/learners",
                axum::routing::post(crate::raft::add_learner),
            )
            .route(
                "/raft/voters/{id}",
                axum::routing::post(crate::raft::promote),
            )
            .route(
                "/raft/members/{id}",
                axum::routing::delete(crate::raft::remove),
            );
    }
    for kind in [
        ResourceKind::Zone,
        ResourceKind::ZoneIngress,
        ResourceKind::ZoneEgress,
    ] {
        guarded = global_kind_routes(guarded, kind);
    }
    let guarded = guarded
        .route_layer(axum::middleware::from_fn_with_state(auth, require_token))
        .route_layer(axum::middleware::from_fn_with_state(
            crate::load_shed::InFlight::default(),
            crate::load_shed::shed,
        ));

    Router::new()
        .route("/", get(health::index))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route(
            "/openapi.json",
            get(move || std::future::ready(openapi.clone())),
        )
        .merge(guarded)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn(telemetry::record_http))
        .layer(RequestBodyLimitLayer::new(body::MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
}

async fn not_found(OriginalUri(uri): OriginalUri) -> Problem {
    Problem::not_found(format!("no API path {}", uri.path()))
}

async fn method_not_allowed(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
) -> Problem {
    let detail = format!("this method is not supported on {}", uri.path());
    // The item routes are shared by every kind; `Allow` must name what this kind
    // allows on this server, not every method the shared route has.
    match item_kind(uri.path()) {
        Some(kind) if !state.role.writes(kind) => Problem::read_only(detail),
        _ => Problem::method_not_allowed(detail),
    }
}

/// The kind of a resource item path: `/meshes/{mesh}/{plural}/{name}` or
/// `/{plural}/{name}`.
fn item_kind(path: &str) -> Option<ResourceKind> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let plural = match segments.as_slice() {
        ["meshes", _, plural, _] | [plural, _] => *plural,
        _ => return None,
    };
    ResourceKind::from_plural(plural).filter(|k| !k.is_internal())
}

/// `/{plural}` and `/{plural}/{name}` for a global kind; [`resources`] decides with
/// the role whether writes are accepted.
fn global_kind_routes(router: Router<AppState>, kind: ResourceKind) -> Router<AppState> {
    let collection = format!("/{}", kind.plural());
    let item = format!("/{}/{{name}}", kind.plural());
    let list_path = collection.clone();
    router
        .route(
            &collection,
            get(
                move |State(s): State<AppState>, RawQuery(raw): RawQuery| async move {
                    let pairs = query_pairs(raw)?;
                    resources::list(s.store.as_ref(), kind, None, &list_path, &pairs).await
                },
            ),
        )
        .route(
            &item,
            get(
                move |State(s): State<AppState>, ApiPath(name): ApiPath<String>| async move {
                    resources::get(s.store.as_ref(), ResourceKey::global(kind, name)).await
                },
            )
            .put(
                move |State(s): State<AppState>,
                      ApiPath(name): ApiPath<String>,
                      headers: HeaderMap,
                      body: Result<Bytes, BytesRejection>| async move {
                    resources::put(
                        s.store.as_ref(),
                        &s.role,
                        ResourceKey::global(kind, name),
                        &headers,
                        body,
                    )
                    .await
                },
            )
            .delete(
                move |State(s): State<AppState>,
                      ApiPath(name): ApiPath<String>,
                      headers: HeaderMap| async move {
                    resources::delete(
                        s.store.as_ref(),
                        &s.role,
                        ResourceKey::global(kind, name),
                        &headers,
                    )
                    .await
                },
            ),
        )
}

async fn list_meshes(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<resources::ListResponse>, Problem> {
    let pairs = query_pairs(raw)?;
    resources::list(
        s.store.as_ref(),
        ResourceKind::Mesh,
        None,
        "/meshes",
        &pairs,
    )
    .await
}

async fn get_mesh(
    State(s): State<AppState>,
    ApiPath(mesh): ApiPath<String>,
) -> Result<Response, Problem> {
    resources::get(
        s.store.as_ref(),
        ResourceKey::global(ResourceKind::Mesh, mesh),
    )
    .await
}

async fn put_mesh(
    State(s): State<AppState>,
    ApiPath(mesh): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let key = ResourceKey::global(ResourceKind::Mesh, mesh);
    resources::put(s.store.as_ref(), &s.role, key, &headers, body).await
}

async fn delete_mesh(
    State(s): State<AppState>,
    ApiPath(mesh): ApiPath<String>,
    headers: HeaderMap,
) -> Result<axum::Json<resources::DeleteResponse>, Problem> {
    let key = ResourceKey::global(ResourceKind::Mesh, mesh);
    resources::delete(s.store.as_ref(), &s.role, key, &headers).await
}

async fn list_in_mesh(
    State(s): State<AppState>,
    ApiPath((mesh, plural)): ApiPath<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<resources::ListResponse>, Problem> {
    let kind = mesh_kind(&plural)?;
    let pairs = query_pairs(raw)?;
    let path = format!("/meshes/{mesh}/{plural}");
    resources::list(s.store.as_ref(), kind, Some(mesh), &path, &pairs).await
}

async fn get_in_mesh(
    State(s): State<AppState>,
    ApiPath((mesh, plural, name)): ApiPath<(String, String, String)>,
) -> Result<Response, Problem> {
    let key = ResourceKey::in_mesh(mesh_kind(&plural)?, mesh, name);
    resources::get(s.store.as_ref(), key).await
}

async fn put_in_mesh(
    State(s): State<AppState>,
    ApiPath((mesh, plural, name)): ApiPath<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let key = ResourceKey::in_mesh(mesh_kind(&plural)?, mesh, name);
    resources::put(s.store.as_ref(), &s.role, key, &headers, body).await
}

async fn delete_in_mesh(
    State(s): State<AppState>,
    ApiPath((mesh, plural, name)): ApiPath<(String, String, String)>,
    headers: HeaderMap,
) -> Result<axum::Json<resources::DeleteResponse>, Problem> {
    let key = ResourceKey::in_mesh(mesh_kind(&plural)?, mesh, name);
    resources::delete(s.store.as_ref(), &s.role, key, &headers).await
}
