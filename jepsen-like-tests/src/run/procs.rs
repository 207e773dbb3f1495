//! The processes of a run: replicas (each in its own network namespace when possible) and
//! workers, started from the built `raftsched` binary, with their logs in the run's directory.
//!
//! Processes are the shared launcher's (`raftsched-launcher`): every child dies with the harness
//! (`PR_SET_PDEATHSIG = SIGKILL`) even if the harness itself is killed, and dropping [`Procs`]
//! kills them all (continuing paused ones first).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use raftsched_launcher::{Proc, ReplicaProc, Tie};

use super::netns::Netns;

/// How replicas reach each other and how clients reach them.
pub enum Topology {
    /// Each replica in its own namespace, on port [`NETNS_PORT`] of its own address.
    Netns(Netns),
    /// Everything on 127.0.0.1, ports picked at start; no partitions possible.
    Loopback(Vec<u16>),
}

pub const NETNS_PORT: u16 = 7000;

impl Topology {
    pub fn addr(&self, i: usize) -> String {
        match self {
            Topology::Netns(ns) => format!("{}:{NETNS_PORT}", ns.addr(i)),
            Topology::Loopback(ports) => format!("127.0.0.1:{}", ports[i]),
        }
    }

    pub fn netns(&self) -> Option<&Netns> {
        match self {
            Topology::Netns(ns) => Some(ns),
            Topology::Loopback(_) => None,
        }
    }
}

/// Ports free right now (bound to port 0, then released): the shared launcher's.
pub use raftsched_launcher::free_ports;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    Running,
    Paused,
    Down,
}

fn state_of(p: Option<&Proc>) -> ProcState {
    match p {
        None => ProcState::Down,
        Some(p) if p.is_paused() => ProcState::Paused,
        Some(_) => ProcState::Running,
    }
}

/// A worker: its log, and its process while it runs.
struct WorkerProc {
    log: PathBuf,
    proc: Option<Proc>,
}

/// SIGSTOP, if it runs and is not paused already.
fn pause(p: Option<&mut Proc>) {
    if let Some(p) = p.filter(|p| !p.is_paused()) {
        p.pause();
    }
}

/// SIGCONT, if it is paused.
fn resume(p: Option<&mut Proc>) {
    if let Some(p) = p.filter(|p| p.is_paused()) {
        p.resume();
    }
}

/// Children die with the harness.
const TIE: Tie = Tie { die_with_parent: true, own_group: false };

/// Options passed to every replica.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    pub faults: Vec<String>,
    pub extra_args: Vec<String>,
}

pub struct Procs {
    bin: PathBuf,
    /// Some replica was started on an older build.
    upgrade_run: bool,
    dir: PathBuf,
    pub topology: Topology,
    /// Each one's `bin` is this build's, unless an upgrade run started it on an older one; a
    /// replica that `joins` was started with `--join` (its data dir wiped after a removal), and
    /// its restarts join too.
    replicas: Vec<ReplicaProc>,
    workers: Vec<WorkerProc>,
    options: ReplicaOptions,
}

/// `RAFTSCHED_LOG` for every process: the harness's own, or `info`.
fn log_filter() -> String {
    std::env::var("RAFTSCHED_LOG").unwrap_or_else(|_| "info".into())
}

impl Procs {
    pub fn new(bin: PathBuf, dir: PathBuf, topology: Topology, n_replicas: usize, options: ReplicaOptions) -> Procs {
        let replicas = (0..n_replicas)
            .map(|i| {
                let mut r = ReplicaProc::new(i as u64 + 1, topology.addr(i), &dir, &bin);
                r.data_dir = dir.join("data").join(format!("n{}", i + 1));
                r.log_path = dir.join("logs").join(format!("n{}.log", i + 1));
                r.log_filter = log_filter();
                r.die_with_parent = TIE.die_with_parent;
                if let Topology::Netns(ns) = &topology {
                    r.wrapper = ["ip", "netns", "exec", ns.name(i)].map(String::from).to_vec();
                }
                r
            })
            .collect();
        Procs { bin, upgrade_run: false, dir, topology, replicas, workers: Vec::new(), options }
    }

