//! A raftsched replica: openraft driving the sled store, replicas talking over tonic, and the client
//! API served on the same port by every replica.
//!
//! Reading order: `config` (what a replica is told), `replica` (the write and read paths:
//! forwarding to the leader, read index), `scheduler_service` (the client API), `raft_service` and
//! `network` (Raft between replicas), `convert` (the only place that knows both the wire types and
//! the state types).

mod admission;
pub mod auth;
pub mod clock;
mod cluster_version;
pub mod config;
mod convert;
mod election;
pub mod fault;
mod forwarder;
pub mod health;
pub mod http_api;
mod leader_loop;
mod limits;
mod liveness;
pub use liveness::{HeartbeatPolicy, WORKER_HEARTBEAT_INTERVAL_MS_REFERENCE};
mod membership;
pub mod metrics;
mod network;
mod output_relay;
mod peers;
mod process_metrics;
mod proposer;
mod quorum;
mod raft_service;
mod read_index;
mod reflection;
mod replica;
pub mod rpc_stats;
mod scheduler_service;
mod schedules;
mod serve;
mod status_page;
mod timers;
mod transport;
mod vote;
mod worker_service;

pub use config::{parse_initial_cluster, ReplicaConfig, RETAIN_FINISHED_DEFAULT, WORKER_HEARTBEAT_TIMEOUT_MS_DEFAULT};

/// The git commit this build comes from ("" if unknown; `build.rs`).
pub const BUILD_COMMIT: &str = env!("RAFTSCHED_BUILD_COMMIT");

/// What `raftsched --version` prints after the name: version, commit and the formats read.
pub fn version_line() -> String {
    let commit = if BUILD_COMMIT.is_empty() { "unknown" } else { BUILD_COMMIT };
    format!(
        "{} (commit {commit}; reads formats {}..={}, writes {} once the cluster version allows)",
        env!("CARGO_PKG_VERSION"),
        raftsched_format::FORMAT_VERSION_MIN,
        raftsched_format::FORMAT_VERSION_MAX,
        raftsched_format::FORMAT_VERSION_MAX
    )
}
pub use serve::{start, RunningReplica, StartError};
