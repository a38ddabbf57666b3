//! Regression tests for the holes of the adversarial review (issue 8), each
//! named after what broke, through the real server on both backends.

use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_api::{Client, ClientError};

use crate::both_backends;
use crate::harness::{Db, TestServer, fresh_postgres_db, start_on, tls_connect};
use crate::rbac::{api_err, base32_decode, totp_now};

/// A sealed server initialised with a passphrase or Shamir shares, and an
/// anonymous client.
async fn sealed_server(
    db: Db,
    init: Value,
) -> (warden_server::Running, Client, Value, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = match db {
        Db::Sqlite => format!("sqlite://{}", dir.path().join("data/w.db").display()),
        Db::Postgres => fresh_postgres_db().await,
    };
    let running = start_on(dir.path(), &url).await;
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let anon = Client::new(&format!("https://{}", running.addr), &ca, None).unwrap();
    let out: Value = anon
        .call(Method::POST, "/api/v1/sys/init", Some(&init))
        .await
        .unwrap();
    (running, anon, out, dir)
}

fn status_and_code(r: Result<Value, ClientError>) -> (u16, String) {
    let (status, code, _) = api_err(r);
    (status, code)
}

async fn unseal(anon: &Client, body: Value) -> Result<Value, ClientError> {
    anon.call(Method::POST, "/api/v1/sys/unseal", Some(&body))
        .await
}

