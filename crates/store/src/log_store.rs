//! The Raft log and vote, in sled trees `log` and `meta`.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend, RaftLogReader, Vote};

use raftsched_format::{ActiveVersion, FormatError};

use crate::codec::{format_err, index_key, io_err};
use crate::disk::{DiskSync, DurableSnapshot};
use crate::flusher::Flusher;
use crate::watermark::WatermarkFile;
use crate::{NodeId, StorageError, TypeConfig};

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const LAST_PURGED_KEY: &[u8] = b"last_purged";
/// How long a purge waits for the snapshot that covers it to reach the disk.
const PURGE_WAIT_FOR_SNAPSHOT: std::time::Duration = std::time::Duration::from_secs(120);

// No cap on entries per read: openraft bounds replication reads itself (max_payload_entries),
// and its apply path requires every entry of the range it asks for.

/// Cheap to clone: sled trees are reference-counted handles.
#[derive(Clone)]
pub struct LogStore {
    disk: DiskSync,
    meta: sled::Tree,
    log: sled::Tree,
    flusher: Flusher,
    durable_snapshot: DurableSnapshot,
    /// The format records are written in now (the cluster version).
    active: ActiveVersion,
    watermark: WatermarkFile,
    /// The latest commit index openraft reported (`save_committed`), for metrics.
    committed_index: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Only with the `skip-fsync` fault: acknowledged entries not yet written to sled.
    #[cfg(feature = "fault-injection")]
    write_behind: Option<std::sync::Arc<crate::fault::WriteBehind>>,
}

impl LogStore {
    /// The log in `log` (and the vote and commit index in `meta`) beside `sm`, whose snapshots a
    /// purge waits for and whose cluster version records are written in; starts the flusher
    /// thread.
    pub(crate) fn open(
        disk: DiskSync,
        meta: sled::Tree,
        log: sled::Tree,
        watermark: WatermarkFile,
        sm: &crate::SmStore,
    ) -> std::io::Result<LogStore> {
        let flusher = Flusher::start(disk.clone(), watermark.clone())?;
        #[cfg(feature = "fault-injection")]
        let write_behind = crate::fault::skip_fsync().then(|| crate::fault::WriteBehind::start(log.clone()));
        Ok(LogStore {
            disk,
            meta,
            log,
            flusher,
            durable_snapshot: sm.durable_snapshot(),
            active: sm.active_version(),
            watermark,
            committed_index: Default::default(),
            #[cfg(feature = "fault-injection")]
            write_behind,
        })
    }

    fn get_meta<T>(
        &self,
        key: &[u8],
        subject: ErrorSubject<NodeId>,
        decode: fn(&[u8]) -> Result<T, FormatError>,
    ) -> Result<Option<T>, StorageError> {
        match self.meta.get(key) {
            Ok(Some(bytes)) => Ok(Some(decode(&bytes).map_err(format_err(subject, ErrorVerb::Read))?)),
            Ok(None) => Ok(None),
            Err(e) => Err(io_err(subject, ErrorVerb::Read, e)),
        }
    }

    fn put_meta(
        &self,
        key: &[u8],
        encoded: Result<Vec<u8>, FormatError>,
        subject: ErrorSubject<NodeId>,
    ) -> Result<(), StorageError> {
        let bytes = encoded.map_err(format_err(subject.clone(), ErrorVerb::Write))?;
        self.meta.insert(key, bytes).map_err(|e| io_err(subject, ErrorVerb::Write, e))?;
        Ok(())
    }

    fn last_purged(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        self.get_meta(LAST_PURGED_KEY, ErrorSubject::Logs, raftsched_format::decode_purged)
    }

