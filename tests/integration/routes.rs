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
