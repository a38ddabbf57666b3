//! Every route is declared, documented, and protected as declared.

use std::collections::BTreeSet;

use hyper::Method;
use serde_json::Value;
use warden_server::routes::{Guard, ROUTES};

use crate::harness::{Db, TestServer};

fn concrete(path: &str) -> String {
    path.replace("{*scope}", "acme/shop")
        .replace("{*parent}", "acme")
        .replace("{*service}", "acme/shop/prod/api")
        .replace("{org}", "acme")
        .replace("{name}", "viewer")
        .replace("{id}", "user:root")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_exactly_the_routes() {
    let s = TestServer::start(Db::Sqlite).await;
    let doc: Value = s
        .client_with(None)
        .call(Method::GET, "/api/v1/openapi.json", None::<&Value>)
        .await
        .unwrap();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.replace("{*", "{")))
        .collect();
    assert_eq!(documented, routed);
    s.stop().await;
}

/// The document states every operation in full: a unique operation id,
/// its success status with a body schema (or none for 204), the error
/// body, a pattern for every path parameter, a schema for every query
/// parameter and request body, and every `$ref` names a schema it
/// defines. (`scripts/openapi-fuzz.sh` checks the server against it.)
#[test]
fn openapi_describes_every_operation() {
    let doc = warden_server::openapi::document(3600);
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in &refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
    let mut ids = BTreeSet::new();
    for r in ROUTES {
        let op = &doc["paths"][r.path.replace("{*", "{")][r.method.to_ascii_lowercase()];
        let what = format!("{} {}", r.method, r.path);
        assert!(
            ids.insert(op["operationId"].as_str().unwrap().to_owned()),
            "{what}"
        );
        let ok = &op["responses"][r.doc.status.to_string()];
        assert!(ok.is_object(), "{what}: no {} response", r.doc.status);
        assert_eq!(ok["content"].is_object(), r.doc.status != 204, "{what}");
        assert!(
            op["responses"]["4XX"]["content"]["application/json"]["schema"].is_object(),
            "{what}"
        );
        for p in op["parameters"].as_array().unwrap() {
            let schema = &p["schema"];
            match p["in"].as_str().unwrap() {
                "path" => assert!(schema["pattern"].is_string(), "{what}: {p}"),
                "query" => assert!(schema["type"].is_string(), "{what}: {p}"),
                other => panic!("{what}: parameter in {other}"),
            }
        }
        assert_eq!(
            op["requestBody"].is_object(),
            r.doc.body.is_some(),
            "{what}"
        );
        if r.doc.body.is_some() {
            assert!(
                op["requestBody"]["content"]["application/json"]["schema"].is_object(),
                "{what}"
            );
        }
    }
    // What the route types cannot say alone is filled in from the server.
    assert_eq!(
        schemas["CreateToken"]["properties"]["ttl_seconds"]["maximum"],
        3600
    );
    assert_eq!(
        schemas["PolicyCheck"]["properties"]["action"]["enum"]
            .as_array()
            .unwrap()
            .len(),
        warden_policies::Action::ALL.len()
    );
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Without a token, every route that declares an action answers 401 (and
/// every public one does not): a route cannot be served unprotected by
/// accident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_declared_route_requires_authentication() {
    let s = TestServer::start(Db::Sqlite).await;
    let anon = s.client_with(None);
    for r in ROUTES {
        let method = Method::from_bytes(r.method.as_bytes()).unwrap();
        let body = matches!(r.method, "POST" | "PUT").then(|| b"{}".to_vec());
        let mut conn = anon.connect().await.unwrap();
        let (status, bytes) = conn.send(method, &concrete(r.path), body).await.unwrap();
        match r.guard {
            Guard::Requires(_) | Guard::Caller(_) => assert_eq!(
                status.as_u16(),
                401,
                "{} {}: {}",
                r.method,
                r.path,
                String::from_utf8_lossy(&bytes)
            ),
            Guard::Public => assert_ne!(status.as_u16(), 401, "{} {}", r.method, r.path),
        }
        assert!(
            status.as_u16() < 500,
            "{} {} answered {status}",
            r.method,
            r.path
        );
    }
    s.stop().await;
}
