//! Session-long authority: a grant held for a long operation ends within a
//! second of the caller's authority ending, whatever ends it.

use std::time::Duration;

use hyper::Method;
use serde_json::json;
use warden_pipeline::{
    Caller, Credential, Operation, Pipeline, RequestMeta, SessionGrant, Target, Transport,
};
use warden_policies::{Action, Scope};
use warden_types::ScopePath;

use crate::both_backends;
use crate::harness::TestServer;

const SERVICE: &str = "acme/shop/dev/api";

/// A shell-exec session on the dev service for a fresh service account
/// holding `role` at `acme`; returns its token too.
async fn session(s: &TestServer, name: &str, role: &str) -> (SessionGrant, String) {
    let (token, _) = s.account(name).await;
    s.grant(&format!("sa:{name}"), role, "acme").await;
    let caller = authenticate(&s.running.app.pipeline, &token).await;
    (start(&s.running.app.pipeline, &caller).await, token)
}

/// The caller `token` authenticates as, for a shell.
async fn authenticate(pipeline: &Pipeline, token: &str) -> Caller {
    let meta = RequestMeta::new(Credential::bearer(token), None, Transport::Ssh);
    pipeline
        .authenticate(meta, &[Action::ShellExec])
        .await
        .unwrap()
}

/// A shell-exec session on the dev service for `caller`.
async fn start(pipeline: &Pipeline, caller: &Caller) -> SessionGrant {
    let scope = Scope::Path(ScopePath::parse(SERVICE).unwrap());
    pipeline
        .run_session(
            caller,
            Operation::new(
                "session.start",
                Action::ShellExec,
                scope,
                Target::session("test", SERVICE, None),
            ),
        )
        .await
        .unwrap()
}

/// Asserts the grant is still live, then that it ends within a second of
/// `end` running, with a reason containing `why`.
async fn ends_within_a_second<F: std::future::Future>(grant: &mut SessionGrant, end: F, why: &str) {
    assert!(
        tokio::time::timeout(Duration::from_millis(200), grant.ended())
            .await
            .is_err(),
        "the grant ended before its authority did: {:?}",
        grant.end_reason()
    );
    end.await;
    let started = std::time::Instant::now();
    let reason = tokio::time::timeout(Duration::from_secs(1), grant.ended())
        .await
        .unwrap_or_else(|_| panic!("the grant outlived its authority (expected: {why})"));
    assert!(reason.contains(why), "{reason:?} does not say {why:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

async fn a_session_ends_with_its_authority(s: TestServer) {
    s.scopes(SERVICE, "development").await;

    let (mut g, _) = session(&s, "revoked-binding", "developer").await;
    ends_within_a_second(
        &mut g,
        s.revoke("sa:revoked-binding", "developer", "acme"),
        "no role binding grants shell.exec",
    )
    .await;

    let (mut g, token) = session(&s, "revoked-token", "developer").await;
    let info = s
        .client_with(Some(&token))
        .call::<serde_json::Value>(
            Method::GET,
            "/api/v1/auth/whoami",
            None::<&serde_json::Value>,
        )
        .await
        .unwrap();
    let id = info["token_id"].as_str().unwrap().to_owned();
    ends_within_a_second(
        &mut g,
        s.ok(Method::POST, &format!("/api/v1/tokens/{id}/revoke"), None),
        "token revoked",
    )
    .await;

    let (mut g, _) = session(&s, "disabled", "developer").await;
    ends_within_a_second(
        &mut g,
        s.ok(Method::POST, "/api/v1/users/sa:disabled/disable", None),
        "revoked",
    )
    .await;

    // A custom role edited so it no longer allows the action.
    s.ok(
        Method::PUT,
        "/api/v1/roles/acme",
        Some(json!({"source": "name: shell\nrules:\n  - allow: [shell.exec, env.read]\n"})),
    )
    .await;
    let (mut g, _) = session(&s, "role-edited", "shell").await;
    ends_within_a_second(
        &mut g,
        s.ok(
            Method::PUT,
            "/api/v1/roles/acme",
            Some(json!({"source": "name: shell\nrules:\n  - allow: [env.read]\n"})),
        ),
        "no role binding grants shell.exec",
    )
    .await;

    // An unrelated change leaves a session alone; sealing ends it.
    let (mut g, _) = session(&s, "sealed", "developer").await;
    s.put("acme/shop/dev", json!({"UNRELATED": "x"})).await;
    ends_within_a_second(
        &mut g,
        s.ok(Method::POST, "/api/v1/sys/seal", None),
        "sealed",
    )
    .await;
    s.stop().await;
}
both_backends!(a_session_ends_with_its_authority);

/// A credential revoked after the caller was authenticated but before the
/// session began (the change was published before the session listened
/// for changes) still ends the session at once, not at the next periodic
/// re-check.
async fn a_session_begun_after_a_revocation_ends_at_once(s: TestServer) {
    s.scopes(SERVICE, "development").await;
    let (token, _) = s.account("late").await;
    s.grant("sa:late", "developer", "acme").await;
    let caller = authenticate(&s.running.app.pipeline, &token).await;
    s.ok(Method::POST, "/api/v1/users/sa:late/disable", None)
        .await;
    let mut grant = start(&s.running.app.pipeline, &caller).await;
    let reason = tokio::time::timeout(Duration::from_secs(1), grant.ended())
        .await
        .expect("the session outlived a revocation made before it began");
    assert!(reason.contains("revoked"), "{reason:?}");
    s.stop().await;
}
both_backends!(a_session_begun_after_a_revocation_ends_at_once);

/// Across replicas on one PostgreSQL: a session held on one server ends
/// within a second of its authority ending on the other (the change feed
/// runs over LISTEN/NOTIFY), and every session on a replica ends when that
/// replica loses its notification link (it could miss a change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_on_one_replica_ends_with_a_change_on_another() {
    use sqlx::Connection;
    let a = TestServer::start(crate::harness::Db::Postgres).await;
    a.scopes(SERVICE, "development").await;
    let (b, _, _dir) = crate::harness::second_replica(&a, None).await;
    // A session held on b.
    let on_b = |token: String| {
        let pipeline = b.app.pipeline.clone();
        async move {
            let caller = authenticate(&pipeline, &token).await;
            start(&pipeline, &caller).await
        }
    };
    let (token, _) = a.account("remote").await;
    a.grant("sa:remote", "developer", "acme").await;
    let mut g = on_b(token.clone()).await;
    ends_within_a_second(
        &mut g,
        a.revoke("sa:remote", "developer", "acme"),
        "no role binding grants shell.exec",
    )
    .await;

    // Cutting b's notification link ends b's sessions (fail closed).
    a.grant("sa:remote", "developer", "acme").await;
    let mut g = on_b(token).await;
    let cut = async {
        let mut db = sqlx::AnyConnection::connect(&a.database_url).await.unwrap();
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .execute(&mut db)
        .await
        .unwrap();
        db.close().await.unwrap();
    };
    ends_within_a_second(&mut g, cut, "change feed was lost").await;
    b.shutdown().await;
    a.stop().await;
}
