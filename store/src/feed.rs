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

use sqlx::AnyPool;
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
    /// This cluster was removed (its agents' links end on every replica).
    Cluster(String),
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
pub(crate) fn encode(origin: &str, seq: i64, changes: &[Change]) -> String {
    let mut out = format!("O\t{origin}\nQ\t{seq}");
    let clean = |s: &str| !s.contains(['\t', '\n']);
    for c in changes {
        let line = match c {
            Change::Principal(id) if clean(id) => format!("P\t{id}"),
            Change::Token(id) if clean(id) => format!("T\t{id}"),
            Change::Role(org) if clean(org) => format!("R\t{org}"),
            Change::Cluster(name) if clean(name) => format!("C\t{name}"),
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
            return format!("O\t{origin}\nQ\t{seq}\nA");
        }
    }
    out
}

/// What a notification says: who sent it, the change counter its batch
/// set, and the changes; anything unreadable is [`Change::All`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Notice<'a> {
    pub(crate) origin: Option<&'a str>,
    pub(crate) seq: Option<i64>,
    pub(crate) changes: Vec<Change>,
}

pub(crate) fn decode(payload: &str) -> Notice<'_> {
    let mut origin = None;
    let mut seq = None;
    let mut changes = Vec::new();
    let mut secrets = Vec::new();
    for line in payload.split('\n') {
        let mut f = line.split('\t');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some("O"), Some(o), None, None) => origin = Some(o),
            (Some("Q"), Some(q), None, None) if q.parse::<i64>().is_ok() => seq = q.parse().ok(),
            (Some("P"), Some(id), None, None) => changes.push(Change::Principal(id.to_owned())),
            (Some("T"), Some(id), None, None) => changes.push(Change::Token(id.to_owned())),
            (Some("R"), Some(org), None, None) => changes.push(Change::Role(org.to_owned())),
            (Some("C"), Some(name), None, None) => changes.push(Change::Cluster(name.to_owned())),
            (Some("S"), Some(s), Some(n), None) => secrets.push((s.to_owned(), n.to_owned())),
            _ => changes.push(Change::All),
        }
    }
    if !secrets.is_empty() {
        changes.push(Change::Secrets(secrets));
    }
    Notice {
        origin,
        seq,
        changes,
    }
}

/// Which values of the change counter this replica has applied: all up to
/// `upto`, and some beyond (notifications can arrive out of order).
#[derive(Debug, Default)]
struct Applied {
    upto: i64,
    beyond: std::collections::BTreeSet<i64>,
}

