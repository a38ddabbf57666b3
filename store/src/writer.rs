//! The group-commit writer: the only code path that writes to the database.
//!
//! One task owns writing. It takes everything queued, runs it in one
//! transaction and commits once, so N concurrent writes cost one commit (one
//! fsync on SQLite) instead of N. While a batch commits, the next one queues
//! up, which gives batching without any timer: a lone write commits at once,
//! and under load batches grow until the commit cost is shared.
//!
//! Audit entries take a fast path: one statement inserts all of a batch's
//! entries. Secret versions take another (`bulk.rs`). Other jobs each run in a savepoint so a failing job (a
//! check-and-set mismatch, a conflict) rolls back alone. Results are handed
//! back only after the batch's `COMMIT` has returned.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use tokio::sync::{mpsc, oneshot};

use crate::bulk::{self, PutItem};
use crate::cache::ReadCache;
use crate::dialect::Dialect;
use crate::feed::{Change, Feed};
use crate::{LogHead, NewVersion, Sealer, Sequencer, StoreError};

/// The future a write job returns; it borrows the batch's connection.
pub type TxFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type ErasedJob = Box<
    dyn for<'c> FnOnce(
            &'c mut AnyConnection,
        ) -> Pin<Box<dyn Future<Output = (bool, Completion)> + Send + 'c>>
        + Send,
>;

/// Cache entries a write makes stale. The writer drops them after the
/// batch's `COMMIT` and before answering anyone, so no reader can see a
/// stale row once a write is acknowledged, even if the writing request was
/// cancelled meanwhile.
pub(crate) enum Stale {
    /// Nothing cached changes, and nobody needs to hear of it.
    Nothing,
    /// This change (also published on the change feed).
    Change(Change),
}

enum Msg {
    Job(ErasedJob, Stale),
    Put(PutItem),
    Audit {
        log: String,
        entry: String,
        done: Option<oneshot::Sender<Result<(), StoreError>>>,
        ticket: Option<Ticket>,
    },
}

const PENDING: u8 = 0;
const COMMITTED: u8 = 1;
const FAILED: u8 = 2;

/// The fate of one audit intent, shared with the writes that depend on it.
#[derive(Clone)]
pub struct Ticket(Arc<AtomicU8>);

impl Default for Ticket {
    fn default() -> Self {
        Self(Arc::new(AtomicU8::new(PENDING)))
    }
}

impl Ticket {
    fn settle(&self, ok: bool) {
        self.0
            .store(if ok { COMMITTED } else { FAILED }, Ordering::Release);
    }

    pub(crate) fn failed(&self) -> bool {
        self.0.load(Ordering::Acquire) == FAILED
    }
}

tokio::task_local! {
    /// The intent the writes of the current operation depend on.
    static AFTER_INTENT: Ticket;
}

/// Runs `op` so that every write it makes depends on the intent behind
/// `ticket`: such a write runs after the intent (the queue is FIFO), and is
/// refused if the intent's batch failed. In the same batch, both commit or
/// neither does.
pub async fn after_intent<F: Future>(ticket: Ticket, op: F) -> F::Output {
    AFTER_INTENT.scope(ticket, op).await
}

/// Most messages in one transaction; bounds the time a batch holds the lock.
const MAX_BATCH: usize = 2048;
/// Creates a log's head on its first entry.
const CREATE_HEAD: &str =
    "INSERT INTO audit_heads (log, size, state) VALUES ($1, 0, $2) ON CONFLICT (log) DO NOTHING";
const UPDATE_HEAD: &str = "UPDATE audit_heads SET size = $2, state = $3, tiled = $4 WHERE log = $1";

/// Where the audit crate installs its [`Sequencer`].
pub(crate) type SequencerSlot = Arc<std::sync::OnceLock<Arc<dyn Sequencer>>>;

#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::UnboundedSender<Msg>,
}

