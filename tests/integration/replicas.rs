//! Several Warden replicas on one PostgreSQL database: two stores (two
//! writers, two connection pools) racing to create and bump the same
//! secrets must give every write its own version, with no gaps and no
//! failures.

use std::collections::BTreeMap;

use warden_store::{NewVersion, ScopeRow, Store};

fn scope(path: &str, parent: Option<&str>) -> ScopeRow {
    ScopeRow {
        path: path.into(),
        kind: "project".into(),
        parent: parent.map(Into::into),
        org: "acme".into(),
        mode: None,
        max_versions: None,
        created_at: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_writing_the_same_secrets_never_collide() {
    let url = crate::harness::fresh_postgres_db().await;
    let a = Store::connect(&url).await.unwrap();
    let b = Store::connect(&url).await.unwrap();
    crate::harness::with_row_key(&a);
    crate::harness::with_row_key(&b);
    a.create_scope(scope("acme", None), None).await.unwrap();
    a.create_scope(scope("acme/shop", Some("acme")), None)
        .await
        .unwrap();

    const WRITES: usize = 40;
    let mut tasks = Vec::new();
    for i in 0..WRITES {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            // Every request writes two shared secrets (created by whoever
            // comes first) and one of its own.
            let names = [
                "SHARED_1".to_owned(),
                "SHARED_2".to_owned(),
                format!("OWN_{i}"),
            ];
            let puts = names
                .iter()
                .map(|n| NewVersion {
                    scope: "acme/shop".into(),
                    org: "acme".into(),
                    name: n.clone(),
                    cas: None,
                    max_versions: 100,
                    key_term: 1,
                })
                .collect();
            let versions = store
                .put_secrets(puts, Box::new(|_, v| Ok(v.to_be_bytes().to_vec())))
                .await
                .unwrap();
            names.into_iter().zip(versions).collect::<Vec<_>>()
        }));
    }
    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for t in tasks {
        for (name, version) in t.await.unwrap() {
            seen.entry(name).or_default().push(version);
        }
    }
    for shared in ["SHARED_1", "SHARED_2"] {
        let mut v = seen[shared].clone();
        v.sort();
        assert_eq!(v, (1..=WRITES as i64).collect::<Vec<_>>(), "{shared}");
        let latest = a
            .secret_version("acme/shop", shared, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(latest.version, WRITES as i64);
        assert_eq!(
            latest.envelope,
            Some((WRITES as i64).to_be_bytes().to_vec())
        );
    }
}

/// PostgreSQL replicas cache tokens, bindings, scopes and ciphertext rows;
/// a request uses the cache only once its replica has heard of every change
/// committed before it began. Reads through one replica right after each
/// change acknowledged by the other are never stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_through_another_replica_are_never_stale() {
    use hyper::Method;
    use serde_json::{Value, json};
    let a = crate::harness::TestServer::start(crate::harness::Db::Postgres).await;
    a.scopes("acme/shop/prod/api", "production").await;
    let (token, _) = a.account("reader").await;
    a.grant("sa:reader", "viewer", "acme").await;
    a.grant("sa:reader", "admin", "acme/shop").await;
    let (b, reader_on_b, _dir) = crate::harness::second_replica(&a, Some(&token)).await;
    let read = |c: &warden_api::Client| {
        let c = c.clone();
        async move {
            c.call::<Value>(
                Method::GET,
                "/api/v1/secret/acme/shop/prod?key=K",
                None::<&Value>,
            )
            .await
        }
    };
    for round in 0..20 {
        // A new value written on a is what b answers next (and b's cache
        // is warm: the previous round read through it).
        let value = format!("v{round}");
        a.put("acme/shop/prod", json!({"K": value})).await;
        let got = read(&reader_on_b).await.unwrap();
        assert_eq!(got["value"], value, "round {round}: a stale value");
    }
    // A binding revoked on a no longer grants on b.
    a.revoke("sa:reader", "admin", "acme/shop").await;
    let r = read(&reader_on_b).await;
    assert!(
        matches!(&r, Err(warden_api::ClientError::Api { status: 403, .. })),
        "a revoked binding still granted: {r:?}"
    );
    // A token revoked on a no longer authenticates on b.
    a.grant("sa:reader", "admin", "acme/shop").await;
    read(&reader_on_b).await.unwrap();
    let info = reader_on_b
        .call::<Value>(Method::GET, "/api/v1/auth/whoami", None::<&Value>)
        .await
        .unwrap();
    let id = info["token_id"].as_str().unwrap().to_owned();
    a.ok(Method::POST, &format!("/api/v1/tokens/{id}/revoke"), None)
        .await;
    let r = read(&reader_on_b).await;
    assert!(
        matches!(&r, Err(warden_api::ClientError::Api { status: 401, .. })),
        "a revoked token still authenticated: {r:?}"
    );
    b.shutdown().await;
    a.stop().await;
}
