//! Live task output with real processes: `raftsched logs --follow` prints an attempt's lines while
//! it runs (fetched through a replica from the worker), and goes on through a kill -9 and restart
//! of that worker (ending with what the worker kept); earlier and later attempts stay apart;
//! stderr apart from stdout; the errors a user meets say what is wrong.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::*;

/// `raftsched logs ARGS` running, its stdout lines arriving on a channel.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(cluster: &Cluster, args: &[&str]) -> Follower {
        let mut child = Command::new(BIN)
            .args(["logs", "--cluster", &cluster.cluster_arg()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn raftsched logs");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Follower { child, lines }
    }

    fn next_line(&self) -> String {
        self.lines.recv_timeout(DEADLINE).expect("a line from logs --follow")
    }

    /// Waits for the process to end; its exit status, every line left, and its stderr.
    fn finish(mut self) -> (std::process::ExitStatus, Vec<String>, String) {
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < DEADLINE, "logs --follow did not end");
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let rest = self.lines.iter().collect();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut err).unwrap();
        (status, rest, err)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A task that prints `first` (and `oops` on stderr), waits for `gate` to exist, prints `second`.
fn gated(cluster: &Cluster, key: &str, gate: &std::path::Path) -> u64 {
    let script =
        format!("echo first; echo oops >&2; while [ ! -e {} ]; do sleep 0.05; done; echo second", gate.display());
    let out = cli(&cluster.cluster_arg(), &["submit", "--key", key, "--max-attempts", "3", "--", "sh", "-c", &script]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).parse().unwrap()
}

/// A trio with one worker, `w1`, ready.
async fn with_a_worker() -> Cluster {
    let mut cluster = Cluster::start(3, FAST_WORKERS);
    cluster.leader().await;
    cluster.start_worker("w1", &[]);
    cluster.wait_workers_ready(1).await;
    cluster
}

fn logs(cluster: &Cluster, args: &[&str]) -> std::process::Output {
    cli(&cluster.cluster_arg(), &[&["logs"], args].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_a_running_attempt_and_goes_on_through_a_worker_restart() {
    let mut cluster = with_a_worker().await;
    let gates = tempfile::tempdir().unwrap();

    // While the attempt runs, its first line arrives; the rest once it goes on; then the end.
    let id = gated(&cluster, "live", &gates.path().join("go"));
    let follower = Follower::start(&cluster, &["--follow", &id.to_string()]);
    assert_eq!(follower.next_line(), "first");
    let task = cluster.client().get(id, false).await.unwrap();
    // Held (a quick attempt is reported started only after 50 ms): the line came while it ran.
    assert!(matches!(task.state.as_str(), "assigned" | "running"), "the line came after the end: {}", task.state);
    std::fs::write(gates.path().join("go"), b"").unwrap();
    assert_eq!(follower.next_line(), "second");
    let (status, rest, err) = follower.finish();
    assert!(status.success() && rest.is_empty(), "{status:?} {rest:?} {err}");
    let out = logs(&cluster, &["--stderr", &id.to_string()]);
    assert_eq!((out.status.success(), stdout(&out)), (true, "oops".to_string()), "{}", stderr(&out));

    // The worker dies mid-attempt and comes back: the follower ends with what it kept; the retry
    // (attempt 2, on the restarted worker) has its own output.
    let id = gated(&cluster, "restart", &gates.path().join("go2"));
    let follower = Follower::start(&cluster, &["-f", &id.to_string()]);
    assert_eq!(follower.next_line(), "first");
    cluster.kill9_worker("w1");
    cluster.start_worker("w1", &[]);
    let (status, rest, err) = follower.finish();
    assert!(status.success() && rest.is_empty(), "{status:?} {rest:?} {err}\n{}", cluster.logs());
    let task =
        cluster.wait_task(id, "a second attempt running", |t| t.attempts.len() == 2 && t.state == "running").await;
    assert_eq!(task.attempts[0].worker_id, "w1");
    std::fs::write(gates.path().join("go2"), b"").unwrap();
    cluster.wait_task(id, "succeeded", |t| t.state == "succeeded").await;
    let first = logs(&cluster, &["--attempt", "1", &id.to_string()]);
    assert_eq!(stdout(&first), "first", "{}", stderr(&first));
    let latest = logs(&cluster, &[&id.to_string()]);
    assert_eq!(stdout(&latest), "first\nsecond", "{}", stderr(&latest));
    let from = logs(&cluster, &["--offset", "6", &id.to_string()]);
    assert_eq!(stdout(&from), "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_says_plainly_why_there_is_no_output() {
    let cluster = with_a_worker().await;
    let out = cli(&cluster.cluster_arg(), &["submit", "--constraint", "zone=nowhere", "--", "true"]);
    let waiting = stdout(&out);
    let cases: [(&[&str], i32, &str); 5] = [
        (&["0"], 2, "not a task id"),
        (&["--attempt", "0", "1"], 2, "--attempt counts from 1"),
        (&["999"], 1, "no task with id 999"),
        (&[&waiting], 1, "has not run yet (it is pending)"),
        (&["--attempt", "9", &waiting], 1, "has not run yet"),
    ];
    for (args, code, message) in cases {
        let out = logs(&cluster, args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "one line: {}", stderr(&out));
    }
    let done = cluster.client().submit("echoed", echo("hi")).await.unwrap().id;
    cluster.wait_task(done, "succeeded", |t| t.state == "succeeded").await;
    let out = logs(&cluster, &["--attempt", "2", &done.to_string()]);
    assert!(stderr(&out).contains("has no attempt 2 (it has 1)"), "{}", stderr(&out));
    let out = logs(&cluster, &[&done.to_string()]);
    assert_eq!(stdout(&out), "hi", "a builtin's output is kept too: {}", stderr(&out));

    // Serving output beyond this machine without TLS is refused unless asked for on purpose.
    let exposed = Command::new(BIN)
        .args(["worker", "--id", "x", "--cluster", &cluster.cluster_arg(), "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(exposed.status.code(), Some(2), "{}", stderr(&exposed));
    assert!(stderr(&exposed).contains("not a loopback address, and no TLS"), "{}", stderr(&exposed));
}
