//! The claims of secret rollouts (migration 0017) on both backends, as two
//! replicas over one database (PostgreSQL; on SQLite, two names of one
//! process) see them: one replica rolls a service at a
//! time; a version set that failed is not claimed again; a claim left by a
//! replica that died is taken over once stale; only the claiming replica
//! moves the rollout on.

use warden_store::{ROLLOUT_FAILED, ROLLOUT_IDLE, ROLLOUT_ROLLING, Store};

use crate::both_backends;
use crate::harness::Db;

const SVC: &str = "acme/shop/prod/api";

async fn two_replicas(db: Db) -> (Store, Store, tempfile::TempDir) {
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
    (a, b, dir)
}

async fn rollout_claims(db: Db) {
    let (a, b, _dir) = two_replicas(db).await;
    a.adopt_rollout(SVC, "acme", "v1".into(), 1).await.unwrap();
    // Applied again: the pin stays what the pods hold.
    b.adopt_rollout(SVC, "acme", "v9".into(), 2).await.unwrap();
    let row = a.rollout(SVC).await.unwrap().unwrap();
    assert_eq!(
        (row.pinned.as_str(), row.state.as_str()),
        ("v1", ROLLOUT_IDLE)
    );

    // Nothing to roll to what the pods hold.
    assert!(!a.claim_rollout(SVC, "v1".into(), "a", 10, 0).await.unwrap());
    // One replica gets the rollout; the other does not, even to another
    // target, while the claim is fresh.
    assert!(a.claim_rollout(SVC, "v2".into(), "a", 10, 0).await.unwrap());
    assert!(!b.claim_rollout(SVC, "v2".into(), "b", 11, 0).await.unwrap());
    assert!(!b.claim_rollout(SVC, "v3".into(), "b", 11, 0).await.unwrap());
    // Only the claiming replica moves it on.
    assert!(
        !b.advance_rollout(SVC, "b", "v2".into(), ROLLOUT_IDLE, 12)
            .await
            .unwrap()
    );
    assert!(
        a.advance_rollout(SVC, "a", "v2".into(), ROLLOUT_ROLLING, 12)
            .await
            .unwrap()
    );
    // It failed and was reverted: the failed target is not claimed again,
    // another one is.
    assert!(
        a.advance_rollout(SVC, "a", "v1".into(), ROLLOUT_FAILED, 13)
            .await
            .unwrap()
    );
    let row = b.rollout(SVC).await.unwrap().unwrap();
    assert_eq!(
        (
            row.pinned.as_str(),
            row.state.as_str(),
            row.target.as_deref()
        ),
        ("v1", ROLLOUT_FAILED, Some("v2"))
    );
    assert!(!b.claim_rollout(SVC, "v2".into(), "b", 14, 0).await.unwrap());
    assert!(b.claim_rollout(SVC, "v3".into(), "b", 14, 0).await.unwrap());
    // Replica b dies mid-rollout: a takes over only once the claim is
    // stale (not refreshed since `stale_before`).
    assert!(
        !a.claim_rollout(SVC, "v3".into(), "a", 20, 14)
            .await
            .unwrap()
    );
    assert!(
        a.claim_rollout(SVC, "v3".into(), "a", 20, 15)
            .await
            .unwrap()
    );
    // The replica that lost it can no longer move it on.
    assert!(
        !b.advance_rollout(SVC, "b", "v3".into(), ROLLOUT_IDLE, 21)
            .await
            .unwrap()
    );
    assert!(
        a.advance_rollout(SVC, "a", "v3".into(), ROLLOUT_IDLE, 21)
            .await
            .unwrap()
    );
    assert_eq!(a.rollouts().await.unwrap().len(), 1);

    // A workload applied without rollouts, or deleted: no row, no pin.
    b.drop_rollout(SVC).await.unwrap();
    assert!(a.rollout(SVC).await.unwrap().is_none());
    assert!(!a.claim_rollout(SVC, "v4".into(), "a", 30, 0).await.unwrap());
}

both_backends!(db rollout_claims);