impl Applied {
    fn mark(&mut self, seq: i64) {
        if seq > self.upto {
            self.beyond.insert(seq);
        }
        while self.beyond.remove(&(self.upto + 1)) {
            self.upto += 1;
        }
    }
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
    /// The change counter values applied here (PostgreSQL).
    applied: std::sync::Mutex<Applied>,
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
            applied: std::sync::Mutex::new(Applied::default()),
        }
    }

    /// Records that every change of the batch that set the counter to `seq`
    /// is applied here (its cache entries dropped).
    pub(crate) fn applied(&self, seq: i64) {
        if let Ok(mut a) = self.applied.lock() {
            a.mark(seq);
        }
    }

    /// Starts counting afresh from `seq` (after the cache was emptied).
    pub(crate) fn restart_at(&self, seq: i64) {
        if let Ok(mut a) = self.applied.lock() {
            *a = Applied {
                upto: seq,
                beyond: std::collections::BTreeSet::new(),
            };
        }
    }

    /// Whether everything up to counter value `seq` is applied here and
    /// nothing is being missed: then this replica's cache is as fresh as
    /// the database was when `seq` was read.
    pub(crate) fn caught_up(&self, seq: i64) -> bool {
        *self.healthy.borrow() && self.applied.lock().is_ok_and(|a| a.upto >= seq)
    }

    fn applied_upto(&self) -> Option<i64> {
        self.applied.lock().ok().map(|a| a.upto)
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
    pub(crate) async fn start(url: &str, pool: &AnyPool) -> Result<(Self, i64), StoreError> {
        let mut l = PgListener::connect(url)
            .await
            .map_err(StoreError::from_sqlx)?;
        l.listen(CHANNEL).await.map_err(StoreError::from_sqlx)?;
        // Listening now: every change committed after this read is heard.
        let seq: i64 = sqlx::query_scalar("SELECT seq FROM change_seq WHERE id = 1")
            .fetch_one(pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok((Self(l), seq))
    }

    /// Applies other replicas' changes to the cache and the feed, for as
    /// long as the store lives. When the connection drops, changes may be
    /// missed: the feed turns unhealthy (grants end), and once listening
    /// again everything cached is dropped before it turns healthy.
    ///
    /// A connection can also die without saying so (a half-open TCP link
    /// behind a NAT or load balancer): a probe beside it reads the change
    /// counter every [`PROBE_EVERY`], and a counter ahead of what was heard
    /// for [`MAX_LAG`] (or a counter that cannot be read) counts as a lost
    /// link.
    pub(crate) async fn run(
        self,
        url: String,
        pool: AnyPool,
        feed: Arc<Feed>,
        cache: Option<Arc<ReadCache>>,
    ) {
        let mut listener = Some(self.0);
        loop {
            let mut l = match listener.take() {
                Some(l) => l,
                None => match Self::start(&url, &pool).await {
                    Ok((l, seq)) => {
                        if let Some(c) = &cache {
                            c.invalidate(&Change::All);
                        }
                        feed.restart_at(seq);
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
            let (lost_tx, mut lost) = watch::channel(());
            tokio::spawn(probe(pool.clone(), feed.clone(), lost_tx));
            loop {
                let received = tokio::select! {
                    received = l.try_recv() => received,
                    // The listener is dropped below, so cancelling its
                    // receive loses nothing that matters.
                    _ = lost.changed() => {
                        tracing::warn!("notifications from other replicas stopped arriving");
                        feed.set_healthy(false);
                        break;
                    }
                };
                match received {
                    Ok(Some(n)) => {
                        let notice = decode(n.payload());
                        if notice.origin != Some(feed.origin.as_str()) {
                            for change in notice.changes {
                                if let Some(c) = &cache {
                                    c.invalidate(&change);
                                }
                                feed.publish(change);
                            }
                        }
                        // The writer marks this replica's own batches too;
                        // marking twice is harmless.
                        if let Some(seq) = notice.seq {
                            feed.applied(seq);
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

/// How often the probe reads the change counter.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(200);
/// How long the counter may run ahead of what this replica heard.
pub(crate) const MAX_LAG: Duration = Duration::from_millis(600);

/// Reads the change counter every [`PROBE_EVERY`] and reports through
/// `lost` (then stops) when this replica has not heard of a committed
/// change for [`MAX_LAG`], or the counter cannot be read. Stops when the
/// listener it watches is gone.
async fn probe(pool: AnyPool, feed: Arc<Feed>, lost: watch::Sender<()>) {
    let mut behind_since: Option<std::time::Instant> = None;
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        if lost.is_closed() {
            return;
        }
        let seq = sqlx::query_scalar::<_, i64>("SELECT seq FROM change_seq WHERE id = 1")
            .fetch_one(&pool)
            .await;
        let heard = feed.applied_upto();
        let behind = match (seq, heard) {
            (Ok(seq), Some(heard)) => seq > heard,
            _ => {
                lost.send_replace(());
                return;
            }
        };
        if !behind {
            behind_since = None;
        } else if behind_since
            .get_or_insert_with(std::time::Instant::now)
            .elapsed()
            >= MAX_LAG
        {
            lost.send_replace(());
            return;
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
            Change::Cluster("edge".into()),
            Change::Secrets(vec![
                ("acme/shop".into(), "K".into()),
                ("acme/x".into(), "L".into()),
            ]),
            Change::All,
        ];
        let payload = encode("r1", 7, &changes);
        let mut expected = changes.clone();
        // Secrets are gathered last.
        let s = expected.remove(4);
        expected.push(s);
        assert_eq!(
            decode(&payload),
            Notice {
                origin: Some("r1"),
                seq: Some(7),
                changes: expected
            }
        );
        let weird = encode("r1", 8, &[Change::Principal("a\tb".into())]);
        assert_eq!(decode(&weird).changes, vec![Change::All]);
        let many: Vec<_> = (0..1000)
            .map(|i| Change::Token(format!("tok_{i}")))
            .collect();
        let big = encode("r1", 9, &many);
        let big = decode(&big);
        assert_eq!((big.seq, big.changes), (Some(9), vec![Change::All]));
        assert_eq!(decode("garbage").changes, vec![Change::All]);
    }

    #[test]
    fn applied_counts_only_without_gaps() {
        let mut a = Applied::default();
        a.mark(2);
        assert_eq!(a.upto, 0);
        a.mark(1);
        assert_eq!(a.upto, 2);
        a.mark(2);
        a.mark(4);
        assert_eq!(a.upto, 2);
        a.mark(3);
        assert_eq!(a.upto, 4);
    }
}
