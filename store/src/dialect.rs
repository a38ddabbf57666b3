//! Everything that differs between the two backends, in one place.
//!
//! Most SQL in this crate is written once and runs unchanged on both
//! backends through sqlx's `Any` driver (`$1` placeholders work on SQLite
//! too). What cannot be written once is here: one method per statement
//! that differs, both spellings side by side, plus the few connection
//! settings that depend on the backend. No other file names a backend's
//! own SQL or branches on the backend; the schema itself differs only in
//! the two migration folders, which `lockstep.rs` proves build the same
//! schema.

use sqlx::migrate::Migrator;

use crate::StoreError;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Which database the store talks to, and so which SQL it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Embedded SQLite file (WAL, synchronous=FULL), owned by one process.
    Sqlite,
    /// PostgreSQL server, possibly shared by several replicas.
    Postgres,
}

impl Dialect {
    /// The dialect a database URL asks for.
    pub(crate) fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::BadUrl)
        }
    }

    /// The URL to connect with: a SQLite file is created if missing (the
    /// session settings below make it durable).
    pub(crate) fn connect_url(self, url: &str) -> String {
        match self {
            Self::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        }
    }

    /// Whether the database is a local file that this process locks and
    /// alone writes (which the read cache and the checkpoint task rely on).
    pub(crate) fn is_embedded(self) -> bool {
        self == Self::Sqlite
    }

    /// Pool size.
    pub(crate) fn max_connections(self) -> u32 {
        match self {
            Self::Sqlite => 8,
            Self::Postgres => 16,
        }
    }

    /// Run on every new connection, if anything.
    ///
    /// SQLite: WAL for concurrent readers; FULL syncs the WAL on every
    /// commit, so a commit is durable on return. Checkpoints run in the
    /// background ([`Self::wal_checkpoint`]), not inside a committing write.
    /// PostgreSQL needs nothing: commits are durable by default.
    pub(crate) fn session_setup(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => Some(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                 PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000; \
                 PRAGMA wal_autocheckpoint=0;",
            ),
            Self::Postgres => None,
        }
    }

    /// Copies the WAL back into the database file without blocking
    /// writers or readers (SQLite only; run periodically by the store).
    pub(crate) fn wal_checkpoint(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => Some("PRAGMA wal_checkpoint(PASSIVE)"),
            Self::Postgres => None,
        }
    }

    /// This backend's migrations.
    pub(crate) fn migrator(self) -> &'static Migrator {
        match self {
            Self::Sqlite => &SQLITE_MIGRATIONS,
            Self::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Opens a writer batch's transaction. SQLite takes the write lock up
    /// front, so the commit cannot fail with BUSY.
    pub(crate) fn begin_batch(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }

    /// Reads a log's head (`$1`: log). On PostgreSQL the row lock
    /// serializes replicas appending to the same log until the transaction
    /// ends; on SQLite the batch already holds the database's write lock.
    pub(crate) fn lock_audit_head(self) -> &'static str {
        match self {
            Self::Sqlite => "SELECT size, state, tiled FROM audit_heads WHERE log = $1",
            Self::Postgres => {
                "SELECT size, state, tiled FROM audit_heads WHERE log = $1 FOR UPDATE"
            }
        }
    }

    /// Inserts a log's share of a batch with one statement (`$1`: log,
    /// `$2`: JSON array `[[seq, entry, leaf_hash_hex], ...]`).
    pub(crate) fn insert_audit_entries(self) -> &'static str {
        match self {
            Self::Sqlite => {
                "INSERT INTO audit_entries (log, seq, entry, leaf_hash) \
                 SELECT $1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
                 unhex(json_extract(value, '$[2]')) FROM json_each($2)"
            }
            Self::Postgres => {
                "INSERT INTO audit_entries (log, seq, entry, leaf_hash) \
                 SELECT $1, (e.v->>0)::bigint, e.v->>1, decode(e.v->>2, 'hex') \
                 FROM jsonb_array_elements($2::text::jsonb) AS e(v)"
            }
        }
    }

    /// Of a round's `[scope, name]` pairs (`$1`, a JSON array), those that
    /// do not exist yet, each with the number of keys its scope holds (the
    /// per-scope key limit is checked against it).
    pub(crate) fn fresh_keys(self) -> &'static str {
        match self {
            Self::Sqlite => {
                "WITH req AS (SELECT DISTINCT json_extract(value, '$[0]') AS scope, \
                     json_extract(value, '$[1]') AS name FROM json_each($1)), \
                 fresh AS (SELECT scope, name FROM req WHERE NOT EXISTS \
                     (SELECT 1 FROM secrets s WHERE s.scope = req.scope AND s.name = req.name)) \
                 SELECT f.scope, f.name, c.held FROM fresh f JOIN \
                     (SELECT d.scope, (SELECT COUNT(*) FROM secrets s WHERE s.scope = d.scope) AS held \
                      FROM (SELECT DISTINCT scope FROM fresh) d) c ON c.scope = f.scope"
            }
            Self::Postgres => {
                "WITH req AS (SELECT DISTINCT e->>0 AS scope, e->>1 AS name \
                     FROM jsonb_array_elements($1::text::jsonb) AS e), \
                 fresh AS (SELECT scope, name FROM req WHERE NOT EXISTS \
                     (SELECT 1 FROM secrets s WHERE s.scope = req.scope AND s.name = req.name)) \
                 SELECT f.scope, f.name, c.held FROM fresh f JOIN \
                     (SELECT d.scope, (SELECT COUNT(*) FROM secrets s WHERE s.scope = d.scope) AS held \
                      FROM (SELECT DISTINCT scope FROM fresh) d) c ON c.scope = f.scope"
            }
        }
    }

    /// Locks the scope rows a batch writes (`$1`: JSON array of paths), so
    /// replicas counting a scope's keys serialize; SQLite's single writer
    /// needs no lock. NO KEY UPDATE serializes writers of a scope without
    /// blocking the foreign-key checks (KEY SHARE) of rows referencing it.
    /// Serializes changes that could remove a root Owner across replicas,
    /// for the rest of the transaction: at READ COMMITTED two replicas
    /// removing each other's root Owner at once would both see the other
    /// remain. (SQLite has one writer, which serializes them already.)
    pub(crate) fn lock_root_owners(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            // An arbitrary key reserved for this lock ("root" in ASCII).
            Self::Postgres => Some("SELECT pg_advisory_xact_lock(1919905652)"),
        }
    }

    /// Whether replicas share the database and hear of each other's
    /// changes through `NOTIFY` (see `feed.rs`).
    pub(crate) fn notifies(self) -> bool {
        self == Self::Postgres
    }

    pub(crate) fn lock_scopes(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some(
                "SELECT path FROM scopes WHERE path IN \
                 (SELECT jsonb_array_elements_text($1::text::jsonb)) ORDER BY path FOR NO KEY UPDATE",
            ),
        }
    }

    /// Creates or bumps every secret of a round in one atomic upsert (`$1`:
    /// JSON array `[[scope, org, name, keep], ...]`, `$2`: now), returning
    /// `id, scope, name, latest` of each.
    pub(crate) fn upsert_secrets(self) -> &'static str {
        match self {
            // `WHERE true` keeps SQLite from reading ON CONFLICT as a join
            // clause.
            Self::Sqlite => {
                "INSERT INTO secrets (scope, org, name, latest, keep, updated_at) \
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
                        1, json_extract(value, '$[3]'), $2 FROM json_each($1) WHERE true \
                 ON CONFLICT (scope, name) DO UPDATE SET latest = latest + 1, \
                     updated_at = excluded.updated_at, keep = excluded.keep \
                 RETURNING id, scope, name, latest"
            }
            Self::Postgres => {
                "INSERT INTO secrets (scope, org, name, latest, keep, updated_at) \
                 SELECT e->>0, e->>1, e->>2, 1, (e->>3)::bigint, $2 FROM jsonb_array_elements($1::text::jsonb) AS e \
                 ON CONFLICT (scope, name) DO UPDATE SET latest = secrets.latest + 1, \
                     updated_at = EXCLUDED.updated_at, keep = EXCLUDED.keep \
                 RETURNING id, scope, name, latest"
            }
        }
    }

    /// Inserts every envelope of a round, in array order (`$1`: JSON array
    /// `[[secret_id, version, org, key_term, envelope_hex], ...]`, `$2`:
    /// now).
    pub(crate) fn insert_secret_versions(self) -> &'static str {
        match self {
            Self::Sqlite => {
                "INSERT INTO secret_versions (secret_id, version, org, key_term, envelope, created_at) \
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
                        json_extract(value, '$[3]'), unhex(json_extract(value, '$[4]')), $2 \
                 FROM json_each($1) ORDER BY key"
            }
            Self::Postgres => {
                "INSERT INTO secret_versions (secret_id, version, org, key_term, envelope, created_at) \
                 SELECT (e->>0)::bigint, (e->>1)::bigint, e->>2, (e->>3)::bigint, decode(e->>4, 'hex'), $2 \
                 FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS t(e, i) ORDER BY t.i"
            }
        }
    }
}
