//! Durable storage for a raftsched replica: the Raft log, the vote and the state-machine snapshot's
//! meta in one sled database under the replica's data dir, the snapshot's body in a file beside it
//! (`body_files.rs`).
//!
//! Durability contract (why this crate exists): openraft may only count a log entry or a vote as
//! persisted once it survives kill -9. `save_vote` returns after sled's flush; `append` returns at
//! once but completes openraft's callback only after the flusher thread has flushed sled, and the
//! flusher batches every append queued meanwhile into one flush (group commit).

// openraft's storage traits return `StorageError` by value; our helpers return what the traits do.
#![allow(clippy::result_large_err)]

mod body_files;
mod codec;
mod db;
mod disk;
#[cfg(feature = "fault-injection")]
pub mod fault;
mod flusher;
mod log_store;
mod recover;
mod state_machine;
mod verify;
mod wakeups;
mod watermark;

pub use db::{open, OpenError, Opened};
pub use disk::{time_log_syncs, SyncStats, SYNC_BUCKETS_US};
pub use log_store::LogStore;
pub use recover::{force_new_cluster, replica_id_of, Recovered};
pub use state_machine::{SmHandle, SmStore};
pub use wakeups::WorkerWakeups;

pub use raftsched_format::{ActiveVersion, NodeId, TypeConfig};

pub type Raft = openraft::Raft<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;

/// Checks a snapshot received from the network as installing it would (it decodes, its state is
/// at the index its meta names, the state's invariants hold), without installing it.
pub fn check_snapshot(meta: &raftsched_format::Meta, data: &[u8]) -> Result<(), String> {
    state_machine::decode_state(data, meta).map(|_| ()).map_err(|e| e.to_string())
}
