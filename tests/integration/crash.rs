//! Nothing acknowledged is lost on a crash: the real `warden dev` binary is
//! killed with SIGKILL in the middle of concurrent writes, 20 times over;
//! after each restart every acknowledged write reads back, the audit logs
//! verify against their signed checkpoints (no torn or missing entry), and
//! every acknowledged write has its durable intent entry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::harness::{free_port, wait_for_dev};

const CYCLES: usize = 20;
const WRITERS: usize = 8;

/// Writer index -> (version, value) of every acknowledged write, in order.
type Acked = HashMap<usize, Vec<(i64, String)>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let mut total_acked = 0;
    // One more start than kills, so the last kill is checked too.
    for cycle in 0..=CYCLES {
        let port = free_port();
        let mut child = crate::harness::spawn_dev(&data, dir.path(), port, None);
        let client = wait_for_dev(&data, port).await;

        // Everything acknowledged before the previous kill is still there.
        for (writer, writes) in acked.lock().await.iter() {
            let (last_version, last_value) = writes.last().unwrap();
            let latest: Value = client
                .call(
                    Method::GET,
                    &format!("/api/v1/secret/crash/app?key=W{writer}"),
                    None::<&Value>,
                )
                .await
                .unwrap_or_else(|e| panic!("cycle {cycle}: W{writer} lost: {e}"));
            let v = latest["meta"]["version"].as_i64().unwrap();
            assert!(
                v >= *last_version,
                "cycle {cycle}: W{writer} at version {v}, acknowledged {last_version}"
            );
            if v == *last_version {
                assert_eq!(latest["value"], last_value.as_str());
            }
            // Every acknowledged version still kept (the last 10) reads back.
            for (version, value) in writes.iter().filter(|(ver, _)| *ver > v - 10) {
                let old: Value = client
                    .call(
                        Method::GET,
                        &format!("/api/v1/secret/crash/app?key=W{writer}&version={version}"),
                        None::<&Value>,
                    )
                    .await
                    .unwrap_or_else(|e| panic!("cycle {cycle}: W{writer} v{version} lost: {e}"));
                assert_eq!(old["value"], value.as_str());
            }
        }
        // The logs verify after the crash: entries whole and contiguous,
        // chained, and matching every signed checkpoint.
        if cycle > 0 {
            for log in ["crash", "system"] {
                let t: Value = client
                    .call(
                        Method::POST,
                        &format!("/api/v1/audit/{log}/verify"),
                        None::<&Value>,
                    )
                    .await
                    .unwrap();
                assert_eq!(t["verdict"], "ok", "cycle {cycle}, log {log}: {t}");
            }
        }
        if cycle == CYCLES {
            // Every acknowledged write had a durable intent entry.
            let mut intents: HashMap<String, usize> = HashMap::new();
            let mut from = 0;
            loop {
                let page: Value = client
                    .call(
                        Method::GET,
                        &format!(
                            "/api/v1/audit/crash/entries?from={from}&limit=1000&action=secret.write"
                        ),
                        None::<&Value>,
                    )
                    .await
                    .unwrap();
                for e in page["entries"].as_array().unwrap() {
                    if e["phase"] == "intent" {
                        *intents
                            .entry(warden_tlog::export::target_text(Some(&e["target"])))
                            .or_default() += 1;
                    }
                }
                let next = page["next_seq"].as_i64().unwrap();
                if next == from {
                    break;
                }
                from = next;
            }
            for (writer, writes) in acked.lock().await.iter() {
                let n = intents
                    .get(&format!("crash/app#W{writer}"))
                    .copied()
                    .unwrap_or(0);
                assert!(
                    n >= writes.len(),
                    "W{writer}: {} acknowledged writes, {n} intents",
                    writes.len()
                );
            }
            child.kill().unwrap();
            child.wait().unwrap();
            break;
        }
        if cycle == 0 {
            crate::harness::create_project(&client, "crash/app").await;
        }

        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let (client, acked) = (client.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(mut conn) = client.connect().await else {
                    return;
                };
                for n in 0.. {
                    let value = format!("cycle{cycle}-n{n}");
                    let body =
                        serde_json::to_vec(&json!({"values": {format!("W{writer}"): value}}))
                            .unwrap();
                    match conn
                        .send(Method::PUT, "/api/v1/secrets/crash/app", Some(body))
                        .await
                    {
                        Ok((status, bytes)) if status.is_success() => {
                            let r: Value = serde_json::from_slice(&bytes).unwrap();
                            let version = r["written"][0]["version"].as_i64().unwrap();
                            acked
                                .lock()
                                .await
                                .entry(writer)
                                .or_default()
                                .push((version, value));
                        }
                        // The kill: the connection breaks mid-request.
                        _ => return,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(150 + 37 * (cycle as u64 % 7))).await;
        child.kill().unwrap();
        child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let now: usize = acked.lock().await.values().map(Vec::len).sum();
        assert!(
            now > total_acked,
            "cycle {cycle}: no write was acknowledged before the kill"
        );
        total_acked = now;
    }
    eprintln!("{total_acked} acknowledged writes across {CYCLES} kill -9 cycles, none lost");
}
