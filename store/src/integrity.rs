//! Row MACs: the database is not a back door.
//!
//! Every row that decides who a credential is or what a principal may do —
//! principals (with their disabled flag and sealed password), API and
//! session tokens (with the token hash), role bindings, custom roles, SSH
//! keys, workload signing keys and scopes (with their environment mode) —
//! carries a MAC under a key derived from the root key, over the row's
//! table, its identity and every field that matters. A row written or
//! altered by anyone but Warden, or copied to another principal or scope,
//! fails its check and is refused: the read fails closed (a refused deny
//! binding must not silently disappear), the failure is logged and an
//! [`Alarm`] is raised, which the server records in the audit log.
//!
//! The key lives in the vault; this crate links no cryptography and only
//! asks it through [`RowKey`]. While sealed there is no key: protected rows
//! can be neither written nor read, exactly as nothing authenticated runs.
//!
//! What a MAC cannot tell (SECURITY.md, "The database is not a back door"):
//! a row put back to an earlier genuine state of itself (an un-revoked
//! token, a re-enabled principal, whose earlier row and MAC the attacker
//! kept), and a row deleted outright (a binding removed).

use std::sync::{Arc, RwLock};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};
use tokio::sync::broadcast;

use crate::{
    GrantRow, PrincipalRow, RoleRow, ScopeRow, SigningKeyRow, SshKeyRow, StoreError, TokenRow,
};

/// The MAC key for authorization rows, held by the key holder (the vault)
/// and installed while unsealed.
pub trait RowKey: Send + Sync {
    /// The MAC of `message`.
    fn tag(&self, message: &[u8]) -> Vec<u8>;
    /// Whether `tag` is the MAC of `message` (compared in constant time).
    fn verify(&self, message: &[u8], tag: &[u8]) -> bool;
}

/// Something about stored authorization data the operator must hear of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alarm {
    /// A row failed its MAC check and was refused.
    Tampered {
        /// The table.
        table: &'static str,
        /// The row's identity (ids and names, never a credential).
        row: String,
    },
    /// A database from before row MACs had this many rows given MACs at
    /// its first unseal.
    Adopted(u64),
}

/// The name of the mark that says this database's rows carry MACs.
const ROWS_MARK: &str = "rows-v1";

/// A field of a protected row, as the MAC sees it.
pub(crate) enum Field<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
    Bytes(&'a [u8]),
    OptBytes(Option<&'a [u8]>),
}

/// The MAC input: a version label, the table, then each field as a kind
/// byte and (unless NULL) a length-prefixed value, so no two different
/// rows encode alike.
fn message(table: &str, fields: &[Field<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut put = |kind: u8, bytes: Option<&[u8]>| {
        out.push(kind);
        if let Some(b) = bytes {
            out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(b);
        }
    };
    put(b'v', Some(b"warden-row-mac/v1"));
    put(b'n', Some(table.as_bytes()));
    for f in fields {
        match f {
            Field::Text(s) => put(b't', Some(s.as_bytes())),
            Field::OptText(s) => match s {
                Some(s) => put(b't', Some(s.as_bytes())),
                None => put(0, None),
            },
            Field::Int(i) => put(b'i', Some(&i.to_be_bytes())),
            Field::OptInt(i) => match i {
                Some(i) => put(b'i', Some(&i.to_be_bytes())),
                None => put(0, None),
            },
            Field::Bytes(b) => put(b'b', Some(b)),
            Field::OptBytes(b) => match b {
                Some(b) => put(b'b', Some(b)),
                None => put(0, None),
            },
        }
    }
    out
}

/// A row kind whose rows carry MACs.
pub(crate) trait Protected {
    /// Its table.
    const TABLE: &'static str;
    /// Its key columns, in [`Protected::key`] order.
    const KEY: &'static [&'static str];
    /// The columns read to rebuild it (with `FromRow`).
    const COLUMNS: &'static str;
    /// Its key values.
    fn key(&self) -> Vec<&str>;
    /// Every field the MAC covers, the key among them.
    fn fields(&self) -> Vec<Field<'_>>;

    fn message(&self) -> Vec<u8> {
        message(Self::TABLE, &self.fields())
    }
}

impl Protected for PrincipalRow {
    const TABLE: &'static str = "principals";
    const KEY: &'static [&'static str] = &["id"];
    const COLUMNS: &'static str = "id, kind, org, password, totp_sealed, totp_enabled, \
         totp_last_step, disabled_at, created_at";
    fn key(&self) -> Vec<&str> {
        vec![&self.id]
    }
    // The last used TOTP step is left out: it only stops a code being used
    // twice, and moves at every MFA login.
    fn fields(&self) -> Vec<Field<'_>> {
        vec![
            Field::Text(&self.id),
            Field::Text(&self.kind),
            Field::OptText(self.org.as_deref()),
            Field::OptText(self.password.as_deref()),
            Field::OptBytes(self.totp_sealed.as_deref()),
            Field::Int(self.totp_enabled),
            Field::OptInt(self.disabled_at),
            Field::Int(self.created_at),
        ]
    }
}

