//! `/openapi.json`: the OpenAPI 3 document of the whole API, generated from the same
//! kind table and [`Role`] the router is built from, so the two cannot drift apart.

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use meridian_model::ResourceKind;
use utoipa::ToSchema;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItemBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, ObjectBuilder, SchemaFormat, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    RefOr, Required, Schema,
};

use crate::problem::{InvalidParameter, Problem};
use crate::resources::{DeleteResponse, DeletedResource, ListResponse};
use crate::router::Role;

/// The `GET /openapi.json` answer for `role`, rendered once when the router is built.
#[derive(Clone)]
pub struct Rendered(Bytes);

impl IntoResponse for Rendered {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

/// Renders [`document`] for `role` as JSON.
pub fn rendered(role: &Role) -> Rendered {
    // Serialising an OpenApi (plain strings, maps and numbers) cannot fail.
    Rendered(Bytes::from(
        serde_json::to_vec(&document(role)).unwrap_or_default(),
    ))
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// A DNS-1123 label: mesh and zone names.
const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";

/// A DNS-1123 subdomain: other resource names.
const DNS_SUBDOMAIN: &str =
    "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$";

/// A resource name as the validator accepts it: a DNS-1123 label (`label`:
/// meshes, zones) or subdomain, so generated clients never send a name the
/// server refuses.
fn name_string(label: bool) -> ObjectBuilder {
    let (pattern, max) = if label {
        (DNS_LABEL, 63)
    } else {
        (DNS_SUBDOMAIN, 253)
    };
    string()
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(pattern))
}

fn string_map() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(
            string().build(),
        )))))
}

/// A spec type's schema, its name, and the schemas it refers to.
struct SpecSchema {
    name: String,
    schema: RefOr<Schema>,
    nested: Vec<(String, RefOr<Schema>)>,
}

fn spec_schema_of<T: ToSchema>() -> SpecSchema {
    let mut nested = Vec::new();
    T::schemas(&mut nested);
    SpecSchema {
        name: T::name().into_owned(),
        schema: T::schema(),
        nested,
    }
}

/// The schema of a kind's spec, generated from the model's own types.
fn spec_schema(kind: ResourceKind) -> SpecSchema {
    use meridian_model as m;
    match kind {
        ResourceKind::Mesh => spec_schema_of::<m::MeshSpec>(),
        ResourceKind::Zone => spec_schema_of::<m::ZoneSpec>(),
        ResourceKind::Dataplane => spec_schema_of::<m::DataplaneSpec>(),
        ResourceKind::ZoneIngress => spec_schema_of::<m::ZoneIngressSpec>(),
        ResourceKind::ZoneEgress => spec_schema_of::<m::ZoneEgressSpec>(),
        ResourceKind::MeshTrafficPermission => spec_schema_of::<m::MeshTrafficPermissionSpec>(),
        ResourceKind::MeshTcpRoute => spec_schema_of::<m::MeshTcpRouteSpec>(),
        ResourceKind::MeshLoadBalancingStrategy => {
            spec_schema_of::<m::MeshLoadBalancingStrategySpec>()
        }
        ResourceKind::MeshTimeout => spec_schema_of::<m::MeshTimeoutSpec>(),
        ResourceKind::MeshHealthCheck => spec_schema_of::<m::MeshHealthCheckSpec>(),
        ResourceKind::MeshCircuitBreaker => spec_schema_of::<m::MeshCircuitBreakerSpec>(),
        ResourceKind::MeshRetry => spec_schema_of::<m::MeshRetrySpec>(),
        ResourceKind::Secret => spec_schema_of::<m::SecretSpec>(),
        // `spec` and `status` sit at the document's top level, as the fields of
        // the non-policy kinds do.
        ResourceKind::MeshService => spec_schema_of::<m::MeshServiceFields>(),
        ResourceKind::MeshMultiZoneService => spec_schema_of::<m::MeshMultiZoneServiceFields>(),
    }
}

