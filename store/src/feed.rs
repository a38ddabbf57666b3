//! The change feed: what each committed write changed, as [`Change`]s,
//! broadcast to this process after the commit and before the write is
//! acknowledged (the writer sends them, right after it drops the stale
//! cache entries).
//!
//! Session-long grants (a shell, a log follow, a rotation watch) listen to
//! it and re-check their authority when a change concerns them; caches
//! drop what a change makes stale. On PostgreSQL, other replicas' writes
//! reach this process through the database's notifications (see
//! ARCHITECTURE.md); if that link is lost the feed reports it, caches are
//! dropped and grants fail closed.

use tokio::sync::{broadcast, watch};

/// What a committed write changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A principal's account, credentials or role bindings.
    Principal(String),
    /// One token's row (its last use); nothing about authority.
    Token(String),
    /// A custom role of this organization was applied or deleted.
    Role(String),
    /// These secrets' versions.
    Secrets(Vec<(String, String)>),
    /// Anything may have changed (a rewrap, a missed notification).
    All,
}

/// Changes buffered per subscriber before it lags (a lagging subscriber
/// must treat the gap as [`Change::All`]).
const BUFFER: usize = 4096;

/// The process's change feed.
pub(crate) struct Feed {
    changes: broadcast::Sender<Change>,
    /// `false` while changes made elsewhere may be missed (another
    /// replica's notifications are not arriving).
    healthy: watch::Sender<bool>,
}

impl Feed {
    pub(crate) fn new() -> Self {
        Self {
            changes: broadcast::Sender::new(BUFFER),
            healthy: watch::Sender::new(true),
        }
    }

    pub(crate) fn publish(&self, change: Change) {
        // No subscriber is fine.
        let _ = self.changes.send(change);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    pub(crate) fn health(&self) -> watch::Receiver<bool> {
        self.healthy.subscribe()
    }
}
