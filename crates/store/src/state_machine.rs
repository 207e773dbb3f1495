//! The state machine's home: the deterministic `StateMachine` in memory, its snapshots in sled.
//!
//! Why in memory: the log is the durable record of every command; the state is rebuilt from the
//! last snapshot plus the log after a restart, so `apply` never waits for the disk. Snapshots are
//! flushed before openraft is told they exist, because openraft purges the log behind them.

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StoredMembership,
};
use raftsched_state::{Response, StateMachine};
use tokio::sync::watch;

use raftsched_format::ActiveVersion;

use crate::codec::{format_err, io_err};
use crate::disk::{durable_mark, DiskSync, DurableSnapshot};
use crate::verify::{record_err, Refusal};
use crate::{NodeId, StorageError, TypeConfig};

const SNAPSHOT_META_KEY: &[u8] = b"meta";
const SNAPSHOT_DATA_KEY: &[u8] = b"data";
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
}

// A poisoned lock means a panic while the state was changing; a half-applied state must not be
// served, and the assertion that panicked already decided that this replica stops.
fn read_lock(inner: &RwLock<Inner>) -> RwLockReadGuard<'_, Inner> {
    inner.read().expect("state machine lock poisoned by an earlier panic")
}

fn write_lock(inner: &RwLock<Inner>) -> RwLockWriteGuard<'_, Inner> {
    inner.write().expect("state machine lock poisoned by an earlier panic")
}

pub struct SmStore {
    inner: Arc<RwLock<Inner>>,
    applied: Arc<watch::Sender<u64>>,
    disk: DiskSync,
    snap: sled::Tree,
    durable: DurableSnapshot,
    /// The format written now; raised when the applied cluster version rises.
    active: ActiveVersion,
}

fn decode_meta(bytes: &[u8]) -> Result<SnapshotMeta<NodeId, BasicNode>, StorageError> {
    raftsched_format::decode_snapshot_meta(bytes).map_err(format_err(ErrorSubject::Snapshot(None), ErrorVerb::Read))
}

impl SmStore {
    /// Loads the last durable snapshot, if any, checking the state's invariants: a snapshot that
    /// decodes but is inconsistent is reported as damage, not served.
    /// A refusal says whether the snapshot is damaged or written by a newer build.
    pub(crate) fn load(disk: DiskSync, snap: sled::Tree) -> Result<SmStore, Refusal> {
        let active = ActiveVersion::default();
        let mut inner = Inner::default();
        let read = |key| snap.get(key).map_err(|e| Refusal::Damage(format!("cannot read the snapshot: {e}")));
        if let (Some(meta), Some(data)) = (read(SNAPSHOT_META_KEY)?, read(SNAPSHOT_DATA_KEY)?) {
            let meta = raftsched_format::decode_snapshot_meta(&meta).map_err(record_err("snapshot meta".into()))?;
            let sm = check_state(&data, &meta)?;
            active.raise(sm.cluster_version());
            inner.sm = sm;
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership;
        }
        let applied = Arc::new(watch::Sender::new(inner.last_applied.map_or(0, |l| l.index)));
        let durable = durable_mark(inner.last_applied);
        Ok(SmStore { inner: Arc::new(RwLock::new(inner)), applied, disk, snap, durable, active })
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
        self.save_snapshot(meta, &data).await?;
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
            durable: self.durable.clone(),
            active: self.active.clone(),
        }
    }

    pub fn handle(&self) -> SmHandle {
        SmHandle { inner: self.inner.clone(), applied: self.applied.clone() }
    }

    /// Writes the snapshot durably unless one at least as new is already on disk (a snapshot
    /// built concurrently with an install must not overwrite the newer installed one).
    async fn save_snapshot(&self, meta: &SnapshotMeta<NodeId, BasicNode>, data: &[u8]) -> Result<(), StorageError> {
        let _writing = self.durable.writing.lock().await;
        let durable = *self.durable.value.borrow();
        if durable.is_some() && durable >= meta.last_log_id {
            tracing::debug!(snapshot = %meta, "a snapshot at least as new is already on disk");
            return Ok(());
        }
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let meta_bytes = raftsched_format::encode_snapshot_meta(meta, self.active.get())
            .map_err(format_err(subject.clone(), ErrorVerb::Write))?;
        let mut batch = sled::Batch::default();
        batch.insert(SNAPSHOT_META_KEY, meta_bytes);
        batch.insert(SNAPSHOT_DATA_KEY, data);
        let snap = self.snap.clone();
        off_the_runtime(subject.clone(), ErrorVerb::Write, move || {
            snap.apply_batch(batch).map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))
        })
        .await?;
        self.disk.sync().await.map_err(|e| io_err(subject, ErrorVerb::Write, e))?;
        self.durable.value.send_replace(meta.last_log_id);
        Ok(())
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
    let version = active.get().max(sm.cluster_version().min(raftsched_format::FORMAT_VERSION_MAX));
    raftsched_format::encode_snapshot_body(sm, version)
        .map_err(format_err(ErrorSubject::StateMachine, ErrorVerb::Write))
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
        return Err(Refusal::Damage(format!("snapshot violates an invariant: {why}")));
    }
    Ok(sm)
}