/// The meta fields every document carries.
fn meta_properties(kind: ResourceKind) -> Vec<(&'static str, Schema, bool)> {
    let timestamp = || {
        Schema::Object(
            string()
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .read_only(Some(true))
                .build(),
        )
    };
    let mut properties = vec![
        (
            "type",
            Schema::Object(string().enum_values(Some([kind.type_name()])).build()),
            true,
        ),
        (
            "name",
            Schema::Object(
                name_string(matches!(kind, ResourceKind::Zone | ResourceKind::Mesh)).build(),
            ),
            true,
        ),
        // `labels: null` reads as no labels, as Kuma reads it.
        (
            "labels",
            Schema::Object(
                string_map()
                    .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                        Type::Object,
                        Type::Null,
                    ]))
                    .build(),
            ),
            false,
        ),
        ("creationTime", timestamp(), false),
        ("modificationTime", timestamp(), false),
    ];
    if kind.is_mesh_scoped() {
        properties.push(("mesh", Schema::Object(name_string(true).build()), true));
    }
    properties
}

/// The document schema of one kind: its meta fields plus its spec, under `spec` for
/// policies and at top level for the others (as Kuma writes them).
fn document_schema(kind: ResourceKind, spec: &SpecSchema) -> Schema {
    let description = format!("A {} in Kuma's universal format.", kind.type_name());
    let mut object = match (&spec.schema, kind.is_policy()) {
        (RefOr::T(Schema::Object(fields)), false) => fields.clone(),
        _ => ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("spec", Ref::from_schema_name(spec.name.clone()))
            .required("spec")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .build(),
    };
    object.description = Some(description);
    for (name, schema, required) in meta_properties(kind) {
        object.properties.insert(name.to_owned(), RefOr::T(schema));
        if required {
            object.required.push(name.to_owned());
        }
    }
    Schema::Object(object)
}

fn path_param(name: &str, description: &str) -> utoipa::openapi::path::Parameter {
    path_param_of(name, description, string())
}

/// A path parameter with its own schema (names: [`name_string`]).
fn path_param_of(
    name: &str,
    description: &str,
    schema: ObjectBuilder,
) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// A query parameter: a string, or an integer within `range`.
fn query_param(
    name: &str,
    description: &str,
    range: Option<(u64, u64)>,
) -> utoipa::openapi::path::Parameter {
    let schema = match range {
        Some((min, max)) => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(min as f64))
            .maximum(Some(max as f64)),
        None => string(),
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn json_response(description: &str, schema: impl Into<RefOr<Schema>>) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

fn with_errors(op: OperationBuilder, statuses: &[(&str, &str)]) -> OperationBuilder {
    statuses.iter().fold(op, |op, (status, description)| {
        op.response(*status, problem_response(description))
    })
}

/// Paths and operations for one kind; PUT and DELETE where `role` writes it.
fn kind_paths(paths: PathsBuilder, kind: ResourceKind, role: &Role) -> PathsBuilder {
    let plural = kind.plural();
    let type_name = kind.type_name();
    let (collection, item, mut params) = if kind == ResourceKind::Mesh {
        ("/meshes".to_owned(), "/meshes/{name}".to_owned(), vec![])
    } else if kind.is_mesh_scoped() {
        (
            format!("/meshes/{{mesh}}/{plural}"),
            format!("/meshes/{{mesh}}/{plural}/{{name}}"),
            vec![path_param_of("mesh", "The mesh.", name_string(true))],
        )
    } else {
        (format!("/{plural}"), format!("/{plural}/{{name}}"), vec![])
    };
    let doc = Ref::from_schema_name(type_name);
    let writable = role.writes(kind);

    let list = OperationBuilder::new()
        .operation_id(Some(format!("list{type_name}")))
        .summary(Some(format!("List {type_name} resources")))
        .tag(type_name)
        .parameters(Some(params.iter().cloned().chain([
            query_param(
                "size",
                "Items per page (1 to 1000, default 100).",
                Some((1, crate::query::MAX_PAGE_SIZE)),
            ),
            query_param(
                "offset",
                "Items to skip.",
                Some((0, crate::query::MAX_OFFSET)),
            ),
        ])))
        .response(
            "200",
            json_response(
                "A page of resources.",
                Ref::from_schema_name("ListResponse"),
            ),
        );
    let list = with_errors(
        list,
        &[
            ("400", "Invalid query."),
            ("404", "Mesh not found."),
            ("503", "Store unavailable."),
        ],
    );

    params.push(path_param_of(
        "name",
        "The resource name.",
        name_string(matches!(kind, ResourceKind::Zone | ResourceKind::Mesh)),
    ));
    let get = OperationBuilder::new()
        .operation_id(Some(format!("get{type_name}")))
        .summary(Some(format!("Get a {type_name}")))
        .tag(type_name)
        .parameters(Some(params.clone()))
        .response(
            "200",
            json_response("The resource; ETag carries its version.", doc.clone()),
        );
    let get = with_errors(get, &[("404", "Not found."), ("503", "Store unavailable.")]);

    let mut item_path = PathItemBuilder::new().operation(HttpMethod::Get, get.build());
    if writable {
        let put = OperationBuilder::new()
            .operation_id(Some(format!("put{type_name}")))
            .summary(Some(format!("Create or update a {type_name}")))
            .description(Some("`If-Match: \"<version>\"` makes the write conditional; `If-None-Match: *` makes it create-only."))
            .tag(type_name)
            .parameters(Some(params.clone()))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content("application/json", ContentBuilder::new().schema(Some(doc.clone())).build())
                    .content("application/yaml", ContentBuilder::new().schema(Some(doc.clone())).build())
                    .build(),
            ))
            .response("200", json_response("Updated (or unchanged).", doc.clone()))
            .response("201", json_response("Created.", doc.clone()))
            .security(SecurityRequirement::new("adminToken", Vec::<String>::new()));
        let mut put_errors = vec![
            ("400", "Invalid document: every invalid field is listed."),
            ("401", "Missing or wrong admin token."),
            ("403", "A read-only token: it may only read."),
            ("404", "The mesh (or, on a zone, the zone) does not exist."),
            ("409", "Version conflict."),
            ("413", "Body too large."),
            ("503", "Store unavailable."),
        ];
        if role.zone().is_some() {
            put_errors.push(("405", "The resource belongs to another zone."));
        }
        let put = with_errors(put, &put_errors);
        let delete = OperationBuilder::new()
            .operation_id(Some(format!("delete{type_name}")))
            .summary(Some(format!("Delete a {type_name} and what it owns")))
            .tag(type_name)
            .parameters(Some(params))
            .response(
                "200",
                json_response("What was deleted.", Ref::from_schema_name("DeleteResponse")),
            )
            .security(SecurityRequirement::new("adminToken", Vec::<String>::new()));
        let delete = with_errors(
            delete,
            &[
                ("401", "Missing or wrong admin token."),
                ("403", "A read-only token: it may only read."),
                ("404", "Not found."),
                ("405", "On a zone: the resource belongs to another zone."),
                ("409", "Version conflict."),
                ("503", "Store unavailable."),
            ],
        );
        item_path = item_path
            .operation(HttpMethod::Put, put.build())
            .operation(HttpMethod::Delete, delete.build());
    }
    paths
        .path(
            collection,
            PathItemBuilder::new()
                .operation(HttpMethod::Get, list.build())
                .build(),
        )
        .path(item, item_path.build())
}