/// A token row with the hash of its secret (which the MAC binds, so a row
/// cannot be pointed at a token of the attacker's choosing).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct TokenWithHash {
    #[sqlx(flatten)]
    pub(crate) token: TokenRow,
    pub(crate) hash: Vec<u8>,
}

impl Protected for TokenWithHash {
    const TABLE: &'static str = "api_tokens";
    const KEY: &'static [&'static str] = &["id"];
    const COLUMNS: &'static str = "id, principal, name, kind, mfa, created_at, expires_at, \
         revoked_at, last_used_at, hash";
    fn key(&self) -> Vec<&str> {
        vec![&self.token.id]
    }
    // The name and the last use are left out: neither grants anything.
    fn fields(&self) -> Vec<Field<'_>> {
        let t = &self.token;
        vec![
            Field::Text(&t.id),
            Field::Bytes(&self.hash),
            Field::Text(&t.principal),
            Field::Text(&t.kind),
            Field::Int(t.mfa),
            Field::Int(t.created_at),
            Field::OptInt(t.expires_at),
            Field::OptInt(t.revoked_at),
        ]
    }
}

/// A role binding as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct BindingRow {
    pub(crate) principal: String,
    pub(crate) role: String,
    pub(crate) scope: String,
    pub(crate) org: Option<String>,
    pub(crate) created_at: i64,
}

impl Protected for BindingRow {
    const TABLE: &'static str = "bindings";
    const KEY: &'static [&'static str] = &["principal", "role", "scope"];
    const COLUMNS: &'static str = "principal, role, scope, org, created_at";
    fn key(&self) -> Vec<&str> {
        vec![&self.principal, &self.role, &self.scope]
    }
    fn fields(&self) -> Vec<Field<'_>> {
        vec![
            Field::Text(&self.principal),
            Field::Text(&self.role),
            Field::Text(&self.scope),
            Field::OptText(self.org.as_deref()),
            Field::Int(self.created_at),
        ]
    }
}

impl Protected for RoleRow {
    const TABLE: &'static str = "roles";
    const KEY: &'static [&'static str] = &["org", "name"];
    const COLUMNS: &'static str = "org, name, source, revision, updated_at";
    fn key(&self) -> Vec<&str> {
        vec![&self.org, &self.name]
    }
    fn fields(&self) -> Vec<Field<'_>> {
        vec![
            Field::Text(&self.org),
            Field::Text(&self.name),
            Field::Text(&self.source),
            Field::Int(self.revision),
            Field::Int(self.updated_at),
        ]
    }
}

