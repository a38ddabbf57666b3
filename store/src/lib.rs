//! Durable storage for Warden: one schema, two backends (embedded SQLite by
//! default, PostgreSQL for several replicas), through sqlx's `Any` driver so
//! both run the same SQL text (`$1` placeholders work on both). The few
//! statements and settings that must differ are all in `dialect.rs`.
//!
//! Every write goes through one group-commit writer (`writer.rs`) per process: jobs are
//! batched into a single transaction (each job in its own savepoint, so one
//! failing job does not sink the batch), and a job's result is returned only
//! after that transaction has committed. With SQLite in WAL mode and
//! `synchronous=FULL`, committed means fsynced: an acknowledged write survives
//! a crash or power loss.
//!
//! Architecture invariant: storage only ever sees ciphertext for secret values
//! and wrapped keys. This crate links no cryptography and never receives a
//! plaintext secret; sealing closures handed to [`Store::put_secrets`] run
//! inside the writer but their captures are opaque here.

mod bulk;
mod cache;
mod clusters;
mod dialect;
mod error;
mod feed;
pub mod files;
mod gateway;
mod holders;
mod integrity;
mod rollouts;
mod rows;
mod service_accounts;
mod writer;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Executor};

pub use clusters::{AgentCaRow, ClusterRow, JoinTokenRow, PlacementRow, Redeemed};
use dialect::Dialect;
pub use error::StoreError;
pub use feed::Change;
pub use gateway::{REPLICA_LOST, RecordingChunkRow, ShellSessionRow, SshHostKeyRow};
pub use holders::HolderRow;
pub use integrity::{Alarm, RowKey};
pub use rollouts::{ROLLOUT_FAILED, ROLLOUT_IDLE, ROLLOUT_ROLLING, RolloutRow};
pub use rows::*;
pub use service_accounts::{IssuerRow, SaBindingRow};
pub use writer::{Ticket, TxFuture, after_intent};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A connection pool plus the process's group-commit writer (and, on
/// SQLite, the read cache that single ownership of the file allows).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    writer: writer::Writer,
    cache: Option<Arc<cache::ReadCache>>,
    feed: Arc<feed::Feed>,
    sequencer: writer::SequencerSlot,
    guard: integrity::Guard,
    /// Ends the task that hears other replicas' changes (PostgreSQL) when
    /// the last clone of the store is dropped.
    _listener: Option<Arc<AbortOnDrop>>,
    /// Held for the store's lifetime: the exclusive `flock` on `<db>.lock`.
    _owner: Option<Arc<std::fs::File>>,
}

