//! The two migration folders must build the same schema.
//!
//! The test migrates a fresh SQLite file and a fresh PostgreSQL database
//! with the real migrations (through [`Store::connect`]), reads each
//! catalog back and compares them as sets of one-line facts, so a failure
//! prints exactly the facts found on one side only. Everything is read from
//! the catalogs, so a new table, column, index or trigger is covered
//! without touching this file.
//!
//! Compared, per table (and view, by name):
//! - columns: type normalised to `integer` (SQLite `INTEGER`, PostgreSQL
//!   `bigint`), `text` or `bytes` (`BLOB`, `bytea`), anything else shown
//!   raw and so always a difference; nullability (a primary-key column
//!   counts as NOT NULL on SQLite, as it is on PostgreSQL); the default,
//!   with PostgreSQL's `::type` casts and outer parentheses dropped;
//! - the primary key's columns, in order;
//! - UNIQUE constraints by columns (their index names are engine-made);
//! - other indexes by name, columns (with `DESC`), uniqueness and whether
//!   partial;
//! - foreign keys: columns, referenced table and columns, ON UPDATE and ON
//!   DELETE actions;
//! - triggers by name, table, timing, events, row or statement level,
//!   `WHEN` condition or not, and whether they refuse (the body raises) or
//!   act. SQLite's triggers are first mapped to the PostgreSQL triggers
//!   they require ([`postgres_triggers_for`]).
//!
//! Not compared: column order, CHECK constraints, trigger bodies beyond
//! "refuses", collations, and how keys are generated (a SQLite `INTEGER
//! PRIMARY KEY` is always a rowid alias; PostgreSQL uses `GENERATED ALWAYS
//! AS IDENTITY` only where the database picks the id).

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{AnyPool, Connection};

use crate::Store;
use crate::dialect::Dialect;

/// A table's or trigger's properties, one self-contained line each.
type Facts = BTreeSet<String>;

/// Maps a declared column type to the three the schema may use.
fn normalise_type(dialect: Dialect, declared: &str) -> String {
    let canonical = match (dialect, declared.trim()) {
        (Dialect::Sqlite, "INTEGER") | (Dialect::Postgres, "bigint") => "integer",
        (Dialect::Sqlite, "TEXT") | (Dialect::Postgres, "text") => "text",
        (Dialect::Sqlite, "BLOB") | (Dialect::Postgres, "bytea") => "bytes",
        (_, other) => return format!("unsupported type {other:?}"),
    };
    canonical.to_owned()
}

/// `'api'::text` → `'api'`, `(0)` → `0`.
fn normalise_default(default: &str) -> String {
    let mut d = default.trim();
    loop {
        let before = d;
        if let Some(i) = d.rfind("::")
            && d[i + 2..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '_')
        {
            d = d[..i].trim_end();
        }
        if let Some(inner) = d.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
            d = inner.trim();
        }
        if d == before {
            return d.to_owned();
        }
    }
}

fn column_fact(
    table: &str,
    column: &str,
    ty: String,
    not_null: bool,
    default: Option<&str>,
) -> String {
    let null = if not_null { "not null" } else { "null" };
    match default {
        Some(d) => format!(
            "{table}.{column}: {ty}, {null}, default {}",
            normalise_default(d)
        ),
        None => format!("{table}.{column}: {ty}, {null}"),
    }
}

fn foreign_key_fact(
    table: &str,
    from: &[String],
    parent: &str,
    to: &[String],
    on_update: &str,
    on_delete: &str,
) -> String {
    format!(
        "{table}: foreign key ({}) references {parent} ({}) on update {on_update} on delete {on_delete}",
        from.join(", "),
        to.join(", ")
    )
}

/// A statement a trigger fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Insert,
    Update,
    Delete,
    Truncate,
}

/// One trigger, in the terms both catalogs can express.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Trigger {
    name: String,
    table: String,
    /// `BEFORE`, `AFTER` or `INSTEAD OF`.
    timing: &'static str,
    events: BTreeSet<Event>,
    /// `UPDATE OF` columns, if limited to some.
    update_of: Vec<String>,
    /// FOR EACH ROW (else FOR EACH STATEMENT).
    per_row: bool,
    /// Has a WHEN condition.
    conditional: bool,
    /// The body raises an error: the trigger refuses the statement.
    refuses: bool,
    enabled: bool,
}

