//! Failure throttles for what anyone can try without a credential: logins,
//! TOTP codes, unseal attempts, service-account token exchanges. Each key
//! (an account, a source address)
//! gets a few free failures; after that every failure locks the key for a
//! doubling time, up to a cap, and attempts while locked are refused before
//! any expensive work (a password hash, a key derivation) is done. A
//! success clears the key; failures older than the window are forgotten.
//!
//! State is per process (per replica): an attacker spreading attempts over
//! replicas gets each replica's allowance, which SECURITY.md states.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a throttle counts.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures that lead to the first lock (the attempts allowed before
    /// one must wait).
    pub free: u32,
    /// The first lock; each further failure doubles it.
    pub base: Duration,
    /// The longest lock.
    pub max: Duration,
    /// Failures older than this (since the last one) are forgotten.
    pub window: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Keys tracked at most; past this, entries whose window has passed are
/// dropped, then the oldest (memory stays bounded under a flood of keys).
const MAX_KEYS: usize = 100_000;

/// A failure throttle over string keys.
#[derive(Debug)]
pub struct Throttle {
    policy: Policy,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Throttle {
    /// A throttle with `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` while `key` is locked.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let Ok(entries) = self.entries.lock() else {
            return Ok(());
        };
        match entries.get(key).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failure for `key`; returns the lock it now carries, if any.
    pub fn failure(&self, key: &str) -> Option<Duration> {
        self.failure_at(key, Instant::now())
    }

    fn failure_at(&self, key: &str, now: Instant) -> Option<Duration> {
        let p = self.policy;
        let Ok(mut entries) = self.entries.lock() else {
            return None;
        };
        if entries.len() >= MAX_KEYS && !entries.contains_key(key) {
            entries.retain(|_, e| now.duration_since(e.last) < p.window);
            if entries.len() >= MAX_KEYS
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        let e = entries.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            last: now,
            locked_until: None,
        });
        if now.duration_since(e.last) >= p.window {
            e.failures = 0;
            e.locked_until = None;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        if e.failures < p.free {
            return None;
        }
        let doublings = (e.failures - p.free).min(20);
        let lock = p.base.saturating_mul(1 << doublings).min(p.max);
        e.locked_until = Some(now + lock);
        Some(lock)
    }

    /// Clears `key` after a success.
    pub fn success(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }
}

/// The network a source address is throttled and accounted by: its /24
/// (IPv4) or /64 (IPv6), since one attacker easily holds many addresses of
/// one network; anything else is taken as it is.
pub fn network(source: &str) -> String {
    match source.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => {
            let [a, b, c, _] = a.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        Ok(std::net::IpAddr::V6(a)) => {
            let s = a.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
        Err(_) => source.to_owned(),
    }
}

/// Seconds to put in `Retry-After` (at least 1).
pub fn retry_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0)))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// The throttles of a pipeline, one per thing an attacker can guess.
#[derive(Debug)]
pub struct Throttles {
    /// Failed logins per account and source network (password or TOTP):
    /// guessing from one network locks that network out of the account,
    /// not the account's owner elsewhere.
    pub login_account: Throttle,
    /// Failed logins per account from all networks: a higher allowance
    /// and short locks, against guessing spread over many networks.
    pub login_account_total: Throttle,
    /// Failed logins per source network.
    pub login_source: Throttle,
    /// Wrong TOTP codes per account (login, enrolment, SSH second factor):
    /// a six-digit code must not fall to guessing.
    pub totp_account: Throttle,
    /// Failed unseal attempts per source network.
    pub unseal_source: Throttle,
    /// Kubernetes service-account tokens that did not verify, per source
    /// network. Only those: a token that verifies is never held back by
    /// its network, so garbage sent by one pod cannot lock out the other
    /// pods of its node. Locks are short (at most a minute).
    pub exchange_source: Throttle,
    /// Refused exchanges of tokens that did verify, per service account
    /// (an unbound account, a service placed elsewhere).
    pub exchange_account: Throttle,
    /// Every exchange for one pod, successful or not: a pod's wrapper
    /// exchanges at start and when its watch reconnects, so many in a row
    /// mean a pod minting itself credentials (to hold more watches, to
    /// fill the audit log; review 13, F5).
    pub exchange_pod: Throttle,
    /// Password checks in progress, per account and per source network.
    pub password_checks: InFlight,
}

