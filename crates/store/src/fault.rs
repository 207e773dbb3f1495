//! Deliberate bugs for the jepsen-like harness to catch (cargo feature `fault-injection`).
//!
//! Off unless the feature is compiled in *and* a switch is turned on at start: a normal build has
//! no way to turn them on. Each switch names the guarantee it breaks.

use std::sync::atomic::{AtomicBool, Ordering};

static SKIP_FSYNC: AtomicBool = AtomicBool::new(false);

/// Breaks "durability before acknowledgement": log appends are acknowledged to Raft from memory
/// (see [`WriteBehind`]) and votes without a flush. Must be set before the store is opened.
pub fn set_skip_fsync(on: bool) {
    tracing::warn!(on, "fault injection: skip-fsync");
    SKIP_FSYNC.store(on, Ordering::Relaxed);
}

pub(crate) fn skip_fsync() -> bool {
    SKIP_FSYNC.load(Ordering::Relaxed)
}

/// With `skip-fsync`, how long an acknowledged log entry may stay in this process's memory before
/// it is written to sled.
pub const SKIP_FSYNC_WRITE_BEHIND_MS: u64 = 1_000;

/// The `skip-fsync` log: appends are acknowledged from memory and written to sled up to
/// [`SKIP_FSYNC_WRITE_BEHIND_MS`] later, like a write-back cache without a flush. A kill -9 loses
/// what is still in memory, which is what a power loss does to unflushed writes (a kill alone
/// would not: the OS keeps written pages). Reads see the pending entries.
#[derive(Default)]
pub(crate) struct WriteBehind {
    pub(crate) pending: std::sync::Mutex<std::collections::BTreeMap<u64, Vec<u8>>>,
}

impl WriteBehind {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, Vec<u8>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the task that moves pending entries to `log` every interval.
    pub(crate) fn start(log: sled::Tree) -> std::sync::Arc<WriteBehind> {
        let wb = std::sync::Arc::new(WriteBehind::default());
        let weak = std::sync::Arc::downgrade(&wb);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(SKIP_FSYNC_WRITE_BEHIND_MS)).await;
                let Some(wb) = weak.upgrade() else { return };
                let mut pending = wb.lock();
                let mut batch = sled::Batch::default();
                for (index, bytes) in std::mem::take(&mut *pending) {
                    batch.insert(&crate::codec::index_key(index), bytes);
                }
                if let Err(e) = log.apply_batch(batch) {
                    tracing::error!(error = %e, "skip-fsync write-behind failed");
                }
            }
        });
        wb
    }
}