/// Once unsealed, an unseal attempt derives nothing: a wrong passphrase
/// gets the status back (not "bad key"), as fast as a status read, so the
/// endpoint is no guessing oracle.
async fn unseal_is_no_oracle_once_unsealed(db: Db) {
    let pass = "correct horse battery staple";
    let (running, anon, _, _dir) =
        sealed_server(db, json!({"method": "passphrase", "passphrase": pass})).await;
    unseal(&anon, json!({"passphrase": pass})).await.unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        let st = unseal(&anon, json!({"passphrase": "wrong horse battery staple"}))
            .await
            .unwrap();
        assert_eq!(st["sealed"], false);
    }
    // Twenty Argon2id derivations (64 MiB each) would take seconds.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseal_is_no_oracle_once_unsealed_sqlite() {
    unseal_is_no_oracle_once_unsealed(Db::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseal_is_no_oracle_once_unsealed_postgres() {
    unseal_is_no_oracle_once_unsealed(Db::Postgres).await
}

/// Wrong unseal attempts from one source are refused with 429 and
/// Retry-After after a few, before any key derivation.
async fn unseal_guessing_is_rate_limited_per_source(db: Db) {
    let (running, anon, _, _dir) = sealed_server(
        db,
        json!({"method": "passphrase", "passphrase": "correct horse battery staple"}),
    )
    .await;
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(status_and_code(
            unseal(&anon, json!({"passphrase": "wrong horse battery staple"})).await,
        ));
    }
    assert_eq!(codes[0], (400, "bad_unseal_key".into()));
    assert!(
        codes.contains(&(429, "rate_limited".into())),
        "no refusal among {codes:?}"
    );
    // Even the right passphrase waits out the lock: the limiter does not
    // tell right from wrong.
    assert_eq!(
        status_and_code(unseal(&anon, json!({"passphrase": "correct horse battery staple"})).await)
            .0,
        429
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseal_guessing_is_rate_limited_per_source_sqlite() {
    unseal_guessing_is_rate_limited_per_source(Db::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseal_guessing_is_rate_limited_per_source_postgres() {
    unseal_guessing_is_rate_limited_per_source(Db::Postgres).await
}

/// Shamir progress belongs to an attempt and its nonce: a stranger's share
/// (any share, even a genuine one, sent without the nonce) starts its own
/// attempt and neither resets nor pollutes the operator's.
async fn strangers_share_cannot_pollute_an_unseal_attempt(db: Db) {
    let (running, anon, init, _dir) =
        sealed_server(db, json!({"method": "shamir", "shares": 5, "threshold": 3})).await;
    let shares: Vec<&str> = init["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let first = unseal(&anon, json!({"share": shares[0]})).await.unwrap();
    let nonce = first["nonce"].as_str().unwrap().to_owned();
    assert_eq!(first["progress"], 1);
    // A stranger: a malformed share, a share with a made-up nonce, and a
    // genuine share without the nonce.
    let (status, _) = status_and_code(unseal(&anon, json!({"share": "garbage"})).await);
    assert_eq!(status, 400);
    let (status, _) =
        status_and_code(unseal(&anon, json!({"share": shares[3], "nonce": "00ff"})).await);
    assert_eq!(status, 400);
    let other = unseal(&anon, json!({"share": shares[4]})).await.unwrap();
    assert_ne!(other["nonce"].as_str().unwrap(), nonce);
    // The operator's attempt goes on where it was.
    let second = unseal(&anon, json!({"share": shares[1], "nonce": nonce}))
        .await
        .unwrap();
    assert_eq!(
        (second["sealed"].clone(), second["progress"].clone()),
        (json!(true), json!(2))
    );
    let done = unseal(&anon, json!({"share": shares[2], "nonce": nonce}))
        .await
        .unwrap();
    assert_eq!(done["sealed"], false);
    assert!(done.get("nonce").is_none(), "{done}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_share_cannot_pollute_an_unseal_attempt_sqlite() {
    strangers_share_cannot_pollute_an_unseal_attempt(Db::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_share_cannot_pollute_an_unseal_attempt_postgres() {
    strangers_share_cannot_pollute_an_unseal_attempt(Db::Postgres).await
}

async fn login(
    anon: &Client,
    user: &str,
    password: &str,
    totp: Option<String>,
) -> Result<Value, ClientError> {
    anon.call(
        Method::POST,
        "/api/v1/auth/login",
        Some(&json!({"user": user, "password": password, "totp": totp})),
    )
    .await
}

/// Password guessing against an account locks it (429 with Retry-After)
/// after a few failures, before any password hash is computed; another
/// account is unaffected.
async fn login_guessing_locks_the_account(s: TestServer) {
    s.scopes("acme/shop/dev", "development").await;
    for name in ["victim", "bystander"] {
        s.ok(
            Method::POST,
            "/api/v1/users",
            Some(json!({"name": name, "org": "acme", "password": "correct horse battery"})),
        )
        .await;
    }
    let anon = s.client_with(None);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses
            .push(status_and_code(login(&anon, "victim@acme", "wrong password!!", None).await).0);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert_eq!(&statuses[5..], &[429; 3], "{statuses:?}");
    // Locked means locked, even for the right password...
    assert_eq!(
        status_and_code(login(&anon, "victim@acme", "correct horse battery", None).await).0,
        429
    );
    // ...and the answer says when to come back.
    let mut conn = anon.connect().await.unwrap();
    let (status, body) = conn
        .send(
            Method::POST,
            "/api/v1/auth/login",
            Some(br#"{"user":"victim@acme","password":"correct horse battery"}"#.to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 429, "{}", String::from_utf8_lossy(&body));
    // Another account logs in as before.
    login(&anon, "bystander@acme", "correct horse battery", None)
        .await
        .unwrap();
    s.stop().await;
}
both_backends!(login_guessing_locks_the_account);

/// With the password known, TOTP codes cannot be guessed: a few wrong codes
/// lock the account's second factor for a while (a six-digit code fell to
/// brute force in about 45 minutes before).
async fn totp_guessing_locks_the_second_factor(s: TestServer) {
    s.scopes("acme/shop/dev", "development").await;
    s.ok(
        Method::POST,
        "/api/v1/users",
        Some(json!({"name": "tess", "org": "acme", "password": "correct horse battery"})),
    )
    .await;
    let anon = s.client_with(None);
    let session = login(&anon, "tess@acme", "correct horse battery", None)
        .await
        .unwrap();
    let c = s.client_with(session["token"].as_str());
    let e: Value = c
        .call(
            Method::POST,
            "/api/v1/auth/mfa/enroll",
            Some(&json!({"current_password": "correct horse battery"})),
        )
        .await
        .unwrap();
    let secret = base32_decode(e["secret"].as_str().unwrap());
    c.call::<Value>(
        Method::POST,
        "/api/v1/auth/mfa/confirm",
        Some(&json!({"code": totp_now(&secret, 0)})),
    )
    .await
    .unwrap();
    let mut statuses = Vec::new();
    for guess in 0..6 {
        let code = format!("{:06}", 100_000 + guess);
        statuses.push(
            status_and_code(login(&anon, "tess@acme", "correct horse battery", Some(code)).await).0,
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // The right code now waits too.
    assert_eq!(
        status_and_code(
            login(
                &anon,
                "tess@acme",
                "correct horse battery",
                Some(totp_now(&secret, 1))
            )
            .await
        )
        .0,
        429
    );
    s.stop().await;
}
both_backends!(totp_guessing_locks_the_second_factor);

/// Changing the password needs the current one (a stolen token alone cannot
/// take the account over) and ends the account's other sessions.
async fn password_change_needs_the_old_one_and_ends_other_sessions(s: TestServer) {
    s.scopes("acme/shop/dev", "development").await;
    s.ok(
        Method::POST,
        "/api/v1/users",
        Some(json!({"name": "pat", "org": "acme", "password": "correct horse battery"})),
    )
    .await;
    let anon = s.client_with(None);
    let one = login(&anon, "pat@acme", "correct horse battery", None)
        .await
        .unwrap();
    let two = login(&anon, "pat@acme", "correct horse battery", None)
        .await
        .unwrap();
    let c1 = s.client_with(one["token"].as_str());
    let c2 = s.client_with(two["token"].as_str());
    let change = |current: Option<&'static str>| {
        let c1 = c1.clone();
        async move {
            c1.call::<Value>(
                Method::PUT,
                "/api/v1/auth/password",
                Some(&json!({"password": "a brand new passphrase", "current_password": current})),
            )
            .await
        }
    };
    assert_eq!(status_and_code(change(None).await).0, 403);
    assert_eq!(
        status_and_code(change(Some("not the password")).await).0,
        403
    );
    // 204 comes back as an empty body.
    let _ = change(Some("correct horse battery")).await;
    // The session that changed it goes on; the other one has ended.
    c1.call::<Value>(Method::GET, "/api/v1/auth/whoami", None::<&Value>)
        .await
        .unwrap();
    let (status, _, message) = api_err(
        c2.call(Method::GET, "/api/v1/auth/whoami", None::<&Value>)
            .await,
    );
    assert_eq!(status, 401);
    assert!(message.contains("revoked"), "{message}");
    login(&anon, "pat@acme", "a brand new passphrase", None)
        .await
        .unwrap();
    s.stop().await;
}
both_backends!(password_change_needs_the_old_one_and_ends_other_sessions);

/// Unauthenticated routes read at most a few KiB of body.
async fn public_routes_refuse_large_bodies(s: TestServer) {
    let big = json!({"user": "x", "password": "p".repeat(16 * 1024)});
    let mut conn = s.client_with(None).connect().await.unwrap();
    let (status, _) = conn
        .send(
            Method::POST,
            "/api/v1/auth/login",
            Some(serde_json::to_vec(&big).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 413);
    s.stop().await;
}
both_backends!(public_routes_refuse_large_bodies);

/// A connection that sends part of a request's headers and stops is closed
/// by the server (it stayed open indefinitely before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_headers_do_not_hold_a_connection() {
    let s = TestServer::start(Db::Sqlite).await;
    let mut tls = tls_connect(&s).await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection was still open after 20 s");
    assert!(started.elapsed() >= Duration::from_secs(5));
    s.stop().await;
}
