//! Group commit: one sled flush completes every log append queued while the previous flush ran.
//!
//! Why a thread of its own: openraft's `append` hands us a callback and lets us return before the
//! entries are durable. Appends keep arriving while a flush (an fsync) is in progress; they all wait
//! for the *next* flush, which covers every write made before it started. Throughput therefore
//! grows with load while each acknowledgement still follows a real fsync.
//!
//! The flushes run on one dedicated OS thread rather than a tokio task: a flush blocks (sled's
//! write-out, then `fdatasync`), and doing it in place saves the two thread hand-offs per flush that
//! `flush_async` plus `spawn_blocking` cost (openraft 0.9 waits for every append's flush before
//! it handles anything else, so each hand-off is on the critical path of every write).

use std::io;

use openraft::storage::LogFlushed;
use tokio::sync::{mpsc, watch};

use crate::disk::DiskSync;
use crate::watermark::WatermarkFile;
use crate::TypeConfig;

/// Appends waiting for a flush. Bounded so a stalled disk pushes back on Raft instead of queueing
/// without limit.
const FLUSH_QUEUE_LEN_MAX: usize = 4096;
/// Most callbacks one flush completes (the rest wait for the next); bounds the work per wake-up.
const FLUSH_BATCH_LEN_MAX: usize = 1024;

#[derive(Clone)]
pub(crate) struct Flusher {
    tx: mpsc::Sender<LogFlushed<TypeConfig>>,
    flushes: watch::Receiver<u64>,
}

impl Flusher {
    /// Starts the flush thread; it ends when every `Flusher` handle is dropped.
    /// After each successful flush, before acknowledging it, it raises `watermark` to what the
    /// flush covered.
    pub(crate) fn start(disk: DiskSync, watermark: WatermarkFile) -> io::Result<Flusher> {
        let (tx, rx) = mpsc::channel(FLUSH_QUEUE_LEN_MAX);
        let (flushed, flushes) = watch::channel(0);
        std::thread::Builder::new().name("raftsched-flush".into()).spawn(move || {
            run(disk, &watermark, rx, flushed);
            watermark.stop();
        })?;
        Ok(Flusher { tx, flushes })
    }

    /// How many group flushes have completed (successfully) so far: the leader's proposer paces
    /// its batches on it.
    pub(crate) fn flushes(&self) -> watch::Receiver<u64> {
        self.flushes.clone()
    }

    /// Queues `callback` to be completed after the next flush. The caller must have written the
    /// entries to sled before calling, so that the flush covers them.
    pub(crate) async fn after_next_flush(&self, callback: LogFlushed<TypeConfig>) {
        if let Err(mpsc::error::SendError(callback)) = self.tx.send(callback).await {
            callback.log_io_completed(Err(io::Error::other("log flusher has stopped")));
        }
    }
}

fn run(
    disk: DiskSync,
    watermark: &WatermarkFile,
    mut rx: mpsc::Receiver<LogFlushed<TypeConfig>>,
    flushed: watch::Sender<u64>,
) {
    let mut batch: Vec<LogFlushed<TypeConfig>> = Vec::with_capacity(FLUSH_BATCH_LEN_MAX);
    // Runs until every Flusher handle (the log store and its clones) is dropped.
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < FLUSH_BATCH_LEN_MAX {
            match rx.try_recv() {
                Ok(cb) => batch.push(cb),
                Err(_) => break,
            }
        }
        let covered = watermark.before_flush();
        let result = disk.sync_blocking();
        tracing::trace!(n_appends = batch.len(), "group commit");
        if result.is_ok() {
            // Before the acknowledgements: a crash after one finds the watermark covering it.
            watermark.raise(covered.0, covered.1);
        }
        for callback in batch.drain(..) {
            let r = match &result {
                Ok(_) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), format!("log sync failed: {e}"))),
            };
            callback.log_io_completed(r);
        }
        match result {
            Ok(()) => flushed.send_modify(|n| *n += 1),
            Err(e) => {
                // A failed fsync leaves the disk in an unknown state; openraft stops this replica on
                // the error above, and we stop flushing rather than pretend later flushes are sound.
                tracing::error!(error = %e, "sled flush failed; log flusher stops");
                return;
            }
        }
    }
}
