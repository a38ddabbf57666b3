//! Failure accounting for what anyone can send: failed authentications,
//! throttled attempts, repeated init and unseal calls. Every failure is
//! recorded; none is dropped. The first few from a source network (an
//! IPv4 /24, an IPv6 /64: one attacker holds a whole /64) each get an
//! entry of their own, within an installation-wide budget; past either, the
//! failures are counted into one entry per (network, operation, status) and
//! window, with an exact `count`. Nothing an attacker chooses (the claimed
//! account, the target, the address within its network) splits that
//! entry, so a flood cannot grow the undeletable log by an entry per
//! request.
//!
//! A failure is answered only once the entry that counts it is durable
//! (the window's flush), exactly like an individual one: nothing is
//! acknowledged before it is accounted for, and a flood's requests are held
//! for up to a window, which also slows the flood.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use warden_audit::{Actor, Event, Target};

use crate::throttle::network;
use crate::{Error, Pipeline};

/// Individual entries per source network and minute before aggregation
/// starts.
pub const INDIVIDUAL_PER_MINUTE: u32 = 20;
/// Individual entries per minute from all sources together.
pub const INDIVIDUAL_PER_MINUTE_TOTAL: u32 = 600;
/// How long aggregated failures are collected before their entry is
/// written.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Sources tracked at most (memory stays bounded under a flood of sources;
/// an untracked source's failures are recorded individually).
const MAX_SOURCES: usize = 100_000;

/// What counted failures share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    network: String,
    action: String,
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
#[derive(Default)]
struct Recent {
    per_network: HashMap<String, (Instant, u32)>,
    total: Option<(Instant, u32)>,
}

/// Counts one more in a per-minute counter; whether it is within `limit`.
fn within(counter: &mut (Instant, u32), now: Instant, limit: u32) -> bool {
    if now.duration_since(counter.0) >= Duration::from_secs(60) {
        *counter = (now, 0);
    }
    counter.1 = counter.1.saturating_add(1);
    counter.1 <= limit
}

#[derive(Default)]
pub(crate) struct Failures {
    recent: Mutex<Recent>,
    window: Mutex<Option<Window>>,
}

impl Failures {
    /// Whether the next failure from `network` still gets an entry of its
    /// own.
    fn individual(&self, network: &str) -> bool {
        let Ok(mut recent) = self.recent.lock() else {
            return false;
        };
        let now = Instant::now();
        let total = recent.total.get_or_insert((now, 0));
        if !within(total, now, INDIVIDUAL_PER_MINUTE_TOTAL) {
            return false;
        }
        let map = &mut recent.per_network;
        if map.len() >= MAX_SOURCES && !map.contains_key(network) {
            map.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
            if map.len() >= MAX_SOURCES {
                // Untracked networks are counted, not logged one by one.
                return false;
            }
        }
        let counter = map.entry(network.to_owned()).or_insert((now, 0));
        within(counter, now, INDIVIDUAL_PER_MINUTE)
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
        let network = network(event.actor.source_ip.as_deref().unwrap_or_default());
        if me.individual(&network) {
            return pipeline
                .audit()
                .record(&event, status)
                .await
                .map_err(|_| Error::audit_unavailable());
        }
        let key = Key {
            network,
            action: event.action,
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
                        p.failures().flush(&p).await;
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
    async fn flush(&self, pipeline: &Pipeline) {
        let Some(window) = self.window.lock().ok().and_then(|mut w| w.take()) else {
            return;
        };
        let mut ok = true;
        for (key, count) in window.counts {
            let actor = Actor {
                method: "none",
                principal: "anonymous".to_owned(),
                source_ip: Some(key.network.clone()).filter(|s| !s.is_empty()),
                token_id: None,
                user_agent: None,
            };
            // The attempts' own targets (claimed accounts) are the
            // attacker's choice; the entry names their network.
            let target = Target::named("attempts", key.network, None);
            let event = Event {
                count: Some(count),
                ..pipeline.system_event(actor, &key.action, target)
            };
            if let Err(e) = pipeline.audit().record(&event, key.status).await {
                tracing::error!(error = %e, count, "could not record aggregated failures");
                ok = false;
            }
        }
        window.done.send_replace(Some(ok));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_individual_budget_is_per_network_and_installation_wide() {
        let f = Failures::default();
        for _ in 0..INDIVIDUAL_PER_MINUTE {
            assert!(f.individual("203.0.113.0/24"));
        }
        assert!(!f.individual("203.0.113.0/24"));
        // Many networks together exhaust the installation-wide budget.
        let spent = INDIVIDUAL_PER_MINUTE + 1;
        let mut allowed = 0;
        for i in 0..INDIVIDUAL_PER_MINUTE_TOTAL {
            if f.individual(&format!("10.0.{}.0/24", i % 250)) {
                allowed += 1;
            }
        }
        assert_eq!(allowed + spent, INDIVIDUAL_PER_MINUTE_TOTAL);
        assert!(!f.individual("192.0.2.0/24"));
    }
}
