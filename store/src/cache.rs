//! A read cache for the embedded (SQLite) backend: API tokens by hash,
//! role bindings by principal, scopes by path, and the latest version row of each secret (ciphertext,
//! as stored).
//!
//! It is only correct because one process owns the SQLite file (the store
//! holds an exclusive `flock` on `<db>.lock`) and every write goes through
//! this process's writer, which invalidates the entries it changed after the
//! commit and before the write is acknowledged. PostgreSQL, shared by
//! replicas, gets no cache.
//!
//! Race-freedom: a reader notes the epoch before reading the database and
//! inserts only if no invalidation happened since (checked under the write
//! lock). An invalidation bumps the epoch, then removes entries, so a stale
//! row read before a commit can never be inserted after its invalidation.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::feed::Change;
use crate::{GrantRow, ScopeRow, TokenAuthRow, VersionRow};

/// Entries kept per map before it is cleared (bounds memory under a scan).
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub(crate) struct ReadCache {
    epoch: AtomicU64,
    tokens: RwLock<HashMap<Vec<u8>, TokenAuthRow>>,
    grants: RwLock<HashMap<String, Vec<GrantRow>>>,
    latest: RwLock<HashMap<String, VersionRow>>,
    scopes: RwLock<HashMap<String, ScopeRow>>,
}

fn key(scope: &str, name: &str) -> String {
    format!("{scope}\u{0}{name}")
}

fn insert<K: std::hash::Hash + Eq, V>(
    epoch: &AtomicU64,
    seen: u64,
    map: &RwLock<HashMap<K, V>>,
    k: K,
    v: V,
) {
    if let Ok(mut m) = map.write()
        && epoch.load(Ordering::Acquire) == seen
    {
        if m.len() >= MAX_ENTRIES {
            m.clear();
        }
        m.insert(k, v);
    }
}

impl ReadCache {
    /// The epoch to pass to the `put_*` calls of a read that starts now.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn token(&self, hash: &[u8]) -> Option<TokenAuthRow> {
        self.tokens.read().ok()?.get(hash).cloned()
    }

    pub(crate) fn put_token(&self, seen: u64, hash: &[u8], row: TokenAuthRow) {
        insert(&self.epoch, seen, &self.tokens, hash.to_vec(), row);
    }

    pub(crate) fn grants(&self, principal: &str) -> Option<Vec<GrantRow>> {
        self.grants.read().ok()?.get(principal).cloned()
    }

    pub(crate) fn put_grants(&self, seen: u64, principal: &str, rows: Vec<GrantRow>) {
        insert(&self.epoch, seen, &self.grants, principal.to_owned(), rows);
    }

    pub(crate) fn latest(&self, scope: &str, name: &str) -> Option<VersionRow> {
        self.latest.read().ok()?.get(&key(scope, name)).cloned()
    }

    pub(crate) fn put_latest(&self, seen: u64, row: VersionRow) {
        let k = key(&row.scope, &row.name);
        insert(&self.epoch, seen, &self.latest, k, row);
    }

    pub(crate) fn scope(&self, path: &str) -> Option<ScopeRow> {
        self.scopes.read().ok()?.get(path).cloned()
    }

    pub(crate) fn put_scope(&self, seen: u64, row: ScopeRow) {
        insert(&self.epoch, seen, &self.scopes, row.path.clone(), row);
    }

    /// Drops what `change` makes stale.
    pub(crate) fn invalidate(&self, change: &Change) {
        match change {
            Change::Secrets(keys) => {
                self.invalidate_secrets(keys.iter().map(|(s, n)| (s.as_str(), n.as_str())));
            }
            Change::Principal(p) => {
                self.epoch.fetch_add(1, Ordering::AcqRel);
                if let Ok(mut m) = self.grants.write() {
                    m.remove(p);
                }
                if let Ok(mut m) = self.tokens.write() {
                    m.retain(|_, t| t.token.principal != *p);
                }
            }
            Change::Token(id) => {
                self.epoch.fetch_add(1, Ordering::AcqRel);
                if let Ok(mut m) = self.tokens.write() {
                    m.retain(|_, t| t.token.id != *id);
                }
            }
            // Bindings carry their custom role's source: drop them all (a
            // role change is rare).
            Change::Role(_) => {
                self.epoch.fetch_add(1, Ordering::AcqRel);
                if let Ok(mut m) = self.grants.write() {
                    m.clear();
                }
            }
            // Nothing of a cluster is cached.
            Change::Cluster(_) => {}
            Change::All => self.invalidate_all(),
        }
    }

    /// After a committed change to these secrets.
    pub(crate) fn invalidate_secrets<'a>(
        &self,
        keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut m) = self.latest.write() {
            for (scope, name) in keys {
                m.remove(&key(scope, name));
            }
        }
    }

    /// After a committed change that may touch any secret, token, scope,
    /// principal, role or binding.
    pub(crate) fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut m) = self.latest.write() {
            m.clear();
        }
        if let Ok(mut m) = self.tokens.write() {
            m.clear();
        }
        if let Ok(mut m) = self.grants.write() {
            m.clear();
        }
        if let Ok(mut m) = self.scopes.write() {
            m.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: u8) -> VersionRow {
        VersionRow {
            secret_id: 1,
            scope: "a/b".into(),
            name: "K".into(),
            version: i64::from(value),
            key_term: 1,
            envelope: Some(vec![value]),
            created_at: 0,
            deleted_at: None,
            destroyed_at: None,
        }
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_cached() {
        let c = ReadCache::default();
        let seen = c.epoch();
        // A writer commits and invalidates while the read is in flight...
        c.invalidate_secrets([("a/b", "K")]);
        // ...so the (stale) row the read got must not be inserted.
        c.put_latest(seen, row(1));
        assert!(c.latest("a/b", "K").is_none());
        let seen = c.epoch();
        c.put_latest(seen, row(2));
        assert_eq!(c.latest("a/b", "K").map(|r| r.version), Some(2));
        c.invalidate_secrets([("a/b", "K")]);
        assert!(c.latest("a/b", "K").is_none());
    }
}
