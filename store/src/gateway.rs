//! What the shell gateway keeps: its SSH host key (sealed), its sessions,
//! live and ended (migration 0012; the process holding each and when it
//! last said so, 0016), and their recordings (0013).

use crate::integrity::{Field, Protected, Tagged, select};
use crate::{Store, StoreError};

/// The SSH host key: an Ed25519 seed sealed under the root key.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SshHostKeyRow {
    /// The 32-byte seed, sealed.
    pub sealed_seed: Vec<u8>,
    /// When it was made, ms.
    pub created_at: i64,
}

impl Protected for SshHostKeyRow {
    const TABLE: &'static str = "ssh_host_key";
    const KEY: &'static [&'static str] = &["id"];
    const COLUMNS: &'static str = "sealed_seed, created_at";
    fn key(&self) -> Vec<&str> {
        vec!["1"]
    }
    fn fields(&self) -> Vec<Field<'_>> {
        vec![Field::Bytes(&self.sealed_seed), Field::Int(self.created_at)]
    }
}

/// How long after its start a session without a heartbeat (opened by a
/// replica from before migration 0016) is judged lost: a day.
const UNHEARD_GRACE_MS: i64 = 24 * 60 * 60 * 1000;

/// Whether a live session's holder is lost: not heard since `$1`, or,
/// never heard (no heartbeat), started before `$2`.
const LOST: &str = "((seen_at IS NOT NULL AND seen_at < $1) \
                     OR (seen_at IS NULL AND started_at < $2))";

impl Store {
    /// The SSH host key, if made.
    pub async fn ssh_host_key(&self) -> Result<Option<SshHostKeyRow>, StoreError> {
        let found: Option<Tagged<SshHostKeyRow>> =
            sqlx::query_as(select::<SshHostKeyRow>("WHERE id = 1"))
                .fetch_optional(self.pool())
                .await?;
        self.guard.check_one(found)
    }

    /// Stores the SSH host key unless one exists; answers the one stored (a
    /// replica that lost the race gets the winner's).
    pub async fn init_ssh_host_key(&self, row: SshHostKeyRow) -> Result<SshHostKeyRow, StoreError> {
        let tag = self.guard.tag(&row)?;
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO ssh_host_key (id, sealed_seed, created_at, mac) \
                     VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
                )
                .bind(row.sealed_seed)
                .bind(row.created_at)
                .bind(tag)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await?;
        self.ssh_host_key()
            .await?
            .ok_or_else(|| StoreError::NotFound("SSH host key".into()))
    }
}

/// A shell session, live (`ended_at` empty) or ended.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ShellSessionRow {
    /// Its id (in its audit entries too).
    pub id: String,
    /// The organization (whose log holds its entries).
    pub org: String,
    /// `ORG/PROJECT/ENV/SERVICE`.
    pub service: String,
    /// The pod it runs in.
    pub pod: String,
    /// Who opened it.
    pub principal: String,
    /// `ssh`, `websocket`, `kubernetes-exec`.
    pub transport: String,
    /// The replica holding it.
    pub node: String,
    /// When it started, ms.
    pub started_at: i64,
    /// When it ended, ms.
    pub ended_at: Option<i64>,
    /// Its outcome's status.
    pub status: Option<String>,
    /// The process's exit status, if it exited.
    pub exit_status: Option<i64>,
    /// Who asked to end it, if someone did.
    pub killed_by: Option<String>,
    /// The process holding it (a random id per process start; none in
    /// rows from before migration 0016).
    pub holder: Option<String>,
    /// When that process last said it still holds it, ms.
    pub seen_at: Option<i64>,
}

/// The status of a session ended because the process holding it stopped
/// saying so (it crashed, or lost the database): no audit outcome exists.
pub const REPLICA_LOST: &str = "replica_lost";

const SESSION_COLUMNS: &str = "id, org, service, pod, principal, transport, node, started_at, \
                               ended_at, status, exit_status, killed_by, holder, seen_at";

impl Store {
    /// Records a session as live.
    pub async fn shell_session_started(&self, row: ShellSessionRow) -> Result<(), StoreError> {
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO shell_sessions (id, org, service, pod, principal, \
                     transport, node, started_at, holder, seen_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(row.id)
                .bind(row.org)
                .bind(row.service)
                .bind(row.pod)
                .bind(row.principal)
                .bind(row.transport)
                .bind(row.node)
                .bind(row.started_at)
                .bind(row.holder)
                .bind(row.seen_at.unwrap_or(row.started_at))
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Records a session's end.
    pub async fn shell_session_ended(
        &self,
        id: &str,
        ended_at: i64,
        status: &str,
        exit_status: Option<i64>,
    ) -> Result<(), StoreError> {
        let (id, status) = (id.to_owned(), status.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE shell_sessions SET ended_at = $1, status = $2, \
                     exit_status = $3 WHERE id = $4 AND ended_at IS NULL",
                )
                .bind(ended_at)
                .bind(status)
                .bind(exit_status)
                .bind(id)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Asks for a live session's end on behalf of `by`; false if it is not
    /// live (or unknown).
    pub async fn shell_session_kill(&self, id: &str, by: &str) -> Result<bool, StoreError> {
        let (id, by) = (id.to_owned(), by.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE shell_sessions SET killed_by = $1 \
                     WHERE id = $2 AND ended_at IS NULL",
                )
                .bind(by)
                .bind(id)
                .execute(&mut *c)
                .await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }

    /// One session.
    pub async fn shell_session(&self, id: &str) -> Result<Option<ShellSessionRow>, StoreError> {
        // Only constants are formatted in.
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM shell_sessions WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(Into::into)
    }

    /// An organization's sessions, newest first, at most `limit`; only live
    /// ones with `live_only`.
    pub async fn shell_sessions(
        &self,
        org: &str,
        live_only: bool,
        limit: i64,
    ) -> Result<Vec<ShellSessionRow>, StoreError> {
        let live = if live_only {
            "AND ended_at IS NULL"
        } else {
            ""
        };
        // Only constants are formatted in.
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM shell_sessions WHERE org = $1 {live} \
             ORDER BY started_at DESC LIMIT $2"
        )))
        .bind(org)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(Into::into)
    }

