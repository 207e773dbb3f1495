//! Wakes a worker's long poll only when that worker's view changed.
//!
//! A poll waits for its worker's held set, state or registration to change. Waking every poll on
//! every apply made the cost of an apply grow with the fleet: 10,000 polling workers meant 10,000
//! state reads per applied batch. `apply` now notes which workers it touched
//! (`StateMachine::take_touched_workers`) and only their polls wake.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use tokio::sync::watch;

/// One channel per worker id with a poll waiting, created on demand and dropped once nobody waits.
#[derive(Default)]
pub struct WorkerWakeups {
    by_worker: Mutex<HashMap<String, watch::Sender<()>>>,
}

impl WorkerWakeups {
    /// A receiver that sees a change each time `worker_id`'s view changes after this call.
    /// Callers subscribe only for registered workers, so the map stays bounded by the registry
    /// (and is swept when it grows beyond twice that).
    pub fn subscribe(&self, worker_id: &str, registry_len: usize) -> watch::Receiver<()> {
        let mut map = self.by_worker.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 2 * registry_len.max(1) {
            map.retain(|_, tx| tx.receiver_count() > 0);
        }
        map.entry(worker_id.to_string()).or_insert_with(|| watch::channel(()).0).subscribe()
    }

    pub(crate) fn wake(&self, touched: &BTreeSet<String>) {
        if touched.is_empty() {
            return;
        }
        let mut map = self.by_worker.lock().unwrap_or_else(|p| p.into_inner());
        for id in touched {
            let Some(tx) = map.get(id) else { continue };
            if tx.receiver_count() == 0 {
                map.remove(id);
            } else {
                tx.send_replace(());
            }
        }
    }

    /// The whole state changed (a snapshot installed): every poll looks again.
    pub(crate) fn wake_all(&self) {
        let mut map = self.by_worker.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, tx| tx.receiver_count() > 0);
        for tx in map.values() {
            tx.send_replace(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_touched_workers_polls_wake_and_idle_entries_go() {
        let wakeups = WorkerWakeups::default();
        let mut a = wakeups.subscribe("a", 2);
        let b = wakeups.subscribe("b", 2);
        wakeups.wake(&BTreeSet::from(["a".to_string()]));
        assert!(a.has_changed().unwrap());
        assert!(!b.has_changed().unwrap());
        a.borrow_and_update();
        wakeups.wake_all();
        assert!(a.has_changed().unwrap() && b.has_changed().unwrap());
        drop((a, b));
        wakeups.wake(&BTreeSet::from(["a".to_string()]));
        wakeups.wake_all();
        assert!(wakeups.by_worker.lock().unwrap().is_empty());
    }
}