tokio::task_local! {
    /// Whether the current request may use the PostgreSQL read cache.
    static FRESH: bool;
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// Runs `checkpoint` (the WAL copied back into the database file, without
/// blocking writers or readers) every few seconds, so commits never pay
/// for a checkpoint. Ends when the pool is closed.
async fn checkpoint_loop(pool: AnyPool, checkpoint: &'static str) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::raw_sql(checkpoint).execute(&pool).await {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// Takes the exclusive lock that makes this process the SQLite file's only
/// user (the read cache depends on it).
fn lock_sqlite_file(path: &std::path::Path) -> Result<Arc<std::fs::File>, StoreError> {
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let file = files::open_lock_file(&lock_path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |_| {
            StoreError::Database(format!(
                "{} is in use by another Warden process (lock {} is held)",
                path.display(),
                lock_path.display()
            ))
        },
    )?;
    Ok(Arc::new(file))
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dialect", &self.dialect)
            .finish()
    }
}

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://...`), applies
    /// migrations and starts the writer.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(url)?;
        // The SQLite files: a private directory, private files, and the
        // lock that makes this process their only user.
        let sqlite_file = if dialect.is_embedded() {
            files::sqlite_path(url)
        } else {
            None
        };
        let owner = match &sqlite_file {
            Some(db) => {
                files::prepare_sqlite(db)?;
                Some(lock_sqlite_file(db)?)
            }
            None => None,
        };
        let url = dialect.connect_url(url);
        let opts = AnyConnectOptions::from_str(&url).map_err(StoreError::from_sqlx)?;
        let pool = AnyPoolOptions::new()
            .max_connections(dialect.max_connections())
            .acquire_timeout(Duration::from_secs(10))
            // No ping per acquire: a broken connection fails its query and
            // is closed; a ping would add a round trip to every query.
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // Durability and foreign keys (see `Dialect::session_setup`).
                    if let Some(setup) = dialect.session_setup() {
                        conn.execute(setup).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(StoreError::from_sqlx)?;
        dialect
            .migrator()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        if let Some(db) = &sqlite_file {
            files::restrict_sqlite_files(db)?;
        }
        // SQLite: one process owns the file, so its writer sees every
        // change. PostgreSQL: the change feed tells each replica of the
        // others' changes, and a request uses the cache only once every
        // change up to its start is applied (`Store::fresh_view`).
        let cache =
            (owner.is_some() || dialect.notifies()).then(|| Arc::new(cache::ReadCache::default()));
        let sequencer = writer::SequencerSlot::default();
        let feed = Arc::new(feed::Feed::new());
        let listener = if dialect.notifies() {
            let (heard, seq) = feed::Listener::start(&url, &pool).await?;
            feed.restart_at(seq);
            let task =
                tokio::spawn(heard.run(url.clone(), pool.clone(), feed.clone(), cache.clone()));
            Some(Arc::new(AbortOnDrop(task.abort_handle())))
        } else {
            None
        };
        let writer = writer::Writer::start(
            pool.clone(),
            dialect,
            cache.clone(),
            feed.clone(),
            sequencer.clone(),
        );
        if let Some(checkpoint) = dialect.wal_checkpoint() {
            tokio::spawn(checkpoint_loop(pool.clone(), checkpoint));
        }
        Ok(Self {
            pool,
            dialect,
            writer,
            cache,
            feed,
            sequencer,
            guard: integrity::Guard::default(),
            _listener: listener,
            _owner: owner,
        })
    }

    /// Every change committed from now on (this process's writes, and on
    /// PostgreSQL other replicas'). A receiver that lags must assume
    /// [`Change::All`].
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.feed.subscribe()
    }

    /// `false` while changes made elsewhere may be going unseen; session
    /// grants end then (fail closed).
    pub fn feed_health(&self) -> tokio::sync::watch::Receiver<bool> {
        self.feed.health()
    }

    /// The read pool.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The read cache, if this read may use it: always on SQLite; on
    /// PostgreSQL only inside a [`Store::fresh_view`] that found this
    /// replica caught up with every change committed before it began.
    pub(crate) fn read_cache(&self) -> Option<&cache::ReadCache> {
        let cache = self.cache.as_deref()?;
        if !self.dialect.notifies() || FRESH.try_with(|f| *f).unwrap_or(false) {
            Some(cache)
        } else {
            None
        }
    }

    /// Runs `work` (one request) with the cache when it is safe: on
    /// PostgreSQL, reads the change counter (one round trip) and lets `work`
    /// use the cache only if this replica has applied every change up to
    /// it, so nothing another replica acknowledged before the request began
    /// is read stale. Elsewhere, runs `work` as it is.
    pub async fn fresh_view<F: std::future::Future>(&self, work: F) -> F::Output {
        if !self.dialect.notifies() || self.cache.is_none() {
            return work.await;
        }
        let fresh = match sqlx::query_scalar::<_, i64>("SELECT seq FROM change_seq WHERE id = 1")
            .fetch_one(&self.pool)
            .await
        {
            Ok(seq) => self.feed.caught_up(seq),
            Err(_) => false,
        };
        FRESH.scope(fresh, work).await
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(StoreError::from_sqlx)
    }

    /// Runs `job` inside the next group-commit transaction and returns its
    /// result once that transaction has committed durably.
    pub async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> TxFuture<'c, T> + Send + 'static,
    {
        self.writer.run(job, writer::Stale::Nothing).await
    }

    /// Installs the audit sequencer (once; later calls are ignored). Until
    /// one is installed, every audit append fails, and so does every
    /// operation that depends on one.
    pub fn install_sequencer(&self, sequencer: Arc<dyn Sequencer>) {
        let _ = self.sequencer.set(sequencer);
    }

    /// Installs the row MAC key (on unseal) or removes it (`None`, on
    /// seal). Without it, authorization rows can be neither read nor
    /// written.
    pub fn set_row_key(&self, key: Option<Arc<dyn RowKey>>) {
        self.guard.set_key(key);
    }

    /// Rows refused by their integrity check, and rows adopted from before
    /// row MACs, as they happen.
    pub fn alarms(&self) -> tokio::sync::broadcast::Receiver<Alarm> {
        self.guard.subscribe()
    }

    /// Lets [`Store::adopt_rows`] give MACs to the rows of a database from
    /// before row MACs (off unless the operator asks; see
    /// `integrity::Guard::adopt`).
    pub fn allow_row_adoption(&self, allow: bool) {
        self.guard.allow_adoption(allow);
    }

    /// Gives a database from before row MACs its MACs, once; returns how
    /// many rows were adopted (0 for a database that has them). Needs the
    /// row key.
    pub async fn adopt_rows(&self) -> Result<u64, StoreError> {
        let guard = self.guard.clone();
        self.writer
            .run(
                move |c| Box::pin(async move { guard.adopt(c).await }),
                writer::Stale::Change(Change::All),
            )
            .await
    }

    /// Appends one audit entry; returns once it is durable.
    pub async fn append_audit(&self, log: String, entry: String) -> Result<(), StoreError> {
        self.queue_audit(log, entry)?.durable().await
    }

    /// Queues one audit entry and returns at once; the [`PendingAudit`]
    /// tells when it is durable and orders dependent writes after it.
    pub fn queue_audit(&self, log: String, entry: String) -> Result<PendingAudit, StoreError> {
        let (ticket, done) = self.writer.append_audit(log, entry)?;
        Ok(PendingAudit { ticket, done })
    }

    /// Appends one audit entry without waiting for durability (outcome
    /// entries, whose loss on a crash is detectable by the missing outcome).
    pub fn append_audit_later(&self, log: String, entry: String) {
        self.writer.append_audit_later(log, entry)
    }

    /// Flushes the writer: returns once everything queued before the call has
    /// been committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.write(|_| Box::pin(async { Ok(()) })).await
    }
}