/// `check_state` for openraft's callers, whose errors are `StorageError`s.
pub(crate) fn decode_state(data: &[u8], meta: &SnapshotMeta<NodeId, BasicNode>) -> Result<StateMachine, StorageError> {
    check_state(data, meta).map_err(|r| {
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        io_err(subject, ErrorVerb::Read, std::io::Error::other(r.to_string()))
    })
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
        let mut inner = write_lock(&self.inner);
        let mut responses = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            let response = match entry.payload {
                EntryPayload::Blank => {
                    inner.sm.advance(index);
                    Response::Noop
                }
                EntryPayload::Normal(cmd) => inner.sm.apply(index, &cmd),
                EntryPayload::Membership(m) => {
                    inner.sm.advance(index);
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                    Response::Noop
                }
            };
            inner.last_applied = Some(entry.log_id);
            responses.push(response);
        }
        let last = inner.last_applied.map_or(0, |l| l.index);
        let cluster_version = inner.sm.cluster_version();
        drop(inner);
        self.active.raise(cluster_version);
        self.applied.send_replace(last);
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
        self.save_snapshot(meta, &data).await?;
        self.active.raise(sm.cluster_version());
        let mut inner = write_lock(&self.inner);
        inner.sm = sm;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        drop(inner);
        self.applied.send_replace(meta.last_log_id.map_or(0, |l| l.index));
        tracing::info!(snapshot = %meta, "installed snapshot from leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let subject = ErrorSubject::Snapshot(None);
        let meta = self.snap.get(SNAPSHOT_META_KEY).map_err(|e| io_err(subject.clone(), ErrorVerb::Read, e))?;
        let data = self.snap.get(SNAPSHOT_DATA_KEY).map_err(|e| io_err(subject.clone(), ErrorVerb::Read, e))?;
        match (meta, data) {
            (Some(meta), Some(data)) => {
                let meta = decode_meta(&meta)?;
                Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data.to_vec())) }))
            }
            _ => Ok(None),
        }
    }
}

pub struct SnapshotBuilder {
    store: SmStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let inner = self.store.inner.clone();
        let active = self.store.active.clone();
        let (meta, data) = off_the_runtime(ErrorSubject::StateMachine, ErrorVerb::Write, move || {
            // A read lock: queries go on while the state is encoded (apply waits).
            let inner = read_lock(&inner);
            let n_built = N_SNAPSHOTS_BUILT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let last = inner.last_applied;
            let snapshot_id = match last {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, n_built),
                None => format!("none-{n_built}"),
            };
            let meta = SnapshotMeta { last_log_id: last, last_membership: inner.membership.clone(), snapshot_id };
            let data = encode_state(&inner.sm, &active)?;
            Ok((meta, data))
        })
        .await?;
        self.store.save_snapshot(&meta, &data).await?;
        tracing::info!(snapshot = %meta, bytes = data.len(), "built snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}
