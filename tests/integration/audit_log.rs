//! The tamper-evident audit log through the real server, on SQLite and
//! PostgreSQL: every kind of tampering with the stored log is found by the
//! live verification, naming the first bad entry; two servers sharing one
//! PostgreSQL database extend one tree.

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};
use warden_server::ServerOptions;

use crate::both_backends;
use crate::harness::{Db, TestServer};

/// Drops the append-only triggers, as an attacker with database access
/// would.
async fn drop_triggers(conn: &mut sqlx::AnyConnection, sqlite: bool) {
    for (trigger, table) in [
        ("audit_entries_no_update", "audit_entries"),
        ("audit_entries_no_delete", "audit_entries"),
        ("audit_checkpoints_no_update", "audit_checkpoints"),
        ("audit_checkpoints_no_delete", "audit_checkpoints"),
    ] {
        let sql = if sqlite {
            format!("DROP TRIGGER IF EXISTS {trigger}")
        } else {
            format!("DROP TRIGGER IF EXISTS {trigger} ON {table}")
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}

/// A server with activity in two organizations and a checkpoint over it.
async fn busy(db: Db) -> (TestServer, i64) {
    let s = TestServer::start(db).await;
    s.scopes("acme/shop/prod/api", "production").await;
    s.scopes("globex/web/prod/api", "production").await;
    for i in 0..8 {
        s.put("acme/shop/prod", json!({ format!("K{i}"): "v" }))
            .await;
        s.get("acme/shop/prod", &format!("K{i}")).await.unwrap();
        s.put("globex/web/prod", json!({ format!("G{i}"): "v" }))
            .await;
    }
    let cp = s
        .ok(Method::GET, "/api/v1/audit/acme/checkpoint", None)
        .await;
    let size = cp["size"].as_i64().unwrap();
    assert!(size > 30, "{cp}");
    (s, size)
}

async fn verify(s: &TestServer) -> Value {
    s.ok(Method::POST, "/api/v1/audit/acme/verify", None).await
}

async fn connect(s: &TestServer) -> sqlx::AnyConnection {
    <sqlx::AnyConnection as sqlx::Connection>::connect(&s.database_url)
        .await
        .unwrap()
}

/// Each tampering, applied to a fresh server's stored log, and the first
/// bad sequence number the verification must name (`None`: a checkpoint).
async fn tampering_is_detected(db: Db) {
    const K: i64 = 12;
    let cases: [(&str, Option<i64>); 6] = [
        // Edit a leaf: what was read becomes a list.
        (
            "UPDATE audit_entries SET entry = replace(entry, 'secret.read', 'secret.list') \
             WHERE log = 'acme' AND seq = 12",
            Some(K),
        ),
        // Delete a row.
        (
            "DELETE FROM audit_entries WHERE log = 'acme' AND seq = 12",
            Some(K),
        ),
        // Swap two rows (entry and hash).
        (
            "UPDATE audit_entries SET seq = -1 WHERE log = 'acme' AND seq = 12; \
             UPDATE audit_entries SET seq = 12 WHERE log = 'acme' AND seq = 13; \
             UPDATE audit_entries SET seq = 13 WHERE log = 'acme' AND seq = -1",
            Some(K),
        ),
        // Truncate the tail.
        (
            "DELETE FROM audit_entries WHERE log = 'acme' AND seq >= 12",
            Some(K),
        ),
        // Splice in an entry of another organization's log.
        (
            "UPDATE audit_entries SET entry = (SELECT entry FROM audit_entries \
             WHERE log = 'globex' AND seq = 12), leaf_hash = (SELECT leaf_hash FROM \
             audit_entries WHERE log = 'globex' AND seq = 12) WHERE log = 'acme' AND seq = 12",
            Some(K),
        ),
        // Replace a checkpoint's signature (the base64 after the key name).
        (
            "UPDATE audit_checkpoints SET note = substr(note, 1, length(note) - 10) || \
             'AAAAAAAAA' || chr(10) WHERE log = 'acme'",
            None,
        ),
    ];
    let sqlite = db == Db::Sqlite;
    for (sql, bad) in cases {
        let (s, _) = busy(db).await;
        assert_eq!(verify(&s).await["verdict"], "ok");
        let mut conn = connect(&s).await;
        drop_triggers(&mut conn, sqlite).await;
        let sql = if sqlite {
            sql.replace("chr(10)", "char(10)")
        } else {
            sql.to_owned()
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut conn)
            .await
            .unwrap();
        let t = verify(&s).await;
        assert_eq!(t["verdict"], "failed", "{sql}: {t}");
        match bad {
            Some(seq) => assert_eq!(t["first_bad_seq"], seq, "{sql}: {t}"),
            None => assert!(
                t["reason"].as_str().unwrap().contains("checkpoint"),
                "{sql}: {t}"
            ),
        }
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_detected_sqlite() {
    tampering_is_detected(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_detected_postgres() {
    tampering_is_detected(Db::Postgres).await;
}

/// Entries carry their log, sequence number and chain link, and the
/// checkpoint is a C2SP signed note over the log's origin.
async fn entries_are_sequenced_and_checkpointed(s: TestServer) {
    s.scopes("acme/shop/prod", "production").await;
    s.put("acme/shop/prod", json!({"K": "v"})).await;
    let page = s
        .ok(Method::GET, "/api/v1/audit/acme/entries?limit=1000", None)
        .await;
    let entries = page["entries"].as_array().unwrap();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], i as i64);
        assert_eq!(e["log"], "acme");
        assert_eq!(e["schema"], warden_audit::SCHEMA);
        assert_eq!(e["prev"].as_str().unwrap().len(), 64);
    }
    assert_eq!(entries[0]["prev"], "0".repeat(64));
    let cp = s
        .ok(Method::GET, "/api/v1/audit/acme/checkpoint", None)
        .await;
    let note = cp["note"].as_str().unwrap();
    assert!(note.starts_with("warden/audit/acme\n"), "{note}");
    assert!(note.contains("\n\n\u{2014} warden-audit "), "{note}");
    // The signer checkpoints by itself at least once a second.
    s.put("acme/shop/prod", json!({"K": "w"})).await;
    let before = cp["size"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&s.database_url)
        .await
        .unwrap();
    let newest: i64 =
        sqlx::query_scalar("SELECT MAX(size) FROM audit_checkpoints WHERE log = 'acme'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(newest > before, "{newest} <= {before}");
    s.stop().await;
}
both_backends!(entries_are_sequenced_and_checkpointed);

/// Two servers on one PostgreSQL database, writing and reading at once,
/// extend one tree per log: no sequence number twice, no fork, and the
/// whole log verifies from either server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_extend_one_tree() {
    let a = TestServer::start(Db::Postgres).await;
    a.scopes("acme/shop/prod", "production").await;
    let dir = tempfile::tempdir().unwrap();
    let pki = warden_server::tls::ensure_dev_pki(dir.path()).unwrap();
    let b = warden_server::start(ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: a.database_url.clone(),
        tls: warden_server::tls::server_config(&pki.cert, &pki.key).unwrap(),
        node_id: "replica-b".into(),
        request_timeout: Duration::from_secs(30),
        max_token_ttl: warden_server::DEFAULT_MAX_TOKEN_TTL,
        adopt_unprotected_rows: false,
        agent_listen: None,
        agent_advertise: None,
        ssh_listen: None,
    })
    .await
    .unwrap();
    let key = warden_vault::unseal::decode_key(&a.unseal_key).unwrap();
    b.app.vault.unseal_with_key(&key).await.unwrap();
    let b_client = warden_api::Client::new(
        &format!("https://{}", b.addr),
        &std::fs::read(dir.path().join("ca.pem")).unwrap(),
        Some(a.token.clone()),
    )
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let client = if i % 2 == 0 {
            a.client.clone()
        } else {
            b_client.clone()
        };
        tasks.push(tokio::spawn(async move {
            for n in 0..10 {
                client
                    .call::<Value>(
                        Method::PUT,
                        "/api/v1/secrets/acme/shop/prod",
                        Some(&json!({"values": {format!("K{i}"): format!("v{n}")}})),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Outcomes are appended after the answers, so the last ones may still
    // be on their way: verify until all 320 entries are in (bounded).
    for client in [&a.client, &b_client] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let t: Value = client
                .call(Method::POST, "/api/v1/audit/acme/verify", None::<&Value>)
                .await
                .unwrap();
            assert_eq!(t["verdict"], "ok", "{t}");
            if t["entries_checked"].as_u64().unwrap() >= 320 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{t}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&a.database_url)
        .await
        .unwrap();
    let nodes: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT entry::json->>'node' FROM audit_entries WHERE log = 'acme' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(nodes, ["replica-b", "test"]);
    b.shutdown().await;
    a.stop().await;
}

/// Fail-closed against the database itself: a server running as a
/// least-privilege PostgreSQL role loses INSERT on the log table. Secret
/// reads and writes then answer 503, return no value and change nothing;
/// with the privilege back, everything works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_refuses_inserts_fails_reads_closed() {
    let owner_url = crate::harness::fresh_postgres_db().await;
    let dir = tempfile::tempdir().unwrap();
    // Migrate, initialize and seed as the database owner.
    let running = crate::harness::start_on(dir.path(), &owner_url).await;
    let init = running
        .app
        .vault
        .init(warden_vault::unseal::InitMethod::DevKeyFile)
        .await
        .unwrap();
    let token = running
        .app
        .create_owner(warden_server::FIRST_OWNER)
        .await
        .unwrap()
        .to_string();
    running.shutdown().await;
    let role = format!("warden_limited_{}", std::process::id());
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&owner_url)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'limited'; \
         GRANT USAGE, CREATE ON SCHEMA public TO {role}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let (scheme_host, db) = owner_url.rsplit_once('/').unwrap();
    let host = scheme_host.rsplit_once('@').unwrap().1;
    let limited_url = format!("postgres://{role}:limited@{host}/{db}");
    let running = crate::harness::start_on(dir.path(), &limited_url).await;
    let key = warden_vault::unseal::decode_key(&init.dev_key.unwrap()).unwrap();
    running.app.vault.unseal_with_key(&key).await.unwrap();
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let client =
        warden_api::Client::new(&format!("https://{}", running.addr), &ca, Some(token)).unwrap();
    for (kind, path) in [("organization", "acme"), ("project", "acme/shop")] {
        client
            .call::<Value>(
                Method::POST,
                "/api/v1/scopes",
                Some(&json!({"kind": kind, "path": path})),
            )
            .await
            .unwrap();
    }
    client
        .call::<Value>(
            Method::PUT,
            "/api/v1/secrets/acme/shop",
            Some(&json!({"values": {"K": "the-value"}})),
        )
        .await
        .unwrap();
    let read = || {
        let client = client.clone();
        async move {
            let mut conn = client.connect().await.unwrap();
            conn.send(Method::GET, "/api/v1/secret/acme/shop?key=K", None)
                .await
                .unwrap()
        }
    };
    assert_eq!(read().await.0.as_u16(), 200);

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "REVOKE INSERT ON audit_entries FROM {role}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let (status, body) = read().await;
    assert_eq!(status.as_u16(), 503, "{}", String::from_utf8_lossy(&body));
    assert!(!String::from_utf8_lossy(&body).contains("the-value"));
    assert!(String::from_utf8_lossy(&body).contains("audit_unavailable"));
    let e = client
        .call::<Value>(
            Method::PUT,
            "/api/v1/secrets/acme/shop",
            Some(&json!({"values": {"K": "changed"}})),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "GRANT INSERT ON audit_entries TO {role}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let (status, body) = read().await;
    assert_eq!(status.as_u16(), 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["value"], "the-value", "the refused write changed nothing");
    running.shutdown().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}; \
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}; \
         REVOKE ALL ON SCHEMA public FROM {role}; DROP ROLE {role}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}

/// Someone who can write to the database appends a well-formed entry (right
/// seq, chain link, leaf hash and head) to frame a user. The checkpointer
/// cannot verify the entry's MAC, so it never signs past it.
async fn entries_written_past_warden_are_never_signed(s: TestServer) {
    use warden_tlog::merkle::{Frontier, leaf_hash};
    s.scopes("acme/shop/prod", "production").await;
    s.put("acme/shop/prod", json!({"K": "v"})).await;
    s.ok(Method::GET, "/api/v1/audit/acme/checkpoint", None)
        .await;
    s.running.app.store.flush().await.unwrap();
    let mut conn = connect(&s).await;
    let (size, state): (i64, Vec<u8>) =
        sqlx::query_as("SELECT size, state FROM audit_heads WHERE log = 'acme'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let mut tree = Frontier::from_bytes(&state).unwrap();
    let last: String =
        sqlx::query_scalar("SELECT entry FROM audit_entries WHERE log = 'acme' AND seq = $1")
            .bind(size - 1)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let mut forged: Value = serde_json::from_str(&last).unwrap();
    forged["seq"] = json!(size);
    forged["prev"] = json!(hex::encode(leaf_hash(last.as_bytes())));
    forged["actor"]["principal"] = json!("user:framed");
    forged["action"] = json!("secret.read");
    forged["target"] = json!({"kind": "secret", "name": "K", "scope": "acme/shop/prod"});
    let text = forged.to_string();
    let hash = leaf_hash(text.as_bytes());
    tree.push(hash);
    sqlx::query(
        "INSERT INTO audit_entries (log, seq, entry, leaf_hash) VALUES ('acme', $1, $2, $3)",
    )
    .bind(size)
    .bind(text)
    .bind(hash.to_vec())
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("UPDATE audit_heads SET size = $1, state = $2 WHERE log = 'acme'")
        .bind(size + 1)
        .bind(tree.to_bytes())
        .execute(&mut conn)
        .await
        .unwrap();
    // More activity on top, then time for the checkpointer.
    s.put("acme/shop/prod", json!({"K": "w"})).await;
    let cp = s
        .ok(Method::GET, "/api/v1/audit/acme/checkpoint", None)
        .await;
    assert!(cp["size"].as_i64().unwrap() <= size, "{cp}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let newest: i64 =
        sqlx::query_scalar("SELECT MAX(size) FROM audit_checkpoints WHERE log = 'acme'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(
        newest <= size,
        "signed {newest} > {size}: the forged entry was vouched for"
    );
    s.stop().await;
}
both_backends!(entries_written_past_warden_are_never_signed);
