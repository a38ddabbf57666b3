//! The OpenAPI 3.1 document, generated from the route table and the types
//! each handler (de)serializes ([`crate::routes::Doc`]), so it cannot drift
//! from the router: every path, parameter (with its pattern, length and
//! range), request body, response and error. CI runs a property-based
//! fuzzer against a live server with it (`scripts/openapi-fuzz.sh`).

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};
use warden_api::ErrorBody;
use warden_policies::Action;

use crate::routes::{Guard, ROUTES, Reply, RouteSpec, of};

/// Builds the document. `max_token_ttl_secs` is this server's longest API
/// token lifetime (the bound of `ttl_seconds`).
pub fn document(max_token_ttl_secs: u64) -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let error = of::<ErrorBody>(&mut g).to_value();
    let mut paths = Map::new();
    for r in ROUTES {
        let op = operation(r, &mut g, &error);
        let entry = paths
            .entry(r.path.replace("{*", "{"))
            .or_insert_with(|| Value::Object(Map::new()));
        entry[r.method.to_ascii_lowercase()] = op;
    }
    let mut schemas = Value::Object(g.take_definitions(true));
    // What the types cannot say on their own: the action names (they live
    // in `warden-policies`, which the wire types do not link) and this
    // server's configured token lifetime.
    schemas["PolicyCheck"]["properties"]["action"]["enum"] =
        Action::ALL.iter().map(|a| a.as_str()).collect();
    schemas["CreateToken"]["properties"]["ttl_seconds"]["maximum"] = json!(max_token_ttl_secs);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Warden API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        }
    })
}

fn operation(r: &RouteSpec, g: &mut schemars::SchemaGenerator, error: &Value) -> Value {
    let mut params: Vec<Value> = r
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let name = name.trim_start_matches('*');
            let (pattern, description) = path_param(r.path, name);
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": {"type": "string", "pattern": pattern},
                "description": description,
            })
        })
        .collect();
    if let Some(query) = r.doc.query {
        let schema = query(g).to_value();
        let required = schema["required"].as_array().cloned().unwrap_or_default();
        if let Some(props) = schema["properties"].as_object() {
            for (name, prop) in props {
                let mut prop = prop.clone();
                let description = prop
                    .as_object_mut()
                    .and_then(|p| p.remove("description"))
                    .unwrap_or(Value::Null);
                // A query parameter is absent rather than null.
                if let Some(types) = prop["type"].as_array() {
                    let types: Vec<Value> =
                        types.iter().filter(|t| *t != "null").cloned().collect();
                    prop["type"] = types.first().cloned().unwrap_or(Value::Null);
                }
                params.push(json!({
                    "name": name,
                    "in": "query",
                    "required": required.contains(&json!(name)),
                    "schema": prop,
                    "description": description,
                }));
            }
        }
    }
    let error_body = json!({"application/json": {"schema": error}});
    let mut responses = json!({
        "4XX": {"description": "the request was refused; `error.code` says why", "content": error_body},
        "503": {"description": "sealed, or the audit log, the database or the environment's cluster is unavailable", "content": error_body},
    });
    let success = match r.doc.reply {
        Reply::Json(schema) => json!({
            "description": "success",
            "content": {"application/json": {"schema": schema(g).to_value()}},
        }),
        Reply::Bytes(media_type) => json!({
            "description": "success",
            "content": {media_type: {"schema": {"type": "string"}}},
        }),
        Reply::Empty => json!({"description": "success, no body"}),
    };
    responses[r.doc.status.to_string()] = success;
    if r.path == "/readyz" {
        responses["503"] = responses["200"].clone();
        responses["503"]["description"] = json!("not ready: sealed or the database is unreachable");
    }
    let mut op = json!({
        "operationId": operation_id(r),
        "summary": r.summary,
        "parameters": params,
        "responses": responses,
    });
    if let Some(body) = r.doc.body {
        op["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": body(g).to_value()}},
        });
    }
    let (security, action) = match r.guard {
        Guard::Public => (json!([]), "public".to_owned()),
        Guard::Requires(actions) => (json!([{"bearer": []}]), names(actions)),
        Guard::Caller([]) => (json!([{"bearer": []}]), "self".to_owned()),
        Guard::Caller(actions) => (
            json!([{"bearer": []}]),
            format!("self ({} for other principals)", names(actions)),
        ),
    };
    op["security"] = security;
    op["x-warden-action"] = json!(action);
    op
}

fn names(actions: &[Action]) -> String {
    actions
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// `get_api_v1_secret_history_scope`: unique per route, stable, and a
/// valid identifier in every generated client.
fn operation_id(r: &RouteSpec) -> String {
    let mut id = r.method.to_ascii_lowercase();
    for part in r.path.split(|c: char| !c.is_ascii_alphanumeric()) {
        if !part.is_empty() {
            id.push('_');
            id.push_str(part);
        }
    }
    id
}

/// The shape of a path parameter, by its name in the route's template.
fn path_param(path: &str, name: &str) -> (&'static str, &'static str) {
    use warden_types::pattern::{NAME, PRINCIPAL, SCOPE_PATH, SECRET_SCOPE, SERVICE_PATH};
    match name {
        "parent" => (
            SCOPE_PATH,
            "a scope path such as acme/shop (slashes are literal)",
        ),
        "scope" => (
            SECRET_SCOPE,
            "a project, environment or service path such as acme/shop/prod",
        ),
        "service" => (SERVICE_PATH, "a service path ORG/PROJECT/ENV/SERVICE"),
        "log" => (NAME, "`system` or an organization"),
        "id" if path.starts_with("/api/v1/tokens") => ("^tok_[0-9a-f]{16}$", "a token id"),
        "id" if path.starts_with("/api/v1/session/") => ("^[0-9a-f]{24}$", "a session id"),
        "id" => (PRINCIPAL, "a principal id such as user:alice@acme"),
        _ => (NAME, "a name"),
    }
}