impl Trigger {
    fn fact(&self) -> String {
        let events: Vec<String> = self
            .events
            .iter()
            .map(|e| match e {
                Event::Update if !self.update_of.is_empty() => {
                    format!("UPDATE OF {}", self.update_of.join(", "))
                }
                e => format!("{e:?}").to_uppercase(),
            })
            .collect();
        format!(
            "trigger {}: {} {} ON {} FOR EACH {}{}, {}{}",
            self.name,
            self.timing,
            events.join(" OR "),
            self.table,
            if self.per_row { "ROW" } else { "STATEMENT" },
            if self.conditional { " WHEN ..." } else { "" },
            if self.refuses { "refuses" } else { "acts" },
            if self.enabled { "" } else { ", disabled" },
        )
    }
}

/// The PostgreSQL triggers that SQLite's `triggers` require, or a
/// message for each SQLite trigger outside the convention below.
///
/// The intended mapping:
/// - A trigger that acts (e.g. `secret_versions_prune`) has the same name,
///   table, timing and event on both, FOR EACH ROW (SQLite's only kind).
/// - Refusals: SQLite has one trigger per refused event, named
///   `<table>_no_update` (BEFORE UPDATE) and `<table>_no_delete` (BEFORE
///   DELETE). PostgreSQL refuses both with one row trigger,
///   `<table>_no_update` BEFORE UPDATE OR DELETE. TRUNCATE skips row
///   triggers there, so every table whose DELETE is refused also has a
///   statement trigger `<table>_no_truncate` BEFORE TRUNCATE. SQLite has no
///   TRUNCATE: its `DELETE FROM t` without WHERE runs the row triggers.
fn postgres_triggers_for(triggers: &[Trigger]) -> Result<BTreeSet<Trigger>, Vec<String>> {
    let mut expected = BTreeSet::new();
    let mut refusals: BTreeMap<String, Trigger> = BTreeMap::new();
    let mut unmapped = Vec::new();
    for t in triggers {
        if !t.refuses {
            expected.insert(t.clone());
            continue;
        }
        let refused = match t.events.iter().collect::<Vec<_>>()[..] {
            [Event::Update] => "update",
            [Event::Delete] => "delete",
            _ => "",
        };
        if refused.is_empty()
            || t.name != format!("{}_no_{refused}", t.table)
            || t.timing != "BEFORE"
            || t.conditional
            || !t.update_of.is_empty()
        {
            unmapped.push(format!(
                "{} (SQLite): a refusal with no PostgreSQL mapping; only unconditional \
                 BEFORE UPDATE and BEFORE DELETE refusals named <table>_no_update and \
                 <table>_no_delete have one (see `postgres_triggers_for`)",
                t.fact()
            ));
            continue;
        }
        refusals
            .entry(t.table.clone())
            .or_insert_with(|| Trigger {
                name: format!("{}_no_update", t.table),
                events: BTreeSet::new(),
                ..t.clone()
            })
            .events
            .extend(t.events.iter().copied());
    }
    for (table, rows) in refusals {
        if rows.events.contains(&Event::Delete) {
            expected.insert(Trigger {
                name: format!("{table}_no_truncate"),
                events: BTreeSet::from([Event::Truncate]),
                per_row: false,
                ..rows.clone()
            });
        }
        expected.insert(rows);
    }
    if unmapped.is_empty() {
        Ok(expected)
    } else {
        Err(unmapped)
    }
}

