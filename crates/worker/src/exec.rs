//! Running one attempt: a builtin in-process, or a command as a child process in its own process
//! group. The child dies with the worker (PR_SET_PDEATHSIG on Linux), so a worker killed with -9
//! leaves no attempt running behind it. Stdout and stderr are kept apart, each as a bounded tail
//! with its length in all, and (when the worker keeps output) whole on disk (`output.rs`).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use raftsched_client::api;
use raftsched_state::limits::OUTPUT_TAIL_BYTES_MAX;
use raftsched_state::{tail_of, Output};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use crate::output::AttemptOutput;

/// The hidden subcommand of the supervisor binary (see `set_supervisor`).
pub const SUPERVISE_SUBCOMMAND: &str = "__supervise";

static SUPERVISOR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Runs every command attempt under `path SUPERVISE_SUBCOMMAND -- argv...` (a binary that calls
/// `supervise`), so that a worker killed with -9 takes the attempt's whole process group with it.
pub fn set_supervisor(path: std::path::PathBuf) {
    let _ = SUPERVISOR.set(path);
}

extern "C" fn kill_own_group(_signal: libc::c_int) {
    // Only async-signal-safe calls here.
    unsafe {
        libc::kill(0, libc::SIGKILL);
    }
}

/// The supervisor: leader of the attempt's process group and direct child of the worker. When the
/// worker dies it gets SIGTERM (PR_SET_PDEATHSIG) and kills the whole group, itself included.
/// It also holds the worker's lease: the worker writes `lease-ms N` lines to its stdin (the lease
/// has N ms left) whenever the lease moves, and when the last one runs out the supervisor kills
/// the group. So a worker that is paused (SIGSTOP, a stalled VM) rather than dead still has its
/// attempts end with its lease, before the leader may give them to another worker. Before the
/// first line (an older worker, whose stdin is empty) there is no deadline. Otherwise it runs
/// `argv` in the group and exits with its status. Returns the exit code.
pub fn supervise(argv: &[String]) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("supervise: nothing to run");
        return 127;
    };
    unsafe {
        libc::signal(libc::SIGTERM, kill_own_group as *const () as libc::sighandler_t);
        // The worker may have died before the handler was in place: then nothing else will tell us.
        if libc::getppid() == 1 {
            return 137;
        }
    }
    let child = std::process::Command::new(program).args(args).stdin(Stdio::null()).spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("cannot start {program:?}: {e}");
            return 127;
        }
    };
    std::thread::spawn(hold_the_lease);
    match child.wait() {
        Ok(status) => status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }),
        Err(_) => 1,
    }
}

/// The supervisor's lease: reads `lease-ms N` lines from stdin (at most `LEASE_LINE_BYTES_MAX`
/// each) and kills the process group once the last deadline has passed.
fn hold_the_lease() {
    use std::io::{BufRead, Read};
    let deadline: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>> = Default::default();
    let watched = deadline.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(LEASE_WATCH_MS));
        let passed = watched.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|d| std::time::Instant::now() >= d);
        if passed {
            unsafe {
                libc::kill(0, libc::SIGKILL);
            }
        }
    });
    let mut stdin = std::io::BufReader::new(std::io::stdin());
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut stdin).take(LEASE_LINE_BYTES_MAX).read_line(&mut line) {
            Ok(0) | Err(_) => return, // the worker closed its end: the last deadline stands
            Ok(_) => {}
        }
        if let Some(ms) = line.trim().strip_prefix("lease-ms ").and_then(|n| n.parse::<u64>().ok()) {
            let at = std::time::Instant::now() + Duration::from_millis(ms);
            *deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
        }
    }
}

/// How often the supervisor looks at its lease's deadline.
const LEASE_WATCH_MS: u64 = 10;
/// Longest lease line read from the worker.
const LEASE_LINE_BYTES_MAX: u64 = 64;
/// How often the worker looks whether an attempt's lease moved, to tell its supervisor.
const LEASE_FEED_MS: u64 = 50;

/// How much of the worker's lease is left now (zero once it is lost): what a supervisor is told.
pub type LeaseLeft = std::sync::Arc<dyn Fn() -> Duration + Send + Sync>;

/// Tells the supervisor on `stdin` how much lease is left whenever the lease moves; ends when the
/// supervisor's stdin closes (or the task is aborted with the attempt).
async fn feed_lease(mut stdin: tokio::process::ChildStdin, lease_left: LeaseLeft) {
    use tokio::io::AsyncWriteExt;
    let mut told: Option<std::time::Instant> = None;
    loop {
        let left = lease_left();
        let deadline = std::time::Instant::now() + left;
        // Told again only when the deadline moved (a renewal, or the lease lost): about one line
        // per heartbeat, not one per tick.
        if told.is_none_or(|t| deadline > t + Duration::from_millis(LEASE_FEED_MS) || left.is_zero()) {
            let line = format!("lease-ms {}\n", left.as_millis());
            if stdin.write_all(line.as_bytes()).await.is_err() {
                return;
            }
            told = Some(deadline);
        }
        tokio::time::sleep(Duration::from_millis(LEASE_FEED_MS)).await;
    }
}