impl Protected for SshKeyRow {
    const TABLE: &'static str = "ssh_keys";
    const KEY: &'static [&'static str] = &["fingerprint"];
    const COLUMNS: &'static str =
        "fingerprint, principal, algorithm, public_key, comment, created_at";
    fn key(&self) -> Vec<&str> {
        vec![&self.fingerprint]
    }
    fn fields(&self) -> Vec<Field<'_>> {
        vec![
            Field::Text(&self.fingerprint),
            Field::Text(&self.principal),
            Field::Text(&self.algorithm),
            Field::Text(&self.public_key),
            Field::Int(self.created_at),
        ]
    }
}

impl Protected for SigningKeyRow {
    const TABLE: &'static str = "signing_keys";
    const KEY: &'static [&'static str] = &["kid"];
    const COLUMNS: &'static str = "kid, sealed, public_key, created_at";
    fn key(&self) -> Vec<&str> {
        vec![&self.kid]
    }
    fn fields(&self) -> Vec<Field<'_>> {
        vec![
            Field::Text(&self.kid),
            Field::Bytes(&self.sealed),
            Field::Bytes(&self.public_key),
            Field::Int(self.created_at),
        ]
    }
}

impl Protected for ScopeRow {
    const TABLE: &'static str = "scopes";
    const KEY: &'static [&'static str] = &["path"];
    const COLUMNS: &'static str = "path, kind, parent, org, mode, max_versions, created_at";
    fn key(&self) -> Vec<&str> {
        vec![&self.path]
    }
    fn fields(&self) -> Vec<Field<'_>> {
        vec![
            Field::Text(&self.path),
            Field::Text(&self.kind),
            Field::OptText(self.parent.as_deref()),
            Field::Text(&self.org),
            Field::OptText(self.mode.as_deref()),
            Field::OptInt(self.max_versions),
            Field::Int(self.created_at),
        ]
    }
}

/// `SELECT` of `R`'s columns and MAC from its table, then `rest` (a WHERE
/// and ORDER BY clause).
pub(crate) fn select<R: Protected>(rest: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "SELECT {}, mac FROM {} {rest}",
        R::COLUMNS,
        R::TABLE
    ))
}

/// A row as read, with its stored MAC.
#[derive(Debug, Clone)]
pub(crate) struct Tagged<R> {
    pub(crate) row: R,
    pub(crate) mac: Option<Vec<u8>>,
}

impl<'r, R: FromRow<'r, AnyRow>> FromRow<'r, AnyRow> for Tagged<R> {
    fn from_row(row: &'r AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            row: R::from_row(row)?,
            mac: row.try_get("mac")?,
        })
    }
}

/// A binding read with its custom role's row (for `grants` and
/// `bindings_in`), each with its MAC.
pub(crate) struct TaggedGrant {
    pub(crate) grant: GrantRow,
    pub(crate) mac: Option<Vec<u8>>,
    pub(crate) role_updated_at: Option<i64>,
    pub(crate) role_mac: Option<Vec<u8>>,
}

impl<'r> FromRow<'r, AnyRow> for TaggedGrant {
    fn from_row(row: &'r AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            grant: GrantRow::from_row(row)?,
            mac: row.try_get("mac")?,
            role_updated_at: row.try_get("role_updated_at")?,
            role_mac: row.try_get("role_mac")?,
        })
    }
}

/// The key slot and the alarm channel, shared by a store's clones.
#[derive(Clone)]
pub(crate) struct Guard {
    key: Arc<RwLock<Option<Arc<dyn RowKey>>>>,
    alarms: broadcast::Sender<Alarm>,
    adopt_unprotected: Arc<std::sync::atomic::AtomicBool>,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            key: Arc::default(),
            alarms: broadcast::channel(256).0,
            adopt_unprotected: Arc::default(),
        }
    }
}

impl Guard {
    pub(crate) fn allow_adoption(&self, allow: bool) {
        self.adopt_unprotected
            .store(allow, std::sync::atomic::Ordering::Release);
    }

    pub(crate) fn set_key(&self, key: Option<Arc<dyn RowKey>>) {
        if let Ok(mut slot) = self.key.write() {
            *slot = key;
        }
    }