/// Removes SQL comments and folds whitespace and case, for the few
/// keyword checks made on SQLite's trigger text and PostgreSQL's function
/// bodies.
fn fold_sql(sql: &str) -> String {
    let uncommented: Vec<&str> = sql
        .lines()
        .map(|l| l.split_once("--").map_or(l, |(code, _)| code))
        .collect();
    uncommented
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

/// Reads timing, event and condition from a SQLite `CREATE TRIGGER`.
fn parse_sqlite_trigger(name: &str, table: &str, sql: &str) -> Trigger {
    let folded = fold_sql(sql);
    let head = folded.split(" BEGIN ").next().unwrap_or_default();
    let after_name = head
        .split_once(&format!(" {} ", name.to_uppercase()))
        .map_or(head, |(_, rest)| rest);
    let (timing, rest) = if let Some(rest) = after_name.strip_prefix("BEFORE ") {
        ("BEFORE", rest)
    } else if let Some(rest) = after_name.strip_prefix("AFTER ") {
        ("AFTER", rest)
    } else if let Some(rest) = after_name.strip_prefix("INSTEAD OF ") {
        ("INSTEAD OF", rest)
    } else {
        ("BEFORE", after_name)
    };
    let on = rest.split(" ON ").next().unwrap_or_default();
    let (event, update_of) = match on.split_once(' ') {
        Some(("UPDATE", cols)) => (
            Event::Update,
            cols.trim_start_matches("OF ")
                .split(',')
                .map(|c| c.trim().to_lowercase())
                .collect(),
        ),
        _ => (
            match on {
                "INSERT" => Event::Insert,
                "UPDATE" => Event::Update,
                "DELETE" => Event::Delete,
                other => panic!("trigger {name}: cannot read the event of {other:?}"),
            },
            Vec::new(),
        ),
    };
    let body = folded.replace(' ', "");
    Trigger {
        name: name.to_owned(),
        table: table.to_owned(),
        timing,
        events: BTreeSet::from([event]),
        update_of,
        per_row: true,
        conditional: head.contains(" WHEN "),
        refuses: ["RAISE(ABORT", "RAISE(FAIL", "RAISE(ROLLBACK"]
            .iter()
            .any(|r| body.contains(r)),
        enabled: true,
    }
}

/// A migrated database's schema.
#[derive(Debug, Default)]
struct Schema {
    facts: Facts,
    triggers: Vec<Trigger>,
}

async fn sqlite_schema(pool: &AnyPool) -> Schema {
    let mut s = Schema::default();
    let relations: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, kind) in relations {
        s.facts.insert(format!("{kind} {table}"));
        if kind != "table" {
            continue;
        }
        let columns: Vec<(String, String, i64, Option<String>, i64)> = sqlx::query_as(
            "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info($1)",
        )
        .bind(&table)
        .fetch_all(pool)
        .await
        .unwrap();
        let mut pk: Vec<(i64, String)> = Vec::new();
        for (column, ty, not_null, default, pk_pos) in columns {
            let ty = normalise_type(Dialect::Sqlite, &ty);
            s.facts.insert(column_fact(
                &table,
                &column,
                ty,
                not_null == 1 || pk_pos > 0,
                default.as_deref(),
            ));
            if pk_pos > 0 {
                pk.push((pk_pos, column));
            }
        }
        pk.sort();
        let pk: Vec<String> = pk.into_iter().map(|(_, c)| c).collect();
        if !pk.is_empty() {
            s.facts
                .insert(format!("{table}: primary key ({})", pk.join(", ")));
        }

        let indexes: Vec<(String, i64, String, i64)> =
            sqlx::query_as("SELECT name, \"unique\", origin, partial FROM pragma_index_list($1)")
                .bind(&table)
                .fetch_all(pool)
                .await
                .unwrap();
        for (index, unique, origin, partial) in indexes {
            let columns: Vec<(Option<String>, i64)> = sqlx::query_as(
                "SELECT name, \"desc\" FROM pragma_index_xinfo($1) WHERE key = 1 ORDER BY seqno",
            )
            .bind(&index)
            .fetch_all(pool)
            .await
            .unwrap();
            let columns: Vec<String> = columns
                .into_iter()
                .map(|(name, desc)| {
                    let name = name.unwrap_or_else(|| "<expression>".into());
                    if desc == 1 {
                        format!("{name} DESC")
                    } else {
                        name
                    }
                })
                .collect();
            match origin.as_str() {
                "pk" => {}
                "u" => {
                    s.facts
                        .insert(format!("{table}: unique ({})", columns.join(", ")));
                }
                _ => {
                    s.facts.insert(index_fact(
                        &table,
                        &index,
                        &columns,
                        unique == 1,
                        partial == 1,
                    ));
                }
            }
        }

        let fks: Vec<(i64, String, String, Option<String>, String, String)> = sqlx::query_as(
            "SELECT id, \"table\", \"from\", \"to\", on_update, on_delete \
             FROM pragma_foreign_key_list($1) ORDER BY id, seq",
        )
        .bind(&table)
        .fetch_all(pool)
        .await
        .unwrap();
        let mut by_id: BTreeMap<i64, Vec<_>> = BTreeMap::new();
        for fk in fks {
            by_id.entry(fk.0).or_default().push(fk);
        }
        for parts in by_id.into_values() {
            let (_, parent, _, _, on_update, on_delete) = &parts[0];
            let from: Vec<String> = parts.iter().map(|p| p.2.clone()).collect();
            let mut to: Vec<String> = parts.iter().filter_map(|p| p.3.clone()).collect();
            if to.is_empty() {
                // `REFERENCES parent` without columns: its primary key.
                let mut parent_pk: Vec<(i64, String)> =
                    sqlx::query_as("SELECT pk, name FROM pragma_table_info($1) WHERE pk > 0")
                        .bind(parent)
                        .fetch_all(pool)
                        .await
                        .unwrap();
                parent_pk.sort();
                to = parent_pk.into_iter().map(|(_, c)| c).collect();
            }
            s.facts.insert(foreign_key_fact(
                &table, &from, parent, &to, on_update, on_delete,
            ));
        }
    }

    let triggers: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    s.triggers = triggers
        .iter()
        .map(|(name, table, sql)| parse_sqlite_trigger(name, table, sql))
        .collect();
    s
}

