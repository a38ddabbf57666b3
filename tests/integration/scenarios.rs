//! The scenario suite, run against SQLite and PostgreSQL alike.

use hyper::Method;
use serde_json::{Value, json};
use warden_api::ClientError;

use crate::both_backends;
use crate::harness::TestServer;

fn status(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, code, .. } => (status, code),
        other => panic!("expected an API error, got {other}"),
    }
}

async fn secret_versions_lifecycle(s: TestServer) {
    s.scopes("acme/shop/prod/api", "production").await;
    let scope = "acme/shop/prod";
    let w = s
        .put(
            scope,
            json!({"DATABASE_URL": "postgres://one", "API_KEY": "k1"}),
        )
        .await;
    assert_eq!(
        w["written"],
        json!([{"name": "API_KEY", "version": 1}, {"name": "DATABASE_URL", "version": 1}])
    );
    s.put(scope, json!({"DATABASE_URL": "postgres://two"}))
        .await;
    assert_eq!(
        s.get(scope, "DATABASE_URL").await.unwrap(),
        "postgres://two"
    );
    let v1 = s
        .ok(
            Method::GET,
            &format!("/api/v1/secret/{scope}?key=DATABASE_URL&version=1"),
            None,
        )
        .await;
    assert_eq!(v1["value"], "postgres://one");
    assert_eq!(v1["meta"]["version"], 1);

    // Listing carries names and versions, never values.
    let list = s
        .ok(Method::GET, &format!("/api/v1/secrets/{scope}"), None)
        .await;
    let text = list.to_string();
    assert!(
        text.contains("DATABASE_URL") && !text.contains("postgres://"),
        "{text}"
    );
    assert_eq!(list["secrets"][1]["latest"], 2);

    // Compare-and-set.
    let cas = |v: i64, val: &str| json!({"values": {"DATABASE_URL": val}, "cas": v});
    let e = s
        .call(
            Method::PUT,
            &format!("/api/v1/secrets/{scope}"),
            Some(cas(1, "x")),
        )
        .await
        .unwrap_err();
    assert_eq!(status(e), (409, "cas_mismatch".into()));
    s.ok(
        Method::PUT,
        &format!("/api/v1/secrets/{scope}"),
        Some(cas(2, "postgres://three")),
    )
    .await;
    let new = json!({"values": {"NEW_ONE": "n"}, "cas": 0});
    s.ok(
        Method::PUT,
        &format!("/api/v1/secrets/{scope}"),
        Some(new.clone()),
    )
    .await;
    let e = s
        .call(Method::PUT, &format!("/api/v1/secrets/{scope}"), Some(new))
        .await
        .unwrap_err();
    assert_eq!(status(e).0, 409);

    // Soft delete, undelete, destroy.
    let del = |route: &str, versions: Value| {
        (
            format!("/api/v1/{route}/{scope}"),
            json!({"key": "DATABASE_URL", "versions": versions}),
        )
    };
    let (p, b) = del("secret-delete", json!([]));
    assert_eq!(s.ok(Method::POST, &p, Some(b)).await["changed"], json!([3]));
    assert_eq!(
        status(s.get(scope, "DATABASE_URL").await.unwrap_err()),
        (410, "gone".into())
    );
    let (p, b) = del("secret-undelete", json!([3]));
    assert_eq!(s.ok(Method::POST, &p, Some(b)).await["changed"], json!([3]));
    assert_eq!(
        s.get(scope, "DATABASE_URL").await.unwrap(),
        "postgres://three"
    );
    let (p, b) = del("secret-destroy", json!([1]));
    assert_eq!(s.ok(Method::POST, &p, Some(b)).await["changed"], json!([1]));
    let e = s
        .call(
            Method::GET,
            &format!("/api/v1/secret/{scope}?key=DATABASE_URL&version=1"),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(status(e).0, 410);
    let (p, b) = del("secret-destroy", json!([]));
    assert_eq!(
        status(s.call(Method::POST, &p, Some(b)).await.unwrap_err()).0,
        400
    );

    let h = s
        .ok(
            Method::GET,
            &format!("/api/v1/secret-history/{scope}?key=DATABASE_URL"),
            None,
        )
        .await;
    let states: Vec<(i64, bool)> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["destroyed_at"].is_null()))
        .collect();
    assert_eq!(states, vec![(3, true), (2, true), (1, false)]);

    // Missing things are 404s naming what is missing.
    assert_eq!(status(s.get(scope, "NOPE").await.unwrap_err()).0, 404);
    assert_eq!(
        status(s.get("acme/shop/staging", "X").await.unwrap_err()).0,
        404
    );
    let e = s
        .call(
            Method::PUT,
            "/api/v1/secrets/acme",
            Some(json!({"values": {"A": "b"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status(e).0, 400, "secrets do not attach to an organization");
    s.stop().await;
}
both_backends!(secret_versions_lifecycle);

async fn old_versions_are_pruned_per_environment(s: TestServer) {
    s.scopes("acme/shop", "").await;
    s.ok(Method::POST, "/api/v1/scopes", Some(json!({"kind": "environment", "path": "acme/shop/dev", "mode": "development", "max_versions": 3}))).await;
    for i in 1..=5 {
        s.put("acme/shop/dev", json!({"K": format!("v{i}")})).await;
    }
    let h = s
        .ok(
            Method::GET,
            "/api/v1/secret-history/acme/shop/dev?key=K",
            None,
        )
        .await;
    let versions: Vec<i64> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![5, 4, 3]);
    // Project scope keeps the default of 10.
    for i in 1..=12 {
        s.put("acme/shop", json!({"P": format!("v{i}")})).await;
    }
    let h = s
        .ok(Method::GET, "/api/v1/secret-history/acme/shop?key=P", None)
        .await;
    assert_eq!(h["versions"].as_array().unwrap().len(), 10);
    s.stop().await;
}
both_backends!(old_versions_are_pruned_per_environment);

async fn resolve_merges_scopes_and_interpolates(s: TestServer) {
    s.scopes("acme/shop/prod/api", "production").await;
    s.put(
        "acme/shop",
        json!({"HOST": "db.project", "USER": "app", "LOG": "info"}),
    )
    .await;
    s.put(
        "acme/shop/prod",
        json!({"HOST": "db.prod", "URL": "postgres://${USER}@${HOST}/x"}),
    )
    .await;
    s.put(
        "acme/shop/prod/api",
        json!({"LOG": "debug", "PRICE": "$$5"}),
    )
    .await;
    let r = s
        .ok(Method::GET, "/api/v1/resolve/acme/shop/prod/api", None)
        .await;
    assert_eq!(
        r["values"],
        json!({"HOST": "db.prod", "LOG": "debug", "PRICE": "$5", "URL": "postgres://app@db.prod/x", "USER": "app"})
    );
    for (values, expected) in [
        (json!({"A": "${B}", "B": "${A}"}), "A -> B -> A"),
        (
            json!({"A": "${MISSING}", "B": "b"}),
            "A references ${MISSING}",
        ),
    ] {
        s.put("acme/shop/prod/api", values).await;
        match s
            .call(Method::GET, "/api/v1/resolve/acme/shop/prod/api", None)
            .await
            .unwrap_err()
        {
            ClientError::Api {
                status: 422,
                message,
                ..
            } => assert!(message.contains(expected), "{message}"),
            other => panic!("{other}"),
        }
    }
    let e = s
        .call(Method::GET, "/api/v1/resolve/acme/shop/prod", None)
        .await
        .unwrap_err();
    assert_eq!(status(e).0, 400);
    s.stop().await;
}
both_backends!(resolve_merges_scopes_and_interpolates);

async fn rotation_and_rewrap_keep_every_version_readable(s: TestServer) {
    s.scopes("acme/shop/prod", "production").await;
    for i in 0..30 {
        s.put(
            "acme/shop/prod",
            json!({format!("K{i}"): format!("value-{i}")}),
        )
        .await;
    }
    let r = s.ok(Method::POST, "/api/v1/keys/acme/rotate", None).await;
    assert_eq!(r["term"], 2);
    s.put("acme/shop/prod", json!({"AFTER": "rotation"})).await;
    let st = s.ok(Method::GET, "/api/v1/keys/acme", None).await;
    assert_eq!(st["current_term"], 2);
    assert_eq!(st["terms"][0]["versions"], 30);
    assert_eq!(st["terms"][1]["versions"], 1);
    // Old versions stay readable before rewrap...
    assert_eq!(s.get("acme/shop/prod", "K7").await.unwrap(), "value-7");
    // ...rewrap in small steps (as after a crash, each step is durable)...
    let mut steps = 0;
    loop {
        let p = s
            .ok(Method::POST, "/api/v1/keys/acme/rewrap?limit=7", None)
            .await;
        steps += 1;
        if p["remaining"] == 0 {
            break;
        }
        assert!(steps < 10, "rewrap does not converge: {p}");
    }
    assert_eq!(steps, 5);
    let st = s.ok(Method::GET, "/api/v1/keys/acme", None).await;
    assert_eq!(st["terms"][0]["versions"], 0);
    assert_eq!(st["terms"][1]["versions"], 31);
    for i in 0..30 {
        assert_eq!(
            s.get("acme/shop/prod", &format!("K{i}")).await.unwrap(),
            format!("value-{i}")
        );
    }
    // Idempotent once done.
    let p = s.ok(Method::POST, "/api/v1/keys/acme/rewrap", None).await;
    assert_eq!(
        (p["rewrapped"].clone(), p["remaining"].clone()),
        (json!(0), json!(0))
    );
    s.stop().await;
}
both_backends!(rotation_and_rewrap_keep_every_version_readable);

async fn sealed_vault_refuses_secret_operations(s: TestServer) {
    s.scopes("acme/shop/prod", "production").await;
    s.put("acme/shop/prod", json!({"K": "v"})).await;
    let st = s.ok(Method::POST, "/api/v1/sys/seal", None).await;
    assert_eq!(st["sealed"], true);
    let e = s.get("acme/shop/prod", "K").await.unwrap_err();
    assert_eq!(status(e), (503, "sealed".into()));
    let e = s
        .call(
            Method::PUT,
            "/api/v1/secrets/acme/shop/prod",
            Some(json!({"values": {"K": "w"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status(e), (503, "sealed".into()));
    let ready = s
        .client_with(None)
        .connect()
        .await
        .unwrap()
        .send(Method::GET, "/readyz", None)
        .await
        .unwrap();
    assert_eq!(ready.0.as_u16(), 503);
    // A dev-key vault cannot be unsealed with a passphrase.
    let e = s
        .call(
            Method::POST,
            "/api/v1/sys/unseal",
            Some(json!({"passphrase": "whatever-long-enough"})),
        )
        .await
        .unwrap_err();
    assert_eq!(status(e).0, 400);
    s.stop().await;
}
both_backends!(sealed_vault_refuses_secret_operations);

async fn passphrase_and_shamir_init_through_the_api(db: crate::harness::Db) {
    for shamir in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let url = match db {
            crate::harness::Db::Sqlite => {
                format!("sqlite://{}", dir.path().join("data/w.db").display())
            }
            crate::harness::Db::Postgres => crate::harness::fresh_postgres_db().await,
        };
        let running = crate::harness::start_on(dir.path(), &url).await;
        let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
        let anon =
            warden_api::Client::new(&format!("https://{}", running.addr), &ca, None).unwrap();
        let body = if shamir {
            json!({"method": "shamir", "shares": 5, "threshold": 3})
        } else {
            json!({"method": "passphrase", "passphrase": "correct horse battery staple"})
        };
        let init: Value = anon
            .call(Method::POST, "/api/v1/sys/init", Some(&body))
            .await
            .unwrap();
        let again = anon
            .call::<Value>(Method::POST, "/api/v1/sys/init", Some(&body))
            .await
            .unwrap_err();
        assert_eq!(status(again).0, 409);
        let token = init["root_token"].as_str().unwrap().to_owned();
        let owner = warden_api::Client::new(&format!("https://{}", running.addr), &ca, Some(token))
            .unwrap();
        // Sealed after init.
        let e = owner
            .call::<Value>(Method::GET, "/api/v1/scopes", None::<&Value>)
            .await
            .unwrap_err();
        assert_eq!(status(e).0, 503);
        if shamir {
            let shares: Vec<String> = init["shares"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(shares.len(), 5);
            // The first share starts an attempt and returns its nonce; the
            // rest of the attempt carries it.
            let mut nonce: Option<String> = None;
            for (i, share) in [&shares[4], &shares[1], &shares[1], &shares[2]]
                .iter()
                .enumerate()
            {
                let st: Value = anon
                    .call(
                        Method::POST,
                        "/api/v1/sys/unseal",
                        Some(&json!({"share": share, "nonce": nonce})),
                    )
                    .await
                    .unwrap();
                let expect_sealed = i < 3;
                assert_eq!(st["sealed"], expect_sealed, "after share {i}: {st}");
                nonce = st["nonce"].as_str().map(str::to_owned);
            }
        } else {
            let bad = anon
                .call::<Value>(
                    Method::POST,
                    "/api/v1/sys/unseal",
                    Some(&json!({"passphrase": "wrong horse battery staple"})),
                )
                .await
                .unwrap_err();
            assert_eq!(status(bad), (400, "bad_unseal_key".into()));
            let st: Value = anon
                .call(
                    Method::POST,
                    "/api/v1/sys/unseal",
                    Some(&json!({"passphrase": "correct horse battery staple"})),
                )
                .await
                .unwrap();
            assert_eq!(st["sealed"], false);
        }
        owner
            .call::<Value>(Method::GET, "/api/v1/scopes", None::<&Value>)
            .await
            .unwrap();
        running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrase_and_shamir_init_sqlite() {
    passphrase_and_shamir_init_through_the_api(crate::harness::Db::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrase_and_shamir_init_postgres() {
    passphrase_and_shamir_init_through_the_api(crate::harness::Db::Postgres).await
}

async fn every_operation_is_audited_without_values(s: TestServer) {
    s.scopes("acme/shop/prod", "production").await;
    s.put(
        "acme/shop/prod",
        json!({"AUDITED": "value-that-must-not-be-logged"}),
    )
    .await;
    s.get("acme/shop/prod", "AUDITED").await.unwrap();
    let bad = s.client_with(Some("wdn_not-a-token"));
    assert!(
        bad.call::<Value>(Method::GET, "/api/v1/scopes", None::<&Value>)
            .await
            .is_err()
    );
    let mut raw = crate::harness::tls_connect(&s).await;
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        raw.write_all(b"GET /api/v1/scopes HTTP/1.1\r\nhost: localhost\r\nauthorization: Basic dXNlcjpwYXNz\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = raw.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 401"));
    }
    s.running.app.store.flush().await.unwrap();
    let acme = s
        .running
        .app
        .store
        .audit_entries("acme", 0, 1000)
        .await
        .unwrap();
    let system = s
        .running
        .app
        .store
        .audit_entries("system", 0, 1000)
        .await
        .unwrap();
    let all: Vec<Value> = acme
        .iter()
        .chain(&system)
        .map(|r| serde_json::from_str(&r.entry).unwrap())
        .collect();
    for r in acme.iter().chain(&system) {
        assert!(
            !r.entry.contains("value-that-must-not-be-logged"),
            "{}",
            r.entry
        );
    }
    // Token ids are recorded as HMACs under the log's audit key.
    for e in &all {
        let t = &e["actor"]["token_id"];
        assert!(
            t.is_null()
                || t.as_str()
                    .is_some_and(|t| t.len() == 64 && !t.starts_with("tok_")),
            "{e}"
        );
    }
    let read: Vec<&Value> = all
        .iter()
        .filter(|e| e["action"] == "secret.read")
        .collect();
    assert_eq!(read.len(), 2, "intent and outcome: {read:?}");
    assert_eq!(read[0]["phase"], "intent");
    assert_eq!(read[1]["phase"], "outcome");
    assert_eq!(read[0]["op_id"], read[1]["op_id"]);
    assert_eq!(read[1]["status"], "ok");
    assert_eq!(
        read[0]["target"],
        json!({"kind": "secret", "name": "AUDITED", "scope": "acme/shop/prod"})
    );
    assert_eq!(read[0]["permission"], "secret.read");
    assert_eq!(read[0]["decision"]["effect"], "allow");
    for reason in ["unknown token", "malformed Authorization header"] {
        assert!(
            all.iter()
                .any(|e| e["action"] == "auth.login" && e["status"] == reason),
            "no audited failed login for {reason}"
        );
    }
    // The log tables are append-only in the database itself.
    s.ok(Method::GET, "/api/v1/audit/acme/checkpoint", None)
        .await;
    let pool_url = s.database_url.clone();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&pool_url)
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_entries SET entry = 'x'",
        "DELETE FROM audit_entries",
        "UPDATE audit_checkpoints SET note = 'x'",
        "DELETE FROM audit_checkpoints",
    ] {
        let r = sqlx::query(sql).execute(&mut conn).await;
        assert!(r.is_err(), "{sql} must be refused");
    }
    s.stop().await;
}
both_backends!(every_operation_is_audited_without_values);

/// Moving a ciphertext inside the database (to another secret, or another
/// version of the same secret) makes it undecryptable: the AAD binds both.
/// The caller gets a 500, never the other secret's value.
async fn moved_ciphertexts_do_not_decrypt(s: TestServer) {
    s.scopes("acme/shop/prod", "production").await;
    s.scopes("other/shop/prod", "production").await;
    s.put(
        "acme/shop/prod",
        json!({"A": "value-of-a", "B": "value-of-b"}),
    )
    .await;
    s.put("acme/shop/prod", json!({"A": "value-of-a-v2"})).await;
    s.put("other/shop/prod", json!({"A": "other-org"})).await;
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&s.database_url)
        .await
        .unwrap();
    let envelope = |scope: &'static str, name: &'static str, version: i64| {
        format!(
            "(SELECT v.envelope FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
             WHERE s.scope = '{scope}' AND s.name = '{name}' AND v.version = {version})"
        )
    };
    let target = |scope: &str, name: &str, version: i64| {
        format!(
            "secret_id = (SELECT id FROM secrets WHERE scope = '{scope}' AND name = '{name}') AND version = {version}"
        )
    };
    let moves = [
        (
            envelope("acme/shop/prod", "A", 1),
            target("acme/shop/prod", "B", 1),
            "B",
            None,
        ),
        (
            envelope("acme/shop/prod", "A", 1),
            target("acme/shop/prod", "A", 2),
            "A",
            Some(2),
        ),
        (
            envelope("other/shop/prod", "A", 1),
            target("acme/shop/prod", "A", 1),
            "A",
            Some(1),
        ),
    ];
    for (from, to, name, version) in moves {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE secret_versions SET envelope = {from} WHERE {to}"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        let path = match version {
            Some(v) => format!("/api/v1/secret/acme/shop/prod?key={name}&version={v}"),
            None => format!("/api/v1/secret/acme/shop/prod?key={name}"),
        };
        match s.call(Method::GET, &path, None).await {
            Err(ClientError::Api {
                status: 500,
                message,
                ..
            }) => {
                assert!(
                    !message.contains("value-of") && !message.contains("other-org"),
                    "{message}"
                )
            }
            other => panic!("{path}: a moved ciphertext must not decrypt: {other:?}"),
        }
    }
    s.stop().await;
}
both_backends!(moved_ciphertexts_do_not_decrypt);

/// Fail-closed: when the audit log cannot record an intent, the operation
/// has no effect and the caller gets 503; once the log works again, so does
/// everything else.
async fn audit_failure_blocks_the_operation(s: TestServer) {
    s.scopes("acme/shop/prod", "production").await;
    s.put("acme/shop/prod", json!({"K": "before"})).await;
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&s.database_url)
        .await
        .unwrap();
    let (create, drop) = if s.database_url.starts_with("sqlite") {
        (
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_entries BEGIN SELECT RAISE(ABORT, 'disk full'); END",
            "DROP TRIGGER audit_down",
        )
    } else {
        (
            "CREATE FUNCTION audit_down() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END; $$ LANGUAGE plpgsql; \
             CREATE TRIGGER audit_down BEFORE INSERT ON audit_entries FOR EACH ROW EXECUTE FUNCTION audit_down()",
            "DROP TRIGGER audit_down ON audit_entries",
        )
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(&mut conn)
        .await
        .unwrap();
    let e = s
        .call(
            Method::PUT,
            "/api/v1/secrets/acme/shop/prod",
            Some(json!({"values": {"K": "during", "NEW": "x"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status(e), (503, "audit_unavailable".into()));
    let e = s.get("acme/shop/prod", "K").await.unwrap_err();
    assert_eq!(
        status(e),
        (503, "audit_unavailable".into()),
        "a read must not answer without its intent"
    );
    // Sealing drops keys from memory, an effect outside the database, so it
    // waits for its intent: refused, and the vault stays unsealed.
    let e = s
        .call(Method::POST, "/api/v1/sys/seal", None)
        .await
        .unwrap_err();
    assert_eq!(status(e), (503, "audit_unavailable".into()));
    assert!(!s.running.app.vault.is_sealed());
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
        .execute(&mut conn)
        .await
        .unwrap();
    // Nothing of the refused write happened.
    assert_eq!(s.get("acme/shop/prod", "K").await.unwrap(), "before");
    assert_eq!(
        status(s.get("acme/shop/prod", "NEW").await.unwrap_err()).0,
        404
    );
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secret_versions v JOIN secrets s ON s.id = v.secret_id WHERE s.name = 'K'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1);
    s.put("acme/shop/prod", json!({"K": "after"})).await;
    assert_eq!(s.get("acme/shop/prod", "K").await.unwrap(), "after");
    s.stop().await;
}
both_backends!(audit_failure_blocks_the_operation);

/// Concurrent writes to one secret (which the writer batches together) each
/// get their own version, with no gaps and no duplicates, and every value
/// reads back at its version.
async fn concurrent_writes_to_one_secret_get_distinct_versions(s: TestServer) {
    s.scopes("acme/shop/prod", "production").await;
    s.ok(
        Method::POST,
        "/api/v1/scopes",
        Some(json!({"kind": "environment", "path": "acme/shop/wide", "mode": "staging", "max_versions": 100})),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let client = s.client.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"values": {"HOT": format!("v{i}"), format!("OWN_{i}"): "x"}});
            let r: Value = client
                .call(Method::PUT, "/api/v1/secrets/acme/shop/wide", Some(&body))
                .await
                .unwrap();
            let hot = r["written"]
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["name"] == "HOT")
                .unwrap();
            (i, hot["version"].as_i64().unwrap())
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    let mut versions: Vec<i64> = seen.iter().map(|(_, v)| *v).collect();
    versions.sort();
    assert_eq!(versions, (1..=24).collect::<Vec<_>>());
    for (i, v) in seen {
        let r = s
            .ok(
                Method::GET,
                &format!("/api/v1/secret/acme/shop/wide?key=HOT&version={v}"),
                None,
            )
            .await;
        assert_eq!(r["value"], format!("v{i}"));
    }
    s.stop().await;
}
both_backends!(concurrent_writes_to_one_secret_get_distinct_versions);
