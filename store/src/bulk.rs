//! The bulk write path for secret versions: every put in a writer batch is
//! applied with a fixed number of statements (JSON arrays in, rows out)
//! instead of a few statements per put. Each statement is one round trip
//! to the database whatever the batch size, which is what the writer's
//! throughput depends on.
//!
//! Puts of one request stay atomic: a request either gets all its versions
//! or fails whole (check-and-set applies only to single-secret requests, so
//! a failing request never leaves half of its secrets bumped). Two requests
//! writing the same secret in one batch are applied in successive rounds,
//! in queue order, so each gets its own version.
//!
//! A scope holds at most [`MAX_KEYS_PER_SCOPE`] keys. Each round first
//! asks which of its keys are new and how many keys their scopes hold, and
//! refuses (alone, in queue order) any request that would take a scope past
//! the limit, before anything is written. The writer's transaction makes
//! that atomic on SQLite (one writing process, `BEGIN IMMEDIATE`); on
//! PostgreSQL the batch first locks the scope rows it writes to, in path
//! order, so replicas adding keys to the same scope take turns and each
//! counts what the other committed.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use sqlx::AnyConnection;
use tokio::sync::oneshot;

use warden_types::MAX_KEYS_PER_SCOPE;

use crate::dialect::Dialect;
use crate::writer::Ticket;
use crate::{NewVersion, Sealer, StoreError, now_ms};

/// One request's puts, queued to the writer.
pub(crate) struct PutItem {
    pub(crate) puts: Vec<NewVersion>,
    pub(crate) sealer: Sealer,
    pub(crate) depends_on: Option<Ticket>,
    pub(crate) done: oneshot::Sender<Result<Vec<i64>, StoreError>>,
}

/// What each item gets: its versions, or why it failed.
pub(crate) type PutOutcome = Result<Vec<i64>, StoreError>;

/// Check-and-set writes (single-secret requests only, so rare) go one by
/// one, each a single statement that either applies or changes nothing.
const CAS_CREATE: &str = "INSERT INTO secrets (scope, org, name, latest, keep, updated_at) \
     VALUES ($1, $2, $3, 1, $4, $5) ON CONFLICT (scope, name) DO NOTHING RETURNING id, latest";
const CAS_BUMP: &str = "UPDATE secrets SET latest = latest + 1, updated_at = $1, keep = $2 \
     WHERE scope = $3 AND name = $4 AND latest = $5 RETURNING id, latest";
const CURRENT: &str = "SELECT latest FROM secrets WHERE scope = $1 AND name = $2";

type Key = (String, String);