fn index_fact(table: &str, name: &str, columns: &[String], unique: bool, partial: bool) -> String {
    format!(
        "{table}: index {name} ({}){}{}",
        columns.join(", "),
        if unique { " unique" } else { "" },
        if partial { " partial" } else { "" },
    )
}

/// The columns of `attnums` (an int2vector or int2[] of `relid`), in
/// order, as one comma-separated string.
fn pg_columns(attnums: &str, relid: &str) -> String {
    format!(
        "(SELECT string_agg(COALESCE(a.attname::text, '<expression>'), ', ' ORDER BY k.n) \
         FROM unnest({attnums}::int2[]) WITH ORDINALITY AS k(attnum, n) \
         LEFT JOIN pg_attribute a ON a.attrelid = {relid} AND a.attnum = k.attnum)"
    )
}

fn split_columns(columns: Option<String>) -> Vec<String> {
    columns
        .map(|c| c.split(", ").map(str::to_owned).collect())
        .unwrap_or_default()
}

fn pg_action(code: &str) -> &'static str {
    match code {
        "a" => "NO ACTION",
        "r" => "RESTRICT",
        "c" => "CASCADE",
        "n" => "SET NULL",
        "d" => "SET DEFAULT",
        other => panic!("unknown foreign key action {other:?}"),
    }
}

