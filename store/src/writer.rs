//! The group-commit writer: the only code path that writes to the database.
//!
//! One task owns writing. It takes everything queued, runs it in one
//! transaction and commits once, so N concurrent writes cost one commit (one
//! fsync on SQLite) instead of N. While a batch commits, the next one queues
//! up, which gives batching without any timer: a lone write commits at once,
//! and under load batches grow until the commit cost is shared.
//!
//! Audit entries take a fast path (multi-row inserts, no savepoint per entry);
//! other jobs each run in a savepoint so a failing job (a check-and-set
//! mismatch, a conflict) rolls back alone. Results are handed back only after
//! the batch's `COMMIT` has returned.

use std::future::Future;
use std::pin::Pin;

use sqlx::{AnyConnection, AnyPool, Executor};
use tokio::sync::{mpsc, oneshot};

use crate::{Backend, StoreError};

/// The future a write job returns; it borrows the batch's connection.
pub type TxFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type ErasedJob = Box<
    dyn for<'c> FnOnce(
            &'c mut AnyConnection,
        ) -> Pin<Box<dyn Future<Output = (bool, Completion)> + Send + 'c>>
        + Send,
>;

enum Msg {
    Job(ErasedJob),
    Audit {
        log: String,
        entry: String,
        done: Option<oneshot::Sender<Result<(), StoreError>>>,
    },
}

/// Most messages in one transaction; bounds the time a batch holds the lock.
const MAX_BATCH: usize = 2048;
/// Multi-row insert sizes for audit entries. A batch is cut into chunks of
/// these sizes so only a handful of distinct statements are ever prepared.
const AUDIT_CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::UnboundedSender<Msg>,
}

impl Writer {
    pub(crate) fn start(pool: AnyPool, backend: Backend) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, backend, rx));
        Self { queue }
    }

    pub(crate) async fn run<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> TxFuture<'c, T> + Send + 'static,
    {
        let (done, rx) = oneshot::channel();
        let erased: ErasedJob = Box::new(move |conn| {
            Box::pin(async move {
                let result = job(conn).await;
                let ok = result.is_ok();
                let completion: Completion = Box::new(move |commit| {
                    let _ = done.send(commit.and(result));
                });
                (ok, completion)
            })
        });
        self.queue
            .send(Msg::Job(erased))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) async fn append_audit(&self, log: String, entry: String) -> Result<(), StoreError> {
        let (done, rx) = oneshot::channel();
        self.queue
            .send(Msg::Audit {
                log,
                entry,
                done: Some(done),
            })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) fn append_audit_later(&self, log: String, entry: String) {
        let sent = self.queue.send(Msg::Audit {
            log,
            entry,
            done: None,
        });
        if sent.is_err() {
            tracing::error!("audit entry dropped: storage writer stopped");
        }
    }
}

async fn run(pool: AnyPool, backend: Backend, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        commit_batch(&pool, backend, std::mem::take(&mut batch)).await;
    }
}

async fn commit_batch(pool: &AnyPool, backend: Backend, batch: Vec<Msg>) {
    let mut audits = Vec::new();
    let mut audit_done = Vec::new();
    let mut jobs = Vec::new();
    for m in batch {
        match m {
            Msg::Audit { log, entry, done } => {
                audits.push((log, entry));
                audit_done.extend(done);
            }
            Msg::Job(j) => jobs.push(j),
        }
    }
    let mut completions: Vec<Completion> = Vec::with_capacity(jobs.len());
    let outcome = transaction(pool, backend, &audits, jobs, &mut completions).await;
    if let Err(e) = &outcome {
        tracing::error!(error = %e, "write batch failed");
    }
    for d in audit_done {
        let _ = d.send(outcome.clone());
    }
    for c in completions {
        c(outcome.clone());
    }
}

async fn transaction(
    pool: &AnyPool,
    backend: Backend,
    audits: &[(String, String)],
    jobs: Vec<ErasedJob>,
    completions: &mut Vec<Completion>,
) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    let begin = match backend {
        // Take the write lock up front so the commit cannot fail with BUSY.
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    conn.execute(begin).await?;
    let body = async {
        insert_audit(&mut conn, audits).await?;
        for job in jobs {
            conn.execute("SAVEPOINT job").await?;
            let (ok, completion) = job(&mut conn).await;
            completions.push(completion);
            if !ok {
                conn.execute("ROLLBACK TO SAVEPOINT job").await?;
            }
            conn.execute("RELEASE SAVEPOINT job").await?;
        }
        conn.execute("COMMIT").await?;
        Ok::<_, StoreError>(())
    }
    .await;
    if body.is_err() && conn.execute("ROLLBACK").await.is_err() {
        // Never hand a connection with an open transaction back to the pool.
        conn.close_on_drop();
    }
    body
}

async fn insert_audit(
    conn: &mut AnyConnection,
    mut rows: &[(String, String)],
) -> Result<(), StoreError> {
    while !rows.is_empty() {
        let n = AUDIT_CHUNKS
            .into_iter()
            .find(|&n| n <= rows.len())
            .unwrap_or(1);
        let (chunk, rest) = rows.split_at(n);
        let mut sql = String::from("INSERT INTO audit_log (log, entry) VALUES ");
        for i in 0..n {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (log, entry) in chunk {
            q = q.bind(log.as_str()).bind(entry.as_str());
        }
        q.execute(&mut *conn).await?;
        rows = rest;
    }
    Ok(())
}
