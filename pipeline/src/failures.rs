//! Failure accounting for what anyone can send: failed authentications and
//! throttled attempts. Every failure is recorded; none is dropped. The first
//! few from a source each get an entry of their own; past that rate, the
//! source's failures are counted into one entry per (operation, target,
//! claimed account, status) and window, with an exact `count`, so a flood
//! cannot grow the undeletable log by an entry per request.
//!
//! A failure is answered only once the entry that counts it is durable
//! (the window's flush), exactly like an individual one: nothing is
//! acknowledged before it is accounted for, and a flood's requests are held
//! for up to a window, which also slows the flood.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use warden_audit::{Actor, Auditor, Event, SYSTEM_LOG, Target};

use crate::{Error, Pipeline};

/// Individual entries per source and minute before aggregation starts.
pub const INDIVIDUAL_PER_MINUTE: u32 = 20;
/// How long aggregated failures are collected before their entry is
/// written.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Sources tracked at most (memory stays bounded under a flood of sources;
/// an untracked source's failures are recorded individually).
const MAX_SOURCES: usize = 100_000;

/// What identical failures share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    source: String,
    action: String,
    target: Target,
    principal: String,
    method: &'static str,
    status: &'static str,
}

/// One window's counts and the channel its waiters hear the result on.
struct Window {
    counts: HashMap<Key, u64>,
    done: watch::Sender<Option<bool>>,
}

impl Window {
    fn new() -> Self {
        Self {
            counts: HashMap::new(),
            done: watch::channel(None).0,
        }
    }
}

/// The accounting of one pipeline.
pub(crate) struct Failures {
    recent: Mutex<HashMap<String, (Instant, u32)>>,
    window: Mutex<Option<Window>>,
}

impl Default for Failures {
    fn default() -> Self {
        Self {
            recent: Mutex::new(HashMap::new()),
            window: Mutex::new(None),
        }
    }
}

impl Failures {
    /// Whether `source`'s next failure still gets an entry of its own.
    fn individual(&self, source: &str) -> bool {
        let Ok(mut recent) = self.recent.lock() else {
            return true;
        };
        let now = Instant::now();
        if recent.len() >= MAX_SOURCES && !recent.contains_key(source) {
            recent.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
            if recent.len() >= MAX_SOURCES {
                return true;
            }
        }
        let (start, n) = recent.entry(source.to_owned()).or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(60) {
            *start = now;
            *n = 0;
        }
        *n += 1;
        *n <= INDIVIDUAL_PER_MINUTE
    }

    /// Records one failure described by `event` (its actor's source and
    /// claimed principal, its action and target) with `status`; returns once
    /// it is durable, individually or counted.
    pub(crate) async fn record(
        pipeline: &Pipeline,
        event: Event,
        status: &'static str,
    ) -> Result<(), Error> {
        let me = pipeline.failures();
        let source = event.actor.source_ip.clone().unwrap_or_default();
        if me.individual(&source) {
            return pipeline
                .audit()
                .record(&event, status)
                .await
                .map_err(|_| Error::audit_unavailable());
        }
        let key = Key {
            source,
            action: event.action,
            target: event.target,
            principal: event.actor.principal,
            method: event.actor.method,
            status,
        };
        let mut done = {
            let Ok(mut slot) = me.window.lock() else {
                return Err(Error::internal());
            };
            let window = match slot.as_mut() {
                Some(w) => w,
                None => {
                    // The first failure of a window schedules its flush.
                    let p = pipeline.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(WINDOW).await;
                        p.failures().flush(p.audit()).await;
                    });
                    slot.insert(Window::new())
                }
            };
            *window.counts.entry(key).or_insert(0) += 1;
            window.done.subscribe()
        };
        match done.wait_for(Option::is_some).await {
            Ok(ok) if *ok == Some(true) => Ok(()),
            _ => Err(Error::audit_unavailable()),
        }
    }

    /// Writes one counted entry per key of the current window, durably,
    /// then tells its waiters.
    async fn flush(&self, audit: &Auditor) {
        let Some(window) = self.window.lock().ok().and_then(|mut w| w.take()) else {
            return;
        };
        let mut ok = true;
        for (key, count) in window.counts {
            let event = Event {
                op_id: audit.op_id(),
                log: SYSTEM_LOG.to_owned(),
                actor: Actor {
                    method: key.method,
                    principal: key.principal,
                    source_ip: Some(key.source).filter(|s| !s.is_empty()),
                    token_id: None,
                    user_agent: None,
                },
                action: key.action,
                permission: None,
                target: key.target,
                decision: None,
                session: None,
                count: Some(count),
            };
            if let Err(e) = audit.record(&event, key.status).await {
                tracing::error!(error = %e, count, "could not record aggregated failures");
                ok = false;
            }
        }
        window.done.send_replace(Some(ok));
    }
}
