//! The state machine's home: the deterministic `StateMachine` in memory, its snapshots on disk
//! (the meta in sled, the body in a file of its own: `body_files.rs` says why).
//!
//! Why in memory: the log is the durable record of every command; the state is rebuilt from the
//! last snapshot plus the log after a restart, so `apply` never waits for the disk. Snapshots are
//! made durable before openraft is told they exist, because openraft purges the log behind them.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StoredMembership,
};
use raftsched_state::{Response, StateMachine};
use tokio::sync::watch;

use raftsched_format::ActiveVersion;

use crate::body_files::BodyFiles;
use crate::codec::{format_err, io_err};
use crate::disk::{durable_mark, DiskSync, DurableSnapshot};
use crate::verify::{record_err, Refusal};
use crate::wakeups::WorkerWakeups;
use crate::{NodeId, StorageError, TypeConfig};

const SNAPSHOT_META_KEY: &[u8] = b"meta";
/// The body, in data dirs from before body files (and the moved-body marker after them).
const SNAPSHOT_DATA_KEY: &[u8] = b"data";
/// The record naming the body's file (`raftsched_format::SnapshotFile`).
const SNAPSHOT_FILE_KEY: &[u8] = b"file";
/// Distinguishes snapshots built at the same log id (ids only need to be unique per process).
static N_SNAPSHOTS_BUILT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Default)]
struct Inner {
    sm: StateMachine,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

/// A read handle on the applied state, for the server's queries.
#[derive(Clone)]
pub struct SmHandle {
    inner: Arc<RwLock<Inner>>,
    applied: Arc<watch::Sender<u64>>,
    wakeups: Arc<WorkerWakeups>,
}

impl SmHandle {
    /// Runs `f` on the applied state. `f` must be short: apply waits while it runs.
    pub fn read<R>(&self, f: impl FnOnce(&StateMachine) -> R) -> R {
        f(&read_lock(&self.inner).sm)
    }

    pub fn last_applied_index(&self) -> u64 {
        read_lock(&self.inner).last_applied.map_or(0, |l| l.index)
    }

    /// The last applied index, `None` before the first entry.
    pub fn last_applied_index_opt(&self) -> Option<u64> {
        read_lock(&self.inner).last_applied.map(|l| l.index)
    }

    /// Changes whenever entries are applied or a snapshot is installed: long polls wait on it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// A receiver that sees a change whenever `worker_id`'s held set, state or registration
    /// changes (and when a snapshot replaces the state); for that worker's long poll.
    pub fn watch_worker(&self, worker_id: &str) -> watch::Receiver<()> {
        let n_workers = self.read(|sm| sm.worker_count());
        self.wakeups.subscribe(worker_id, n_workers)
    }
}

// A poisoned lock means a panic while the state was changing; a half-applied state must not be
// served, and the assertion that panicked already decided that this replica stops.
fn read_lock(inner: &RwLock<Inner>) -> RwLockReadGuard<'_, Inner> {
    inner.read().expect("state machine lock poisoned by an earlier panic")
}

fn write_lock(inner: &RwLock<Inner>) -> RwLockWriteGuard<'_, Inner> {
    inner.write().expect("state machine lock poisoned by an earlier panic")
}

/// The write lock, taken without queueing for it while a snapshot copies the state under a read
/// lock (a second or more for a big state): a writer waiting in the lock would make every new
/// reader wait behind it too (std's `RwLock` prefers writers), and readers run on the runtime
/// threads: queries, the leader loop, health. On two cores that stalled a replica's Raft RPCs past
/// the election timeout, on the leader and the followers alike. So while `copying` the writer polls
/// (off the runtime) and readers are never held up by it; otherwise it queues as usual, so a
/// steady stream of short reads cannot starve it.
fn write_lock_without_queueing<'a>(inner: &'a RwLock<Inner>, copying: &AtomicBool) -> RwLockWriteGuard<'a, Inner> {
    loop {
        if !copying.load(Ordering::Acquire) {
            return write_lock(inner);
        }
        match inner.try_write() {
            Ok(guard) => return guard,
            Err(std::sync::TryLockError::WouldBlock) => std::thread::sleep(std::time::Duration::from_millis(1)),
            Err(std::sync::TryLockError::Poisoned(_)) => panic!("state machine lock poisoned by an earlier panic"),
        }
    }
}

pub struct SmStore {
    inner: Arc<RwLock<Inner>>,
    applied: Arc<watch::Sender<u64>>,
    disk: DiskSync,
    snap: sled::Tree,
    files: Arc<BodyFiles>,
    durable: DurableSnapshot,
    /// The format written now; raised when the applied cluster version rises.
    active: ActiveVersion,
    /// Set while a snapshot copies the state (`write_lock_without_queueing`).
    copying: Arc<AtomicBool>,
    wakeups: Arc<WorkerWakeups>,
}

