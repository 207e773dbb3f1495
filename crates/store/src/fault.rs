//! Deliberate bugs for the jepsen-like harness to catch (cargo feature `fault-injection`).
//!
//! Off unless the feature is compiled in *and* a switch is turned on at start: a normal build has
//! no way to turn them on. Each switch names the guarantee it breaks.

use std::sync::atomic::{AtomicBool, Ordering};

static SKIP_FSYNC: AtomicBool = AtomicBool::new(false);

/// Breaks "durability before acknowledgement": log appends and votes are acknowledged to Raft
/// before they are flushed (sled still flushes on its own timer, so only a crash loses them).
pub fn set_skip_fsync(on: bool) {
    tracing::warn!(on, "fault injection: skip-fsync");
    SKIP_FSYNC.store(on, Ordering::Relaxed);
}

pub(crate) fn skip_fsync() -> bool {
    SKIP_FSYNC.load(Ordering::Relaxed)
}