async fn postgres_schema(pool: &AnyPool) -> Schema {
    let mut s = Schema::default();
    let relations: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, table_type::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, kind) in &relations {
        let kind = if kind == "VIEW" { "view" } else { "table" };
        s.facts.insert(format!("{kind} {table}"));
    }

    let columns: Vec<(String, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, \
                c.is_nullable::text, c.column_default::text \
         FROM information_schema.columns c JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' \
           AND c.table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (table, column, ty, nullable, default) in columns {
        let ty = normalise_type(Dialect::Postgres, &ty);
        s.facts.insert(column_fact(
            &table,
            &column,
            ty,
            nullable == "NO",
            default.as_deref(),
        ));
    }

    #[derive(sqlx::FromRow)]
    struct Index {
        table: String,
        index: String,
        unique: bool,
        partial: bool,
        /// `p` (primary key), `u` (UNIQUE constraint) or none.
        constraint: Option<String>,
        columns: Option<String>,
        /// `DESC` or empty, per column.
        desc: Option<String>,
    }
    let indexes: Vec<Index> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT c.relname::text AS table, i.relname::text AS index, ix.indisunique AS unique, \
                    ix.indpred IS NOT NULL AS partial, con.contype::text AS constraint, {} AS columns, \
                    (SELECT string_agg(CASE WHEN pg_index_column_has_property(ix.indexrelid, k.n::int, 'desc') \
                                       THEN 'DESC' ELSE '' END, ',' ORDER BY k.n) \
                     FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)) AS desc \
             FROM pg_index ix \
             JOIN pg_class c ON c.oid = ix.indrelid \
             JOIN pg_class i ON i.oid = ix.indexrelid \
             JOIN pg_namespace ns ON ns.oid = c.relnamespace \
             LEFT JOIN pg_constraint con ON con.conindid = ix.indexrelid \
                  AND con.conrelid = ix.indrelid AND con.contype IN ('p', 'u') \
             WHERE ns.nspname = current_schema() AND c.relname <> '_sqlx_migrations'",
            pg_columns("ix.indkey", "c.oid")
        )))
        .fetch_all(pool)
        .await
        .unwrap();
    for Index {
        table,
        index,
        unique,
        partial,
        constraint,
        columns,
        desc,
    } in indexes
    {
        let desc: Vec<String> = desc
            .map(|d| d.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        let columns: Vec<String> = split_columns(columns)
            .into_iter()
            .zip(desc.iter().map(String::as_str).chain(std::iter::repeat("")))
            .map(|(c, d)| if d.is_empty() { c } else { format!("{c} {d}") })
            .collect();
        match constraint.as_deref() {
            Some("p") => {
                s.facts
                    .insert(format!("{table}: primary key ({})", columns.join(", ")));
            }
            Some("u") => {
                s.facts
                    .insert(format!("{table}: unique ({})", columns.join(", ")));
            }
            _ => {
                s.facts
                    .insert(index_fact(&table, &index, &columns, unique, partial));
            }
        }
    }

    #[derive(sqlx::FromRow)]
    struct ForeignKey {
        table: String,
        columns: Option<String>,
        parent: String,
        parent_columns: Option<String>,
        on_update: String,
        on_delete: String,
    }
    let fks: Vec<ForeignKey> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.relname::text AS table, {} AS columns, f.relname::text AS parent, \
                {} AS parent_columns, con.confupdtype::text AS on_update, \
                con.confdeltype::text AS on_delete \
             FROM pg_constraint con \
             JOIN pg_class c ON c.oid = con.conrelid \
             JOIN pg_class f ON f.oid = con.confrelid \
             JOIN pg_namespace ns ON ns.oid = c.relnamespace \
             WHERE con.contype = 'f' AND ns.nspname = current_schema()",
        pg_columns("con.conkey", "con.conrelid"),
        pg_columns("con.confkey", "con.confrelid"),
    )))
    .fetch_all(pool)
    .await
    .unwrap();
    for fk in fks {
        s.facts.insert(foreign_key_fact(
            &fk.table,
            &split_columns(fk.columns),
            &fk.parent,
            &split_columns(fk.parent_columns),
            pg_action(&fk.on_update),
            pg_action(&fk.on_delete),
        ));
    }

    #[derive(sqlx::FromRow)]
    struct PgTrigger {
        name: String,
        table: String,
        tgtype: i64,
        body: String,
        conditional: bool,
        enabled: bool,
        update_of: Option<String>,
    }
    let triggers: Vec<PgTrigger> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT t.tgname::text AS name, c.relname::text AS table, t.tgtype::bigint AS tgtype, \
                    p.prosrc::text AS body, t.tgqual IS NOT NULL AS conditional, \
                    t.tgenabled <> 'D' AS enabled, {} AS update_of \
             FROM pg_trigger t \
             JOIN pg_class c ON c.oid = t.tgrelid \
             JOIN pg_namespace ns ON ns.oid = c.relnamespace \
             JOIN pg_proc p ON p.oid = t.tgfoid \
             WHERE NOT t.tgisinternal AND ns.nspname = current_schema()",
        pg_columns("t.tgattr", "t.tgrelid"),
    )))
    .fetch_all(pool)
    .await
    .unwrap();
    // pg_trigger.tgtype bits (PostgreSQL's include/catalog/pg_trigger.h).
    const ROW: i64 = 1;
    const BEFORE: i64 = 2;
    const INSERT: i64 = 4;
    const DELETE: i64 = 8;
    const UPDATE: i64 = 16;
    const TRUNCATE: i64 = 32;
    const INSTEAD: i64 = 64;
    for PgTrigger {
        name,
        table,
        tgtype,
        body,
        conditional,
        enabled,
        update_of,
    } in triggers
    {
        let events = [
            (INSERT, Event::Insert),
            (UPDATE, Event::Update),
            (DELETE, Event::Delete),
            (TRUNCATE, Event::Truncate),
        ]
        .into_iter()
        .filter(|(bit, _)| tgtype & bit != 0)
        .map(|(_, e)| e)
        .collect();
        s.triggers.push(Trigger {
            name,
            table,
            timing: if tgtype & INSTEAD != 0 {
                "INSTEAD OF"
            } else if tgtype & BEFORE != 0 {
                "BEFORE"
            } else {
                "AFTER"
            },
            events,
            update_of: split_columns(update_of),
            per_row: tgtype & ROW != 0,
            conditional,
            refuses: fold_sql(&body).contains("RAISE EXCEPTION"),
            enabled,
        });
    }
    s
}