impl Writer {
    pub(crate) fn start(
        pool: AnyPool,
        dialect: Dialect,
        cache: Option<Arc<ReadCache>>,
        feed: Arc<Feed>,
        sequencer: SequencerSlot,
    ) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, dialect, cache, feed, sequencer, rx));
        Self { queue }
    }

    pub(crate) async fn run<T, F>(&self, job: F, stale: Stale) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> TxFuture<'c, T> + Send + 'static,
    {
        let (done, rx) = oneshot::channel();
        let depends_on = AFTER_INTENT.try_with(Ticket::clone).ok();
        let erased: ErasedJob = Box::new(move |conn| {
            Box::pin(async move {
                let result = match depends_on {
                    Some(t) if t.failed() => Err(StoreError::IntentNotRecorded),
                    _ => job(conn).await,
                };
                let ok = result.is_ok();
                let completion: Completion = Box::new(move |commit| {
                    let _ = done.send(commit.and(result));
                });
                (ok, completion)
            })
        });
        self.queue
            .send(Msg::Job(erased, stale))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Writes new secret versions through the bulk path (see `bulk.rs`).
    pub(crate) async fn put(
        &self,
        puts: Vec<NewVersion>,
        sealer: Sealer,
    ) -> Result<Vec<i64>, StoreError> {
        let (done, rx) = oneshot::channel();
        let depends_on = AFTER_INTENT.try_with(Ticket::clone).ok();
        self.queue
            .send(Msg::Put(PutItem {
                puts,
                sealer,
                depends_on,
                done,
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues an entry; the receiver answers once it is committed (or not).
    pub(crate) fn append_audit(
        &self,
        log: String,
        entry: String,
    ) -> Result<(Ticket, oneshot::Receiver<Result<(), StoreError>>), StoreError> {
        let (done, rx) = oneshot::channel();
        let ticket = Ticket::default();
        self.queue
            .send(Msg::Audit {
                log,
                entry,
                done: Some(done),
                ticket: Some(ticket.clone()),
            })
            .map_err(|_| StoreError::Closed)?;
        Ok((ticket, rx))
    }

    pub(crate) fn append_audit_later(&self, log: String, entry: String) {
        let sent = self.queue.send(Msg::Audit {
            log,
            entry,
            done: None,
            ticket: None,
        });
        if sent.is_err() {
            tracing::error!("audit entry dropped: storage writer stopped");
        }
    }
}

async fn run(
    pool: AnyPool,
    dialect: Dialect,
    cache: Option<Arc<ReadCache>>,
    feed: Arc<Feed>,
    sequencer: SequencerSlot,
    mut rx: mpsc::UnboundedReceiver<Msg>,
) {
    let mut batch = Vec::new();
    // The writer keeps one connection; it is replaced after a failure.
    let mut conn: Option<PoolConnection<Any>> = None;
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if conn.is_none() {
            conn = pool
                .acquire()
                .await
                .map_err(|e| tracing::error!(error = %e, "writer cannot connect"))
                .ok();
        }
        let (size, started) = (batch.len(), std::time::Instant::now());
        let ok = commit_batch(
            conn.as_mut(),
            dialect,
            cache.as_deref(),
            &feed,
            sequencer.get().map(|s| &**s),
            std::mem::take(&mut batch),
        )
        .await;
        tracing::trace!(
            size,
            micros = started.elapsed().as_micros() as u64,
            "batch committed"
        );
        if !ok && let Some(mut c) = conn.take() {
            // Never reuse a connection whose transaction state is unknown.
            c.close_on_drop();
        }
    }
}

/// Commits one batch; returns whether the connection is still usable.
async fn commit_batch(
    conn: Option<&mut PoolConnection<Any>>,
    dialect: Dialect,
    cache: Option<&ReadCache>,
    feed: &Feed,
    sequencer: Option<&dyn Sequencer>,
    batch: Vec<Msg>,
) -> bool {
    let mut audits = Vec::new();
    let mut audit_done = Vec::new();
    let mut tickets = Vec::new();
    let mut jobs = Vec::new();
    let mut puts = Vec::new();
    let mut changes = Vec::new();
    for m in batch {
        match m {
            Msg::Audit {
                log,
                entry,
                done,
                ticket,
            } => {
                audits.push((log, entry));
                audit_done.extend(done);
                tickets.extend(ticket);
            }
            Msg::Job(j, stale) => {
                if let Stale::Change(c) = stale {
                    changes.push(c);
                }
                jobs.push(j);
            }
            Msg::Put(p) => {
                changes.push(Change::Secrets(
                    p.puts
                        .iter()
                        .map(|n| (n.scope.clone(), n.name.clone()))
                        .collect(),
                ));
                puts.push(p);
            }
        }
    }
    let mut completions: Vec<Completion> = Vec::with_capacity(jobs.len());
    let mut put_outcomes = Vec::new();
    // Other replicas hear of the batch's changes when it commits.
    let notify = (dialect.notifies() && !changes.is_empty())
        .then_some((feed.origin.as_str(), changes.as_slice()));
    let outcome = match conn {
        Some(conn) => {
            transaction(
                conn,
                dialect,
                sequencer,
                audits,
                &mut puts,
                &mut put_outcomes,
                jobs,
                &mut completions,
                notify,
            )
            .await
        }
        None => Err(StoreError::Database("no database connection".into())),
    };
    if let Err(e) = &outcome {
        tracing::error!(error = %e, "write batch failed");
    }
    // Whatever the outcome, drop what may have changed before anyone hears
    // of the commit, and tell this process's listeners.
    for change in changes {
        if let Some(c) = cache {
            c.invalidate(&change);
        }
        feed.publish(change);
    }
    let outcome = outcome.map(|seq| {
        if let Some(seq) = seq {
            feed.applied(seq);
        }
    });
    // Settle tickets before answering anyone, so a dependent write queued
    // meanwhile sees the outcome.
    for t in tickets {
        t.settle(outcome.is_ok());
    }
    for d in audit_done {
        let _ = d.send(outcome.clone());
    }
    for c in completions {
        c(outcome.clone());
    }
    let mut put_outcomes = put_outcomes.into_iter();
    for p in puts {
        let result = match (&outcome, put_outcomes.next().flatten()) {
            (Ok(()), Some(r)) => r,
            (Ok(()), None) => Err(StoreError::Database("put was not applied".into())),
            (Err(e), _) => Err(e.clone()),
        };
        let _ = p.done.send(result);
    }
    outcome.is_ok()
}

#[allow(clippy::too_many_arguments)]
async fn transaction(
    conn: &mut PoolConnection<Any>,
    dialect: Dialect,
    sequencer: Option<&dyn Sequencer>,
    audits: Vec<(String, String)>,
    puts: &mut [PutItem],
    put_outcomes: &mut Vec<Option<bulk::PutOutcome>>,
    jobs: Vec<ErasedJob>,
    completions: &mut Vec<Completion>,
    notify: Option<(&str, &[Change])>,
) -> Result<Option<i64>, StoreError> {
    conn.execute(dialect.begin_batch()).await?;
    let body = async {
        append_audit(conn, dialect, sequencer, audits).await?;
        if !puts.is_empty() {
            *put_outcomes = bulk::put_all(conn, dialect, puts).await?;
        }
        // Each job runs in a savepoint. Releasing one and opening the next
        // is a single call, so a job costs one round trip more than its own
        // statements.
        let mut open = false;
        for job in jobs {
            let sql = if open {
                "RELEASE SAVEPOINT job; SAVEPOINT job"
            } else {
                "SAVEPOINT job"
            };
            sqlx::raw_sql(sql).execute(&mut **conn).await?;
            open = true;
            let (ok, completion) = job(conn).await;
            completions.push(completion);
            if !ok {
                conn.execute("ROLLBACK TO SAVEPOINT job").await?;
            }
        }
        let mut seq = None;
        if let Some((origin, changes)) = notify {
            let n: i64 = sqlx::query_scalar(
                "UPDATE change_seq SET seq = seq + 1 WHERE id = 1 RETURNING seq",
            )
            .fetch_one(&mut **conn)
            .await?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::feed::CHANNEL)
                .bind(crate::feed::encode(origin, n, changes))
                .execute(&mut **conn)
                .await?;
            seq = Some(n);
        }
        let commit = if open {
            "RELEASE SAVEPOINT job; COMMIT"
        } else {
            "COMMIT"
        };
        sqlx::raw_sql(commit).execute(&mut **conn).await?;
        Ok::<_, StoreError>(seq)
    }
    .await;
    if body.is_err() {
        let _ = conn.execute("ROLLBACK").await;
    }
    body
}

/// Appends a batch's audit entries: per log (in name order, so replicas
/// lock heads in the same order), lock the head, let the sequencer place
/// the entries, insert them with one statement, store the tiles they
/// complete (about once per 256 entries; see `tiles.rs`) and the new head.
async fn append_audit(
    conn: &mut AnyConnection,
    dialect: Dialect,
    sequencer: Option<&dyn Sequencer>,
    rows: Vec<(String, String)>,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let sequencer =
        sequencer.ok_or_else(|| StoreError::Database("no audit sequencer installed".into()))?;
    let mut by_log: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (log, entry) in rows {
        by_log.entry(log).or_default().push(entry);
    }
    for (log, entries) in by_log {
        sqlx::query(CREATE_HEAD)
            .bind(log.as_str())
            .bind(sequencer.empty_state())
            .execute(&mut *conn)
            .await?;
        let (size, state, tiled): (i64, Vec<u8>, i64) = sqlx::query_as(dialect.lock_audit_head())
            .bind(log.as_str())
            .fetch_one(&mut *conn)
            .await?;
        let (placed, head) = sequencer
            .sequence(&log, LogHead { size, state }, entries)
            .map_err(StoreError::Database)?;
        let json: Vec<(i64, &str, String)> = placed
            .iter()
            .map(|e| (e.seq, e.entry.as_str(), hex::encode(&e.leaf_hash)))
            .collect();
        let json = serde_json::to_string(&json).map_err(|e| StoreError::Database(e.to_string()))?;
        sqlx::query(dialect.insert_audit_entries())
            .bind(log.as_str())
            .bind(json)
            .execute(&mut *conn)
            .await?;
        // Tiles are kept in step while they cover the whole log; a log
        // whose tiles lag (from before tiles existed) is caught up apart.
        let leaves: Vec<Vec<u8>> = placed.into_iter().map(|e| e.leaf_hash).collect();
        let covered = tiled == size
            && crate::tiles::extend(
                conn,
                sequencer,
                &log,
                u64::try_from(size).map_err(|e| StoreError::Database(e.to_string()))?,
                &leaves,
            )
            .await?;
        sqlx::query(UPDATE_HEAD)
            .bind(log.as_str())
            .bind(head.size)
            .bind(head.state)
            .bind(if covered { head.size } else { tiled })
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