/// How an attempt ended on this worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The process exited (or timed out): a result to report.
    Exited { exit_code: i32, output: Output, timed_out: bool },
    /// Killed on the worker's own decision (cancelled, reassigned, lease lost): no result.
    Killed,
}

impl Ended {
    fn with_stdout(exit_code: i32, text: &str) -> Ended {
        let output = Output {
            stdout_tail: tail_of(text, OUTPUT_TAIL_BYTES_MAX),
            stdout_bytes: text.len() as u64,
            ..Default::default()
        };
        Ended::Exited { exit_code, output, timed_out: false }
    }

    /// An attempt that ended without running anything: the worker says why on stderr.
    fn with_stderr(exit_code: i32, timed_out: bool, text: &str) -> Ended {
        let output = Output {
            stderr_tail: tail_of(text, OUTPUT_TAIL_BYTES_MAX),
            stderr_bytes: text.len() as u64,
            ..Default::default()
        };
        Ended::Exited { exit_code, output, timed_out }
    }
}

/// Both streams' tails joined, stdout first, cut to `OUTPUT_TAIL_BYTES_MAX`: the one tail that
/// replicas before format 5 record.
pub fn joined_tail(output: &Output) -> String {
    tail_of(&format!("{}{}", output.stdout_tail, output.stderr_tail), OUTPUT_TAIL_BYTES_MAX)
}

/// Runs `spec` until it ends, `timeout_ms` passes, or `kill` turns true; a command's supervisor
/// is told `lease_left` as the lease moves.
/// Every byte either stream writes also goes to `kept` (the attempt's output on disk), if given.
pub async fn run(
    spec: &api::TaskSpec,
    mut kill: watch::Receiver<bool>,
    lease_left: LeaseLeft,
    kept: Option<Arc<AttemptOutput>>,
) -> Ended {
    let timeout = (spec.timeout_ms > 0).then(|| Duration::from_millis(spec.timeout_ms));
    let sleep_for_timeout = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let killed = async {
        let _ = kill.wait_for(|k| *k).await;
    };
    match &spec.exec {
        Some(api::task_spec::Exec::Builtin(b)) => {
            let work = builtin(&b.name, &b.arg);
            let ended = tokio::select! {
                ended = work => ended,
                _ = sleep_for_timeout => Ended::with_stderr(-1, true, "timed out"),
                _ = killed => Ended::Killed,
            };
            if let (Some(kept), Ended::Exited { output, .. }) = (&kept, &ended) {
                // A builtin's output is all in its tail: keep that.
                kept.write(false, output.stdout_tail.as_bytes());
                kept.write(true, output.stderr_tail.as_bytes());
            }
            ended
        }
        Some(api::task_spec::Exec::Command(c)) => {
            command(spec, &c.argv, sleep_for_timeout, killed, lease_left, kept).await
        }
        None => Ended::with_stderr(127, false, "task has nothing to run"),
    }
}

async fn builtin(name: &str, arg: &str) -> Ended {
    match name {
        "sleep" => {
            let ms = arg.parse::<u64>().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ended::with_stdout(0, "")
        }
        "echo" => Ended::with_stdout(0, &format!("{arg}\n")),
        "fail" => {
            let code = arg.parse::<i32>().unwrap_or(1);
            Ended::with_stdout(code, &format!("fail:{code}\n"))
        }
        other => Ended::with_stderr(127, false, &format!("unknown builtin {other:?}")),
    }
}

/// What one stream left: its last bytes and how many it wrote in all.
#[derive(Default)]
struct StreamTail {
    tail: Vec<u8>,
    bytes: u64,
}

impl StreamTail {
    /// The tail as text. A cut tail starts after its first line break when it has one, so it does
    /// not begin mid-line (the total says how much came before).
    fn text(&self) -> String {
        let mut tail = &self.tail[..];
        if self.bytes > tail.len() as u64 {
            if let Some(p) = tail.iter().position(|b| *b == b'\n').filter(|p| p + 1 < tail.len()) {
                tail = &tail[p + 1..];
            }
        }
        tail_of(&String::from_utf8_lossy(tail), OUTPUT_TAIL_BYTES_MAX)
    }
}

