//! What a replica is told at start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Raft timing, in milliseconds. Defaults suit loopback and LAN trios: a heartbeat every 100 ms; a
/// follower campaigns after 250-300 ms of silence (the lease, `election_timeout_ms_max`, plus its
/// rank's slot: see `election.rs`), so a dead leader is replaced in about a third of a second.
/// 250 rather than 300: a 300 ms lease put the 99th percentile of `bench failover` at 400 ms; a
/// loaded 10-minute soak with 250 elected nobody (docs/benchmarks.md).
/// The heartbeat is not shorter because openraft 0.9 also makes it the timeout of every
/// AppendEntries and read-index round: at 50 ms a loaded 2-core box timed appends out, replication
/// backed off, and followers campaigned against a live leader.
#[derive(Clone, Debug)]
pub struct RaftTiming {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms_min: u64,
    pub election_timeout_ms_max: u64,
    /// Applied entries between snapshots (after which the log behind the snapshot is purged), at
    /// least: each replica stretches it by its own share (`snapshot_every_entries_for`).
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind a snapshot, so a briefly lagging replica catches up from the
    /// log instead of a whole snapshot.
    pub snapshot_logs_kept: u64,
}

pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 100;
pub const ELECTION_TIMEOUT_MS_MIN_DEFAULT: u64 = 200;
pub const ELECTION_TIMEOUT_MS_MAX_DEFAULT: u64 = 250;
const _: () = assert!(HEARTBEAT_INTERVAL_MS_DEFAULT < ELECTION_TIMEOUT_MS_MIN_DEFAULT);
const _: () = assert!(ELECTION_TIMEOUT_MS_MIN_DEFAULT < ELECTION_TIMEOUT_MS_MAX_DEFAULT);

impl RaftTiming {
    /// Replica `id`'s snapshot interval: `snapshot_every_entries` stretched by a quarter per step
    /// of `id % 4` (x1, x1.25, x1.5, x1.75). Equal intervals made every replica of a trio build its
    /// snapshot at the same index, and so at the same moment: a big state's copy and write loaded
    /// the leader and both followers at once, and heartbeats were late everywhere together.
    pub fn snapshot_every_entries_for(&self, id: u64) -> u64 {
        let n = self.snapshot_every_entries;
        n.saturating_add(n / 4 * (id % 4))
    }
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS_DEFAULT,
            election_timeout_ms_min: ELECTION_TIMEOUT_MS_MIN_DEFAULT,
            election_timeout_ms_max: ELECTION_TIMEOUT_MS_MAX_DEFAULT,
            snapshot_every_entries: 10_000,
            snapshot_logs_kept: 1_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub id: u64,
    /// Where to listen (Raft and client API share it).
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Every member's id and address, this replica's included; used only on the first start.
    /// With `bootstrap` false (a joining replica) it holds only this replica's own address.
    pub initial_cluster: BTreeMap<u64, String>,
    /// Whether a first start forms the cluster from `initial_cluster`. A joining replica does not:
    /// it waits, empty, until a member adds it (`raftsched cluster add`).
    pub bootstrap: bool,
    /// Where to serve `/metrics` over HTTP; none when `None`.
    pub http: Option<SocketAddr>,
    pub timing: RaftTiming,
    /// The leader declares a worker down after this long without a heartbeat. Workers learn it at
    /// registration and keep their lease (`lease_ms`) shorter by a margin for clock-rate drift.
    pub worker_heartbeat_timeout_ms: u64,
    /// Heartbeats a second the workers are held under (0: none): past `per_second_max / 2`
    /// workers, their interval and the timeout grow with the fleet (`liveness::HeartbeatPolicy`).
    /// Every replica must run with the same value, like `worker_heartbeat_timeout_ms`.
    pub worker_heartbeats_per_second_max: u64,
    /// Retention: finished tasks kept; the leader purges the oldest beyond it. 0 keeps all.
    pub retain_finished: u64,
    /// Pending tasks the leader admits (`--tasks-pending-max`): over it a new submit is refused
    /// with RESOURCE_EXHAUSTED before it is proposed. At most `limits::TASKS_PENDING_MAX`, which
    /// `apply` enforces.
    pub tasks_pending_max: usize,
    /// Mutual TLS for every connection, in and out; plaintext when `None`.
    pub tls: Option<raftsched_api::security::TlsFiles>,
    /// Bearer tokens with roles (`--token-file`); no token checks when `None`.
    pub token_file: Option<PathBuf>,
    /// The secret every replica shares (`--cluster-secret-file`): replica-to-replica calls must
    /// prove they hold it.
    pub cluster_secret_file: Option<PathBuf>,
    /// While a running cluster moves to a cluster secret: let Raft calls with no proof through.
    pub accept_unauthenticated_peers: bool,
    /// A leader whose clock is further than this from the median of the voters' clocks proposes
    /// no time-dependent decision and hands leadership on (`clock.rs`).
    pub clock_skew_ms_max: u64,
    /// Start even though replica-to-replica calls (no TLS with replica tokens, no cluster secret)
    /// or a non-loopback client API (no TLS with tokens) would be open to anyone (`--insecure`).
    pub insecure: bool,
}

/// Default of `ReplicaConfig::retain_finished`: 100,000 finished tasks. A snapshot is the whole
/// state, copied and encoded every `snapshot_every_entries`: at a million finished tasks it was
/// 850 MB, its copy stalled apply for 2-8 s on a loaded 2-core box and the trio elected twice in a
/// 10-minute soak (docs/benchmarks.md); at 100,000 it stays near 200 MB with the pending tasks.
/// Raise it (up to half of `tasks_total_max`) on machines that have the memory and cores.
pub const RETAIN_FINISHED_DEFAULT: u64 = 100_000;
const _: () = assert!(RETAIN_FINISHED_DEFAULT as usize <= raftsched_state::limits::TASKS_TOTAL_MAX / 2);

/// Default of `ReplicaConfig::worker_heartbeat_timeout_ms`.
pub const WORKER_HEARTBEAT_TIMEOUT_MS_DEFAULT: u64 = 3_000;

/// Parses `1=HOST:PORT,2=HOST:PORT,...`.
pub fn parse_initial_cluster(text: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut members = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').ok_or_else(|| format!("{part:?} is not ID=HOST:PORT"))?;
        let id: u64 = id.trim().parse().map_err(|_| format!("{id:?} is not a replica id (a positive integer)"))?;
        if id == 0 {
            return Err("replica id 0 is reserved; ids start at 1".to_string());
        }
        let addr = addr.trim();
        if !raftsched_api::is_host_port(addr) {
            return Err(format!("{addr:?} is not HOST:PORT"));
        }
        if members.insert(id, addr.to_string()).is_some() {
            return Err(format!("replica id {id} appears twice"));
        }
    }
    if members.is_empty() {
        return Err("the initial cluster is empty".to_string());
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let m = parse_initial_cluster("1=127.0.0.1:7001, 2=127.0.0.1:7002").unwrap();
        assert_eq!(m[&2], "127.0.0.1:7002");
        assert!(parse_initial_cluster("1=a:1,1=b:2").is_err());
        assert!(parse_initial_cluster("x=a:1").is_err());
        assert!(parse_initial_cluster("0=a:1").is_err());
        assert!(parse_initial_cluster("1=nohost").is_err());
        assert!(parse_initial_cluster("").is_err());
    }
}