/// A snapshot body as stored.
struct StoredBody {
    data: Vec<u8>,
    /// The name of its file; `None` for a body from before body files, held in the database.
    file: Option<String>,
}

/// The body of the snapshot `snap` names, if there is one.
fn read_body(snap: &sled::Tree, files: &BodyFiles) -> Result<Option<StoredBody>, Refusal> {
    let read = |key| snap.get(key).map_err(|e| Refusal::Damage(format!("cannot read the snapshot: {e}")));
    if let Some(record) = read(SNAPSHOT_FILE_KEY)? {
        let record =
            raftsched_format::decode_snapshot_file(&record).map_err(record_err("snapshot file record".into()))?;
        return Ok(Some(StoredBody { data: files.read(&record)?, file: Some(record.name) }));
    }
    match read(SNAPSHOT_DATA_KEY)? {
        Some(data) if data == raftsched_format::snapshot_body_moved() => {
            Err(Refusal::Damage("the record naming the snapshot body's file is missing".into()))
        }
        Some(data) => Ok(Some(StoredBody { data: data.to_vec(), file: None })),
        None => Ok(None),
    }
}

fn decode_meta(bytes: &[u8]) -> Result<SnapshotMeta<NodeId, BasicNode>, StorageError> {
    raftsched_format::decode_snapshot_meta(bytes).map_err(format_err(ErrorSubject::Snapshot(None), ErrorVerb::Read))
}

impl SmStore {
    /// Loads the last durable snapshot, if any, checking the state's invariants: a snapshot that
    /// decodes but is inconsistent is reported as damage, not served.
    /// A refusal says whether the snapshot is damaged or written by a newer build.
    pub(crate) fn load(disk: DiskSync, snap: sled::Tree, files: BodyFiles) -> Result<SmStore, Refusal> {
        let active = ActiveVersion::default();
        let mut inner = Inner::default();
        let meta =
            snap.get(SNAPSHOT_META_KEY).map_err(|e| Refusal::Damage(format!("cannot read the snapshot: {e}")))?;
        let body = read_body(&snap, &files)?;
        // Body files no record names are removed only once a body was found (in a file or in the
        // database): a dir whose snapshot records are gone keeps them, for whoever inspects it.
        if let Some(body) = &body {
            files
                .remove_all_but(body.file.as_deref())
                .map_err(|e| Refusal::Damage(format!("cannot remove unused snapshot files: {e}")))?;
        }
        if let (Some(meta), Some(StoredBody { data, .. })) = (meta, body) {
            let meta = raftsched_format::decode_snapshot_meta(&meta).map_err(record_err("snapshot meta".into()))?;
            let sm = check_state(&data, &meta)?;
            active.raise(sm.cluster_version());
            inner.sm = sm;
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership;
        }
        let applied = Arc::new(watch::Sender::new(inner.last_applied.map_or(0, |l| l.index)));
        let durable = durable_mark(inner.last_applied);
        let files = Arc::new(files);
        let (inner, copying) = (Arc::new(RwLock::new(inner)), Arc::default());
        let wakeups = Arc::default();
        Ok(SmStore { inner, applied, disk, snap, files, durable, active, copying, wakeups })
    }

    /// Shared with the log store, which must not purge past it.
    pub(crate) fn durable_snapshot(&self) -> DurableSnapshot {
        self.durable.clone()
    }

    /// The format this replica writes and sends now, shared with the log store and the network.
    pub fn active_version(&self) -> ActiveVersion {
        self.active.clone()
    }

    /// The state, last applied log id and membership as loaded (for offline recovery).
    pub(crate) fn current(&self) -> (StateMachine, Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>) {
        let inner = read_lock(&self.inner);
        (inner.sm.clone(), inner.last_applied, inner.membership.clone())
    }

    /// Replaces the state with `sm` as of `meta`, durably (for offline recovery).
    pub(crate) async fn replace(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        sm: StateMachine,
    ) -> Result<(), StorageError> {
        let data = encode_state(&sm, &self.active)?;
        decode_state(&data, meta)?;
        // Recovery rewrites the membership even at the same log id: forget the durable mark.
        self.durable.value.send_replace(None);
        self.save_snapshot(meta, data, write_version(&sm, &self.active)).await?;
        let mut inner = write_lock(&self.inner);
        inner.sm = sm;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        Ok(())
    }