/// An audit entry on its way to disk.
pub struct PendingAudit {
    ticket: Ticket,
    done: tokio::sync::oneshot::Receiver<Result<(), StoreError>>,
}

impl PendingAudit {
    /// The ticket writes depending on this entry carry (see [`after_intent`]).
    pub fn ticket(&self) -> Ticket {
        self.ticket.clone()
    }

    /// Waits until the entry is committed.
    pub async fn durable(self) -> Result<(), StoreError> {
        self.done.await.map_err(|_| StoreError::Closed)?
    }
}

mod identity;
#[cfg(test)]
mod lockstep;
mod queries;
mod tiles;

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn scope_row(path: &str, parent: Option<&str>) -> ScopeRow {
        ScopeRow {
            path: path.into(),
            kind: "x".into(),
            parent: parent.map(Into::into),
            org: "acme".into(),
            mode: None,
            max_versions: None,
            created_at: 0,
        }
    }

    /// A real HMAC-SHA256 row key (the vault derives its own from the root
    /// key; the store links no cryptography outside its tests).
    struct TestRowKey(ring::hmac::Key);

    impl RowKey for TestRowKey {
        fn tag(&self, message: &[u8]) -> Vec<u8> {
            ring::hmac::sign(&self.0, message).as_ref().to_vec()
        }
        fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
            ring::hmac::verify(&self.0, message, tag).is_ok()
        }
    }

    pub(crate) fn with_row_key(store: &Store) {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7; 32]);
        store.set_row_key(Some(Arc::new(TestRowKey(key))));
    }

    /// A store on a fresh SQLite file (kept while `dir` lives), with the
    /// row key; and its URL, to open it again.
    async fn sqlite_store() -> (tempfile::TempDir, String, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("data/t.db").display());
        let store = Store::connect(&url).await.unwrap();
        with_row_key(&store);
        (dir, url, store)
    }

    fn put(value: u8) -> (Vec<NewVersion>, Sealer) {
        let p = NewVersion {
            scope: "acme/shop".into(),
            org: "acme".into(),
            name: "K".into(),
            cas: None,
            max_versions: 10,
            key_term: 1,
        };
        (vec![p], Box::new(move |_, _| Ok(vec![value; 32])))
    }

    /// A row altered in the database, or copied to another key, is refused
    /// on read (and raises an alarm); without the key nothing is read.
    #[tokio::test]
    async fn rows_altered_in_the_database_are_refused() {
        let (_dir, url, store) = sqlite_store().await;
        let mut alarms = store.alarms();
        let mut prod = scope_row("acme", None);
        prod.mode = Some("production".into());
        store.create_scope(prod, None).await.unwrap();
        assert!(store.scope("acme").await.unwrap().is_some());
        // Copy the organization's row (and MAC) to another path.
        store
            .write(|c| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO scopes (path, kind, parent, org, mode, max_versions, \
                         created_at, mac) SELECT 'evil', kind, parent, org, mode, max_versions, \
                         created_at, mac FROM scopes WHERE path = 'acme'",
                    )
                    .execute(&mut *c)
                    .await?;
                    sqlx::query("UPDATE scopes SET mode = 'development' WHERE path = 'acme'")
                        .execute(&mut *c)
                        .await?;
                    Ok(())
                })
            })
            .await
            .unwrap();
        let copied = store.scope("evil").await;
        assert!(matches!(copied, Err(StoreError::Tampered(_))), "{copied:?}");
        assert!(matches!(
            alarms.try_recv(),
            Ok(Alarm::Tampered {
                table: "scopes",
                ..
            })
        ));
        // "acme" was cached before the change; a fresh store reads the
        // database.
        drop(store);
        let fresh = Store::connect(&url).await.unwrap();
        with_row_key(&fresh);
        assert!(matches!(
            fresh.scope("acme").await,
            Err(StoreError::Tampered(_))
        ));
        fresh.set_row_key(None);
        assert!(matches!(fresh.scope("evil").await, Err(StoreError::Sealed)));
    }

    /// A writer who removes the row-MAC mark and every MAC, and inserts a
    /// row, does not get it blessed at the next unseal: rows without MACs
    /// are adopted only when the operator allows it.
    #[tokio::test]
    async fn unmarked_rows_are_adopted_only_when_the_operator_allows() {
        let (_dir, url, store) = sqlite_store().await;
        assert_eq!(
            store.adopt_rows().await.unwrap(),
            0,
            "a new database is marked"
        );
        store
            .create_scope(scope_row("acme", None), None)
            .await
            .unwrap();
        store
            .write(|c| {
                Box::pin(async move {
                    for sql in [
                        "DELETE FROM integrity_marks",
                        "UPDATE scopes SET mac = NULL",
                        "INSERT INTO scopes (path, kind, parent, org, mode, max_versions, \
                         created_at) SELECT 'evil', kind, parent, 'evil', mode, max_versions, \
                         created_at FROM scopes WHERE path = 'acme'",
                    ] {
                        sqlx::query(sql).execute(&mut *c).await?;
                    }
                    Ok(())
                })
            })
            .await
            .unwrap();
        drop(store);
        let store = Store::connect(&url).await.unwrap();
        let mut alarms = store.alarms();
        with_row_key(&store);
        assert_eq!(store.adopt_rows().await.unwrap(), 0);
        assert!(matches!(
            alarms.try_recv(),
            Ok(Alarm::Tampered {
                table: "integrity_marks",
                ..
            })
        ));
        assert!(matches!(
            store.scope("evil").await,
            Err(StoreError::Tampered(_))
        ));
        store.allow_row_adoption(true);
        assert_eq!(store.adopt_rows().await.unwrap(), 2);
        assert!(store.scope("evil").await.unwrap().is_some());
    }

    /// PostgreSQL: a replica uses its cache for a request only when it has
    /// applied every change up to the counter read as the request begins;
    /// a change whose notification has not arrived yet sends it to the
    /// database.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_behind_on_changes_reads_the_database() {
        use sqlx::Connection;
        let (url, admin, db) = crate::lockstep::fresh_postgres_db().await;
        let a = Store::connect(&url).await.unwrap();
        let b = Store::connect(&url).await.unwrap();
        with_row_key(&a);
        with_row_key(&b);
        let cached = |s: &Store| {
            let s = s.clone();
            async move { s.fresh_view(async { s.read_cache().is_some() }).await }
        };
        let settles = |s: &Store, want: bool| {
            let s = s.clone();
            async move {
                for _ in 0..200 {
                    if cached(&s).await == want {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("the view did not become {want}");
            }
        };
        a.create_scope(scope_row("acme", None), None).await.unwrap();
        settles(&b, true).await;
        // A change committed whose notification is still on its way.
        let mut raw = sqlx::AnyConnection::connect(&url).await.unwrap();
        let seq: i64 =
            sqlx::query_scalar("UPDATE change_seq SET seq = seq + 1 WHERE id = 1 RETURNING seq")
                .fetch_one(&mut raw)
                .await
                .unwrap();
        assert!(!cached(&b).await, "used the cache while behind");
        sqlx::query("SELECT pg_notify('warden_changes', $1)")
            .bind(format!("O\tsomeone\nQ\t{seq}"))
            .execute(&mut raw)
            .await
            .unwrap();
        settles(&b, true).await;
        raw.close().await.unwrap();
        drop((a, b));
        crate::lockstep::drop_postgres_db(&admin, &db).await;
    }

    /// PostgreSQL: a committed change this replica never hears of (its
    /// notification lost on a link that died silently) turns the feed
    /// unhealthy within a second, so grants end; the replica then listens
    /// afresh and turns healthy again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_never_heard_of_fails_the_feed_closed() {
        use sqlx::Connection;
        let (url, admin, db) = crate::lockstep::fresh_postgres_db().await;
        let store = Store::connect(&url).await.unwrap();
        let mut health = store.feed_health();
        assert!(*health.borrow_and_update());
        let mut raw = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE change_seq SET seq = seq + 1 WHERE id = 1")
            .execute(&mut raw)
            .await
            .unwrap();
        let lost = tokio::time::timeout(Duration::from_secs(1), health.wait_for(|h| !*h))
            .await
            .is_ok();
        assert!(lost, "a change nobody announced went unnoticed");
        let back = tokio::time::timeout(Duration::from_secs(5), health.wait_for(|h| *h))
            .await
            .is_ok();
        assert!(back, "the feed did not recover");
        raw.close().await.unwrap();
        drop(store);
        crate::lockstep::drop_postgres_db(&admin, &db).await;
    }

    /// Regression: cache invalidation used to run in the writing request's
    /// task after the commit, so a request cancelled mid-write (timeout,
    /// client gone) left the old row cached for good.
    #[tokio::test]
    async fn a_cancelled_write_does_not_leave_a_stale_cached_row() {
        let (_dir, _, store) = sqlite_store().await;
        store
            .create_scope(scope_row("acme", None), None)
            .await
            .unwrap();
        store
            .create_scope(scope_row("acme/shop", Some("acme")), None)
            .await
            .unwrap();
        let (puts, sealer) = put(1);
        store.put_secrets(puts, sealer).await.unwrap();
        let cached = store
            .secret_version("acme/shop", "K", None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cached.version, 1);

        // Queue a second write, then drop the request before it completes.
        let (puts, sealer) = put(2);
        assert!(store.put_secrets(puts, sealer).now_or_never().is_none());
        store.flush().await.unwrap();

        let latest = store
            .secret_version("acme/shop", "K", None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(latest.version, 2);
        assert_eq!(latest.envelope, Some(vec![2; 32]));
    }

    fn puts(names: impl Iterator<Item = String>) -> (Vec<NewVersion>, Sealer) {
        let p = names
            .map(|name| NewVersion {
                scope: "acme/shop".into(),
                org: "acme".into(),
                name,
                cas: None,
                max_versions: 10,
                key_term: 1,
            })
            .collect();
        (p, Box::new(|_, _| Ok(vec![0; 32])))
    }

    /// A scope holds at most `MAX_KEYS_PER_SCOPE` keys: the write that
    /// would pass it is refused whole (nothing of it written), rewriting
    /// existing keys still works, and of two requests queued together only
    /// the one that no longer fits is refused.
    #[tokio::test]
    async fn a_scope_refuses_keys_past_its_limit() {
        let (_dir, _, store) = sqlite_store().await;
        store
            .create_scope(scope_row("acme", None), None)
            .await
            .unwrap();
        store
            .create_scope(scope_row("acme/shop", Some("acme")), None)
            .await
            .unwrap();
        let limit = warden_types::MAX_KEYS_PER_SCOPE;
        for start in (0..limit - 1).step_by(100) {
            let end = (start + 100).min(limit - 1);
            let (p, s) = puts((start..end).map(|i| format!("K{i}")));
            store.put_secrets(p, s).await.unwrap();
        }
        // One slot left: a two-key write is refused whole...
        let (p, s) = puts(["NEW_A".to_owned(), "NEW_B".to_owned()].into_iter());
        let e = store.put_secrets(p, s).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::Refused(m) if m.contains("acme/shop holds 999 keys") && m.contains("at most 1000")),
            "{e}"
        );
        assert!(
            store
                .secret_version("acme/shop", "NEW_A", None)
                .await
                .unwrap()
                .is_none()
        );
        // ...rewriting existing keys is not limited...
        let (p, s) = puts((0..100).map(|i| format!("K{i}")));
        store.put_secrets(p, s).await.unwrap();
        // ...and of two new keys queued together, the first fits.
        let (p1, s1) = puts(["NEW_A".to_owned()].into_iter());
        let (p2, s2) = puts(["NEW_B".to_owned()].into_iter());
        let (a, b) = futures::join!(store.put_secrets(p1, s1), store.put_secrets(p2, s2));
        assert!(a.is_ok(), "{a:?}");
        assert!(matches!(b, Err(StoreError::Refused(_))), "{b:?}");
    }
}
