//! The claims of secret rollouts (migration 0017) on both backends, as two
//! replicas over one database (PostgreSQL; on SQLite, two names of one
//! process) see them: one replica rolls a service at a
//! time; a version set that failed is not claimed again; a claim left by a
//! replica that died is taken over once stale; only the claiming replica
//! moves the rollout on. Also how live shell sessions are judged lost.

use warden_store::{ROLLOUT_FAILED, ROLLOUT_IDLE, ROLLOUT_ROLLING, Store};

use crate::both_backends;
use crate::harness::Db;

const SVC: &str = "acme/shop/prod/api";

async fn two_replicas(db: Db) -> (Store, Store, tempfile::TempDir, String) {
    let dir = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .unwrap();
    let url = match db {
        Db::Sqlite => format!("sqlite://{}", dir.path().join("warden.db").display()),
        Db::Postgres => crate::harness::fresh_postgres_db().await,
    };
    let a = Store::connect(&url).await.unwrap();
    // SQLite has one process; the replicas are its two names there.
    let b = match db {
        Db::Sqlite => a.clone(),
        Db::Postgres => Store::connect(&url).await.unwrap(),
    };
    (a, b, dir, url)
}

async fn rollout_claims(db: Db) {
    let (a, b, _dir, _) = two_replicas(db).await;
    let claim = async |s: &Store, target: &str, node: &str, now: i64, stale_before: i64| {
        s.claim_rollout(SVC, target.into(), node, now, stale_before)
            .await
            .unwrap()
    };
    let advance = async |s: &Store, node: &str, pin: &str, state: &'static str, now: i64| {
        s.advance_rollout(SVC, node, pin.into(), state, now)
            .await
            .unwrap()
    };
    a.adopt_rollout(SVC, "acme", "v1".into(), 1).await.unwrap();
    // Applied again: the pin stays what the pods hold.
    b.adopt_rollout(SVC, "acme", "v9".into(), 2).await.unwrap();
    let row = a.rollout(SVC).await.unwrap().unwrap();
    assert_eq!(
        (row.pinned.as_str(), row.state.as_str()),
        ("v1", ROLLOUT_IDLE)
    );

    // Nothing to roll to what the pods hold.
    assert!(!claim(&a, "v1", "a", 10, 0).await);
    // One replica gets the rollout; the other does not, even to another
    // target, while the claim is fresh.
    assert!(claim(&a, "v2", "a", 10, 0).await);
    assert!(!claim(&b, "v2", "b", 11, 0).await);
    assert!(!claim(&b, "v3", "b", 11, 0).await);
    // Only the claiming replica moves it on.
    assert!(!advance(&b, "b", "v2", ROLLOUT_IDLE, 12).await);
    assert!(advance(&a, "a", "v2", ROLLOUT_ROLLING, 12).await);
    // It failed and was reverted: the failed target is not claimed again,
    // another one is.
    assert!(advance(&a, "a", "v1", ROLLOUT_FAILED, 13).await);
    let row = b.rollout(SVC).await.unwrap().unwrap();
    assert_eq!(
        (
            row.pinned.as_str(),
            row.state.as_str(),
            row.target.as_deref()
        ),
        ("v1", ROLLOUT_FAILED, Some("v2"))
    );
    assert!(!claim(&b, "v2", "b", 14, 0).await);
    // Until the workload is applied again: then it may be tried again.
    b.adopt_rollout(SVC, "acme", "v0".into(), 14).await.unwrap();
    assert_eq!(b.rollout(SVC).await.unwrap().unwrap().state, ROLLOUT_IDLE);
    assert!(claim(&b, "v3", "b", 14, 0).await);
    // Replica b dies mid-rollout, having pinned the new versions: a takes
    // over only once the claim is stale (not refreshed since
    // `stale_before`), whatever is pinned, and would revert to what the
    // pods held when b began (review 14, F3).
    assert!(advance(&b, "b", "v3", ROLLOUT_ROLLING, 14).await);
    assert!(!claim(&a, "v3", "a", 20, 14).await);
    assert!(claim(&a, "v3", "a", 20, 15).await);
    let row = a.rollout(SVC).await.unwrap().unwrap();
    assert_eq!(
        (
            row.pinned.as_str(),
            row.previous.as_deref(),
            row.node.as_deref()
        ),
        ("v3", Some("v1"), Some("a"))
    );
    // The replica that lost it can no longer move it on.
    assert!(!advance(&b, "b", "v3", ROLLOUT_IDLE, 21).await);
    assert!(advance(&a, "a", "v3", ROLLOUT_IDLE, 21).await);
    assert_eq!(a.rollouts().await.unwrap().len(), 1);

    // A workload applied without rollouts, or deleted: no row, no pin.
    b.drop_rollout(SVC).await.unwrap();
    assert!(a.rollout(SVC).await.unwrap().is_none());
    assert!(!claim(&a, "v4", "a", 30, 0).await);
}

both_backends!(db rollout_claims);

/// A live shell session is judged lost by its heartbeat; one without any
/// (opened by a replica from before heartbeats, which may still be running
/// it during a rolling upgrade) only a day after its start (review 13, F9).
async fn sessions_without_a_heartbeat_are_judged_late(db: Db) {
    use warden_store::ShellSessionRow;
    let (a, _b, _dir, url) = two_replicas(db).await;
    let hour = 3_600_000;
    let day = 24 * hour;
    let now = 30 * day;
    let row = |id: &str, started_at: i64, seen_at: Option<i64>| ShellSessionRow {
        id: id.into(),
        org: "acme".into(),
        service: SVC.into(),
        pod: "api-1".into(),
        principal: "user:alice".into(),
        transport: "ssh".into(),
        node: "n".into(),
        started_at,
        ended_at: None,
        status: None,
        exit_status: None,
        killed_by: None,
        holder: seen_at.map(|_| "h".into()),
        seen_at,
    };
    for r in [
        row("silent", now - 2 * day, Some(now - 2 * day)),
        row("heard", now - 2 * day, Some(now - 1000)),
        row("unheard-old", now - 2 * day, None),
        row("unheard-recent", now - hour, None),
    ] {
        a.shell_session_started(r).await.unwrap();
    }
    // As a replica from before heartbeats wrote them.
    let mut raw = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("UPDATE shell_sessions SET seen_at = NULL, holder = NULL WHERE id LIKE 'unheard%'")
        .execute(&mut raw)
        .await
        .unwrap();
    let mut lost = a.end_lost_shell_sessions(now - 60_000, now).await.unwrap();
    lost.sort();
    assert_eq!(lost, ["silent", "unheard-old"]);
}

both_backends!(db sessions_without_a_heartbeat_are_judged_late);