fn plain_get(
    id: &str,
    summary: &str,
    response: utoipa::openapi::Response,
) -> utoipa::openapi::PathItem {
    PathItemBuilder::new()
        .operation(
            HttpMethod::Get,
            OperationBuilder::new()
                .operation_id(Some(id))
                .summary(Some(summary))
                .tag("operations")
                .response("200", response)
                .build(),
        )
        .build()
}

/// An admin-only `POST` operation of the zone token paths (global only).
fn token_operation(
    id: &str,
    summary: &str,
    description: &str,
    body: Option<&str>,
    answer: (&str, &str),
) -> utoipa::openapi::PathItem {
    let mut op = OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(summary))
        .description(Some(description))
        .tag("Zone")
        .response(
            "200",
            json_response(answer.1, Ref::from_schema_name(answer.0)),
        )
        .security(SecurityRequirement::new("adminToken", Vec::<String>::new()));
    if let Some(body) = body {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(body)))
                        .build(),
                )
                .build(),
        ));
    }
    let mut errors = vec![
        ("401", "Missing or wrong admin token."),
        ("403", "A read-only token: it may only read."),
        ("503", "Store unavailable."),
    ];
    if body.is_some() {
        errors.insert(
            0,
            ("400", "Invalid request: every invalid field is listed."),
        );
    }
    PathItemBuilder::new()
        .operation(HttpMethod::Post, with_errors(op, &errors).build())
        .build()
}