    /// The number of completed log flushes, as it grows.
    pub fn flushes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.flusher.flushes()
    }

    /// The commit index openraft last reported, shared (for metrics).
    pub fn committed_index(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.committed_index.clone()
    }

    /// Flushes everything written so far.
    pub async fn flush(&self) -> Result<(), StorageError> {
        self.disk.sync().await.map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        Ok(())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        #[cfg(feature = "fault-injection")]
        if let Some(wb) = &self.write_behind {
            if let Some((_, bytes)) = wb.lock().iter().next_back() {
                return Ok(Some(decode_entry(bytes)?.log_id));
            }
        }
        match self.log.last() {
            Ok(Some((_, bytes))) => Ok(Some(decode_entry(&bytes)?.log_id)),
            Ok(None) => Ok(None),
            Err(e) => Err(io_err(ErrorSubject::Logs, ErrorVerb::Read, e)),
        }
    }
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry<TypeConfig>, StorageError> {
    raftsched_format::decode_entry(bytes).map_err(format_err(ErrorSubject::Logs, ErrorVerb::Read))
}

fn encode_entry(entry: &Entry<TypeConfig>, version: raftsched_format::Version) -> Result<Vec<u8>, StorageError> {
    raftsched_format::encode_entry(entry, version)
        .map_err(format_err(ErrorSubject::Log(entry.log_id), ErrorVerb::Write))
}

