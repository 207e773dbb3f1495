//! What "on disk" means here, in one place.
//!
//! sled's flush writes its buffers with `sync_file_range` on Linux, which neither flushes the
//! disk's write cache nor persists file metadata, and it writes large values ("blobs", any record
//! over a quarter of a segment) to files of their own that it never syncs (sled 0.34.7,
//! `pagecache/iobuf.rs`, `blob_io.rs`). That survives kill -9 but not a power cut. A sync here is
//! therefore sled's flush followed by:
//! - `fdatasync` of sled's one log file (`db`), which covers its data and its size; and
//! - `syncfs(2)` on the file system holding the database, whenever the `blobs` directory holds a
//!   file the last completed sync did not see (and on the first sync, for the directory entries
//!   sled created): one call that covers every blob file and directory entry.
//!
//! Why not `syncfs` every time: it flushes every dirty page and the journal of the whole file
//! system, including the other replicas' when they share a disk, and under load it took 2-3 times
//! as long as the `fdatasync` (docs/benchmarks.md, session 6).
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::LogId;

use crate::NodeId;

#[derive(Clone)]
pub(crate) struct DiskSync {
    db: sled::Db,
    /// sled's log file (`db`), which holds every record that is not a blob.
    file: Arc<std::fs::File>,
    /// Where sled writes blobs, one file each.
    blobs_dir: PathBuf,
    /// The blob files a completed sync covered; `None` before the first sync. Only names that were
    /// listed before a `syncfs` that then succeeded are ever put here.
    blobs_synced: Arc<Mutex<Option<BTreeSet<OsString>>>>,
    stats: Arc<SyncStats>,
}

/// Most blob file names a sync compares; past it every sync is a full `syncfs` (a store holding
/// this many blobs is far from the log-append path this optimises).
const BLOB_FILES_LISTED_MAX: usize = 4096;

/// Upper bounds of the sync-latency histogram buckets, in microseconds.
pub const SYNC_BUCKETS_US: [u64; 10] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000];

/// How long syncs take: a Prometheus-style histogram, updated by every sync.
#[derive(Default)]
pub struct SyncStats {
    pub count: std::sync::atomic::AtomicU64,
    pub sum_us: std::sync::atomic::AtomicU64,
    /// Cumulative counts per bucket of `SYNC_BUCKETS_US` (a sync is counted in every bucket whose
    /// bound it does not exceed).
    pub buckets: [std::sync::atomic::AtomicU64; 10],
    /// Syncs that also ran `syncfs` (new blob files, or the first sync).
    pub fs_syncs: std::sync::atomic::AtomicU64,
}

impl SyncStats {
    fn record(&self, us: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        for (bound, bucket) in SYNC_BUCKETS_US.iter().zip(&self.buckets) {
            if us <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
    }
}

impl DiskSync {
    pub(crate) fn new(db: sled::Db, sled_dir: &Path) -> io::Result<DiskSync> {
        let file = std::fs::File::open(sled_dir.join("db"))?;
        Ok(DiskSync {
            db,
            file: Arc::new(file),
            blobs_dir: sled_dir.join("blobs"),
            blobs_synced: Arc::default(),
            stats: Arc::default(),
        })
    }

    /// Returns once everything written to sled before the call is durable. Runs the whole sync
    /// ([`DiskSync::sync_blocking`]) on one blocking-pool thread: sled's own `flush_async` would hop
    /// to sled's thread pool first, and each hop between threads cost about 0.1-0.3 ms on a loaded
    /// 2-core machine.
    pub(crate) async fn sync(&self) -> io::Result<()> {
        let disk = self.clone();
        tokio::task::spawn_blocking(move || disk.sync_blocking()).await.map_err(io::Error::other)?
    }

    /// Like [`DiskSync::sync`], on the calling thread (which it blocks for the length of a sled
    /// flush and an `fdatasync`, about 1-3 ms under load): for the group-commit thread.
    pub(crate) fn sync_blocking(&self) -> io::Result<()> {
        let started = std::time::Instant::now();
        self.db.flush().map_err(io::Error::other)?;
        self.file.sync_data()?;
        // Listed after sled's flush: a blob of any record written before this sync was created
        // (sled writes it before the record's pointer) and is in the listing.
        let listed = self.list_blobs();
        let covered = match (&listed, &*lock(&self.blobs_synced)) {
            (Some(now), Some(synced)) => now.is_subset(synced),
            _ => false,
        };
        if !covered {
            sync_file_system(&self.file)?;
            self.stats.fs_syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Names removed since are dropped: the set stays the directory's size.
            *lock(&self.blobs_synced) = listed;
        }
        self.stats.record(started.elapsed().as_micros() as u64);
        Ok(())
    }