/// `/raft…` on a zone CP: its replica group (404 when it runs as one replica).
fn raft_paths(paths: PathsBuilder) -> PathsBuilder {
    let free_object = || ObjectBuilder::new().schema_type(Type::Object).build();
    let admin = || SecurityRequirement::new("adminToken", Vec::<String>::new());
    let change = |id: &str, summary: &str, method: HttpMethod, body: bool| {
        let mut op = OperationBuilder::new()
            .operation_id(Some(id))
            .summary(Some(summary))
            .tag("Raft")
            .response(
                "200",
                json_response("The log index the change committed at.", free_object()),
            )
            .security(admin());
        if body {
            let learner = ObjectBuilder::new()
                .property(
                    "id",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                )
                .required("id")
                .property(
                    "addr",
                    string().description(Some("HOST:PORT of its Raft server")),
                )
                .required("addr")
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
                .build();
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(learner)).build(),
                    )
                    .build(),
            ));
        } else {
            op = op.parameter(path_param("id", "The replica's Raft node id."));
        }
        let op = with_errors(
            op,
            &[
                ("400", "Invalid request."),
                ("401", "Missing or wrong admin token."),
                ("404", "This zone CP runs as one replica."),
                ("409", "The group refused the change."),
                ("503", "No leader could commit the change in time."),
            ],
        );
        PathItemBuilder::new().operation(method, op.build()).build()
    };
    paths
        .path(
            "/raft",
            PathItemBuilder::new()
                .operation(
                    HttpMethod::Get,
                    with_errors(
                        OperationBuilder::new()
                            .operation_id(Some("getRaftGroup"))
                            .summary(Some("The replica group: members, leader, term, indexes"))
                            .tag("Raft")
                            .response("200", json_response("The group.", free_object())),
                        &[("404", "This zone CP runs as one replica.")],
                    )
                    .build(),
                )
                .build(),
        )
        .path(
            "/raft/learners",
            change(
                "addRaftLearner",
                "Add a replica as a learner",
                HttpMethod::Post,
                true,
            ),
        )
        .path(
            "/raft/voters/{id}",
            change(
                "promoteRaftLearner",
                "Make a learner a voter",
                HttpMethod::Post,
                false,
            ),
        )
        .path(
            "/raft/members/{id}",
            change(
                "removeRaftMember",
                "Remove a replica from the group",
                HttpMethod::Delete,
                false,
            ),
        )
}

/// `POST /tokens/zone`, `/tokens/zone/revoke` and `/tokens/zone/rotate-key`.
fn zone_token_paths(paths: PathsBuilder) -> PathsBuilder {
    paths
        .path(
            "/tokens/zone",
            token_operation(
                "issueZoneToken",
                "Issue a zone token",
                "The answer carries the token (give it to `meridian zone-cp --zone-token`) \
                 and its `id`, by which it can be revoked.",
                Some("ZoneTokenRequest"),
                ("ZoneTokenResponse", "The token and its id."),
            ),
        )
        .path(
            "/tokens/zone/revoke",
            token_operation(
                "revokeZoneToken",
                "Revoke a zone token",
                "Every global replica refuses the token from now on: the zone's live KDS \
                 streams that authenticated with it end within seconds, and its reconnects \
                 are refused with UNAUTHENTICATED \"zone token revoked\".",
                Some("RevokeZoneTokenRequest"),
                ("RevokeZoneTokenResponse", "The token is revoked."),
            ),
        )
        .path(
            "/tokens/zone/rotate-key",
            token_operation(
                "rotateZoneTokenKey",
                "Rotate the zone token signing key",
                "Replaces the key that signs zone tokens, on every global replica. This \
                 invalidates EVERY zone token issued before (their zones are disconnected): \
                 issue new tokens afterwards. The key itself is never returned.",
                None,
                ("RotateKeyResponse", "A new key is in use."),
            ),
        )
}