fn to_sled_range<RB: RangeBounds<u64>>(range: &RB) -> (Bound<[u8; 8]>, Bound<[u8; 8]>) {
    let start = match range.start_bound() {
        Bound::Included(i) => Bound::Included(index_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    };
    let end = match range.end_bound() {
        Bound::Included(i) => Bound::Included(index_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let mut entries = Vec::new();
        for item in self.log.range(to_sled_range(&range)) {
            let (_, bytes) = item.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            entries.push(decode_entry(&bytes)?);
        }
        #[cfg(feature = "fault-injection")]
        if let Some(wb) = &self.write_behind {
            let pending = wb.lock();
            let mut merged: std::collections::BTreeMap<u64, Entry<TypeConfig>> =
                entries.into_iter().map(|e| (e.log_id.index, e)).collect();
            for (_, bytes) in pending.range(range) {
                let entry = decode_entry(bytes)?;
                merged.insert(entry.log_id.index, entry);
            }
            return Ok(merged.into_values().collect());
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged = self.last_purged()?;
        let last = self.last_entry_log_id()?.or(last_purged);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Durable before it returns: a vote that is forgotten after a crash could let this replica
    /// vote twice in one term.
    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(VOTE_KEY, raftsched_format::encode_vote(vote, self.active.get()), ErrorSubject::Vote)?;
        #[cfg(feature = "fault-injection")]
        if crate::fault::skip_fsync() {
            return Ok(());
        }
        self.disk.sync().await.map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        let term = vote.leader_id().term;
        let watermark = self.watermark.clone();
        let recorded = tokio::task::spawn_blocking(move || watermark.record_vote(term)).await;
        recorded
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(VOTE_KEY, ErrorSubject::Vote, raftsched_format::decode_vote)
    }

    /// Not flushed on its own: the committed index is a hint that lets a restarted replica apply
    /// its log before hearing from a leader; losing the latest value only delays that.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError> {
        if let Some(c) = committed {
            self.committed_index.fetch_max(c.index, std::sync::atomic::Ordering::Relaxed);
        }
        // With entries that may vanish, a saved hint could point past the log after a crash.
        #[cfg(feature = "fault-injection")]
        if self.write_behind.is_some() {
            return Ok(());
        }
        self.put_meta(
            COMMITTED_KEY,
            raftsched_format::encode_committed(&committed, self.active.get()),
            ErrorSubject::Store,
        )
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.get_meta(COMMITTED_KEY, ErrorSubject::Store, raftsched_format::decode_committed)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        #[cfg(feature = "fault-injection")]
        if let Some(wb) = &self.write_behind {
            let mut pending = wb.lock();
            for entry in entries {
                pending.insert(entry.log_id.index, encode_entry(&entry, self.active.get())?);
            }
            drop(pending);
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let mut end = None;
        let version = self.active.get();
        for entry in entries {
            batch.insert(&index_key(entry.log_id.index), encode_entry(&entry, version)?);
            end = Some(entry.log_id.index + 1);
        }
        debug_assert!(end.is_some());
        self.log.apply_batch(batch).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        if let Some(end) = end {
            self.watermark.note_written(end);
        }
        // Acknowledged to Raft only after the flusher's next fsync, which covers this write.
        self.flusher.after_next_flush(callback).await;
        Ok(())
    }

    /// Removes entries at `log_id.index` and after (a conflicting suffix from an old leader).
    /// Not flushed: if the removal is lost in a crash, the suffix comes back as the uncommitted
    /// entries it was, and the next leader truncates it again.
    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        #[cfg(feature = "fault-injection")]
        if let Some(wb) = &self.write_behind {
            wb.lock().split_off(&log_id.index);
        }
        // Durably first: after a crash, a log ending below the old watermark would read as damage.
        let watermark = self.watermark.clone();
        let index = log_id.index;
        let lowered = tokio::task::spawn_blocking(move || watermark.lower(index)).await;
        lowered
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(log_id.index)..) {
            let (key, _) = item.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        Ok(())
    }

    /// Removes entries up to and including `log_id` (already covered by a durable snapshot).
    /// `last_purged` is written first so the log state never claims entries that are gone.
    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        // Never purge past the last snapshot that is on disk: a crash would leave a gap between
        // the snapshot and the log that no restart can fill. openraft asks to purge behind an
        // installed snapshot while the state machine worker is still saving it, so wait for that.
        let mut durable = self.durable_snapshot.value.subscribe();
        let waited = tokio::time::timeout(
            PURGE_WAIT_FOR_SNAPSHOT,
            durable.wait_for(|d| d.is_some_and(|d| d.index >= log_id.index)),
        )
        .await;
        if !matches!(waited, Ok(Ok(_))) {
            let why = format!("no durable snapshot covers {log_id} after {PURGE_WAIT_FOR_SNAPSHOT:?}");
            return Err(io_err(ErrorSubject::Logs, ErrorVerb::Delete, std::io::Error::other(why)));
        }
        if self.last_purged()?.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        self.put_meta(
            LAST_PURGED_KEY,
            raftsched_format::encode_purged(&log_id, self.active.get()),
            ErrorSubject::Logs,
        )?;
        #[cfg(feature = "fault-injection")]
        if let Some(wb) = &self.write_behind {
            let mut pending = wb.lock();
            *pending = pending.split_off(&(log_id.index + 1));
        }
        // The removal runs on a thread of its own: openraft awaits `purge` in its core loop, and
        // removing ten thousand entries there (the default snapshot interval) held up heartbeats
        // past the election timeout right after every snapshot, on a loaded trio. `last_purged`,
        // written above, already tells every reader (and a restart: `verify.rs`) where the log
        // begins; entries below it that a crash leaves behind are removed at the next purge.
        let first = match self.log.first().map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))? {
            Some((key, _)) => crate::codec::key_index(&key).unwrap_or(0),
            None => return Ok(()),
        };
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || remove_entries(&log, first, log_id.index));
        Ok(())
    }
}

/// Removes the entries `first..=last` from `log`, by key (never reading their values), in batches.
fn remove_entries(log: &sled::Tree, first: u64, last: u64) {
    const BATCH_ENTRIES: u64 = 1_024;
    let mut from = first;
    while from <= last {
        let to = last.min(from.saturating_add(BATCH_ENTRIES - 1));
        let mut batch = sled::Batch::default();
        (from..=to).for_each(|i| batch.remove(&index_key(i)));
        if let Err(e) = log.apply_batch(batch) {
            tracing::warn!(error = %e, first = from, last, "cannot remove purged log entries (retried at the next purge)");
            return;
        }
        from = to.saturating_add(1);
        if to == u64::MAX {
            return;
        }
    }
}