/// Compares the two schemas; `Err` lists every fact found on one side only.
fn compare(sqlite: &Schema, postgres: &Schema) -> Result<(), String> {
    let mut left = sqlite.facts.clone();
    let unmapped = match postgres_triggers_for(&sqlite.triggers) {
        Ok(expected) => {
            left.extend(expected.iter().map(Trigger::fact));
            Vec::new()
        }
        Err(unmapped) => unmapped,
    };
    let mut right = postgres.facts.clone();
    right.extend(postgres.triggers.iter().map(Trigger::fact));
    if left == right && unmapped.is_empty() {
        return Ok(());
    }
    let mut diff = String::from(
        "the SQLite and PostgreSQL migrations build different schemas \
         (-: only on SQLite, +: only on PostgreSQL; SQLite's triggers are shown \
         as the PostgreSQL triggers they require):\n",
    );
    for fact in left.difference(&right) {
        diff.push_str(&format!("- {fact}\n"));
    }
    for fact in right.difference(&left) {
        diff.push_str(&format!("+ {fact}\n"));
    }
    for message in unmapped {
        diff.push_str(&format!("! {message}\n"));
    }
    Err(diff)
}

/// A fresh PostgreSQL database on the test server
/// (`WARDEN_TEST_DATABASE_URL`, as in the integration suite; never
/// skipped). Returns its URL, the admin URL and its name.
pub(crate) async fn fresh_postgres_db() -> (String, String, String) {
    sqlx::any::install_default_drivers();
    let admin = std::env::var("WARDEN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut conn = sqlx::AnyConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required for this test: {e}"));
    let name = format!(
        "warden_t_{}_store_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    (format!("{base}/{name}"), admin, name)
}