    pub fn n_replicas(&self) -> usize {
        self.replicas.len()
    }

    pub fn replica_addrs(&self) -> Vec<String> {
        (0..self.replicas.len()).map(|i| self.topology.addr(i)).collect()
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn replica_state(&self, i: usize) -> ProcState {
        state_of(self.replicas[i].process())
    }

    pub fn worker_state(&self, i: usize) -> ProcState {
        state_of(self.workers[i].proc.as_ref())
    }

    pub fn n_workers(&self) -> usize {
        self.workers.len()
    }

    /// The binary replica `i` runs from its next start on. Once any replica ran an older build,
    /// the run stays an upgrade run (see `security_args`).
    pub fn set_replica_bin(&mut self, i: usize, bin: PathBuf) {
        self.upgrade_run |= bin != self.bin;
        self.replicas[i].bin = bin;
    }

    /// Whether `bin`'s server takes `--insecure` (builds from the security issue on refuse to
    /// start open without it; the first builds know no such flag and are always open).
    fn knows_insecure(bin: &std::path::Path) -> bool {
        Command::new(bin)
            .args(["server", "--help"])
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--insecure"))
    }

    /// Whether some replica was started on an older build (the run's cluster is open then).
    pub fn is_upgrade_run(&self) -> bool {
        self.upgrade_run
    }

    /// Whether replica `i` runs this build (not an older one an upgrade run started it on).
    pub fn runs_current_bin(&self, i: usize) -> bool {
        self.replicas[i].bin == self.bin
    }

    pub fn current_bin(&self) -> PathBuf {
        self.bin.clone()
    }

    /// Waits up to `timeout` for replica `i` to exit by itself; if it did, it is marked down and
    /// its exit status returned (so it is not reported as a crash).
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.replicas[i].wait_exit(timeout)
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.replicas[i].data_dir.clone()
    }

