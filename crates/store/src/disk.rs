//! What "on disk" means here, in one place.
//!
//! sled's flush writes its buffers with `sync_file_range` on Linux, which neither flushes the
//! disk's write cache nor persists file metadata, and it writes large values ("blobs") to files it
//! never syncs (sled 0.34.7, `pagecache/iobuf.rs`, `blob_io.rs`). That survives kill -9 but not
//! a power cut. `DiskSync::sync` therefore follows sled's flush with `syncfs(2)` on the file system
//! holding the database: one call that covers the log file, any blob files and directory entries.

use std::io;
use std::path::Path;
use std::sync::Arc;

use openraft::LogId;

use crate::NodeId;

#[derive(Clone)]
pub(crate) struct DiskSync {
    db: sled::Db,
    /// Any file on the database's file system (the database file itself).
    anchor: Arc<std::fs::File>,
    stats: Arc<SyncStats>,
}

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
        let anchor = std::fs::File::open(sled_dir.join("db")).or_else(|_| std::fs::File::open(sled_dir))?;
        Ok(DiskSync { db, anchor: Arc::new(anchor), stats: Arc::default() })
    }

    /// Returns once everything written to sled before the call is durable. Runs both steps on one
    /// blocking-pool thread: sled's own `flush_async` would hop to sled's thread pool first, and
    /// each hop between threads cost about 0.1-0.3 ms on a loaded 2-core machine.
    pub(crate) async fn sync(&self) -> io::Result<()> {
        let disk = self.clone();
        tokio::task::spawn_blocking(move || disk.sync_blocking()).await.map_err(io::Error::other)?
    }

    /// Like [`DiskSync::sync`], on the calling thread (which it blocks for the length of a sled
    /// flush and a `syncfs`, about 1-3 ms under load): for the group-commit thread.
    pub(crate) fn sync_blocking(&self) -> io::Result<()> {
        let started = std::time::Instant::now();
        self.db.flush().map_err(io::Error::other)?;
        sync_file_system(&self.anchor)?;
        self.stats.record(started.elapsed().as_micros() as u64);
        Ok(())
    }

    pub(crate) fn stats(&self) -> Arc<SyncStats> {
        self.stats.clone()
    }
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