pub(crate) async fn drop_postgres_db(admin: &str, name: &str) {
    let mut conn = sqlx::AnyConnection::connect(admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

/// Both backends, freshly migrated by [`Store::connect`].
struct Migrated {
    sqlite: Store,
    postgres: Store,
    _dir: tempfile::TempDir,
    admin: String,
    db: String,
}

impl Migrated {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Store::connect(&format!(
            "sqlite://{}",
            dir.path().join("data/t.db").display()
        ))
        .await
        .unwrap();
        let (url, admin, db) = fresh_postgres_db().await;
        let postgres = Store::connect(&url).await.unwrap();
        Self {
            sqlite,
            postgres,
            _dir: dir,
            admin,
            db,
        }
    }

    async fn compare(&self) -> Result<(), String> {
        let sqlite = sqlite_schema(self.sqlite.pool()).await;
        let postgres = postgres_schema(self.postgres.pool()).await;
        // Guards against a catalog query that silently reads nothing.
        for schema in [&sqlite, &postgres] {
            for fact in [
                "table secrets",
                "secrets: unique (scope, name)",
                "audit_entries: primary key (log, seq)",
            ] {
                assert!(schema.facts.contains(fact), "{fact} not read: {schema:#?}");
            }
            assert!(
                schema
                    .triggers
                    .iter()
                    .any(|t| t.name == "secret_versions_prune"),
                "triggers not read: {schema:#?}"
            );
        }
        compare(&sqlite, &postgres)
    }

    /// Drops the PostgreSQL database (left behind if the test failed).
    async fn finish(self) {
        self.postgres.pool().close().await;
        drop_postgres_db(&self.admin, &self.db).await;
    }
}

#[test]
fn migrations_are_in_lockstep_across_backends() {
    let versions = |d: Dialect| {
        d.migrator()
            .iter()
            .map(|x| (x.version, x.description.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(versions(Dialect::Sqlite), versions(Dialect::Postgres));
    assert!(!versions(Dialect::Sqlite).is_empty());
}

#[tokio::test]
async fn migrations_build_the_same_schema_on_both_backends() {
    let m = Migrated::new().await;
    if let Err(diff) = m.compare().await {
        panic!("{diff}");
    }
    m.finish().await;
}

/// The comparison itself: a column added on one side and a refusal
/// trigger dropped on the other are both reported.
#[tokio::test]
async fn a_schema_difference_is_reported_with_the_facts_that_differ() {
    let m = Migrated::new().await;
    sqlx::raw_sql("ALTER TABLE audit_heads ADD COLUMN extra BIGINT DEFAULT 7")
        .execute(m.postgres.pool())
        .await
        .unwrap();
    sqlx::raw_sql("DROP TRIGGER audit_entries_no_delete")
        .execute(m.sqlite.pool())
        .await
        .unwrap();
    let diff = m.compare().await.unwrap_err();
    let lines: BTreeSet<&str> = diff.lines().skip(1).collect();
    assert_eq!(
        lines,
        BTreeSet::from([
            "+ audit_heads.extra: integer, null, default 7",
            "- trigger audit_entries_no_update: BEFORE UPDATE ON audit_entries FOR EACH ROW, refuses",
            "+ trigger audit_entries_no_update: BEFORE UPDATE OR DELETE ON audit_entries FOR EACH ROW, refuses",
            "+ trigger audit_entries_no_truncate: BEFORE TRUNCATE ON audit_entries FOR EACH STATEMENT, refuses",
        ]),
        "{diff}"
    );
    m.finish().await;
}

#[test]
fn defaults_and_types_are_normalised() {
    assert_eq!(normalise_default("'api'::text"), "'api'");
    assert_eq!(normalise_default("(0)"), "0");
    assert_eq!(normalise_default("'-1'::integer"), "'-1'");
    assert_eq!(normalise_type(Dialect::Sqlite, "INTEGER"), "integer");
    assert_eq!(normalise_type(Dialect::Postgres, "bigint"), "integer");
    // 32-bit on PostgreSQL: not the schema's integer.
    assert_ne!(normalise_type(Dialect::Postgres, "integer"), "integer");
}

#[test]
fn sqlite_triggers_are_read_and_mapped_as_documented() {
    let parse = |sql: &str| {
        let name = sql.split_whitespace().nth(2).unwrap();
        parse_sqlite_trigger(name, "t", sql)
    };
    let update = parse(
        "CREATE TRIGGER t_no_update BEFORE UPDATE ON t\nBEGIN SELECT RAISE(ABORT, 'no'); END",
    );
    let delete = parse(
        "CREATE TRIGGER t_no_delete BEFORE DELETE ON t -- why\nBEGIN SELECT RAISE (ABORT, 'no'); END",
    );
    let facts: Vec<String> = postgres_triggers_for(&[update, delete])
        .unwrap()
        .iter()
        .map(Trigger::fact)
        .collect();
    assert_eq!(
        facts,
        [
            "trigger t_no_truncate: BEFORE TRUNCATE ON t FOR EACH STATEMENT, refuses",
            "trigger t_no_update: BEFORE UPDATE OR DELETE ON t FOR EACH ROW, refuses",
        ]
    );

    let acts = parse(
        "CREATE TRIGGER t_touch AFTER UPDATE OF a, b ON t WHEN NEW.a > 0 BEGIN UPDATE t SET c = 1; END",
    );
    assert_eq!(
        acts.fact(),
        "trigger t_touch: AFTER UPDATE OF a, b ON t FOR EACH ROW WHEN ..., acts"
    );

    let misnamed =
        parse("CREATE TRIGGER t_guard BEFORE DELETE ON t BEGIN SELECT RAISE(ABORT, 'no'); END");
    let unmapped = postgres_triggers_for(&[misnamed]).unwrap_err();
    assert!(unmapped[0].contains("trigger t_guard"), "{unmapped:?}");
}
