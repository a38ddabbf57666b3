//! The change feed: what each committed write changed, as [`Change`]s,
//! broadcast to this process after the commit and before the write is
//! acknowledged (the writer sends them, right after it drops the stale
//! cache entries).
//!
//! Session-long grants (a shell, a log follow, a rotation watch) listen to
//! it and re-check their authority when a change concerns them; caches
//! drop what a change makes stale. On PostgreSQL, other replicas' writes
//! reach this process through the database's notifications: each batch
//! that changes something sends one `NOTIFY` (in its transaction, so it is
//! delivered exactly when the batch commits) naming its changes, and every
//! replica listens. If that link is lost the feed reports it, caches are
//! dropped and grants fail closed (they end; a new one starts once the link
//! is back).

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, watch};

use crate::StoreError;
use crate::cache::ReadCache;

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

/// The PostgreSQL channel changes are announced on.
pub(crate) const CHANNEL: &str = "warden_changes";

/// Longest notification payload sent; a batch whose changes do not fit is
/// announced as [`Change::All`] (PostgreSQL's limit is 8,000 bytes).
const MAX_PAYLOAD: usize = 7_000;

/// The notification payload for `changes` made by replica `origin`: one
/// line for the origin, then one per change, fields separated by tabs
/// (names, ids and paths never contain tabs or newlines; a field that does
/// makes the batch [`Change::All`]).
pub(crate) fn encode(origin: &str, changes: &[Change]) -> String {
    let mut out = format!("O\t{origin}");
    let clean = |s: &str| !s.contains(['\t', '\n']);
    for c in changes {
        let line = match c {
            Change::Principal(id) if clean(id) => format!("P\t{id}"),
            Change::Token(id) if clean(id) => format!("T\t{id}"),
            Change::Role(org) if clean(org) => format!("R\t{org}"),
            Change::Secrets(names) if names.iter().all(|(s, n)| clean(s) && clean(n)) => names
                .iter()
                .map(|(s, n)| format!("S\t{s}\t{n}"))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => "A".to_owned(),
        };
        out.push('\n');
        out.push_str(&line);
        if out.len() > MAX_PAYLOAD {
            return format!("O\t{origin}\nA");
        }
    }
    out
}

/// The origin and changes of a payload; anything unreadable is
/// [`Change::All`].
pub(crate) fn decode(payload: &str) -> (Option<&str>, Vec<Change>) {
    let mut origin = None;
    let mut changes = Vec::new();
    let mut secrets = Vec::new();
    for line in payload.split('\n') {
        let mut f = line.split('\t');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some("O"), Some(o), None, None) => origin = Some(o),
            (Some("P"), Some(id), None, None) => changes.push(Change::Principal(id.to_owned())),
            (Some("T"), Some(id), None, None) => changes.push(Change::Token(id.to_owned())),
            (Some("R"), Some(org), None, None) => changes.push(Change::Role(org.to_owned())),
            (Some("S"), Some(s), Some(n), None) => secrets.push((s.to_owned(), n.to_owned())),
            _ => changes.push(Change::All),
        }
    }
    if !secrets.is_empty() {
        changes.push(Change::Secrets(secrets));
    }
    (origin, changes)
}

/// Changes buffered per subscriber before it lags (a lagging subscriber
/// must treat the gap as [`Change::All`]).
const BUFFER: usize = 4096;

/// The process's change feed.
pub(crate) struct Feed {
    /// This process's name in notifications (its own are skipped).
    pub(crate) origin: String,
    changes: broadcast::Sender<Change>,
    /// `false` while changes made elsewhere may be missed (another
    /// replica's notifications are not arriving).
    healthy: watch::Sender<bool>,
}

impl Feed {
    pub(crate) fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            origin: format!("{}-{nanos:x}", std::process::id()),
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

    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.send_replace(healthy);
    }
}

/// This replica's subscription to other replicas' changes (PostgreSQL).
pub(crate) struct Listener(PgListener);

impl Listener {
    /// Subscribes before the store is used, so no change committed after
    /// `connect` returns goes unheard.
    pub(crate) async fn start(url: &str) -> Result<Self, StoreError> {
        let mut l = PgListener::connect(url)
            .await
            .map_err(StoreError::from_sqlx)?;
        l.listen(CHANNEL).await.map_err(StoreError::from_sqlx)?;
        Ok(Self(l))
    }

    /// Applies other replicas' changes to the cache and the feed, for as
    /// long as the store lives. When the connection drops, changes may be
    /// missed: the feed turns unhealthy (grants end), and once listening
    /// again everything cached is dropped before it turns healthy.
    pub(crate) async fn run(self, url: String, feed: Arc<Feed>, cache: Option<Arc<ReadCache>>) {
        let mut listener = Some(self.0);
        loop {
            let mut l = match listener.take() {
                Some(l) => l,
                None => match Self::start(&url).await {
                    Ok(l) => {
                        if let Some(c) = &cache {
                            c.invalidate(&Change::All);
                        }
                        feed.publish(Change::All);
                        feed.set_healthy(true);
                        tracing::info!("listening for other replicas' changes again");
                        l.0
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for other replicas' changes");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            loop {
                match l.try_recv().await {
                    Ok(Some(n)) => {
                        let (origin, changes) = decode(n.payload());
                        if origin == Some(feed.origin.as_str()) {
                            continue;
                        }
                        for change in changes {
                            if let Some(c) = &cache {
                                c.invalidate(&change);
                            }
                            feed.publish(change);
                        }
                    }
                    Ok(None) | Err(_) => {
                        tracing::warn!("lost the notification link to other replicas");
                        feed.set_healthy(false);
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_fail_towards_all() {
        let changes = vec![
            Change::Principal("user:a@acme".into()),
            Change::Token("tok_1".into()),
            Change::Role("acme".into()),
            Change::Secrets(vec![
                ("acme/shop".into(), "K".into()),
                ("acme/x".into(), "L".into()),
            ]),
            Change::All,
        ];
        let payload = encode("r1", &changes);
        assert_eq!(
            decode(&payload),
            (Some("r1"), {
                let mut c = changes.clone();
                let s = c.remove(3);
                c.push(s);
                c
            })
        );
        let weird = encode("r1", &[Change::Principal("a\tb".into())]);
        assert_eq!(decode(&weird).1, vec![Change::All]);
        let many: Vec<_> = (0..1000)
            .map(|i| Change::Token(format!("tok_{i}")))
            .collect();
        assert_eq!(decode(&encode("r1", &many)).1, vec![Change::All]);
        assert_eq!(decode("garbage").1, vec![Change::All]);
    }
}
