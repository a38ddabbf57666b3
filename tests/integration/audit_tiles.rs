//! Inclusion proofs from stored tiles (security issue, item C): the same
//! bytes as from every leaf hash, on both backends, across a restart, and
//! for a log whose tiles had to be rebuilt (as after the upgrade that
//! introduced them).

use std::path::Path;

use hyper::Method;
use serde_json::{Value, json};
use warden_api::Client;
use warden_audit::{Actor, DecisionRecord, Event};
use warden_server::Running;
use warden_tlog::merkle::{Hash, inclusion_proof};

use crate::harness::{Db, fresh_postgres_db, start_on};

/// Entries appended to acme's log: past the first level-1 tile (65,536).
const ENTRIES: u64 = 70_000;

/// A server on `url` (PKI in `dir`), initialized on first use, unsealed,
/// with a client holding an owner token.
async fn boot(dir: &Path, url: &str, key: Option<&str>) -> (Running, Client, String) {
    let running = start_on(dir, url).await;
    let key = match key {
        Some(k) => {
            let k2 = warden_vault::unseal::decode_key(k).unwrap();
            running.app.vault.unseal_with_key(&k2).await.unwrap();
            k.to_owned()
        }
        None => running
            .app
            .vault
            .init(warden_vault::unseal::InitMethod::DevKeyFile)
            .await
            .unwrap()
            .dev_key
            .unwrap()
            .to_string(),
    };
    let token = running
        .app
        .create_owner(&format!(
            "owner{}",
            key.len() + running.addr.port() as usize
        ))
        .await
        .unwrap()
        .to_string();
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let client = Client::new(&format!("https://{}", running.addr), &ca, Some(token)).unwrap();
    (running, client, key)
}

fn event(i: u64) -> Event {
    Event {
        op_id: format!("tiles-{i}"),
        log: "acme".into(),
        actor: Actor {
            method: "token",
            principal: "user:root".into(),
            source_ip: None,
            token_id: None,
            user_agent: None,
        },
        action: "secret.read".into(),
        permission: Some("secret.read"),
        target: warden_audit::Target::secret("acme/shop", format!("K{}", i % 97), None),
        session: None,
        count: None,
        decision: Some(DecisionRecord {
            effect: "allow",
            rule: "owner@/".into(),
        }),
    }
}

/// Appends `n` MACed entries to acme's log through the server's auditor.
async fn append(running: &Running, n: u64) {
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(
            running
                .app
                .pipeline
                .audit()
                .queue_intent(&event(i))
                .unwrap(),
        );
    }
    for mut p in pending {
        p.durable().await.unwrap();
    }
}

/// acme's size and how many leaves its stored tiles cover.
async fn size_and_tiled(running: &Running) -> (i64, i64) {
    running
        .app
        .store
        .audit_tiled("acme")
        .await
        .unwrap()
        .unwrap()
}

async fn all_leaves(running: &Running, size: u64) -> Vec<Hash> {
    running
        .app
        .store
        .audit_leaf_hashes("acme", 0, size as i64)
        .await
        .unwrap()
        .iter()
        .map(|h| Hash::try_from(h.as_slice()).unwrap())
        .collect()
}

/// Proofs from tiles, straight from the audit crate, against the proofs
/// from every leaf, for sizes and indexes around tile edges.
async fn compare_many(running: &Running, size: u64) {
    let all = all_leaves(running, size).await;
    let mut sizes = vec![1, 2, 255, 256, 257, 4_097, 65_535, 65_536, 65_537, size];
    sizes.retain(|s| *s <= size);
    for n in sizes {
        for index in [0, n / 3, n.saturating_sub(257), n - 1] {
            let from_tiles =
                warden_audit::tiles::inclusion_proof(&running.app.store, "acme", index, n)
                    .await
                    .unwrap();
            let from_leaves = inclusion_proof(&all, index, n).unwrap();
            assert_eq!(from_tiles, from_leaves, "index {index} size {n}");
        }
    }
}

/// The proof the API serves for `seq`, against the one from every leaf.
async fn compare_api(running: &Running, client: &Client, seq: u64) {
    let p: Value = client
        .call(
            Method::GET,
            &format!("/api/v1/audit/acme/proof?seq={seq}"),
            None::<&Value>,
        )
        .await
        .unwrap();
    let size = p["checkpoint"]["size"].as_u64().unwrap();
    let all = all_leaves(running, size).await;
    let want: Vec<String> = inclusion_proof(&all, seq, size)
        .unwrap()
        .iter()
        .map(hex::encode)
        .collect();
    assert_eq!(p["proof"], json!(want), "seq {seq} size {size}");
}