/// Reads `reader` to its end, keeping only the last `OUTPUT_TAIL_BYTES_MAX` bytes, and writing
/// every byte to `kept` (stream `stderr` of the attempt's output on disk) if given.
async fn read_tail(mut reader: impl AsyncRead + Unpin, kept: Option<(Arc<AttemptOutput>, bool)>) -> StreamTail {
    let mut out = StreamTail { tail: Vec::with_capacity(OUTPUT_TAIL_BYTES_MAX), bytes: 0 };
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                if let Some((kept, stderr)) = &kept {
                    kept.write(*stderr, &buf[..n]);
                }
                out.bytes += n as u64;
                out.tail.extend_from_slice(&buf[..n]);
                if out.tail.len() > OUTPUT_TAIL_BYTES_MAX {
                    out.tail.drain(..out.tail.len() - OUTPUT_TAIL_BYTES_MAX);
                }
            }
        }
    }
}

async fn command(
    spec: &api::TaskSpec,
    argv: &[String],
    timeout: impl std::future::Future<Output = ()>,
    killed: impl std::future::Future<Output = ()>,
    lease_left: LeaseLeft,
    kept: Option<Arc<AttemptOutput>>,
) -> Ended {
    let Some((program, args)) = argv.split_first() else {
        return Ended::with_stderr(127, false, "empty argv");
    };
    let mut cmd = build_command(spec, program, args);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return Ended::with_stderr(127, false, &format!("cannot start {program:?}: {e}")),
    };
    let pid = child.id();
    let feeder = child.stdin.take().map(|stdin| tokio::spawn(feed_lease(stdin, lease_left)));
    let kept_as = |stderr| kept.clone().map(|k| (k, stderr));
    let stdout = child.stdout.take().map(|s| tokio::spawn(read_tail(s, kept_as(false))));
    let stderr = child.stderr.take().map(|s| tokio::spawn(read_tail(s, kept_as(true))));
    let kill_group = || {
        if let Some(pid) = pid {
            // The whole group: a shell's children die with it.
            unsafe {
                libc::killpg(pid as i32, libc::SIGKILL);
            }
        }
    };
    let outcome = tokio::select! {
        status = child.wait() => Some((status, false)),
        _ = timeout => { kill_group(); let status = child.wait().await; Some((status, true)) }
        _ = killed => { kill_group(); let _ = child.wait().await; None }
    };
    // Whatever ended the attempt, nothing it started may outlive it: background descendants would
    // run on beside a later attempt, and any holding the output pipes would stall the drain below.
    kill_group();
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    let (stdout, stderr) = (drain(stdout).await, drain(stderr).await);
    let output = Output {
        stdout_tail: stdout.text(),
        stderr_tail: stderr.text(),
        stdout_bytes: stdout.bytes,
        stderr_bytes: stderr.bytes,
    };
    match outcome {
        None => Ended::Killed,
        Some((status, timed_out)) => {
            let exit_code = match status {
                Ok(s) => s.code().unwrap_or_else(|| {
                    use std::os::unix::process::ExitStatusExt;
                    128 + s.signal().unwrap_or(0)
                }),
                Err(_) => -1,
            };
            Ended::Exited { exit_code: if timed_out { -1 } else { exit_code }, output, timed_out }
        }
    }
}

/// The process of a command attempt: under the supervisor when there is one, in its own process
/// group, with the task's environment and directory, its output piped, and a signal that reaches
/// it when the worker dies.
fn build_command(spec: &api::TaskSpec, program: &str, args: &[String]) -> tokio::process::Command {
    let supervisor = SUPERVISOR.get();
    let mut cmd = match supervisor {
        Some(path) => {
            let mut cmd = tokio::process::Command::new(path);
            cmd.arg(SUPERVISE_SUBCOMMAND).arg("--").arg(program).args(args);
            cmd
        }
        None => {
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args);
            cmd
        }
    };
    // With a supervisor, the worker's death reaches it as SIGTERM, which it turns into SIGKILL for
    // the whole process group (grandchildren included); without one, SIGKILL reaches only the child.
    let death_signal = if supervisor.is_some() { libc::SIGTERM } else { libc::SIGKILL };
    // A supervisor reads the worker's lease on its stdin; the command's own stdin stays empty.
    let stdin = if supervisor.is_some() { Stdio::piped() } else { Stdio::null() };
    cmd.envs(spec.env.iter())
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if !spec.cwd.is_empty() {
        cmd.current_dir(&spec.cwd);
    }
    #[cfg(target_os = "linux")]
    unsafe {
        // The child gets SIGKILL if the worker dies, so no attempt outlives its worker's lease.
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// What a stream's reader task kept (nothing when the stream was not piped or the task failed).
async fn drain(reader: Option<tokio::task::JoinHandle<StreamTail>>) -> StreamTail {
    match reader {
        Some(handle) => handle.await.unwrap_or_default(),
        None => StreamTail::default(),
    }
}