    fn key(&self) -> Result<Arc<dyn RowKey>, StoreError> {
        self.key
            .read()
            .ok()
            .and_then(|k| k.clone())
            .ok_or(StoreError::Sealed)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Alarm> {
        self.alarms.subscribe()
    }

    /// The MAC to store with `row`.
    pub(crate) fn tag<R: Protected>(&self, row: &R) -> Result<Vec<u8>, StoreError> {
        Ok(self.key()?.tag(&row.message()))
    }

    /// Accepts `row` only if `mac` is its MAC; otherwise logs, raises an
    /// alarm and refuses.
    pub(crate) fn check<R: Protected>(
        &self,
        row: &R,
        mac: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let key = self.key()?;
        if mac.is_some_and(|m| key.verify(&row.message(), m)) {
            return Ok(());
        }
        let id = row.key().join(" ");
        tracing::error!(
            table = R::TABLE,
            row = %id,
            "a stored authorization row failed its integrity check; refused"
        );
        let _ = self.alarms.send(Alarm::Tampered {
            table: R::TABLE,
            row: id.clone(),
        });
        Err(StoreError::Tampered(format!("{} {id}", R::TABLE)))
    }

    /// Checks each tagged row, returning the rows.
    pub(crate) fn check_all<R: Protected>(
        &self,
        rows: Vec<Tagged<R>>,
    ) -> Result<Vec<R>, StoreError> {
        rows.into_iter()
            .map(|t| self.check(&t.row, t.mac.as_deref()).map(|()| t.row))
            .collect()
    }

    /// Checks a row that may be absent.
    pub(crate) fn check_one<R: Protected>(
        &self,
        row: Option<Tagged<R>>,
    ) -> Result<Option<R>, StoreError> {
        row.map(|t| self.check(&t.row, t.mac.as_deref()).map(|()| t.row))
            .transpose()
    }

    /// Checks a binding and the custom role row it was joined with.
    pub(crate) fn check_grant(&self, g: TaggedGrant) -> Result<GrantRow, StoreError> {
        let binding = BindingRow {
            principal: g.grant.principal.clone(),
            role: g.grant.role.clone(),
            scope: g.grant.scope.clone(),
            org: g.grant.org.clone(),
            created_at: g.grant.created_at,
        };
        self.check(&binding, g.mac.as_deref())?;
        // A custom role row was joined (a built-in role joins none): all of
        // it is checked. A column set to NULL in the database cannot skip
        // the check; it changes the message and fails it.
        if g.grant.source.is_some() || g.grant.revision.is_some() || g.role_updated_at.is_some() {
            let role = RoleRow {
                org: g.grant.org.clone().unwrap_or_default(),
                name: g.grant.role.clone(),
                source: g.grant.source.clone().unwrap_or_default(),
                revision: g.grant.revision.unwrap_or(i64::MIN),
                updated_at: g.role_updated_at.unwrap_or(i64::MIN),
            };
            self.check(&role, g.role_mac.as_deref())?;
        }
        Ok(g.grant)
    }

    /// Rewrites the MAC of `row` (already changed in this transaction).
    async fn store_tag<R: Protected>(
        &self,
        c: &mut AnyConnection,
        row: &R,
    ) -> Result<(), StoreError> {
        let tag = self.tag(row)?;
        let sql = format!(
            "UPDATE {} SET mac = $1 WHERE {}",
            R::TABLE,
            key_clause(R::KEY, 2)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tag);
        for k in row.key() {
            q = q.bind(k.to_owned());
        }
        q.execute(&mut *c).await?;
        Ok(())
    }

    /// Reads the row with `key` inside the transaction, checked. A
    /// restricting change (a revocation, a disable) still proceeds past a
    /// row that fails (after the alarm): refusing would keep a tampered
    /// credential alive.
    pub(crate) async fn load<R>(
        &self,
        c: &mut AnyConnection,
        key: &[&str],
        restricting: bool,
    ) -> Result<Option<R>, StoreError>
    where
        R: Protected + for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        let sql = select::<R>(&format!("WHERE {}", key_clause(R::KEY, 1)));
        let mut q = sqlx::query_as::<_, Tagged<R>>(sql);
        for k in key {
            q = q.bind((*k).to_owned());
        }
        let Some(t) = q.fetch_optional(&mut *c).await? else {
            return Ok(None);
        };
        match self.check(&t.row, t.mac.as_deref()) {
            Err(StoreError::Tampered(_)) if restricting => Ok(Some(t.row)),
            other => other.map(|()| Some(t.row)),
        }
    }