fn key(p: &NewVersion) -> Key {
    (p.scope.clone(), p.name.clone())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Applies every item's puts inside the writer's open transaction. A
/// database error fails the whole batch (the `Err`); a check-and-set
/// mismatch or a failed intent fails only its item.
pub(crate) async fn put_all(
    conn: &mut AnyConnection,
    dialect: Dialect,
    items: &mut [PutItem],
) -> Result<Vec<Option<PutOutcome>>, StoreError> {
    let mut outcomes: Vec<Option<PutOutcome>> = items
        .iter()
        .map(|it| match &it.depends_on {
            Some(t) if t.failed() => Some(Err(StoreError::IntentNotRecorded)),
            _ => None,
        })
        .collect();
    let mut pending: Vec<usize> = (0..items.len())
        .filter(|&i| outcomes[i].is_none())
        .collect();
    if let (Some(lock), false) = (dialect.lock_scopes(), pending.is_empty()) {
        let scopes: HashSet<&str> = pending
            .iter()
            .flat_map(|&i| items[i].puts.iter().map(|p| p.scope.as_str()))
            .collect();
        sqlx::query(lock)
            .bind(json!(scopes.into_iter().collect::<Vec<_>>()).to_string())
            .fetch_all(&mut *conn)
            .await?;
    }
    while !pending.is_empty() {
        // A round takes, in queue order, the items whose secrets no earlier
        // item of the round writes.
        let mut taken: HashSet<Key> = HashSet::new();
        let (mut round, mut later) = (Vec::new(), Vec::new());
        for i in pending {
            let keys: Vec<Key> = items[i].puts.iter().map(key).collect();
            if keys.iter().any(|k| taken.contains(k)) {
                later.push(i);
            } else {
                taken.extend(keys);
                round.push(i);
            }
        }
        run_round(conn, dialect, items, &round, &mut outcomes).await?;
        pending = later;
    }
    Ok(outcomes)
}

/// Refuses, in queue order, the items of `round` that would take a scope
/// past [`MAX_KEYS_PER_SCOPE`]; returns the others.
async fn refuse_over_limit(
    conn: &mut AnyConnection,
    dialect: Dialect,
    round: Vec<(usize, Vec<Key>)>,
    outcomes: &mut [Option<PutOutcome>],
) -> Result<Vec<usize>, StoreError> {
    let pairs: Vec<Value> = round
        .iter()
        .flat_map(|(_, keys)| keys.iter().map(|(scope, name)| json!([scope, name])))
        .collect();
    let all = || round.iter().map(|(i, _)| *i).collect();
    if pairs.is_empty() {
        return Ok(all());
    }
    let fresh: Vec<(String, String, i64)> = sqlx::query_as(dialect.fresh_keys())
        .bind(Value::Array(pairs).to_string())
        .fetch_all(&mut *conn)
        .await?;
    if fresh.is_empty() {
        return Ok(all());
    }
    let mut held: HashMap<String, i64> = HashMap::new();
    let mut new_keys: HashSet<Key> = HashSet::with_capacity(fresh.len());
    for (scope, name, count) in fresh {
        held.insert(scope.clone(), count);
        new_keys.insert((scope, name));
    }
    let limit = MAX_KEYS_PER_SCOPE as i64;
    let mut accepted = Vec::with_capacity(round.len());
    for (i, keys) in &round {
        let i = *i;
        let mut adding: HashMap<&str, i64> = HashMap::new();
        let mut seen: HashSet<&Key> = HashSet::new();
        for k in keys {
            if new_keys.contains(k) && seen.insert(k) {
                *adding.entry(k.0.as_str()).or_default() += 1;
            }
        }
        let over = adding
            .iter()
            .find(|(scope, n)| held.get(**scope).copied().unwrap_or(0) + **n > limit);
        if let Some((scope, n)) = over {
            let has = held.get(*scope).copied().unwrap_or(0);
            outcomes[i] = Some(Err(StoreError::Refused(format!(
                "{scope} holds {has} keys and this write would add {n}: a scope holds at most \
                 {MAX_KEYS_PER_SCOPE} keys (deleted ones included); write existing keys, or put \
                 new ones in another scope"
            ))));
            continue;
        }
        for (scope, n) in adding {
            *held.entry(scope.to_owned()).or_default() += n;
        }
        accepted.push(i);
    }
    Ok(accepted)
}

async fn run_round(
    conn: &mut AnyConnection,
    dialect: Dialect,
    items: &mut [PutItem],
    round: &[usize],
    outcomes: &mut [Option<PutOutcome>],
) -> Result<(), StoreError> {
    let keys: Vec<(usize, Vec<Key>)> = round
        .iter()
        .map(|&i| (i, items[i].puts.iter().map(key).collect()))
        .collect();
    let round = &refuse_over_limit(conn, dialect, keys, outcomes).await?;
    let now = now_ms();
    let rows: Vec<&NewVersion> = round.iter().flat_map(|&i| items[i].puts.iter()).collect();
    let mut versions: HashMap<Key, (i64, i64)> = HashMap::with_capacity(rows.len());

    // Every secret without check-and-set: one atomic upsert. It never fails
    // for a row, so a request's secrets are bumped all together.
    let upsert: Vec<Value> = rows
        .iter()
        .filter(|p| p.cas.is_none())
        .map(|p| json!([p.scope, p.org, p.name, p.max_versions]))
        .collect();
    if !upsert.is_empty() {
        let bumped: Vec<(i64, String, String, i64)> = sqlx::query_as(dialect.upsert_secrets())
            .bind(Value::Array(upsert).to_string())
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
        versions.extend(
            bumped
                .into_iter()
                .map(|(id, scope, name, latest)| ((scope, name), (id, latest))),
        );
    }

    // Check-and-set secrets: each statement applies only if the secret is
    // at the expected version (0: does not exist yet).
    for &i in round {
        let [p] = items[i].puts.as_slice() else {
            continue;
        };
        let Some(expected) = p.cas else {
            continue;
        };
        let applied: Option<(i64, i64)> = if expected == 0 {
            sqlx::query_as(CAS_CREATE)
                .bind(p.scope.as_str())
                .bind(p.org.as_str())
                .bind(p.name.as_str())
                .bind(p.max_versions)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?
        } else {
            sqlx::query_as(CAS_BUMP)
                .bind(now)
                .bind(p.max_versions)
                .bind(p.scope.as_str())
                .bind(p.name.as_str())
                .bind(expected)
                .fetch_optional(&mut *conn)
                .await?
        };
        match applied {
            Some(found) => {
                versions.insert(key(p), found);
            }
            None => {
                let current: Option<i64> = sqlx::query_scalar(CURRENT)
                    .bind(p.scope.as_str())
                    .bind(p.name.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
                outcomes[i] = Some(Err(StoreError::CasMismatch {
                    name: p.name.clone(),
                    expected,
                    current: current.unwrap_or(0),
                }));
            }
        }
    }

    let mut inserts = Vec::with_capacity(rows.len());
    for &i in round {
        if outcomes[i].is_some() {
            continue;
        }
        let item = &mut items[i];
        let mut item_versions = Vec::with_capacity(item.puts.len());
        for p in &item.puts {
            let (id, version) = versions
                .get(&key(p))
                .copied()
                .ok_or_else(|| StoreError::Database(format!("no row for secret {}", p.name)))?;
            // A sealing failure (the random generator) fails the batch: the
            // version bumps above must not commit without their envelopes.
            let envelope = (item.sealer)(p, version)?;
            inserts.push(json!([id, version, p.org, p.key_term, hex(&envelope)]));
            item_versions.push(version);
        }
        outcomes[i] = Some(Ok(item_versions));
    }
    if !inserts.is_empty() {
        sqlx::query(dialect.insert_secret_versions())
            .bind(Value::Array(inserts).to_string())
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