    /// Deletes replica `i`'s data dir (it must be down).
    pub fn wipe_replica(&mut self, i: usize) -> std::io::Result<()> {
        assert_eq!(self.replica_state(i), ProcState::Down);
        match std::fs::remove_dir_all(self.data_dir(i)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Starts replica `i` with an empty data dir and `--join`, to be added with `cluster add`.
    pub fn start_replica_joining(&mut self, i: usize) -> std::io::Result<()> {
        self.replicas[i].join = true;
        self.start_replica(i)
    }

    /// How replica `i` proves itself to its peers: the run's cluster secret (made on first use).
    /// An upgrade run's trio started on a build that knows no secret, so its replicas of this
    /// build run `--insecure` instead; and with network namespaces the client API listens on a
    /// non-loopback address without TLS, which needs `--insecure` too. Older builds get
    /// `--insecure` when they know it (an upgrade run's cluster is open), else nothing.
    fn security_args(&self, i: usize) -> std::io::Result<Vec<String>> {
        if !self.runs_current_bin(i) {
            let open = Self::knows_insecure(&self.replicas[i].bin);
            return Ok(if open { vec!["--insecure".into()] } else { Vec::new() });
        }
        if self.upgrade_run {
            return Ok(vec!["--insecure".into()]);
        }
        // Made the way an operator makes one, by the binary under test.
        let secret = self.dir.join("cluster-secret");
        if !secret.exists() {
            let out = Command::new(&self.bin).args(["secret", "generate", "--out"]).arg(&secret).output()?;
            if !out.status.success() {
                let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
                return Err(std::io::Error::other(format!("raftsched secret generate: {why}")));
            }
        }
        let mut args = vec!["--cluster-secret-file".to_string(), secret.display().to_string()];
        if matches!(self.topology, Topology::Netns(_)) {
            args.push("--insecure".into());
        }
        Ok(args)
    }

    /// Starts replica `i` (0-based; its Raft id is `i + 1`) from its data dir.
    pub fn start_replica(&mut self, i: usize) -> std::io::Result<()> {
        assert_eq!(self.replica_state(i), ProcState::Down);
        // Every replica, the joining ones included: a restart names the whole membership.
        let initial = self.replicas.iter().map(|r| format!("{}={}", r.id, r.addr)).collect::<Vec<_>>().join(",");
        let others = self.replicas.iter().filter(|r| r.id != i as u64 + 1);
        let join = others.map(|r| r.addr.clone()).collect::<Vec<_>>().join(",");
        let mut extra = self.options.extra_args.clone();
        for fault in &self.options.faults {
            extra.extend(["--fault".to_string(), fault.clone()]);
        }
        extra.extend(self.security_args(i)?);
        self.replicas[i].start(&initial, &join, &extra)
    }

    /// Adds and starts a worker `w<k>` with `slots` slots, talking to every replica.
    pub fn add_worker(&mut self, slots: u32) -> std::io::Result<usize> {
        let k = self.workers.len();
        let log = self.dir.join("logs").join(format!("w{}.log", k + 1));
        self.workers.push(WorkerProc { log, proc: None });
        self.start_worker(k, slots)?;
        Ok(k)
    }

    pub fn start_worker(&mut self, k: usize, slots: u32) -> std::io::Result<()> {
        assert_eq!(self.worker_state(k), ProcState::Down);
        let mut cmd = Command::new(&self.bin);
        let output_dir = self.dir.join("worker-output").join(format!("w{}", k + 1));
        cmd.args(["worker", "--id", &format!("w{}", k + 1), "--slots", &slots.to_string()])
            .args(["--cluster", &self.replica_addrs().join(",")])
            .arg("--output-dir")
            .arg(output_dir)
            .env("RAFTSCHED_LOG", log_filter());
        self.workers[k].proc = Some(Proc::spawn(&mut cmd, &self.workers[k].log, TIE)?);
        Ok(())
    }

    /// kill -9 and reap.
    pub fn kill_replica(&mut self, i: usize) {
        self.replicas[i].kill9();
    }

    pub fn kill_worker(&mut self, k: usize) {
        self.workers[k].proc = None;
    }

    pub fn pause_replica(&mut self, i: usize) {
        pause(self.replicas[i].process_mut());
    }

    pub fn resume_replica(&mut self, i: usize) {
        resume(self.replicas[i].process_mut());
    }

    pub fn pause_worker(&mut self, k: usize) {
        pause(self.workers[k].proc.as_mut());
    }

    pub fn resume_worker(&mut self, k: usize) {
        resume(self.workers[k].proc.as_mut());
    }

    /// Notices processes that exited by themselves (a crash): marks them down and returns
    /// (name, exit status) for each.
    pub fn reap_exited(&mut self) -> Vec<(String, String)> {
        let mut exited = Vec::new();
        for (i, r) in self.replicas.iter_mut().enumerate() {
            if let Some(status) = r.exit_status() {
                exited.push((format!("n{}", i + 1), status.to_string()));
            }
        }
        for (k, w) in self.workers.iter_mut().enumerate() {
            if let Some(status) = w.proc.as_mut().and_then(Proc::try_exit) {
                exited.push((format!("w{}", k + 1), status.to_string()));
                w.proc = None;
            }
        }
        exited
    }

    /// Stops everything with SIGTERM (SIGKILL after `grace`).
    pub fn stop_all(&mut self, grace: Duration) {
        let replicas = self.replicas.iter_mut().filter_map(ReplicaProc::process_mut);
        let mut all: Vec<&mut Proc> = self.workers.iter_mut().filter_map(|w| w.proc.as_mut()).chain(replicas).collect();
        all.iter_mut().for_each(|p| p.ask_to_stop());
        let deadline = Instant::now() + grace;
        for p in all {
            p.wait_exit(deadline.saturating_duration_since(Instant::now()));
        }
        // Whatever has not exited by now is killed as it is dropped.
        self.workers.iter_mut().for_each(|w| w.proc = None);
        self.replicas.iter_mut().for_each(ReplicaProc::kill9);
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        // Killed here, before the fields drop: the namespaces (in `topology`) go once no process
        // is left in them.
        self.workers.clear();
        self.replicas.clear();
    }
}
