//! The processes of a run: replicas (each in its own network namespace when possible) and
//! workers, started from the built `raftsched` binary, with their logs in the run's directory.
//!
//! Every child gets `PR_SET_PDEATHSIG = SIGKILL`, so none outlives the harness even if the
//! harness itself is killed; [`Procs::drop`] kills them all (continuing paused ones first).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

struct Proc {
    child: Option<Child>,
    state: ProcState,
    log: PathBuf,
    /// Started with `--join` (its data dir was wiped after a removal): restarts join too.
    joining: bool,
}

/// Options passed to every replica.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    pub faults: Vec<String>,
    pub extra_args: Vec<String>,
}

pub struct Procs {
    bin: PathBuf,
    /// The binary each replica runs: `bin`, unless an upgrade run started it on an older one.
    replica_bins: Vec<PathBuf>,
    /// Some replica was started on an older build.
    upgrade_run: bool,
    dir: PathBuf,
    pub topology: Topology,
    replicas: Vec<Proc>,
    workers: Vec<Proc>,
    options: ReplicaOptions,
}

fn spawn(mut cmd: Command, log: &Path) -> std::io::Result<Child> {
    let out = File::options().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child we own (not yet reaped, so the pid is not reused).
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

impl Procs {
    pub fn new(bin: PathBuf, dir: PathBuf, topology: Topology, n_replicas: usize, options: ReplicaOptions) -> Procs {
        let logs = dir.join("logs");
        let replicas = (0..n_replicas)
            .map(|i| Proc {
                child: None,
                state: ProcState::Down,
                log: logs.join(format!("n{}.log", i + 1)),
                joining: false,
            })
            .collect();
        let replica_bins = vec![bin.clone(); n_replicas];
        Procs { bin, replica_bins, upgrade_run: false, dir, topology, replicas, workers: Vec::new(), options }
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
        self.replicas[i].state
    }

    pub fn worker_state(&self, i: usize) -> ProcState {
        self.workers[i].state
    }

    pub fn n_workers(&self) -> usize {
        self.workers.len()
    }

    /// The binary replica `i` runs from its next start on. Once any replica ran an older build,
    /// the run stays an upgrade run (see `security_args`).
    pub fn set_replica_bin(&mut self, i: usize, bin: PathBuf) {
        self.upgrade_run |= bin != self.bin;
        self.replica_bins[i] = bin;
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
        self.replica_bins[i] == self.bin
    }

    pub fn current_bin(&self) -> PathBuf {
        self.bin.clone()
    }

    /// Waits up to `timeout` for replica `i` to exit by itself; if it did, it is marked down and
    /// its exit status returned (so it is not reported as a crash).
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            let status = self.replicas[i].child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = status {
                self.replicas[i].child = None;
                self.replicas[i].state = ProcState::Down;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.data_root().join(format!("n{}", i + 1))
    }

    /// Deletes replica `i`'s data dir (it must be down).
    pub fn wipe_replica(&mut self, i: usize) -> std::io::Result<()> {
        assert_eq!(self.replicas[i].state, ProcState::Down);
        match std::fs::remove_dir_all(self.data_dir(i)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Starts replica `i` with an empty data dir and `--join`, to be added with `cluster add`.
    pub fn start_replica_joining(&mut self, i: usize) -> std::io::Result<()> {
        self.replicas[i].joining = true;
        self.start_replica(i)
    }

    /// How replica `i` proves itself to its peers: the run's cluster secret (made on first use).
    /// An upgrade run's trio started on a build that knows no secret, so its replicas of this
    /// build run `--insecure` instead; and with network namespaces the client API listens on a
    /// non-loopback address without TLS, which needs `--insecure` too. Older builds get
    /// `--insecure` when they know it (an upgrade run's cluster is open), else nothing.
    fn security_args(&self, i: usize) -> std::io::Result<Vec<String>> {
        if !self.runs_current_bin(i) {
            let open = Self::knows_insecure(&self.replica_bins[i]);
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
        assert_eq!(self.replicas[i].state, ProcState::Down);
        let listen = self.topology.addr(i);
        let data_dir = self.data_dir(i);
        let membership: Vec<String> = if self.replicas[i].joining {
            let others: Vec<String> =
                (0..self.replicas.len()).filter(|&j| j != i).map(|j| self.topology.addr(j)).collect();
            vec!["--join".into(), others.join(",")]
        } else {
            let initial: Vec<String> =
                (0..self.replicas.len()).map(|j| format!("{}={}", j + 1, self.topology.addr(j))).collect();
            vec!["--initial-cluster".into(), initial.join(",")]
        };
        let mut cmd = match &self.topology {
            Topology::Netns(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name(i)]).arg(&self.replica_bins[i]);
                c
            }
            Topology::Loopback(_) => Command::new(&self.replica_bins[i]),
        };
        cmd.arg("server")
            .args(["--id", &(i + 1).to_string(), "--listen", &listen])
            .args(&membership)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(&self.options.extra_args)
            .env("RAFTSCHED_LOG", std::env::var("RAFTSCHED_LOG").unwrap_or_else(|_| "info".into()));
        for fault in &self.options.faults {
            cmd.args(["--fault", fault]);
        }
        cmd.args(self.security_args(i)?);
        let child = spawn(cmd, &self.replicas[i].log)?;
        self.replicas[i].child = Some(child);
        self.replicas[i].state = ProcState::Running;
        Ok(())
    }

    /// Adds and starts a worker `w<k>` with `slots` slots, talking to every replica.
    pub fn add_worker(&mut self, slots: u32) -> std::io::Result<usize> {
        let k = self.workers.len();
        self.workers.push(Proc {
            child: None,
            state: ProcState::Down,
            log: self.dir.join("logs").join(format!("w{}.log", k + 1)),
            joining: false,
        });
        self.start_worker(k, slots)?;
        Ok(k)
    }

    pub fn start_worker(&mut self, k: usize, slots: u32) -> std::io::Result<()> {
        assert_eq!(self.workers[k].state, ProcState::Down);
        let mut cmd = Command::new(&self.bin);
        let output_dir = self.dir.join("worker-output").join(format!("w{}", k + 1));
        cmd.args(["worker", "--id", &format!("w{}", k + 1), "--slots", &slots.to_string()])
            .args(["--cluster", &self.replica_addrs().join(",")])
            .arg("--output-dir")
            .arg(output_dir)
            .env("RAFTSCHED_LOG", std::env::var("RAFTSCHED_LOG").unwrap_or_else(|_| "info".into()));
        let child = spawn(cmd, &self.workers[k].log)?;
        self.workers[k].child = Some(child);
        self.workers[k].state = ProcState::Running;
        Ok(())
    }

    /// kill -9 and reap.
    fn kill(p: &mut Proc) {
        if let Some(mut child) = p.child.take() {
            signal(&child, libc::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
        p.state = ProcState::Down;
    }

    pub fn kill_replica(&mut self, i: usize) {
        Self::kill(&mut self.replicas[i]);
    }

    pub fn kill_worker(&mut self, k: usize) {
        Self::kill(&mut self.workers[k]);
    }

    fn pause(p: &mut Proc) {
        if let (Some(child), ProcState::Running) = (&p.child, p.state) {
            signal(child, libc::SIGSTOP);
            p.state = ProcState::Paused;
        }
    }

    fn resume(p: &mut Proc) {
        if let (Some(child), ProcState::Paused) = (&p.child, p.state) {
            signal(child, libc::SIGCONT);
            p.state = ProcState::Running;
        }
    }

    pub fn pause_replica(&mut self, i: usize) {
        Self::pause(&mut self.replicas[i]);
    }

    pub fn resume_replica(&mut self, i: usize) {
        Self::resume(&mut self.replicas[i]);
    }

    pub fn pause_worker(&mut self, k: usize) {
        Self::pause(&mut self.workers[k]);
    }

    pub fn resume_worker(&mut self, k: usize) {
        Self::resume(&mut self.workers[k]);
    }

    /// Notices processes that exited by themselves (a crash): marks them down and returns
    /// (name, exit status) for each.
    pub fn reap_exited(&mut self) -> Vec<(String, String)> {
        let mut exited = Vec::new();
        for (prefix, procs) in [("n", &mut self.replicas), ("w", &mut self.workers)] {
            for (i, p) in procs.iter_mut().enumerate() {
                if let Some(child) = &mut p.child {
                    if let Ok(Some(status)) = child.try_wait() {
                        exited.push((format!("{prefix}{}", i + 1), status.to_string()));
                        p.child = None;
                        p.state = ProcState::Down;
                    }
                }
            }
        }
        exited
    }

    /// Stops everything with SIGTERM (SIGKILL after `grace`).
    pub fn stop_all(&mut self, grace: Duration) {
        let all: Vec<&mut Proc> = self.workers.iter_mut().chain(self.replicas.iter_mut()).collect();
        for p in &all {
            if let Some(child) = &p.child {
                signal(child, libc::SIGCONT);
                signal(child, libc::SIGTERM);
            }
        }
        let started = Instant::now();
        for p in all {
            if let Some(mut child) = p.child.take() {
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if started.elapsed() > grace => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
            p.state = ProcState::Down;
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for p in self.workers.iter_mut().chain(self.replicas.iter_mut()) {
            Self::kill(p);
        }
        // The namespaces (in `topology`) are dropped after this, once no process is left in them.
    }
}
