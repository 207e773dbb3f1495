//! Processes for everything that runs real `raftsched` processes on one machine: the benchmarks
//! that kill and restart replicas and workers (`raftsched bench failover`, `scale`,
//! `worker-loss`, `fleet`, through `bench/local_cluster.rs`), the integration tests
//! (`crates/raftsched/tests/common`) and the harness (`jepsen-like-tests`, which runs each replica
//! under `ip netns exec`). One place decides how a process is started (stdin closed, its output
//! appended to its log, tied to its launcher), signalled (pause, resume, SIGTERM with a deadline,
//! kill -9) and torn down: a [`Proc`] kills its process when dropped, on every path out, a failed
//! test included. [`ReplicaProc`] adds what a replica needs on top: its id, address, data dir and
//! membership flags.

use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Ports that were free a moment ago: bound to port 0 on loopback, read, released.
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

/// What ties a started process to its launcher.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tie {
    /// Dies with the thread that started it (`PR_SET_PDEATHSIG`): for a launcher whose own death
    /// must take its processes with it (a benchmark or a harness killed with -9).
    pub die_with_parent: bool,
    /// In a process group of its own, and signalled as a group, so that what it started (a
    /// worker's tasks) goes with it.
    pub own_group: bool,
}

/// A started process, killed (kill -9) when dropped.
pub struct Proc {
    child: Child,
    tie: Tie,
    paused: bool,
}

impl Proc {
    /// Starts `command` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(command: &mut Command, log: &Path, tie: Tie) -> io::Result<Proc> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        if tie.own_group {
            command.process_group(0);
        }
        if tie.die_with_parent {
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        Ok(Proc { child: command.spawn()?, tie, paused: false })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` to the process (to its group, when it has its own).
    pub fn signal(&self, sig: i32) {
        let pid = self.child.id() as i32;
        let target = if self.tie.own_group { -pid } else { pid };
        // SAFETY: kill(2) on a child this process started and has not reaped (so the pid, and the
        // group it leads, are not reused).
        unsafe {
            libc::kill(target, sig);
        }
    }

    /// SIGSTOP: the process stays, frozen, until `resume`.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
    }

    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// How it ended, if it has; `None` while it runs.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `deadline` for it to end by itself.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if started.elapsed() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks it to stop (SIGCONT, then SIGTERM) without waiting.
    pub fn ask_to_stop(&mut self) {
        self.resume();
        self.signal(libc::SIGTERM);
    }

    /// SIGTERM, then a wait of at most `deadline` for it to exit (then kill -9 and an error).
    pub fn terminate(mut self, deadline: Duration) -> io::Result<ExitStatus> {
        self.ask_to_stop();
        self.wait_exit(deadline).ok_or_else(|| io::Error::other(format!("pid {} did not exit on SIGTERM", self.pid())))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.tie.own_group || self.try_exit().is_none() {
            // A stopped process dies of SIGKILL too, but its group's other members are continued
            // so that none is left frozen.
            self.signal(libc::SIGCONT);
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
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
    /// Dies with the thread that started it (see [`Tie`]).
    pub die_with_parent: bool,
    child: Option<Proc>,
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
    /// new member that knows the cluster at `join` (`ADDR,...`), with `extra` flags; its output is
    /// appended to its log.
    pub fn start(&mut self, initial: &str, join: &str, extra: &[String]) -> io::Result<()> {
        assert!(self.child.is_none(), "replica {} already running", self.id);
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
        command.env("RAFTSCHED_LOG", &self.log_filter);
        let tie = Tie { die_with_parent: self.die_with_parent, own_group: false };
        self.child = Some(Proc::spawn(&mut command, &self.log_path, tie)?);
        Ok(())
    }

    /// kill -9: no flush, no goodbye. Nothing when it is not running.
    pub fn kill9(&mut self) {
        self.child = None;
    }

    /// SIGTERM, then a wait of at most `deadline` for it to exit (then kill -9 and an error).
    pub fn terminate(&mut self, deadline: Duration) -> io::Result<ExitStatus> {
        let child = self.child.take().ok_or_else(|| io::Error::other(format!("replica {} is not running", self.id)))?;
        child.terminate(deadline).map_err(|_| io::Error::other(format!("replica {} did not exit on SIGTERM", self.id)))
    }

    /// How it ended, if it has (the process is then forgotten); `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_exit()?;
        self.child = None;
        Some(status)
    }

    /// Waits up to `deadline` for it to end by itself; how it ended (the process is then
    /// forgotten), or `None` if it still runs.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.wait_exit(deadline)?;
        self.child = None;
        Some(status)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Proc::pid)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_exit().is_none())
    }

    /// Its process, while started.
    pub fn process(&self) -> Option<&Proc> {
        self.child.as_ref()
    }

    pub fn process_mut(&mut self) -> Option<&mut Proc> {
        self.child.as_mut()
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

    #[test]
    fn a_process_in_its_own_group_takes_its_children_with_it_and_terminate_waits() {
        let dir = std::env::temp_dir().join(format!("raftsched-launcher-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let tie = Tie { die_with_parent: true, own_group: true };
        let mut parent = Proc::spawn(Command::new("/bin/sh").args(["-c", &script]), &dir.join("log"), tie).unwrap();
        let started = Instant::now();
        let child: i32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse().ok()) {
                break pid;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no child pid");
            std::thread::sleep(Duration::from_millis(10));
        };
        parent.pause();
        assert!(parent.is_paused() && parent.try_exit().is_none());
        drop(parent);
        // Gone, or a zombie waiting for whoever reaps orphans here.
        let gone = |pid: i32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit_once(") ").is_none_or(|(_, rest)| rest.starts_with('Z'))
        };
        while !gone(child) {
            assert!(started.elapsed() < Duration::from_secs(30), "the group's child outlived it");
            std::thread::sleep(Duration::from_millis(10));
        }
        // SIGTERM ends a shell at once; terminate reports how.
        let sleeper = Proc::spawn(Command::new("/bin/sleep").arg("30"), &dir.join("log"), Tie::default()).unwrap();
        let status = sleeper.terminate(Duration::from_secs(30)).unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGTERM));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
