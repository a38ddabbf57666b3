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

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use sqlx::AnyConnection;
use tokio::sync::oneshot;

use crate::writer::Ticket;
use crate::{Backend, NewVersion, Sealer, StoreError, now_ms};

/// One request's puts, queued to the writer.
pub(crate) struct PutItem {
    pub(crate) puts: Vec<NewVersion>,
    pub(crate) sealer: Sealer,
    pub(crate) depends_on: Option<Ticket>,
    pub(crate) done: oneshot::Sender<Result<Vec<i64>, StoreError>>,
}

/// What each item gets: its versions, or why it failed.
pub(crate) type PutOutcome = Result<Vec<i64>, StoreError>;

struct Sql {
    bump: &'static str,
    existing: &'static str,
    create: &'static str,
    versions: &'static str,
}

const SQLITE: Sql = Sql {
    bump: "UPDATE secrets SET latest = latest + 1, updated_at = $2, keep = j.keep \
           FROM (SELECT json_extract(value, '$[0]') AS scope, json_extract(value, '$[1]') AS name, \
                        json_extract(value, '$[2]') AS cas, json_extract(value, '$[3]') AS keep \
                 FROM json_each($1)) AS j \
           WHERE secrets.scope = j.scope AND secrets.name = j.name AND (j.cas < 0 OR secrets.latest = j.cas) \
           RETURNING secrets.id, secrets.scope, secrets.name, secrets.latest",
    existing: "SELECT s.scope, s.name, s.latest FROM secrets s \
               JOIN (SELECT json_extract(value, '$[0]') AS scope, json_extract(value, '$[1]') AS name \
                     FROM json_each($1)) AS j ON s.scope = j.scope AND s.name = j.name",
    create: "INSERT INTO secrets (scope, org, name, latest, keep, updated_at) \
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
                    1, json_extract(value, '$[3]'), $2 FROM json_each($1) ORDER BY key \
             RETURNING id, scope, name, latest",
    versions: "INSERT INTO secret_versions (secret_id, version, org, key_term, envelope, created_at) \
               SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
                      json_extract(value, '$[3]'), unhex(json_extract(value, '$[4]')), $2 \
               FROM json_each($1) ORDER BY key",
};

const POSTGRES: Sql = Sql {
    bump: "UPDATE secrets s SET latest = s.latest + 1, updated_at = $2, keep = j.keep \
           FROM (SELECT e->>0 AS scope, e->>1 AS name, (e->>2)::bigint AS cas, (e->>3)::bigint AS keep \
                 FROM jsonb_array_elements($1::text::jsonb) AS e) AS j \
           WHERE s.scope = j.scope AND s.name = j.name AND (j.cas < 0 OR s.latest = j.cas) \
           RETURNING s.id, s.scope, s.name, s.latest",
    existing: "SELECT s.scope, s.name, s.latest FROM secrets s \
               JOIN (SELECT e->>0 AS scope, e->>1 AS name FROM jsonb_array_elements($1::text::jsonb) AS e) AS j \
               ON s.scope = j.scope AND s.name = j.name",
    create: "INSERT INTO secrets (scope, org, name, latest, keep, updated_at) \
             SELECT e->>0, e->>1, e->>2, 1, (e->>3)::bigint, $2 \
             FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS t(e, i) ORDER BY t.i \
             RETURNING id, scope, name, latest",
    versions: "INSERT INTO secret_versions (secret_id, version, org, key_term, envelope, created_at) \
               SELECT (e->>0)::bigint, (e->>1)::bigint, e->>2, (e->>3)::bigint, decode(e->>4, 'hex'), $2 \
               FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS t(e, i) ORDER BY t.i",
};

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
    backend: Backend,
    items: &mut [PutItem],
) -> Result<Vec<Option<PutOutcome>>, StoreError> {
    let sql = match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    };
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
        run_round(conn, sql, items, &round, &mut outcomes).await?;
        pending = later;
    }
    Ok(outcomes)
}

async fn run_round(
    conn: &mut AnyConnection,
    sql: &Sql,
    items: &mut [PutItem],
    round: &[usize],
    outcomes: &mut [Option<PutOutcome>],
) -> Result<(), StoreError> {
    let now = now_ms();
    let rows: Vec<&NewVersion> = round.iter().flat_map(|&i| items[i].puts.iter()).collect();
    let bump: Vec<Value> = rows
        .iter()
        .map(|p| json!([p.scope, p.name, p.cas.unwrap_or(-1), p.max_versions]))
        .collect();
    let bumped: Vec<(i64, String, String, i64)> = sqlx::query_as(sql.bump)
        .bind(Value::Array(bump).to_string())
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
    let mut versions: HashMap<Key, (i64, i64)> = bumped
        .into_iter()
        .map(|(id, scope, name, latest)| ((scope, name), (id, latest)))
        .collect();

    // Secrets not bumped are new, or their check-and-set failed.
    let missing: Vec<&NewVersion> = rows
        .iter()
        .copied()
        .filter(|p| !versions.contains_key(&key(p)))
        .collect();
    let mut failed: HashSet<Key> = HashSet::new();
    if !missing.is_empty() {
        let probe: Vec<Value> = missing.iter().map(|p| json!([p.scope, p.name])).collect();
        let existing: HashMap<Key, i64> = sqlx::query_as::<_, (String, String, i64)>(sql.existing)
            .bind(Value::Array(probe).to_string())
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|(scope, name, latest)| ((scope, name), latest))
            .collect();
        let mut create = Vec::new();
        for p in &missing {
            let current = existing.get(&key(p)).copied();
            match (current, p.cas) {
                (None, None | Some(0)) => {
                    create.push(json!([p.scope, p.org, p.name, p.max_versions]))
                }
                _ => {
                    failed.insert(key(p));
                }
            }
        }
        if !create.is_empty() {
            let created: Vec<(i64, String, String, i64)> = sqlx::query_as(sql.create)
                .bind(Value::Array(create).to_string())
                .bind(now)
                .fetch_all(&mut *conn)
                .await?;
            versions.extend(
                created
                    .into_iter()
                    .map(|(id, scope, name, latest)| ((scope, name), (id, latest))),
            );
        }
        for &i in round {
            if let Some(p) = items[i].puts.iter().find(|p| failed.contains(&key(p))) {
                let current = existing.get(&key(p)).copied().unwrap_or(0);
                outcomes[i] = Some(Err(StoreError::CasMismatch {
                    name: p.name.clone(),
                    expected: p.cas.unwrap_or(0),
                    current,
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
        sqlx::query(sql.versions)
            .bind(Value::Array(inserts).to_string())
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