    /// The blob files now, or `None` when they cannot be listed (or are too many to compare), which
    /// makes the caller sync the whole file system.
    fn list_blobs(&self) -> Option<BTreeSet<OsString>> {
        let entries = match std::fs::read_dir(&self.blobs_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(BTreeSet::new()),
            Err(_) => return None,
        };
        let mut names = BTreeSet::new();
        for entry in entries {
            names.insert(entry.ok()?.file_name());
            if names.len() > BLOB_FILES_LISTED_MAX {
                return None;
            }
        }
        Some(names)
    }

    pub(crate) fn stats(&self) -> Arc<SyncStats> {
        self.stats.clone()
    }
}

/// How every replica opens sled (and what `bench fsync` measures, `time_log_syncs`).
pub(crate) fn sled_config(sled_dir: &Path) -> sled::Config {
    sled::Config::new().path(sled_dir).mode(sled::Mode::HighThroughput)
}

/// Times `count` log-shaped appends through this store's own sync path, for `bench fsync`: a
/// `record_bytes` record inserted into a sled tree opened as [`crate::open`] opens it, then the
/// sync each group commit runs ([`DiskSync::sync_blocking`]: sled's flush, `fdatasync`). Beside a
/// plain write + `fdatasync` of the same disk it shows what keeping the Raft log in sled costs per
/// sync. Microseconds per append, in order; `dir` must be new or empty (a sled dir is made in it).
pub fn time_log_syncs(dir: &Path, count: usize, record_bytes: usize) -> io::Result<Vec<u64>> {
    let sled_dir = dir.join("sled");
    let db = sled_config(&sled_dir).open().map_err(io::Error::other)?;
    let tree = db.open_tree("log").map_err(io::Error::other)?;
    let disk = DiskSync::new(db, &sled_dir)?;
    disk.sync_blocking()?; // the first sync covers sled's new files: not an append's
    let record = vec![0x5au8; record_bytes];
    let mut latencies_us = Vec::with_capacity(count);
    for index in 0..count as u64 {
        let started = std::time::Instant::now();
        tree.insert(index.to_be_bytes(), record.as_slice()).map_err(io::Error::other)?;
        disk.sync_blocking()?;
        latencies_us.push(started.elapsed().as_micros() as u64);
    }
    Ok(latencies_us)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded set is replaced whole, never left half-updated: a poisoned lock is still sound.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(target_os = "linux")]
fn sync_file_system(file: &std::fs::File) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: syncfs only reads the descriptor, which `file` keeps open for the call.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn sync_file_system(file: &std::fs::File) -> io::Result<()> {
    file.sync_all()
}

/// The log id of the last snapshot known to be on disk, shared by the state machine store (which
/// writes snapshots) and the log store (which must never purge entries a durable snapshot does not
/// cover: openraft asks to purge behind an installed snapshot while the state machine worker may
/// still be saving it).
pub(crate) struct DurableMark {
    /// Held while a snapshot is checked and written, so an older one never overwrites a newer one.
    pub(crate) writing: tokio::sync::Mutex<()>,
    pub(crate) value: tokio::sync::watch::Sender<Option<LogId<NodeId>>>,
}

pub(crate) type DurableSnapshot = Arc<DurableMark>;

pub(crate) fn durable_mark(initial: Option<LogId<NodeId>>) -> DurableSnapshot {
    Arc::new(DurableMark { writing: tokio::sync::Mutex::new(()), value: tokio::sync::watch::Sender::new(initial) })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    fn open_db(dir: &Path) -> (sled::Db, DiskSync) {
        let db = sled::Config::new().path(dir).open().expect("open sled");
        let disk = DiskSync::new(db.clone(), dir).expect("open db file");
        (db, disk)
    }

    #[test]
    fn a_new_blob_file_makes_the_sync_cover_the_whole_file_system() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, disk) = open_db(dir.path());
        disk.sync_blocking().expect("first sync");
        assert_eq!(disk.stats.fs_syncs.load(Relaxed), 1, "the first sync covers sled's directory entries");

        db.insert(b"small", vec![1u8; 512]).expect("insert");
        disk.sync_blocking().expect("sync");
        assert_eq!(disk.stats.fs_syncs.load(Relaxed), 1, "a small record lives in the log file: fdatasync");

        // Over a quarter of sled's default 512 KiB segment: written to a blob file of its own.
        db.insert(b"large", vec![2u8; 300 * 1024]).expect("insert");
        disk.sync_blocking().expect("sync");
        assert!(std::fs::read_dir(dir.path().join("blobs")).expect("blobs dir").count() > 0, "sled wrote a blob");
        assert_eq!(disk.stats.fs_syncs.load(Relaxed), 2, "a new blob file needs syncfs");

        db.insert(b"small", vec![3u8; 512]).expect("insert");
        disk.sync_blocking().expect("sync");
        assert_eq!(disk.stats.fs_syncs.load(Relaxed), 2, "the blob is covered already");
        assert_eq!(disk.stats.count.load(Relaxed), 4);
    }
}