/// Regression: `audit proof` loaded every leaf hash of the log (about 100
/// bytes per entry) on each call. Proofs now come from stored tiles, and
/// must be the very same bytes.
async fn proofs_from_tiles_equal_proofs_from_every_leaf(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = match db {
        Db::Sqlite => format!("sqlite://{}", dir.path().join("data/warden.db").display()),
        Db::Postgres => fresh_postgres_db().await,
    };
    let (running, client, key) = boot(dir.path(), &url, None).await;
    let _: Value = client
        .call(
            Method::POST,
            "/api/v1/scopes",
            Some(&json!({"kind": "organization", "path": "acme"})),
        )
        .await
        .unwrap();
    append(&running, ENTRIES).await;
    let (size, tiled) = size_and_tiled(&running).await;
    assert!(size >= ENTRIES as i64);
    assert_eq!(tiled, size, "tiles kept in step with the entries");
    compare_many(&running, ENTRIES).await;
    for seq in [0, 256, 65_536, ENTRIES - 1] {
        compare_api(&running, &client, seq).await;
    }

    // Across a restart: the tiles were stored with the entries.
    running.shutdown().await;
    let (running, client, _) = boot(dir.path(), &url, Some(&key)).await;
    compare_many(&running, ENTRIES).await;
    compare_api(&running, &client, 12_345).await;
    running.shutdown().await;

    // A log without tiles (as before the migration that added them): they
    // are rebuilt, and the proofs are the same.
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let unguard = match db {
        Db::Sqlite => "DROP TRIGGER audit_tiles_no_delete",
        Db::Postgres => "DROP TRIGGER audit_tiles_no_update ON audit_tiles",
    };
    sqlx::raw_sql(unguard).execute(&mut conn).await.unwrap();
    sqlx::raw_sql("DELETE FROM audit_tiles; UPDATE audit_heads SET tiled = 0")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let (running, client, _) = boot(dir.path(), &url, Some(&key)).await;
    compare_api(&running, &client, 65_535).await;
    compare_many(&running, ENTRIES).await;
    let (size, tiled) = size_and_tiled(&running).await;
    assert_eq!(tiled, size, "tiles rebuilt up to the head");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_from_tiles_equal_proofs_from_every_leaf_sqlite() {
    proofs_from_tiles_equal_proofs_from_every_leaf(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_from_tiles_equal_proofs_from_every_leaf_postgres() {
    proofs_from_tiles_equal_proofs_from_every_leaf(Db::Postgres).await;
}

/// Regression: `audit export` and `verify --live` built the whole log (and
/// every leaf hash before the range) in memory. Both now stream from
/// storage a page at a time; the archive must still be an exact bundle:
/// re-writing what it reads gives the same bytes, its frontier is the one
/// of every earlier leaf, its views match, and it verifies offline.
async fn exports_stream_exact_bundles(s: crate::harness::TestServer) {
    use warden_tlog::bundle::Bundle;
    use warden_tlog::merkle::Frontier;
    use warden_tlog::verify::{Trust, Verdict, verify_bundle};
    s.scopes("acme/shop/prod", "production").await;
    append(&s.running, 3_000).await;
    let page = s
        .ok(
            Method::GET,
            "/api/v1/audit/acme/entries?from=1000&limit=1",
            None,
        )
        .await;
    let since_ms = page["entries"][0]["time_ns"].as_u64().unwrap() / 1_000_000;
    let key: Value = s.ok(Method::GET, "/api/v1/audit-key", None).await;
    let trust = Trust::Key(
        warden_tlog::note::NoteVerifier::from_vkey(key["key"].as_str().unwrap()).unwrap(),
    );
    for (format, query) in [
        ("jsonl", String::new()),
        ("csv", format!("&since_ms={since_ms}")),
        ("ocsf", format!("&since_ms={since_ms}")),
    ] {
        let mut conn = s.client.connect().await.unwrap();
        let (status, bytes) = conn
            .send(
                Method::GET,
                &format!("/api/v1/audit/acme/export?format={format}{query}"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status.as_u16(), 200, "{format}");
        let bundle = Bundle::read_from(&bytes[..], 1 << 30).unwrap();
        assert_eq!(bundle.to_bytes().unwrap(), bytes.to_vec(), "{format}");
        let first = bundle.manifest.first_seq;
        if format != "jsonl" {
            assert!(first > 0 && first <= 1000, "{format}: first {first}");
            assert_eq!(bundle.views.len(), 1, "{format}");
        }
        let earlier = all_leaves(&s.running, first).await;
        assert_eq!(bundle.frontier, Frontier::from_leaves(&earlier), "{format}");
        let t = verify_bundle(&bundle, &trust);
        assert_eq!(t.verdict, Verdict::Ok, "{format}: {t:?}");
        assert!(
            t.entries_checked >= 2_000,
            "{format}: {}",
            t.entries_checked
        );
    }
    let live = s.ok(Method::POST, "/api/v1/audit/acme/verify", None).await;
    assert_eq!(live["verdict"], "ok", "{live}");
    assert!(live["entries_checked"].as_u64().unwrap() >= 3_000, "{live}");
    s.stop().await;
}
crate::both_backends!(exports_stream_exact_bundles);
