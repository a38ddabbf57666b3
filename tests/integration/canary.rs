//! No plaintext on disk or in logs: the real `warden dev` binary, debug
//! logging on, a known value written and read back; then every file in the
//! data directory and everything the process printed are searched for the
//! value, raw and in base64 and hex.

use std::path::Path;

use base64::Engine;
use hyper::Method;
use serde_json::{Value, json};

use crate::harness::{free_port, wait_for_dev};

fn encodings(secret: &str) -> Vec<(String, Vec<u8>)> {
    let b = secret.as_bytes();
    let e = base64::engine::general_purpose::STANDARD.encode(b);
    let u = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    vec![
        ("raw".into(), b.to_vec()),
        ("base64".into(), e.trim_end_matches('=').as_bytes().to_vec()),
        ("base64url".into(), u.into_bytes()),
        ("hex".into(), hex::encode(b).into_bytes()),
        ("HEX".into(), hex::encode_upper(b).into_bytes()),
    ]
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn assert_absent(what: &str, haystack: &[u8], secret: &str) {
    for (name, needle) in encodings(secret) {
        assert!(
            !haystack
                .windows(needle.len())
                .any(|w| w == needle.as_slice()),
            "the secret appears ({name}) in {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_never_reach_disk_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut child = crate::harness::spawn_dev(&data, dir.path(), port, Some("debug"));
    // Drain the output while the test runs: a full pipe would block the
    // server's logging (and with it the server).
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let client = wait_for_dev(&data, port).await;
    let canary = format!("canary-{}-do-not-leak", hex::encode(rand_bytes()));
    crate::harness::create_project(&client, "acme/shop").await;
    client
        .call::<Value>(
            Method::PUT,
            "/api/v1/secrets/acme/shop",
            Some(&json!({"values": {"CANARY": canary}})),
        )
        .await
        .unwrap();
    let read: Value = client
        .call(
            Method::GET,
            "/api/v1/secret/acme/shop?key=CANARY",
            None::<&Value>,
        )
        .await
        .unwrap();
    assert_eq!(read["value"], canary.as_str());
    // Failed operations must not echo it into logs either.
    let _ = client
        .call::<Value>(
            Method::PUT,
            "/api/v1/secrets/acme/shop",
            Some(&json!({"values": {"CANARY": canary}, "cas": 99})),
        )
        .await;
    let _ = client
        .call::<Value>(
            Method::PUT,
            "/api/v1/secrets/acme",
            Some(&json!({"values": {"CANARY": canary}})),
        )
        .await;

    // Nor into an audit export (entries and both derived views).
    for format in ["csv", "ocsf"] {
        let mut conn = client.connect().await.unwrap();
        let (status, bundle) = conn
            .send(
                Method::GET,
                &format!("/api/v1/audit/acme/export?format={format}"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status.as_u16(), 200);
        assert!(bundle.len() > 1024);
        assert_absent("an audit export", &bundle, &canary);
    }

    // Stop gracefully (SIGTERM), so logs and the WAL are complete.
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "warden dev exited with {status:?}");
    let logs = [stdout.join().unwrap(), stderr.join().unwrap()].concat();
    assert!(
        String::from_utf8_lossy(&logs).contains("DEBUG"),
        "debug logging was not on"
    );
    assert_absent("the server's output", &logs, &canary);
    let all = files(&data);
    assert!(all.iter().any(|p| p.ends_with("warden.db")));
    for f in all {
        assert_absent(
            &f.display().to_string(),
            &std::fs::read(&f).unwrap(),
            &canary,
        );
    }
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    b.copy_from_slice(&nanos.to_le_bytes());
    b
}
