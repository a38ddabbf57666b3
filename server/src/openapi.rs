//! The OpenAPI 3.1 document, generated from the route table so it cannot
//! drift from the router.

use serde_json::{Map, Value, json};

use crate::routes::{Guard, ROUTES};

/// Builds the document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let openapi_path = r.path.replace("{*", "{");
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                let wildcard = name.starts_with('*');
                let name = name.trim_start_matches('*');
                json!({
                    "name": name,
                    "in": "path",
                    "required": true,
                    "schema": {"type": "string"},
                    "description": if wildcard { "a scope path such as acme/shop/prod (slashes are literal)" } else { "a name" },
                })
            })
            .collect();
        let mut op = json!({
            "summary": r.summary,
            "parameters": params,
            "responses": {
                "200": {"description": "success"},
                "4XX": {"description": "client error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "503": {"description": "sealed, or the audit log or database is unavailable", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        match r.guard {
            Guard::Public => {
                op["security"] = json!([]);
                op["x-warden-action"] = json!("public");
            }
            Guard::Requires(actions) => {
                op["security"] = json!([{"bearer": []}]);
                op["x-warden-action"] = json!(
                    actions
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
            }
            Guard::Caller(actions) => {
                op["security"] = json!([{"bearer": []}]);
                op["x-warden-action"] = json!(if actions.is_empty() {
                    "self".to_owned()
                } else {
                    format!(
                        "self ({} for other principals)",
                        actions
                            .iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
            }
        }
        let entry = paths
            .entry(openapi_path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[r.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Warden API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "field": {"type": "string"}
                        }
                    }}
                }
            }
        }
    })
}