impl Default for Throttles {
    fn default() -> Self {
        let minute = Duration::from_secs(60);
        Self {
            login_account: Throttle::new(Policy {
                free: 5,
                base: Duration::from_secs(1),
                max: 15 * minute,
                window: 15 * minute,
            }),
            login_account_total: Throttle::new(Policy {
                free: 50,
                base: Duration::from_secs(1),
                max: minute,
                window: 15 * minute,
            }),
            login_source: Throttle::new(Policy {
                free: 20,
                base: Duration::from_secs(1),
                max: 15 * minute,
                window: 15 * minute,
            }),
            totp_account: Throttle::new(Policy {
                free: 3,
                base: Duration::from_secs(30),
                max: 60 * minute,
                window: 60 * minute,
            }),
            unseal_source: Throttle::new(Policy {
                free: 5,
                base: Duration::from_secs(1),
                max: 5 * minute,
                window: 15 * minute,
            }),
            exchange_source: Throttle::new(Policy {
                free: 30,
                base: Duration::from_secs(1),
                max: minute,
                window: 15 * minute,
            }),
            exchange_account: Throttle::new(Policy {
                free: 30,
                base: Duration::from_secs(1),
                max: minute,
                window: 15 * minute,
            }),
            exchange_pod: Throttle::new(Policy {
                free: 20,
                base: Duration::from_secs(1),
                max: minute,
                window: 15 * minute,
            }),
            password_checks: InFlight::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(Policy {
            free: 2,
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn locks_double_after_the_free_failures_and_cap() {
        let t = throttle();
        let t0 = Instant::now();
        assert_eq!(t.failure_at("a", t0), None);
        assert!(t.check_at("a", t0).is_ok());
        let locks: Vec<_> = (0..6).map(|_| t.failure_at("a", t0)).collect();
        assert_eq!(
            locks,
            [1, 2, 4, 8, 8, 8].map(|s| Some(Duration::from_secs(s)))
        );
        assert_eq!(t.check_at("a", t0), Err(Duration::from_secs(8)));
        assert!(t.check_at("a", t0 + Duration::from_secs(8)).is_ok());
        // Another key is unaffected.
        assert!(t.check_at("b", t0).is_ok());
    }

    #[test]
    fn success_and_the_window_forget_failures() {
        let t = throttle();
        let t0 = Instant::now();
        for _ in 0..2 {
            t.failure_at("a", t0);
        }
        assert!(t.check_at("a", t0).is_err());
        t.success("a");
        assert!(t.check_at("a", t0).is_ok());
        t.failure_at("a", t0);
        // A minute later the count starts over: one failure is free again.
        assert_eq!(t.failure_at("a", t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_keys() {
        let t = throttle();
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 10) {
            t.failure_at(&format!("k{i}"), t0);
        }
        assert!(t.entries.lock().unwrap().len() <= MAX_KEYS);
    }

    #[test]
    fn addresses_are_throttled_by_network() {
        assert_eq!(network("203.0.113.7"), "203.0.113.0/24");
        assert_eq!(network("203.0.113.200"), "203.0.113.0/24");
        assert_eq!(network("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(network("2001:db8:1:2:ffff::9"), "2001:db8:1:2::/64");
        assert_eq!(network(""), "");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_secs(Duration::from_secs(3)), 3);
    }
}

/// Work in progress per key, each key with its own cap: one password
/// check at a time per account (concurrent guesses gain nothing) and a few
/// per source network, so a flood cannot fill the queue everyone shares.
#[derive(Debug, Default)]
pub struct InFlight(Mutex<HashMap<String, u32>>);

/// A claim on [`InFlight`]; released when dropped.
#[derive(Debug)]
pub struct Turn<'a> {
    map: &'a InFlight,
    keys: Vec<String>,
}

impl InFlight {
    /// Claims one unit of every `(key, cap)`, or nothing (`None`) when any
    /// key is at its cap.
    pub fn claim(&self, keys: &[(String, u32)]) -> Option<Turn<'_>> {
        let mut map = self.0.lock().ok()?;
        if keys
            .iter()
            .any(|(k, cap)| map.get(k).copied().unwrap_or(0) >= *cap)
        {
            return None;
        }
        for (k, _) in keys {
            *map.entry(k.clone()).or_insert(0) += 1;
        }
        Some(Turn {
            map: self,
            keys: keys.iter().map(|(k, _)| k.clone()).collect(),
        })
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.map.0.lock() {
            for k in &self.keys {
                if let Some(n) = map.get_mut(k) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        map.remove(k);
                    }
                }
            }
        }
    }
}

/// A bounded queue for expensive work (password hashing, key derivation):
/// `slots` run at once, at most `waiting` more wait, and the rest are
/// refused at once instead of queuing without limit.
#[derive(Debug)]
pub struct WorkQueue {
    slots: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    max_waiting: usize,
}

/// The queue is full; try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl WorkQueue {
    /// `slots` concurrent, `max_waiting` queued.
    pub const fn new(slots: usize, max_waiting: usize) -> Self {
        Self {
            slots: tokio::sync::Semaphore::const_new(slots),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// Waits for a slot, or refuses when too many are waiting already.
    pub async fn enter(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Busy> {
        use std::sync::atomic::Ordering;
        if let Ok(permit) = self.slots.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy);
        }
        let permit = self.slots.acquire().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.map_err(|_| Busy)
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    #[test]
    fn claims_respect_each_keys_cap_and_end_when_dropped() {
        let f = InFlight::default();
        let a = f.claim(&[("acct".into(), 1), ("net".into(), 2)]).unwrap();
        assert!(f.claim(&[("acct".into(), 1), ("net".into(), 2)]).is_none());
        let b = f.claim(&[("other".into(), 1), ("net".into(), 2)]).unwrap();
        assert!(f.claim(&[("third".into(), 1), ("net".into(), 2)]).is_none());
        drop(a);
        assert!(f.claim(&[("acct".into(), 1), ("net".into(), 2)]).is_some());
        drop(b);
        assert!(f.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_instead_of_waiting() {
        let q = std::sync::Arc::new(WorkQueue::new(1, 1));
        let held = q.enter().await.unwrap();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.enter().await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(q.enter().await.err(), Some(Busy));
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }
}