    /// Says that process `holder` still holds its live sessions (at `now`,
    /// ms); answers the ids of its sessions that another replica ended as
    /// [`REPLICA_LOST`] meanwhile (it had stopped saying so for too long),
    /// which the holder then ends too.
    pub async fn shell_sessions_seen(
        &self,
        holder: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let who = holder.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE shell_sessions SET seen_at = $1 \
                     WHERE holder = $2 AND ended_at IS NULL",
                )
                .bind(now)
                .bind(who)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await?;
        let lost: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM shell_sessions WHERE holder = $1 AND status = $2")
                .bind(holder)
                .bind(REPLICA_LOST)
                .fetch_all(self.pool())
                .await?;
        Ok(lost.into_iter().map(|(id,)| id).collect())
    }

    /// Ends, as [`REPLICA_LOST`] at `now`, the live sessions whose holder
    /// has not said it holds them since `cutoff` (ms); answers their ids.
    /// A row without a heartbeat was opened by a replica from before
    /// migration 0016, which may still be running it during a rolling
    /// upgrade: it is judged only a day after its start.
    pub async fn end_lost_shell_sessions(
        &self,
        cutoff: i64,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let unheard_cutoff = cutoff.saturating_sub(UNHEARD_GRACE_MS);
        let stale: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM shell_sessions WHERE ended_at IS NULL AND {LOST}"
        )))
        .bind(cutoff)
        .bind(unheard_cutoff)
        .fetch_all(self.pool())
        .await?;
        let mut ended = Vec::with_capacity(stale.len());
        for (id,) in stale {
            let this = id.clone();
            // Judged again in the update: the holder may have said so since.
            let done = self
                .write(move |c| {
                    Box::pin(async move {
                        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "UPDATE shell_sessions SET ended_at = $3, status = $4 \
                             WHERE id = $5 AND ended_at IS NULL AND {LOST}"
                        )))
                        .bind(cutoff)
                        .bind(unheard_cutoff)
                        .bind(now)
                        .bind(REPLICA_LOST)
                        .bind(this)
                        .execute(&mut *c)
                        .await?;
                        Ok(done.rows_affected() > 0)
                    })
                })
                .await?;
            if done {
                ended.push(id);
            }
        }
        Ok(ended)
    }

    /// The live sessions held by process `holder` that someone asked to
    /// end: (id, who asked).
    pub async fn killed_shell_sessions(
        &self,
        holder: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query_as(
            "SELECT id, killed_by FROM shell_sessions \
             WHERE holder = $1 AND ended_at IS NULL AND killed_by IS NOT NULL",
        )
        .bind(holder)
        .fetch_all(self.pool())
        .await
        .map_err(Into::into)
    }
}

/// One sealed chunk of a session's recording.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RecordingChunkRow {
    /// The session.
    pub session_id: String,
    /// The chunk's number, from 0.
    pub seq: i64,
    /// The organization whose key sealed it.
    pub org: String,
    /// Whether it is the recording's last chunk.
    pub last: bool,
    /// The sealed asciicast text.
    pub sealed: Vec<u8>,
}

impl Store {
    /// Stores a recording chunk (chunks are only ever inserted).
    pub async fn put_recording_chunk(&self, row: RecordingChunkRow) -> Result<(), StoreError> {
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO session_recordings (session_id, seq, org, last, sealed) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(row.session_id)
                .bind(row.seq)
                .bind(row.org)
                .bind(i64::from(row.last))
                .bind(row.sealed)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// A session's recording chunks, in order, from chunk `from`, at most
    /// `limit`.
    pub async fn recording_chunks(
        &self,
        session_id: &str,
        from: i64,
        limit: i64,
    ) -> Result<Vec<RecordingChunkRow>, StoreError> {
        let rows: Vec<(String, i64, String, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT session_id, seq, org, last, sealed FROM session_recordings \
             WHERE session_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
        )
        .bind(session_id)
        .bind(from)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(session_id, seq, org, last, sealed)| RecordingChunkRow {
                session_id,
                seq,
                org,
                last: last != 0,
                sealed,
            })
            .collect())
    }

    /// The ids of an organization's recorded sessions.
    pub async fn recorded_sessions(&self, org: &str) -> Result<Vec<String>, StoreError> {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT session_id FROM session_recordings WHERE org = $1 ORDER BY session_id",
        )
        .bind(org)
        .fetch_all(self.pool())
        .await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    /// The audit entries of `log` that mention `needle` (a session id),
    /// in order: a scan, for the rare export of one session's proof.
    pub async fn audit_entries_mentioning(
        &self,
        log: &str,
        needle: &str,
    ) -> Result<Vec<crate::AuditRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, entry, leaf_hash FROM audit_entries \
             WHERE log = $1 AND entry LIKE $2 ORDER BY seq",
        )
        .bind(log)
        .bind(format!("%\"{needle}\"%"))
        .fetch_all(self.pool())
        .await?)
    }
}
