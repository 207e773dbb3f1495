//! The durability watermark: how far this replica's log was durable, kept outside sled so that
//! damage to sled's files cannot also erase it.
//!
//! Why: sled recovers a damaged or truncated log file as a shorter, valid-looking database. A
//! replica that then rejoined would vote and acknowledge as if the entries it lost had never
//! existed, and a quorum formed with it could lose acknowledged writes (seen: 33 acknowledged
//! tasks gone after one replica's `db` file was cut in half). At open, a log that ends below the
//! watermark, or a vote below the watermark's term, is damage; a log that ends above it is at
//! most a torn tail (entries that never became durable, so never counted toward a commit).
//!
//! The file holds two 64-byte slots written alternately (a torn write of one leaves the other);
//! each slot is a checksummed `Watermark` record, and the valid one with the higher `seq` counts.
//! Raising the log end: after each group flush, before its appends are acknowledged, the flusher
//! writes the raised slot (a `pwrite` of 64 bytes, no sync); a thread of its own makes it durable
//! at most once per `WATERMARK_RAISE_INTERVAL_MS`, so an acknowledgement never waits for a second
//! `fdatasync` (one after every flush cost 7-9 % of writes at C=1 and 16: docs/benchmarks.md). A
//! killed process's written pages still reach the disk, so after a crash of the process the
//! watermark covers every acknowledged entry; only a power loss can leave it behind by up to that
//! interval, which narrows what it can detect (a loss confined to the last interval of writes
//! reads as a torn tail) and never makes it report damage that is not there: it only ever claims
//! entries a completed flush made durable. Lowering it (a truncated conflicting suffix) and
//! recording a vote are synchronous, before the change they cover can be relied on.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use raftsched_format::Watermark;

pub(crate) const WATERMARK_FILE: &str = "raftsched-watermark";
const SLOT_BYTES: u64 = 64;
/// Least time between two raises of the watermark's log end.
pub(crate) const WATERMARK_RAISE_INTERVAL_MS: u64 = 100;

struct State {
    file: File,
    current: Watermark,
    /// Changes on every lowering: a raise computed before it is stale.
    epoch: u64,
    /// A raise was written but not yet synced (the writer thread syncs it).
    unsynced: bool,
    stopped: bool,
}

/// Shared by the log store (truncate, vote) and the flusher (raise after each flush).
#[derive(Clone)]
pub(crate) struct WatermarkFile {
    state: Arc<(Mutex<State>, Condvar)>,
    /// One past the last log index written to sled (durable once the next flush completes).
    written_end: Arc<AtomicU64>,
    path: PathBuf,
}