    fn clone_handles(&self) -> SmStore {
        SmStore {
            inner: self.inner.clone(),
            applied: self.applied.clone(),
            disk: self.disk.clone(),
            snap: self.snap.clone(),
            files: self.files.clone(),
            durable: self.durable.clone(),
            active: self.active.clone(),
            copying: self.copying.clone(),
            wakeups: self.wakeups.clone(),
        }
    }

    pub fn handle(&self) -> SmHandle {
        SmHandle { inner: self.inner.clone(), applied: self.applied.clone(), wakeups: self.wakeups.clone() }
    }

    /// Writes the snapshot (a body in format `version`) durably unless one at least as new is
    /// already on disk (a snapshot built concurrently with an install must not overwrite the newer
    /// installed one), and gives the body back.
    async fn save_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        data: Vec<u8>,
        version: raftsched_format::Version,
    ) -> Result<Vec<u8>, StorageError> {
        let _writing = self.durable.writing.lock().await;
        let durable = *self.durable.value.borrow();
        if durable.is_some() && durable >= meta.last_log_id {
            tracing::debug!(snapshot = %meta, "a snapshot at least as new is already on disk");
            return Ok(data);
        }
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let encode_err = || format_err(subject.clone(), ErrorVerb::Write);
        let mut batch = sled::Batch::default();
        batch.insert(
            SNAPSHOT_META_KEY,
            raftsched_format::encode_snapshot_meta(meta, self.active.get()).map_err(encode_err())?,
        );
        let (file, data) = self.place_body(meta, data, version).await?;
        match &file {
            Some(record) => {
                batch.insert(SNAPSHOT_FILE_KEY, raftsched_format::encode_snapshot_file(record).map_err(encode_err())?);
                batch.insert(SNAPSHOT_DATA_KEY, raftsched_format::snapshot_body_moved());
            }
            None => {
                batch.remove(SNAPSHOT_FILE_KEY);
                batch.insert(SNAPSHOT_DATA_KEY, data.as_slice());
            }
        }
        let snap = self.snap.clone();
        off_the_runtime(subject.clone(), ErrorVerb::Write, move || {
            snap.apply_batch(batch).map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))
        })
        .await?;
        self.disk.sync().await.map_err(|e| io_err(subject.clone(), ErrorVerb::Write, e))?;
        self.durable.value.send_replace(meta.last_log_id);
        // Every other body file is garbage once the record naming this body is durable.
        let files = self.files.clone();
        off_the_runtime(subject, ErrorVerb::Delete, move || {
            if let Err(e) = files.remove_all_but(file.as_ref().map(|f| f.name.as_str())) {
                tracing::warn!(error = %e, "cannot remove an old snapshot body (removed at the next start)");
            }
            Ok(())
        })
        .await?;
        Ok(data)
    }

    /// Writes the body to a file of its own, at low priority, once the cluster's format has body
    /// files (`BODY_FILE_FORMAT`); before that it goes into the database, where a build of the
    /// previous format still finds it (a downgrade before finalization).
    async fn place_body(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        data: Vec<u8>,
        version: raftsched_format::Version,
    ) -> Result<(Option<raftsched_format::SnapshotFile>, Vec<u8>), StorageError> {
        if version < raftsched_format::BODY_FILE_FORMAT {
            return Ok((None, data));
        }
        let (files, index) = (self.files.clone(), meta.last_log_id.map(|l| l.index));
        in_the_background(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Write, move || {
            let record =
                files.write(index, &data).map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
            Ok((Some(record), data))
        })
        .await
    }
}

/// Runs `work` (a snapshot's encoding or write: up to seconds for a big state) on an OS thread of
/// its own at the lowest CPU priority: on two cores, a snapshot competing at normal priority with
/// the log flush and the Raft RPC handlers delayed heartbeats past the election timeout.
async fn in_the_background<T: Send + 'static>(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
        lower_this_threads_priority();
        let _ = tx.send(work());
    });
    spawned.map_err(|e| io_err(subject.clone(), verb, e))?;
    rx.await.map_err(|_| io_err(subject, verb, std::io::Error::other("the snapshot thread panicked")))?
}

/// Nice 19 for the calling thread only (Linux schedules threads; elsewhere nothing changes).
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread's own id; no memory is passed.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 19)
        };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the snapshot thread's priority");
        }
    }
}

/// Runs `work` (a snapshot's encoding, decoding or write: tens of milliseconds and more for a big
/// state) on tokio's blocking pool. On a runtime thread it would hold up every task queued behind
/// it there, the Raft RPC handlers included: followers then heard no heartbeat for longer than the
/// election lease and campaigned against a live leader (seen with a 300 ms lease).
async fn off_the_runtime<T: Send + 'static>(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| io_err(subject, verb, std::io::Error::other(e.to_string())))?
}

