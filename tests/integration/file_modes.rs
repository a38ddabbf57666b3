//! The data directory and its files belong to the server's user alone
//! (security issue, item B).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use crate::harness::{free_port, warden_bin};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every file under `dir`, recursively, with its mode.
fn tree(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push((p.clone(), mode(&p)));
        if p.is_dir() {
            out.extend(tree(&p));
        }
    }
    out
}

/// `warden server` with `data` as its data directory, on a free port.
fn spawn_server(data: &Path, pki: &warden_server::tls::DevPki, port: u16) -> std::process::Child {
    std::process::Command::new(warden_bin())
        .arg("server")
        .env("WARDEN_LISTEN", format!("127.0.0.1:{port}"))
        .env("WARDEN_DATA_DIR", data)
        .env("WARDEN_TLS_CERT", &pki.cert)
        .env("WARDEN_TLS_KEY", &pki.key)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

async fn wait_until_up(ca: &[u8], port: u16, child: &mut std::process::Child) {
    let client = warden_api::Client::new(&format!("https://127.0.0.1:{port}"), ca, None).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if client
            .call::<Value>(Method::GET, "/api/v1/sys/status", None::<&Value>)
            .await
            .is_ok()
        {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("warden server exited ({status}): {err}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "warden server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Regression: `warden server` left the SQLite database, its WAL and its
/// lock file 0644 in a 0755 directory: password hashes and the audit log
/// were readable by every local user, and any of them could `flock` the
/// lock file and keep Warden from starting. Now, through the real binary
/// (whose umask is restricted) and the in-process server (the test's umask
/// is the usual 022, so the modes are explicit): the directory is created
/// 0700 and every file 0600; a 0755 directory or a 0644 database is
/// refused with the `chmod` that fixes it; after that `chmod` it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_private_and_shared_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pki_dir = tmp.path().join("pki");
    std::fs::create_dir(&pki_dir).unwrap();
    let pki = warden_server::tls::ensure_dev_pki(&pki_dir).unwrap();
    let ca = std::fs::read(&pki.ca_cert).unwrap();
    let data = tmp.path().join("var/lib/warden");
    let db = data.join("warden.db");

    // The real binary: a new data directory, written to.
    let port = free_port();
    let mut child = spawn_server(&data, &pki, port);
    wait_until_up(&ca, port, &mut child).await;
    let client = warden_api::Client::new(&format!("https://127.0.0.1:{port}"), &ca, None).unwrap();
    let init: Value = client
        .call(
            Method::POST,
            "/api/v1/sys/init",
            Some(&json!({"method": "passphrase", "passphrase": "correct horse battery staple"})),
        )
        .await
        .unwrap();
    assert!(init.is_object(), "{init}");
    assert_eq!(mode(&data), 0o700);
    let files = warden_store::files::sqlite_files(&db);
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // A data directory open to others is refused, naming the fix.
    chmod(&data, 0o755);
    let out = spawn_server(&data, &pki, free_port())
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("run `chmod 700 {}`", data.display())),
        "{err}"
    );
    // So is a database file others can read (the in-process server says
    // the same as the binary).
    chmod(&data, 0o700);
    chmod(&db, 0o644);
    let url = format!("sqlite://{}", db.display());
    let e = warden_store::Store::connect(&url)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("run `chmod 600 {}`", db.display())) && e.contains("0644"),
        "{e}"
    );
    let out = spawn_server(&data, &pki, free_port())
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("chmod 600 {}", db.display())),
        "{err}"
    );

    // After the chmod it starts again, with the same data.
    chmod(&db, 0o600);
    let running = crate::harness::start_on(&pki_dir, &url).await;
    assert!(running.app.vault.status().await.unwrap().initialized);
    running.app.store.flush().await.unwrap();
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    running.shutdown().await;
}

/// `warden dev`'s data directory: every directory 0700, every file 0600
/// (database and its companions, TLS keys and certificates, the dev unseal
/// key and token), and a shared one is refused on the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_data_directory_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("dev");
    let dev = warden_server::dev::start_dev(&data, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    dev.running.app.store.flush().await.unwrap();
    let files = tree(&data);
    for name in [
        "warden.db",
        "warden.db-wal",
        "warden.db.lock",
        "dev-token",
        "dev-unseal.key",
    ] {
        assert!(
            files.iter().any(|(p, _)| p.ends_with(name)),
            "{name} missing"
        );
    }
    for (p, m) in &files {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{}", p.display());
    }
    dev.running.shutdown().await;
    chmod(&data.join("dev-token"), 0o644);
    let e = warden_server::dev::start_dev(&data, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(&format!("chmod 600 {}", data.join("dev-token").display())),
        "{e}"
    );
    chmod(&data.join("dev-token"), 0o600);
    let dev = warden_server::dev::start_dev(&data, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    dev.running.shutdown().await;
}