/// Builds the OpenAPI document of the API a server in `role` serves.
pub fn document(role: &Role) -> OpenApi {
    let mut components = ComponentsBuilder::new()
        .schema_from::<Problem>()
        .schema_from::<InvalidParameter>()
        .schema_from::<ListResponse>()
        .schema_from::<DeleteResponse>()
        .schema_from::<DeletedResource>()
        .security_scheme(
            "adminToken",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token for writes. Reads are open unless the server runs \
                         with --reads-need-token; then the admin token or a read-only token \
                         (--read-token-file) is needed for GET and HEAD. A read-only token \
                         on a write gets 403.",
                    ))
                    .build(),
            ),
        );
    let mut paths = PathsBuilder::new();
    for kind in ResourceKind::ALL.into_iter().filter(|k| !k.is_internal()) {
        let spec = spec_schema(kind);
        components = components
            .schema(kind.type_name(), document_schema(kind, &spec))
            .schemas_from_iter(spec.nested.clone());
        if kind.is_policy() {
            components = components.schema(spec.name.clone(), spec.schema.clone());
        }
        paths = kind_paths(paths, kind, role);
    }
    if *role == Role::Global {
        components = components
            .schema_from::<crate::tokens::ZoneTokenRequest>()
            .schema_from::<crate::tokens::ZoneTokenResponse>()
            .schema_from::<crate::tokens::RevokeZoneTokenRequest>()
            .schema_from::<crate::tokens::RevokeZoneTokenResponse>()
            .schema_from::<crate::tokens::RotateKeyResponse>();
        paths = zone_token_paths(paths);
    }
    if matches!(role, Role::Zone { .. }) {
        paths = raft_paths(paths);
    }
    let free_object = || ObjectBuilder::new().schema_type(Type::Object).build();
    let zone_param = path_param_of("name", "The zone.", name_string(true));
    paths = paths
        .path(
            "/zones/{name}/insight",
            PathItemBuilder::new()
                .operation(
                    HttpMethod::Get,
                    with_errors(
                        OperationBuilder::new()
                            .operation_id(Some("getZoneInsight"))
                            .summary(Some("A zone's sync status"))
                            .tag("Zone")
                            .parameter(zone_param)
                            .response("200", json_response("The insight.", free_object())),
                        &[("404", "No such zone."), ("503", "Store unavailable.")],
                    )
                    .build(),
                )
                .build(),
        )
        .path(
            "/zones+insights",
            plain_get(
                "listZonesWithInsights",
                "Every zone with its insight",
                json_response("Zones.", Ref::from_schema_name("ListResponse")),
            ),
        )
        .path(
            "/healthz",
            plain_get(
                "healthz",
                "Liveness",
                json_response("Alive.", free_object()),
            ),
        )
        .path(
            "/readyz",
            PathItemBuilder::new()
                .operation(
                    HttpMethod::Get,
                    OperationBuilder::new()
                        .operation_id(Some("readyz"))
                        .summary(Some("Readiness: 503 while the store is unreachable"))
                        .tag("operations")
                        .response("200", json_response("Ready.", free_object()))
                        .response("503", problem_response("The store is unreachable."))
                        .build(),
                )
                .build(),
        )
        .path(
            "/metrics",
            plain_get(
                "metrics",
                "Prometheus metrics",
                ResponseBuilder::new()
                    .description("Prometheus text format.")
                    .content(
                        "text/plain",
                        ContentBuilder::new().schema(Some(string().build())).build(),
                    )
                    .build(),
            ),
        )
        .path(
            "/openapi.json",
            plain_get(
                "openapi",
                "This document",
                json_response("OpenAPI 3.", free_object()),
            ),
        );
    let (title, description) = match role {
        Role::Global => (
            "Meridian global control plane".to_owned(),
            "Kuma-compatible resource API of Meridian's global control plane.".to_owned(),
        ),
        Role::Zone { name } => (
            format!("Meridian zone control plane ({name})"),
            format!(
                "Kuma-compatible resource API of zone {name}'s control plane: reads of the \
                 zone's copy of the mesh, writes of the zone's own data planes, ingresses \
                 and egresses."
            ),
        ),
    };
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(title)
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(description))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name schemas say exactly what the validator accepts: a generated
    /// client that follows them is never refused for a name, and one the
    /// schema allows is accepted.
    #[test]
    fn name_schemas_match_the_validator() {
        let long_label = "a".repeat(63);
        let too_long_label = "a".repeat(64);
        let long_name = [long_label.as_str(); 4].join(".");
        let names = [
            "default",
            "a",
            "web-1",
            "a.b",
            "a-.b",
            "-a",
            "a-",
            "A",
            "a_b",
            "",
            "1",
            "x.y.z",
            "a..b",
            ".a",
            "a.",
            &long_label,
            &too_long_label,
            &long_name,
        ];
        for (label, validate) in [
            (
                true,
                meridian_model::validate_mesh_name as fn(&str) -> Result<(), String>,
            ),
            (false, meridian_model::validate_name),
        ] {
            let schema = name_string(label).build();
            let pattern = regex::Regex::new(schema.pattern.as_deref().expect("pattern"))
                .expect("the pattern compiles");
            let (min, max) = (
                schema.min_length.expect("min"),
                schema.max_length.expect("max"),
            );
            for name in names {
                let by_schema = pattern.is_match(name) && (min..=max).contains(&name.len());
                assert_eq!(
                    by_schema,
                    validate(name).is_ok(),
                    "{name:?} (label: {label}): schema and validator disagree"
                );
            }
        }
    }

    #[test]
    fn every_kind_has_its_paths_and_schema() {
        let doc = document(&Role::Global);
        let components = doc.components.expect("components");
        for kind in ResourceKind::ALL.into_iter().filter(|k| !k.is_internal()) {
            assert!(components.schemas.contains_key(kind.type_name()), "{kind}");
        }
        assert!(
            doc.paths
                .paths
                .contains_key("/meshes/{mesh}/meshtcproutes/{name}")
        );
        assert!(doc.paths.paths.contains_key("/zones/{name}"));
        // Policies reference their generated spec schema; plain kinds inline their fields.
        assert!(components.schemas.contains_key("MeshTcpRouteSpec"));
        let RefOr::T(Schema::Object(mesh)) = &components.schemas["Mesh"] else {
            panic!("Mesh is an object schema");
        };
        assert!(mesh.properties.contains_key("mtls") && mesh.properties.contains_key("name"));
        // MeshService and MeshMultiZoneService: `spec` and `status` beside the meta
        // fields, each a schema of its own.
        for (kind, spec) in [
            ("MeshService", "MeshServiceSpec"),
            ("MeshMultiZoneService", "MeshMultiZoneServiceSpec"),
        ] {
            let RefOr::T(Schema::Object(doc)) = &components.schemas[kind] else {
                panic!("{kind} is an object schema");
            };
            for field in ["spec", "status", "name", "mesh"] {
                assert!(doc.properties.contains_key(field), "{kind}.{field}");
            }
            assert!(components.schemas.contains_key(spec), "{spec}");
        }
        assert!(
            doc.paths
                .paths
                .contains_key("/meshes/{mesh}/meshmultizoneservices/{name}")
        );
        // MeshServices are zone-owned: read-only on global, as Dataplanes.
        let services = &doc.paths.paths["/meshes/{mesh}/meshservices/{name}"];
        assert!(services.put.is_none() && services.get.is_some());
        let multi = &doc.paths.paths["/meshes/{mesh}/meshmultizoneservices/{name}"];
        assert!(multi.put.is_some() && multi.delete.is_some());
        // Dataplanes are read-only on global: no PUT documented.
        let dataplane = &doc.paths.paths["/meshes/{mesh}/dataplanes/{name}"];
        assert!(dataplane.put.is_none() && dataplane.get.is_some());
        for path in [
            "/tokens/zone",
            "/tokens/zone/revoke",
            "/tokens/zone/rotate-key",
        ] {
            let post = doc.paths.paths[path].post.as_ref().expect(path);
            assert!(post.security.is_some(), "{path} needs the admin token");
            assert!(post.responses.responses.contains_key("403"), "{path}");
        }
        for schema in [
            "RevokeZoneTokenRequest",
            "RevokeZoneTokenResponse",
            "RotateKeyResponse",
        ] {
            assert!(components.schemas.contains_key(schema), "{schema}");
        }
        let RefOr::T(Schema::Object(issued)) = &components.schemas["ZoneTokenResponse"] else {
            panic!("ZoneTokenResponse is an object schema");
        };
        assert!(issued.properties.contains_key("id"));
    }

    #[test]
    fn a_zone_documents_its_own_writes_only() {
        let doc = document(&Role::Zone {
            name: "east".into(),
        });
        let paths = &doc.paths.paths;
        for kind in ResourceKind::ALL.into_iter().filter(|k| !k.is_internal()) {
            let path = match kind {
                ResourceKind::Mesh => "/meshes/{name}".to_owned(),
                k if k.is_mesh_scoped() => format!("/meshes/{{mesh}}/{}/{{name}}", k.plural()),
                k => format!("/{}/{{name}}", k.plural()),
            };
            let item = &paths[&path];
            assert!(item.get.is_some(), "{kind} is readable");
            assert_eq!(item.put.is_some(), kind.is_zone_owned(), "{kind} PUT");
            assert_eq!(item.delete.is_some(), kind.is_zone_owned(), "{kind} DELETE");
        }
        assert!(!paths.keys().any(|p| p.starts_with("/tokens")));
        assert!(paths.contains_key("/raft/learners"));
        assert!(doc.info.title.contains("east"));
    }
}