    /// Marks a database that has no authorization rows yet (a new
    /// installation), or, when the operator allowed it, gives every row of
    /// a database from before row MACs its MAC, once, and marks it.
    ///
    /// Whether a database "is from before row MACs" is read from the
    /// database, which is what a database writer controls: one who deletes
    /// the mark and every MAC and inserts a token must not have it blessed
    /// at the next unseal. So rows are adopted only when the operator says
    /// so (`warden server --adopt-unprotected-rows`, once after upgrading);
    /// otherwise unmarked rows stay refused and an alarm says why. A
    /// database whose mark fails, or with MACs but no mark, has been
    /// tampered with: nothing is adopted then either.
    pub(crate) async fn adopt(&self, c: &mut AnyConnection) -> Result<u64, StoreError> {
        let key = self.key()?;
        let mark = message("integrity_marks", &[Field::Text(ROWS_MARK)]);
        let found: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT tag FROM integrity_marks WHERE name = $1")
                .bind(ROWS_MARK)
                .fetch_optional(&mut *c)
                .await?;
        let tampered = |what: &str| {
            tracing::error!("{what}; rows without a valid MAC stay refused");
            let _ = self.alarms.send(Alarm::Tampered {
                table: "integrity_marks",
                row: ROWS_MARK.into(),
            });
            Ok(0)
        };
        match found {
            Some(tag) if key.verify(&mark, &tag) => return Ok(0),
            Some(_) => return tampered("the database's row-MAC mark fails its check"),
            None => {}
        }
        // Rows in all, and rows with a MAC, over the protected tables.
        let (mut rows, mut tagged) = (0i64, 0i64);
        for table in TABLES {
            let sql = format!("SELECT COUNT(*), COUNT(mac) FROM {table}");
            let (n, t): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut *c)
                .await?;
            rows += n;
            tagged += t;
        }
        if tagged > 0 {
            return tampered("rows carry MACs but the database's row-MAC mark is missing");
        }
        if rows > 0
            && !self
                .adopt_unprotected
                .load(std::sync::atomic::Ordering::Acquire)
        {
            return tampered(
                "authorization rows have no MACs and the database has no row-MAC mark: if it \
                 comes from a version before row MACs, start the server once with \
                 --adopt-unprotected-rows; otherwise someone with write access to the database \
                 removed them",
            );
        }
        let mut adopted = self.adopt_table::<PrincipalRow>(c).await?;
        adopted += self.adopt_table::<TokenWithHash>(c).await?;
        adopted += self.adopt_table::<BindingRow>(c).await?;
        adopted += self.adopt_table::<RoleRow>(c).await?;
        adopted += self.adopt_table::<SshKeyRow>(c).await?;
        adopted += self.adopt_table::<SigningKeyRow>(c).await?;
        adopted += self.adopt_table::<ScopeRow>(c).await?;
        sqlx::query("INSERT INTO integrity_marks (name, tag) VALUES ($1, $2)")
            .bind(ROWS_MARK)
            .bind(key.tag(&mark))
            .execute(&mut *c)
            .await?;
        if adopted > 0 {
            tracing::warn!(adopted, "rows from before row MACs were given MACs");
            let _ = self.alarms.send(Alarm::Adopted(adopted));
        }
        Ok(adopted)
    }

    async fn adopt_table<R>(&self, c: &mut AnyConnection) -> Result<u64, StoreError>
    where
        R: Protected + for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        let sql = format!("SELECT {} FROM {}", R::COLUMNS, R::TABLE);
        let rows: Vec<R> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *c)
            .await?;
        for row in &rows {
            self.store_tag(c, row).await?;
        }
        Ok(rows.len() as u64)
    }
}

