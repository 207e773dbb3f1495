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
//! Raising the log end happens on a thread of its own after group flushes, at most once per
//! `WATERMARK_RAISE_INTERVAL_MS`, so it never delays an acknowledgement and adds at most a few
//! `fdatasync`s a second (one after every flush cost 7-9 % of writes at C=1 and 16:
//! docs/benchmarks.md). It lags the log by up to that interval, which only narrows what it can
//! detect (a loss confined to the last interval of writes reads as a torn tail), never makes it
//! report damage that is not there. Lowering it (a truncated conflicting
//! suffix) and recording a vote are synchronous, before the change they cover can be relied on.

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
    /// A raise waiting for the writer thread: (epoch, log end).
    wanted: Option<(u64, u64)>,
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
        let state = State { file, current, epoch: 0, wanted: None, stopped: false };
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

    /// After a flush that covered every entry below `log_end` and started in `epoch`: raise the
    /// watermark to it, soon, on the writer thread.
    pub(crate) fn raise_soon(&self, epoch: u64, log_end: u64) {
        let mut state = self.lock();
        if epoch == state.epoch && log_end > state.current.log_end_durable {
            let wanted = state.wanted.map_or(log_end, |(_, w)| w.max(log_end));
            state.wanted = Some((epoch, wanted));
            self.state.1.notify_one();
        }
    }

    /// Before entries from `index` on are removed: they no longer count as durable.
    pub(crate) fn lower(&self, index: u64) -> io::Result<()> {
        let mut state = self.lock();
        state.epoch += 1;
        state.wanted = None;
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

    fn run(self) {
        loop {
            let mut state = self.lock();
            while state.wanted.is_none() && !state.stopped {
                state = self.state.1.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.stopped {
                return;
            }
            let Some((epoch, log_end)) = state.wanted.take() else { continue };
            if epoch != state.epoch || log_end <= state.current.log_end_durable {
                continue;
            }
            if let Err(e) = write_locked(&mut state, |w| w.log_end_durable = log_end) {
                // The check at the next open then covers less; the log itself is unaffected.
                tracing::error!(error = %e, path = %self.path.display(), "cannot write the durability watermark");
                return;
            }
            drop(state);
            // Raises wanted meanwhile wait and merge into one write.
            std::thread::sleep(std::time::Duration::from_millis(WATERMARK_RAISE_INTERVAL_MS));
        }
    }

    /// Ends the writer thread (when the store is dropped).
    pub(crate) fn stop(&self) {
        self.lock().stopped = true;
        self.state.1.notify_one();
    }
}

fn write_locked(state: &mut State, change: impl FnOnce(&mut Watermark)) -> io::Result<()> {
    let mut next = state.current;
    change(&mut next);
    next.seq = state.current.seq + 1;
    let bytes = raftsched_format::encode_watermark(&next).map_err(io::Error::other)?;
    assert!(bytes.len() as u64 <= SLOT_BYTES, "a watermark record fits its slot");
    state.file.write_all_at(&bytes, (next.seq % 2) * SLOT_BYTES)?;
    state.file.sync_data()?;
    state.current = next;
    Ok(())
}