/// Reads the watermark in `dir`: `Ok(None)` when there is no file (a new dir, or one written by a
/// build before the watermark existed).
pub(crate) fn read(dir: &Path) -> io::Result<Option<Watermark>> {
    let bytes = match std::fs::read(dir.join(WATERMARK_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let slots = bytes.chunks(SLOT_BYTES as usize).take(2).filter_map(|slot| {
        let len = u32::from_le_bytes(slot.get(8..12)?.try_into().ok()?) as usize;
        raftsched_format::decode_watermark(slot.get(..16 + len)?).ok()
    });
    match slots.max_by_key(|w| w.seq) {
        Some(w) => Ok(Some(w)),
        None => Err(io::Error::new(io::ErrorKind::InvalidData, "neither copy of the watermark is valid")),
    }
}

impl WatermarkFile {
    /// Opens (creating if needed) the watermark file in `dir`, starting from `current`.
    pub(crate) fn open(dir: &Path, current: Watermark) -> io::Result<WatermarkFile> {
        let path = dir.join(WATERMARK_FILE);
        let created = !path.exists();
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let state = State { file, current, epoch: 0, unsynced: false, stopped: false };
        let written_end = Arc::new(AtomicU64::new(current.log_end_durable));
        let wm = WatermarkFile { state: Arc::new((Mutex::new(state), Condvar::new())), written_end, path };
        if created {
            wm.update(|w| *w = current)?;
            File::open(dir)?.sync_all()?;
        }
        let writer = wm.clone();
        std::thread::Builder::new().name("raftsched-watermark".into()).spawn(move || writer.run())?;
        Ok(wm)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock means a panic mid-write; the next open's check still holds.
        self.state.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` and writes the result durably, under the lock.
    fn update(&self, change: impl FnOnce(&mut Watermark)) -> io::Result<()> {
        let mut state = self.lock();
        write_locked(&mut state, change)
    }

    /// After log entries below `end` were written to sled (before their flush is queued).
    pub(crate) fn note_written(&self, end: u64) {
        self.written_end.fetch_max(end, Ordering::Release);
    }

    /// What a flush starting now will cover: its epoch and the log end written so far.
    pub(crate) fn before_flush(&self) -> (u64, u64) {
        let epoch = self.lock().epoch;
        (epoch, self.written_end.load(Ordering::Acquire))
    }

    /// After a flush that covered every entry below `log_end` and started in `epoch`, before its
    /// appends are acknowledged: writes the raised watermark now and has the writer thread sync it
    /// soon (see the module doc).
    pub(crate) fn raise(&self, epoch: u64, log_end: u64) {
        let mut state = self.lock();
        if epoch != state.epoch || log_end <= state.current.log_end_durable {
            return;
        }
        if let Err(e) = write_slot(&mut state, |w| w.log_end_durable = log_end) {
            // The check at the next open then covers less; the log itself is unaffected.
            tracing::error!(error = %e, path = %self.path.display(), "cannot write the durability watermark");
            return;
        }
        state.unsynced = true;
        self.state.1.notify_one();
    }

    /// Before entries from `index` on are removed: they no longer count as durable.
    pub(crate) fn lower(&self, index: u64) -> io::Result<()> {
        let mut state = self.lock();
        state.epoch += 1;
        self.written_end.fetch_min(index, Ordering::AcqRel);
        if state.current.log_end_durable > index {
            write_locked(&mut state, |w| w.log_end_durable = index)?;
        }
        Ok(())
    }

    /// After a vote of `term` is durable.
    pub(crate) fn record_vote(&self, term: u64) -> io::Result<()> {
        let mut state = self.lock();
        if term > state.current.vote_term {
            write_locked(&mut state, |w| w.vote_term = term)?;
        }
        Ok(())
    }

    /// The writer thread: syncs written raises, at most once per `WATERMARK_RAISE_INTERVAL_MS`.
    fn run(self) {
        loop {
            let mut state = self.lock();
            while !state.unsynced && !state.stopped {
                state = self.state.1.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.stopped {
                return;
            }
            state.unsynced = false;
            if let Err(e) = state.file.sync_data() {
                tracing::error!(error = %e, path = %self.path.display(), "cannot sync the durability watermark");
                return;
            }
            drop(state);
            // Raises written meanwhile wait and share one sync.
            std::thread::sleep(std::time::Duration::from_millis(WATERMARK_RAISE_INTERVAL_MS));
        }
    }

    /// Ends the writer thread (when the store is dropped).
    pub(crate) fn stop(&self) {
        self.lock().stopped = true;
        self.state.1.notify_one();
    }
}

/// Writes `change` applied to the current watermark into the next slot, durably.
fn write_locked(state: &mut State, change: impl FnOnce(&mut Watermark)) -> io::Result<()> {
    write_slot(state, change)?;
    state.file.sync_data()?;
    state.unsynced = false;
    Ok(())
}

/// Writes `change` applied to the current watermark into the next slot (not synced).
fn write_slot(state: &mut State, change: impl FnOnce(&mut Watermark)) -> io::Result<()> {
    let mut next = state.current;
    change(&mut next);
    next.seq = state.current.seq + 1;
    let bytes = raftsched_format::encode_watermark(&next).map_err(io::Error::other)?;
    assert!(bytes.len() as u64 <= SLOT_BYTES, "a watermark record fits its slot");
    state.file.write_all_at(&bytes, (next.seq % 2) * SLOT_BYTES)?;
    state.current = next;
    Ok(())
}