/// The protected tables.
const TABLES: [&str; 7] = [
    "principals",
    "api_tokens",
    "bindings",
    "roles",
    "ssh_keys",
    "signing_keys",
    "scopes",
];

/// `k1 = $first AND k2 = $first+1 ...`.
fn key_clause(key: &[&str], first: usize) -> String {
    key.iter()
        .enumerate()
        .map(|(i, k)| format!("{k} = ${}", first + i))
        .collect::<Vec<_>>()
        .join(" AND ")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TestKey;

    impl RowKey for TestKey {
        fn tag(&self, message: &[u8]) -> Vec<u8> {
            ring::digest::digest(&ring::digest::SHA256, message)
                .as_ref()
                .to_vec()
        }
        fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
            self.tag(message) == tag
        }
    }

    /// A binding to a custom role whose row comes back with a column
    /// nulled (its rules rewritten, `updated_at` set to NULL) is refused,
    /// not read without its role's check.
    #[test]
    fn a_partly_null_role_row_is_refused() {
        let guard = Guard::default();
        guard.set_key(Some(Arc::new(TestKey)));
        let grant = GrantRow {
            principal: "user:bob@acme".into(),
            role: "ops".into(),
            scope: "acme".into(),
            org: Some("acme".into()),
            source: Some("name: ops\nrules:\n  - allow: [env.read]\n".into()),
            revision: Some(1),
            created_at: 5,
        };
        let binding = BindingRow {
            principal: grant.principal.clone(),
            role: grant.role.clone(),
            scope: grant.scope.clone(),
            org: grant.org.clone(),
            created_at: grant.created_at,
        };
        let role = RoleRow {
            org: "acme".into(),
            name: "ops".into(),
            source: grant.source.clone().unwrap(),
            revision: 1,
            updated_at: 9,
        };
        let tagged = |grant: GrantRow, updated_at| TaggedGrant {
            grant,
            mac: Some(TestKey.tag(&binding.message())),
            role_updated_at: updated_at,
            role_mac: Some(TestKey.tag(&role.message())),
        };
        assert!(guard.check_grant(tagged(grant.clone(), Some(9))).is_ok());
        let rewritten = GrantRow {
            source: Some("name: ops\nrules:\n  - allow: [\"*\"]\n".into()),
            ..grant.clone()
        };
        assert!(matches!(
            guard.check_grant(tagged(rewritten, None)),
            Err(StoreError::Tampered(_))
        ));
        let builtin = GrantRow {
            role: "viewer".into(),
            source: None,
            revision: None,
            ..grant
        };
        let viewer = BindingRow {
            role: "viewer".into(),
            ..binding.clone()
        };
        let plain = TaggedGrant {
            grant: builtin,
            mac: Some(TestKey.tag(&viewer.message())),
            role_updated_at: None,
            role_mac: None,
        };
        assert!(guard.check_grant(plain).is_ok());
    }

    #[test]
    fn encodings_of_different_rows_differ() {
        // Moving bytes between adjacent fields, or NULL against empty,
        // changes the message.
        let a = message("t", &[Field::Text("ab"), Field::Text("c")]);
        let b = message("t", &[Field::Text("a"), Field::Text("bc")]);
        let c = message("t", &[Field::OptText(None), Field::Text("c")]);
        let d = message("t", &[Field::OptText(Some("")), Field::Text("c")]);
        let e = message("u", &[Field::Text("ab"), Field::Text("c")]);
        let all = [a, b, c, d, e];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }
}