/// The state as a snapshot body in the active format (format 0 while the cluster version is 0, so
/// that a replica of the previous build can still install it).
fn encode_state(sm: &StateMachine, active: &ActiveVersion) -> Result<Vec<u8>, StorageError> {
    raftsched_format::encode_snapshot_body(sm, write_version(sm, active))
        .map_err(format_err(ErrorSubject::StateMachine, ErrorVerb::Write))
}

/// The format a snapshot of `sm` is written in.
fn write_version(sm: &StateMachine, active: &ActiveVersion) -> raftsched_format::Version {
    active.get().max(sm.cluster_version().min(raftsched_format::FORMAT_VERSION_MAX))
}

/// Decodes a snapshot body and checks it against its meta and the state's invariants.
fn check_state(data: &[u8], meta: &SnapshotMeta<NodeId, BasicNode>) -> Result<StateMachine, Refusal> {
    let sm = raftsched_format::decode_snapshot_body(data).map_err(record_err("snapshot body".into()))?;
    let applied = meta.last_log_id.map(|l| l.index);
    if sm.applied_index() != applied {
        let why = format!("snapshot state is at index {:?} but its meta says {applied:?}", sm.applied_index());
        return Err(Refusal::Damage(why));
    }
    if let Err(why) = sm.check_invariants() {
        // The body's checksum was good: the state was written so, by a build with a bug.
        return Err(Refusal::Bug(format!("the snapshot at index {applied:?} violates an invariant: {why}")));
    }
    Ok(sm)
}

/// `check_state` for openraft's callers, whose errors are `StorageError`s.
pub(crate) fn decode_state(data: &[u8], meta: &SnapshotMeta<NodeId, BasicNode>) -> Result<StateMachine, StorageError> {
    check_state(data, meta).map_err(|r| {
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let text = match r {
            Refusal::Bug(what) => format!("BUG: {what} (its checksums are good: not disk damage)"),
            other => other.to_string(),
        };
        io_err(subject, ErrorVerb::Read, std::io::Error::other(text))
    })
}

/// Applies `entries` in order: the responses, the last applied index and the cluster version after.
/// What applying a batch gives: the responses, the last applied index, the cluster version and
/// the workers whose view changed.
type Applied = (Vec<Response>, u64, u32, BTreeSet<String>);

/// A broken invariant (`apply_checked`) stops here: the entries before it stay applied, and the
/// error, which names the entry, stops the replica (a bug, never taken for disk damage).
fn apply_entries(inner: &mut Inner, entries: Vec<Entry<TypeConfig>>) -> Result<Applied, StorageError> {
    let mut responses = Vec::with_capacity(entries.len());
    for entry in entries {
        let index = entry.log_id.index;
        let response = match entry.payload {
            EntryPayload::Blank => {
                inner.sm.advance(index);
                Response::Noop
            }
            EntryPayload::Normal(cmd) => inner.sm.apply_checked(index, &cmd).map_err(|broken| {
                tracing::error!(%broken, "stopping this replica");
                io_err(ErrorSubject::StateMachine, ErrorVerb::Write, std::io::Error::other(broken.to_string()))
            })?,
            EntryPayload::Membership(m) => {
                inner.sm.advance(index);
                inner.membership = StoredMembership::new(Some(entry.log_id), m);
                Response::Noop
            }
        };
        inner.last_applied = Some(entry.log_id);
        responses.push(response);
    }
    let touched = inner.sm.take_touched_workers();
    Ok((responses, inner.last_applied.map_or(0, |l| l.index), inner.sm.cluster_version(), touched))
}

