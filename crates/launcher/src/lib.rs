//! Replica processes, for everything that runs a cluster of real `raftsched server` processes on
//! one machine: the benchmarks that kill and restart replicas (`raftsched bench failover`,
//! `scale`, `worker-loss`, `fleet`, through `bench/local_cluster.rs`) and the integration tests
//! (`crates/raftsched/tests/common`). One place decides how a replica is started (its id,
//! address, data dir, membership flags, log file), stopped (kill -9, or SIGTERM and a wait) and
//! torn down: a `ReplicaProc` kills its process when dropped, on every path out, a failed test
//! included. The harness (`jepsen-like-tests`) starts its replicas inside network namespaces and
//! keeps a launcher of its own for that.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Ports that were free a moment ago: bound to port 0 on loopback, read, released.
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

/// One replica: where it listens and keeps its data, how it is run, and its process.
pub struct ReplicaProc {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// Started with `--join` (a new member) instead of `--initial-cluster`.
    pub join: bool,
    /// `--http` address (status page and metrics), if any.
    pub http: Option<String>,
    /// The `raftsched` binary it runs.
    pub bin: PathBuf,
    /// A command the binary runs under (e.g. `faketime -f +1d`); empty: none.
    pub wrapper: Vec<String>,
    /// `RAFTSCHED_LOG` for it.
    pub log_filter: String,
    /// Dies with the thread that started it (`PR_SET_PDEATHSIG`): for a launcher whose own
    /// death must take the cluster with it (a benchmark killed with -9).
    pub die_with_parent: bool,
    child: Option<Child>,
}

impl ReplicaProc {
    /// Replica `id` at `addr`, its data in `dir/replica-ID` and its log in `dir/replica-ID.log`,
    /// running `bin`; not started.
    pub fn new(id: u64, addr: String, dir: &Path, bin: &Path) -> ReplicaProc {
        ReplicaProc {
            id,
            addr,
            data_dir: dir.join(format!("replica-{id}")),
            log_path: dir.join(format!("replica-{id}.log")),
            join: false,
            http: None,
            bin: bin.to_path_buf(),
            wrapper: Vec::new(),
            log_filter: "info,openraft=warn".into(),
            die_with_parent: false,
            child: None,
        }
    }

    /// Starts `raftsched server` as a member of `initial` (`ID=ADDR,...`), or, when it joins, a
    /// new member that knows the cluster at `join` (`ADDR,...`), with `extra` flags; stderr is
    /// appended to its log.
    pub fn start(&mut self, initial: &str, join: &str, extra: &[String]) -> io::Result<()> {
        assert!(self.child.is_none(), "replica {} already running", self.id);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path)?;
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        command.args(["server", "--id", &self.id.to_string(), "--listen", &self.addr]);
        match self.join {
            true => command.args(["--join", join]),
            false => command.args(["--initial-cluster", initial]),
        };
        command.arg("--data-dir").arg(&self.data_dir).args(extra);
        if let Some(http) = &self.http {
            command.args(["--http", http]);
        }
        command.env("RAFTSCHED_LOG", &self.log_filter).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        if self.die_with_parent {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        self.child = Some(command.spawn()?);
        Ok(())
    }

    /// kill -9: no flush, no goodbye. Nothing when it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then a wait of at most `deadline` for it to exit (then kill -9 and an error).
    pub fn terminate(&mut self, deadline: Duration) -> io::Result<ExitStatus> {
        let mut child =
            self.child.take().ok_or_else(|| io::Error::other(format!("replica {} is not running", self.id)))?;
        // SAFETY: a plain signal to a child this process started and has not reaped.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!("replica {} did not exit on SIGTERM", self.id)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How it ended, if it has (the process is then forgotten); `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for ReplicaProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `ID=ADDR,...` of the replicas that are members from the start (not joining).
pub fn initial_cluster<'a>(replicas: impl IntoIterator<Item = &'a ReplicaProc>) -> String {
    replicas.into_iter().filter(|r| !r.join).map(|r| format!("{}={}", r.id, r.addr)).collect::<Vec<_>>().join(",")
}

/// `ADDR,...` of every replica.
pub fn addrs<'a>(replicas: impl IntoIterator<Item = &'a ReplicaProc>) -> String {
    replicas.into_iter().map(|r| r.addr.clone()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_a_replica_is_killed_when_dropped() {
        let ports = free_ports(3).unwrap();
        assert_eq!(ports.len(), 3);
        let dir = std::env::temp_dir().join(format!("raftsched-launcher-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // `sleep` stands in for the binary: it ignores the arguments after its own.
        let mut r = ReplicaProc::new(1, format!("127.0.0.1:{}", ports[0]), &dir, Path::new("/bin/sh"));
        r.wrapper = vec!["/bin/sh".into(), "-c".into(), "sleep 30".into()];
        r.start("1=127.0.0.1:1", "", &[]).unwrap();
        let pid = r.pid().unwrap() as i32;
        assert!(r.is_running());
        assert_eq!(initial_cluster([&r]), format!("1=127.0.0.1:{}", ports[0]));
        drop(r);
        // SAFETY: signal 0 only asks whether the process exists.
        assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "dropped replica still alive");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
