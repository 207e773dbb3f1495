//! Quorum-loss recovery (`raftsched recover --force-new-cluster`).
//!
//! When a majority of a cluster's data dirs are gone for good, no leader can ever be elected again.
//! This rewrites one survivor's data dir into a one-replica cluster: its snapshot plus every entry
//! in its log are applied into the state machine (entries it had not seen committed included: with
//! the majority gone there is no one left to say otherwise, as with etcd's `--force-new-cluster`),
//! and a new snapshot at its last log id records a membership of this replica alone. The log is
//! then purged behind the snapshot. Started again, the replica elects itself; others rejoin empty
//! with `server --join` and `cluster add`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Entry, EntryPayload, LogId, Membership, RaftLogReader, SnapshotMeta, StoredMembership};

use crate::db::{open, OpenError};
use crate::{NodeId, TypeConfig};

/// Log entries read (and held in memory) at once while replaying the log.
const RECOVER_CHUNK_ENTRIES: u64 = 4_096;

#[derive(Debug)]
pub struct Recovered {
    pub last_log_id: Option<LogId<NodeId>>,
    pub n_entries_replayed: usize,
    pub n_tasks: usize,
    pub addr: String,
}

/// The replica id a data dir belongs to, from its marker file (`None` for a new dir).
pub fn replica_id_of(dir: &Path) -> Result<Option<NodeId>, OpenError> {
    crate::db::read_marker(dir)
}

/// Rewrites the data dir of replica `replica_id` into a one-replica cluster. `addr` is where the
/// replica will listen; `None` keeps the address the old membership had for it.
pub async fn force_new_cluster(dir: &Path, replica_id: NodeId, addr: Option<String>) -> Result<Recovered, OpenError> {
    let corrupt = |what: String| OpenError::Corrupt { dir: dir.to_path_buf(), what };
    let opened = open(dir, replica_id)?;
    if opened.pristine {
        return Err(corrupt("the data dir is empty: nothing to recover".to_string()));
    }
    let mut log_store = opened.log_store;
    let sm_store = opened.sm_store;
    let (mut state, mut last_log_id, mut membership) = sm_store.current();
    let mut n_entries_replayed = 0;
    let mut next_index = last_log_id.map_or(0, |l| l.index + 1);
    loop {
        // Read in chunks of at most RECOVER_CHUNK_ENTRIES: the log may not fit in memory at once.
        let chunk = next_index..next_index.saturating_add(RECOVER_CHUNK_ENTRIES);
        let entries: Vec<Entry<TypeConfig>> =
            log_store.try_get_log_entries(chunk).await.map_err(|e| corrupt(e.to_string()))?;
        let Some(last_read) = entries.last().map(|e| e.log_id.index) else { break };
        next_index = last_read + 1;
        for entry in entries {
            if last_log_id.is_some_and(|l| entry.log_id.index <= l.index) {
                continue;
            }
            match &entry.payload {
                EntryPayload::Normal(cmd) => {
                    state.apply(entry.log_id.index, cmd);
                }
                EntryPayload::Blank => state.advance(entry.log_id.index),
                EntryPayload::Membership(m) => {
                    state.advance(entry.log_id.index);
                    membership = StoredMembership::new(Some(entry.log_id), m.clone());
                }
            }
            last_log_id = Some(entry.log_id);
            n_entries_replayed += 1;
        }
    }
    state.check_invariants().map_err(|why| corrupt(format!("replayed state violates an invariant: {why}")))?;
    let addr = match addr.or_else(|| membership.membership().get_node(&replica_id).map(|n| n.addr.clone())) {
        Some(a) => a,
        None => return Err(corrupt(format!("replica {replica_id} has no address in the old membership: give one"))),
    };
    let Some(last) = last_log_id else {
        return Err(corrupt("the log holds no entry: nothing to recover".to_string()));
    };
    let alone = Membership::new(
        vec![BTreeSet::from([replica_id])],
        BTreeMap::from([(replica_id, BasicNode { addr: addr.clone() })]),
    );
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: StoredMembership::new(Some(last), alone),
        snapshot_id: format!("recovered-{}-{}", last.leader_id, last.index),
    };
    let n_tasks = state.task_count();
    sm_store.replace(&meta, state).await.map_err(|e| corrupt(e.to_string()))?;
    log_store.purge(last).await.map_err(|e| corrupt(e.to_string()))?;
    log_store.save_committed(Some(last)).await.map_err(|e| corrupt(e.to_string()))?;
    log_store.flush().await.map_err(|e| corrupt(e.to_string()))?;
    Ok(Recovered { last_log_id: Some(last), n_entries_replayed, n_tasks, addr })
}
