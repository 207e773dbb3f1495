//! A cluster of `raftsched server` processes on 127.0.0.1 that a benchmark starts, kills and
//! restarts itself (failover, restart and join times need that). Replicas are this same binary,
//! started by the shared launcher (`raftsched-launcher`); every child dies with the benchmark
//! (`PR_SET_PDEATHSIG`) and is killed on drop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raftsched_client::Client;
use raftsched_launcher::ReplicaProc;

use crate::error::CliError;

pub struct LocalCluster {
    pub dir: PathBuf,
    /// Removed on drop when the benchmark made it.
    _temp: Option<tempfile::TempDir>,
    pub replicas: Vec<ReplicaProc>,
    extra_args: Vec<String>,
}

fn free_port() -> Result<u16, CliError> {
    let ports = raftsched_launcher::free_ports(1).map_err(|e| CliError::Failed(format!("bind: {e}")))?;
    Ok(ports[0])
}

impl LocalCluster {
    /// Starts `n` replicas with data under `dir` (a temp dir when `None`).
    pub fn start(n: u64, dir: Option<&Path>, extra_args: &[&str]) -> Result<LocalCluster, CliError> {
        let (dir, temp) = match dir {
            Some(d) => (d.to_path_buf(), None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("raftsched-bench-")
                    .tempdir()
                    .map_err(|e| CliError::Failed(format!("temp dir: {e}")))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        std::fs::create_dir_all(&dir).map_err(|e| CliError::Failed(format!("{}: {e}", dir.display())))?;
        let secret = crate::certs::local_secret(&dir)?;
        let mut extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        extra_args.extend(["--cluster-secret-file".to_string(), secret.display().to_string()]);
        let mut cluster = LocalCluster { dir, _temp: temp, replicas: Vec::new(), extra_args };
        for id in 1..=n {
            cluster.add_replica_slot(id, false)?;
        }
        for id in 1..=n {
            cluster.start_replica(id)?;
        }
        Ok(cluster)
    }

    fn add_replica_slot(&mut self, id: u64, join: bool) -> Result<(), CliError> {
        let bin = std::env::current_exe().map_err(|e| CliError::Failed(format!("own binary: {e}")))?;
        let mut replica = ReplicaProc::new(id, format!("127.0.0.1:{}", free_port()?), &self.dir, &bin);
        replica.join = join;
        replica.die_with_parent = true;
        replica.log_filter = std::env::var("RAFTSCHED_LOG").unwrap_or_else(|_| "warn".into());
        self.replicas.push(replica);
        Ok(())
    }

    pub fn addrs(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.addr.clone()).collect()
    }

    pub fn replica(&self, id: u64) -> &ReplicaProc {
        self.replicas.iter().find(|r| r.id == id).expect("known replica id")
    }

    fn replica_mut(&mut self, id: u64) -> &mut ReplicaProc {
        self.replicas.iter_mut().find(|r| r.id == id).expect("known replica id")
    }

    pub fn start_replica(&mut self, id: u64) -> Result<(), CliError> {
        let initial = raftsched_launcher::initial_cluster(&self.replicas);
        let join = raftsched_launcher::addrs(self.replicas.iter().filter(|r| r.id != id));
        let extra = self.extra_args.clone();
        let r = self.replica_mut(id);
        r.start(&initial, &join, &extra).map_err(|e| CliError::Failed(format!("start replica {id}: {e}")))
    }

    /// Adds a slot for a new, empty replica `id` that starts with `--join`; returns its address.
    pub fn start_joining(&mut self, id: u64) -> Result<String, CliError> {
        self.add_replica_slot(id, true)?;
        self.start_replica(id)?;
        Ok(self.replica(id).addr.clone())
    }

    pub fn kill9(&mut self, id: u64) {
        self.replica_mut(id).kill9();
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.replica(id).pid()
    }

    /// Resident memory of replica `id`, in bytes (from /proc).
    pub fn rss_bytes(&self, id: u64) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(id)?)).ok()?;
        let kb: u64 =
            status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    }

    /// Bytes under replica `id`'s data dir.
    pub fn data_dir_bytes(&self, id: u64) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(p) else { return 0 };
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        walk(&self.replica(id).data_dir)
    }

    /// Waits for a leader, asking through `client`; returns its id.
    pub async fn wait_leader(client: &Client, wait: Duration) -> Result<u64, CliError> {
        let started = Instant::now();
        loop {
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), client.cluster_status()).await {
                if s.has_leader && s.leader != 0 {
                    return Ok(s.leader);
                }
            }
            if started.elapsed() > wait {
                return Err(CliError::Failed(format!("no leader within {} s", wait.as_secs())));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every member has applied what the leader had in its log when the wait began
    /// (taken again if the leader changes). A fixed target: under continuous load no status ever
    /// shows every member at the leader's *current* last index.
    pub async fn wait_converged(client: &Client, wait: Duration) -> Result<(), CliError> {
        let started = Instant::now();
        // (leader id, its last log index when first seen)
        let mut target: Option<(u64, u64)> = None;
        loop {
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), client.cluster_status()).await {
                if let Some(leader) = s.members.iter().find(|m| s.has_leader && m.id == s.leader) {
                    if target.is_none_or(|(id, _)| id != leader.id) {
                        target = Some((leader.id, leader.last_log_index));
                    }
                    let index = target.map_or(leader.last_log_index, |(_, index)| index);
                    if s.members.iter().all(|m| m.reachable && m.applied_index >= index) {
                        return Ok(());
                    }
                }
            }
            if started.elapsed() > wait {
                return Err(CliError::Failed(format!("replicas did not converge within {} s", wait.as_secs())));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
