//! Server lifecycle: graceful shutdown lets in-flight requests finish, and
//! `warden dev` restarted on its data directory reuses everything.

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Db, TestServer};

/// A request whose body is still arriving when shutdown starts is served
/// to completion, and the write it carries is durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests() {
    let s = TestServer::start(Db::Sqlite).await;
    s.scopes("acme/shop", "").await;
    let mut tls = crate::harness::tls_connect(&s).await;
    let body = br#"{"values":{"INFLIGHT":"finished"}}"#;
    let head = format!(
        "PUT /api/v1/secrets/acme/shop HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        s.token,
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body[..10]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let url = s.database_url.clone();
    let TestServer { running, .. } = s;
    let shutdown = tokio::spawn(running.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown must wait for the in-flight request"
    );
    tls.write_all(&body[10..]).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tls.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .unwrap()
        .unwrap();

    // The write is durable: the rows are there after the server is gone.
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE name = 'INFLIGHT'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_restart_reuses_data_keys_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let listen = "127.0.0.1:0".parse().unwrap();
    let first = warden_server::dev::start_dev(&data, listen, None)
        .await
        .unwrap();
    assert!(first.created);
    let token = first.token.to_string();
    let ca = std::fs::read(&first.pki.ca_cert).unwrap();
    let client = warden_api::Client::new(&first.url, &ca, Some(token.clone())).unwrap();
    crate::harness::create_project(&client, "acme/shop").await;
    client
        .call::<Value>(
            Method::PUT,
            "/api/v1/secrets/acme/shop",
            Some(&json!({"values": {"KEPT": "across restarts"}})),
        )
        .await
        .unwrap();
    first.running.shutdown().await;

    let second = warden_server::dev::start_dev(&data, listen, None)
        .await
        .unwrap();
    assert!(!second.created);
    assert_eq!(second.token.as_str(), token);
    assert_eq!(
        std::fs::read(&second.pki.ca_cert).unwrap(),
        ca,
        "the CA is reused"
    );
    let client = warden_api::Client::new(&second.url, &ca, Some(token)).unwrap();
    let v: Value = client
        .call(
            Method::GET,
            "/api/v1/secret/acme/shop?key=KEPT",
            None::<&Value>,
        )
        .await
        .unwrap();
    assert_eq!(v["value"], "across restarts");
    for name in ["dev-unseal.key", "dev-token", "tls/server-key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    second.running.shutdown().await;
}