impl RaftStateMachine<TypeConfig> for SmStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError> {
        let inner = read_lock(&self.inner);
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        // The fast path applies here. While a snapshot copies the state (a read lock held for up
        // to a second or more) the wait goes to the blocking pool instead: a runtime thread parked
        // on the lock would hold up every task queued behind it, the Raft RPC handlers included.
        let fast = match self.inner.try_write() {
            Ok(mut inner) => Ok(apply_entries(&mut inner, entries)?),
            // Contended (or poisoned: `write_lock` reports that).
            Err(_) => Err(entries),
        };
        let (responses, last, cluster_version, touched) = match fast {
            Ok(applied) => applied,
            Err(entries) => {
                let (inner, copying) = (self.inner.clone(), self.copying.clone());
                off_the_runtime(ErrorSubject::StateMachine, ErrorVerb::Write, move || {
                    apply_entries(&mut write_lock_without_queueing(&inner, &copying), entries)
                })
                .await?
            }
        };
        self.active.raise(cluster_version);
        self.applied.send_replace(last);
        self.wakeups.wake(&touched);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { store: self.clone_handles() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        // Decode and check before touching anything: a bad snapshot from the network leaves the
        // current state as it was.
        let for_decode = meta.clone();
        let (sm, data) = off_the_runtime(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Read, move || {
            decode_state(&data, &for_decode).map(|sm| (sm, data))
        })
        .await?;
        self.save_snapshot(meta, data, write_version(&sm, &self.active)).await?;
        self.active.raise(sm.cluster_version());
        let (inner, copying, meta_now) = (self.inner.clone(), self.copying.clone(), meta.clone());
        off_the_runtime(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Write, move || {
            let mut inner = write_lock_without_queueing(&inner, &copying);
            let mut sm = sm;
            sm.continue_observed(&inner.sm);
            let old = std::mem::replace(&mut inner.sm, sm);
            inner.last_applied = meta_now.last_log_id;
            inner.membership = meta_now.last_membership;
            drop(inner);
            drop(old); // a big state takes a while to free: not under the lock
            Ok(())
        })
        .await?;
        self.applied.send_replace(meta.last_log_id.map_or(0, |l| l.index));
        self.wakeups.wake_all();
        tracing::info!(snapshot = %meta, "installed snapshot from leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let (snap, files) = (self.snap.clone(), self.files.clone());
        let subject = ErrorSubject::Snapshot(None);
        off_the_runtime(subject.clone(), ErrorVerb::Read, move || {
            let meta = snap.get(SNAPSHOT_META_KEY).map_err(|e| io_err(subject.clone(), ErrorVerb::Read, e))?;
            let body = read_body(&snap, &files)
                .map_err(|r| io_err(subject.clone(), ErrorVerb::Read, std::io::Error::other(r.to_string())))?;
            match (meta, body) {
                (Some(meta), Some(StoredBody { data, .. })) => {
                    Ok(Some(Snapshot { meta: decode_meta(&meta)?, snapshot: Box::new(Cursor::new(data)) }))
                }
                _ => Ok(None),
            }
        })
        .await
    }
}

fn ms_between(from: std::time::Instant, to: std::time::Instant) -> u64 {
    u64::try_from(to.duration_since(from).as_millis()).unwrap_or(u64::MAX)
}

pub struct SnapshotBuilder {
    store: SmStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (inner, copying) = (self.store.inner.clone(), self.store.copying.clone());
        let active = self.store.active.clone();
        // Copy under the read lock, then encode the copy at low priority: apply waits only for the
        // copy, not for the encoding (a second for a state of 500,000 tasks).
        let (sm, meta, copy_ms) = off_the_runtime(ErrorSubject::StateMachine, ErrorVerb::Write, move || {
            let started = std::time::Instant::now();
            let (sm, last, membership) = {
                copying.store(true, Ordering::Release);
                let inner = read_lock(&inner);
                let copied = (inner.sm.clone(), inner.last_applied, inner.membership.clone());
                drop(inner);
                copying.store(false, Ordering::Release);
                copied
            };
            let n_built = N_SNAPSHOTS_BUILT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let snapshot_id = match last {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, n_built),
                None => format!("none-{n_built}"),
            };
            let meta = SnapshotMeta { last_log_id: last, last_membership: membership, snapshot_id };
            Ok((sm, meta, ms_between(started, std::time::Instant::now())))
        })
        .await?;
        let (data, version, encode_ms) = in_the_background(ErrorSubject::StateMachine, ErrorVerb::Write, move || {
            let started = std::time::Instant::now();
            // The whole state is checked before it is written: a state that breaks an invariant
            // must never become a snapshot that peers install (a bug, reported as one).
            sm.check_invariants().map_err(|why| {
                let bug = format!("BUG: the state at index {:?} violates an invariant: {why}", sm.applied_index());
                tracing::error!(%bug, "not writing a snapshot of it");
                io_err(ErrorSubject::StateMachine, ErrorVerb::Write, std::io::Error::other(bug))
            })?;
            let data = encode_state(&sm, &active)?;
            Ok((data, write_version(&sm, &active), ms_between(started, std::time::Instant::now())))
        })
        .await?;
        let started = std::time::Instant::now();
        let data = self.store.save_snapshot(&meta, data, version).await?;
        let save_ms = ms_between(started, std::time::Instant::now());
        tracing::info!(snapshot = %meta, bytes = data.len(), copy_ms, encode_ms, save_ms, "built snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}
