//! Counted slots: how many of something one key (a session, a principal, a
//! credential) holds at once on this replica, with a cap. A slot is given
//! back when dropped, so a connection that ends however it ends frees its
//! place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Counts per key.
#[derive(Debug, Default, Clone)]
pub(crate) struct Slots(Arc<Mutex<HashMap<String, usize>>>);

/// One held slot.
#[derive(Debug)]
pub(crate) struct Slot {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    key: String,
}

impl Slots {
    /// A slot for `key` if it holds fewer than `max`.
    pub(crate) fn take(&self, key: &str, max: usize) -> Option<Slot> {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(key.to_owned()).or_default();
        if *n >= max {
            if *n == 0 {
                counts.remove(key);
            }
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: Arc::clone(&self.0),
            key: key.to_owned(),
        })
    }

    /// Whether no key holds a slot.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}
