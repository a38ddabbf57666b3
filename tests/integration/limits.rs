//! Resolution and storage limits: no input from a tenant can crash the
//! server for every tenant (security issue, item A).

use hyper::Method;
use serde_json::{Map, Value, json};
use warden_api::ClientError;
use warden_types::{MAX_KEYS_PER_REQUEST, MAX_KEYS_PER_SCOPE};

use crate::both_backends;
use crate::harness::TestServer;

/// The chain the report described: `K00001=${K00002}`, ... up to 30,000.
const REPORTED_CHAIN: usize = 30_000;

fn chain_key(i: usize) -> String {
    format!("K{i:05}")
}

/// The values of chain keys `from..to` (the last key of the whole chain is a
/// literal).
fn chain_values(from: usize, to: usize, last: usize) -> Value {
    let mut m = Map::new();
    for i in from..to {
        let v = if i == last {
            "end".to_owned()
        } else {
            format!("${{{}}}", chain_key(i + 1))
        };
        m.insert(chain_key(i), json!(v));
    }
    Value::Object(m)
}

/// Regression: a developer's 30,000-key chain `K1=${K2}`, `K2=${K3}`, ...
/// made `resolve` overflow the stack and abort the process (every tenant
/// down, and again at each restart). Now the chain cannot even be stored
/// past the per-scope limit, the longest chain the limits allow (one
/// full scope at each of project, environment and service) is refused at
/// resolve with a 4xx naming its first keys, and the server keeps
/// answering.
async fn a_reference_chain_cannot_crash_the_server(s: TestServer) {
    s.scopes("acme/shop/dev/api", "development").await;
    s.scopes("acme/shop/dev/web", "development").await;
    let limit = MAX_KEYS_PER_SCOPE;
    let batch = MAX_KEYS_PER_REQUEST;

    // Build the reported chain in the environment, 100 keys a request,
    // until the scope is full.
    let mut stored = 0;
    let refused = loop {
        assert!(stored < REPORTED_CHAIN, "the scope never filled up");
        let body = json!({"values": chain_values(stored + 1, stored + 1 + batch, REPORTED_CHAIN)});
        match s
            .call(Method::PUT, "/api/v1/secrets/acme/shop/dev", Some(body))
            .await
        {
            Ok(_) => stored += batch,
            Err(e) => break e,
        }
    };
    assert_eq!(stored, limit, "the environment took {stored} keys");
    match refused {
        ClientError::Api {
            status: 409,
            message,
            ..
        } => assert!(
            message.contains("acme/shop/dev holds 1000 keys")
                && message.contains("at most 1000 keys"),
            "{message}"
        ),
        other => panic!("expected a 409 naming the limit, got {other}"),
    }

    // The longest chain the limits allow: 1,000 more keys in the project
    // and 1,000 in the service, continuing it (3,000 in all).
    let total = 3 * limit;
    for (scope, first) in [
        ("acme/shop", limit + 1),
        ("acme/shop/dev/api", 2 * limit + 1),
    ] {
        for from in (first..first + limit).step_by(batch) {
            s.put(scope, chain_values(from, from + batch, total)).await;
        }
    }
    let e = s
        .call(Method::GET, "/api/v1/resolve/acme/shop/dev/api", None)
        .await
        .unwrap_err();
    match e {
        ClientError::Api {
            status,
            code,
            message,
        } => {
            assert_eq!((status, code.as_str()), (422, "bad_reference"), "{message}");
            assert!(
                message.contains("K00001 -> K00002 -> K00003 -> K00004 -> K00005 -> ..."),
                "{message}"
            );
        }
        other => panic!("expected a 4xx, got {other}"),
    }

    // The server is still up and serving, for this service's secrets and
    // for another service.
    let status = s.ok(Method::GET, "/api/v1/sys/status", None).await;
    assert_eq!(status["sealed"], json!(false));
    assert_eq!(s.get("acme/shop/dev/api", "K03000").await.unwrap(), "end");
    s.put(
        "acme/shop/dev/web",
        json!({"URL": "https://${HOST}", "HOST": "x"}),
    )
    .await;
    // `web` inherits the project's and environment's 2,000 chain keys too:
    // its resolve fails the same way, cleanly.
    let e = s
        .call(Method::GET, "/api/v1/resolve/acme/shop/dev/web", None)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Api { status: 422, .. }), "{e}");
    s.scopes("acme/other/dev/web", "development").await;
    s.put(
        "acme/other/dev/web",
        json!({"URL": "https://${HOST}", "HOST": "x"}),
    )
    .await;
    let r = s
        .ok(Method::GET, "/api/v1/resolve/acme/other/dev/web", None)
        .await;
    assert_eq!(r["values"]["URL"], "https://x", "{r}");
}

both_backends!(a_reference_chain_cannot_crash_the_server);

/// The per-scope limit holds when two replicas on one PostgreSQL database
/// add keys to the same scope at the same time: each counts what the other
/// committed (the batch locks the scope rows it writes to).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_limit_holds_across_replicas() {
    use warden_store::{NewVersion, ScopeRow, Store, StoreError};
    let url = crate::harness::fresh_postgres_db().await;
    let a = Store::connect(&url).await.unwrap();
    let b = Store::connect(&url).await.unwrap();
    crate::harness::with_row_key(&a);
    crate::harness::with_row_key(&b);
    for (path, parent) in [("acme", None), ("acme/shop", Some("acme"))] {
        let row = ScopeRow {
            path: path.into(),
            kind: "project".into(),
            parent: parent.map(Into::into),
            org: "acme".into(),
            mode: None,
            max_versions: None,
            created_at: 0,
        };
        a.create_scope(row, None).await.unwrap();
    }
    let put = |names: Vec<String>| {
        let puts = names
            .into_iter()
            .map(|name| NewVersion {
                scope: "acme/shop".into(),
                org: "acme".into(),
                name,
                cas: None,
                max_versions: 10,
                key_term: 1,
            })
            .collect::<Vec<_>>();
        let sealer: warden_store::Sealer = Box::new(|_, _| Ok(vec![0; 32]));
        (puts, sealer)
    };
    let room = 10;
    for from in (0..MAX_KEYS_PER_SCOPE - room).step_by(MAX_KEYS_PER_REQUEST) {
        let to = (from + MAX_KEYS_PER_REQUEST).min(MAX_KEYS_PER_SCOPE - room);
        let (p, s) = put((from..to).map(|i| format!("OLD_{i}")).collect());
        a.put_secrets(p, s).await.unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..8 * room {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (p, s) = put(vec![format!("NEW_{i}")]);
        tasks.push(tokio::spawn(async move { store.put_secrets(p, s).await }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Refused(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, refused), (room, 7 * room));
    let listed = a.list_secrets("acme/shop").await.unwrap();
    assert_eq!(listed.len(), MAX_KEYS_PER_SCOPE);
}
