//! The runner against real raftsched processes: a short run with every nemesis passes, and the
//! same kind of run against a replica built with each deliberate bug is reported as a violation.
//!
//! As root (CI) replicas get network namespaces and partitions are real; otherwise the runner
//! says so and runs without partitions. The runs share two cores, so they take turns (`SERIAL`).
//! Longer runs: `cargo test -p jepsen-like-tests --release --test run -- --ignored` (see
//! docs/testing.md).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use jepsen_like_tests::run::nemesis::Fault;
use jepsen_like_tests::run::{run, RunConfig, RunOutcome};

static SERIAL: Mutex<()> = Mutex::new(());

/// The raftsched binary beside the test executable, built with fault injection. `cargo test
/// --workspace` builds it so (this package's dev-dependency turns the server's feature on); when
/// it is missing or lacks `--fault` (e.g. `cargo test -p jepsen-like-tests` alone), build it.
fn raftsched_bin() -> PathBuf {
    let bin = jepsen_like_tests::run::default_raftsched_bin();
    let has_faults = || {
        Command::new(&bin)
            .args(["server", "--help"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("--fault"))
            .unwrap_or(false)
    };
    if !has_faults() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "raftsched", "--features", "fault-injection"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p raftsched --features fault-injection failed");
        assert!(has_faults(), "{} has no --fault after building it with fault-injection", bin.display());
    }
    bin
}

fn config(name: &str, seed: u64, time_limit_s: u64, nemesis: &str) -> RunConfig {
    let out = std::env::temp_dir().join(format!("raftsched-jepsen-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut c = RunConfig::new(raftsched_bin(), out);
    c.seed = seed;
    c.time_limit_s = time_limit_s;
    c.nemeses = Fault::parse_list(nemesis).unwrap();
    c.progress = false;
    // Faults often enough that each kind happens in a short run.
    c.fault_hold_ms = (1_000, 3_000);
    c.fault_quiet_ms = (500, 1_500);
    c
}

fn run_serially(c: &RunConfig) -> RunOutcome {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let outcome = run(c).expect("the run could not be carried out");
    eprintln!("{}", jepsen_like_tests::run::summary(&outcome));
    outcome
}

fn failed(o: &RunOutcome, invariant: &str) -> bool {
    o.invariants.iter().any(|i| i.name == invariant && !i.holds)
}

#[test]
fn a_short_run_with_kills_pauses_and_partitions_passes() {
    let out = std::env::temp_dir().join(format!("raftsched-jepsen-test-{}-clean", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let bin = raftsched_bin();
    // Through the command line, as an engineer runs it.
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let status = Command::new(env!("CARGO_BIN_EXE_jepsen-like-tests"))
        .args(["run", "--time-limit-s", "30", "--seed", "42", "--nemesis", "kill,pause,partition,worker"])
        .args(["--fault-hold-ms", "1000-3000", "--fault-quiet-ms", "500-1500"])
        .arg("--out")
        .arg(&out)
        .arg("--raftsched-bin")
        .arg(&bin)
        .status()
        .expect("run jepsen-like-tests");
    let verdict: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("verdict.json")).expect("verdict.json")).unwrap();
    assert!(status.success() && verdict["valid"] == true, "run failed: {verdict:#}");
    assert_eq!(verdict["linearizability"], "linearizable");
    assert!(verdict["faults"].as_u64().unwrap() >= 5, "{verdict:#}");
    assert!(verdict["ok"].as_u64().unwrap() > 100, "{verdict:#}");
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report.contains("VALID") && report.contains("<svg"));
    assert!(out.join("history.jsonl").is_file() && out.join("nemesis.jsonl").is_file());
    assert!(out.join("logs/n1.log").is_file() && out.join("logs/w1.log").is_file());
    // The history re-checks from the file alone.
    let recheck = Command::new(env!("CARGO_BIN_EXE_jepsen-like-tests"))
        .args(["check", "--model", "scheduler"])
        .arg(out.join("history.jsonl"))
        .output()
        .unwrap();
    assert!(recheck.status.success(), "{}", String::from_utf8_lossy(&recheck.stdout));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn stale_reads_are_caught() {
    // A partitioned replica that answers reads from its own state serves old values.
    let mut c = config("stale-reads", 3, 25, "partition,pause");
    c.faults = vec!["stale-reads".into()];
    c.recovery_timeout_s = 30;
    c.fault_hold_ms = (2_000, 5_000);
    if let Err(why) = jepsen_like_tests::run::netns::available() {
        // Without partitions nothing keeps a replica behind long enough to be caught reliably.
        eprintln!("skipping: stale reads are caught through partitions, which need network namespaces ({why})");
        return;
    }
    let o = run_serially(&c);
    assert!(!o.valid, "stale reads went unnoticed");
    assert_eq!(o.linearizability, "not linearizable", "{o:#?}");
    let _ = std::fs::remove_dir_all(&c.out);
}

#[test]
fn skipped_fsyncs_are_caught() {
    // Acknowledged entries that only lived in memory (the fault's write-behind log) vanish when
    // every replica, or a majority, is killed.
    let mut c = config("skip-fsync", 3, 25, "kill-all,kill-majority");
    c.faults = vec!["skip-fsync".into()];
    c.recovery_timeout_s = 30;
    // Time between kills for the cluster to recover and acknowledge writes that the next
    // kill can lose.
    c.fault_hold_ms = (500, 1_500);
    c.fault_quiet_ms = (3_000, 5_000);
    let o = run_serially(&c);
    assert!(!o.valid, "lost writes went unnoticed");
    // Lost entries show as acknowledged tasks gone or ids reused, or as replicas that find their
    // log shorter than what they applied and stop.
    assert!(
        o.linearizability == "not linearizable"
            || failed(&o, "acknowledged submits survive")
            || failed(&o, "no process exited by itself"),
        "{o:#?}"
    );
    let _ = std::fs::remove_dir_all(&c.out);
}

#[test]
fn unfenced_reports_are_caught() {
    // Workers are killed and paused, so tasks move; the zombie replays superseded tokens.
    let mut c = config("unfenced-reports", 3, 20, "worker");
    c.faults = vec!["unfenced-reports".into()];
    c.recovery_timeout_s = 30;
    let o = run_serially(&c);
    assert!(o.zombie_reports > 0, "no stale token was ever tried: {o:#?}");
    assert!(failed(&o, "no completion from a stale fencing token"), "{o:#?}");
    let _ = std::fs::remove_dir_all(&c.out);
}

/// The long run of docs/testing.md: every nemesis, `JEPSEN_TIME_LIMIT_S` seconds (600).
#[test]
#[ignore]
fn long_run_with_every_nemesis() {
    let time_limit_s = std::env::var("JEPSEN_TIME_LIMIT_S").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let seed = std::env::var("JEPSEN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut c = config("long", seed, time_limit_s, "all");
    c.fault_hold_ms = (1_000, 5_000);
    c.fault_quiet_ms = (1_000, 4_000);
    let o = run_serially(&c);
    assert!(o.valid, "{o:#?}");
}

/// The children of process `pid` (every thread's), from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie's state is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

#[test]
fn an_interrupted_run_tears_everything_down() {
    let out = std::env::temp_dir().join(format!("raftsched-jepsen-test-{}-interrupted", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let bin = raftsched_bin();
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut child = Command::new(env!("CARGO_BIN_EXE_jepsen-like-tests"))
        .args(["run", "--time-limit-s", "120", "--seed", "5", "--nemesis", "kill,pause,partition"])
        .arg("--out")
        .arg(&out)
        .arg("--raftsched-bin")
        .arg(&bin)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let runner = child.id();
    // Under way: replicas and workers started (the workers' logs appear after a leader).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !out.join("logs/w2.log").exists() {
        assert!(std::time::Instant::now() < deadline, "the run did not start");
        assert!(child.try_wait().unwrap().is_none(), "the runner exited early");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    let started = children_of(runner);
    assert!(started.len() >= 5, "expected 3 replicas and 2 workers, saw {started:?}");
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(runner as i32, libc::SIGINT);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the runner did not stop within 60 s of SIGINT");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(2), "an interrupted run exits 2");
    for pid in started {
        assert!(!alive(pid), "process {pid} outlived the interrupted runner");
    }
    let namespaces = Command::new("ip").args(["netns", "list"]).output().map(|o| o.stdout).unwrap_or_default();
    let prefix = format!("raftsched-jepsen-{runner}-");
    assert!(
        !String::from_utf8_lossy(&namespaces).contains(&prefix),
        "namespaces of the interrupted run are left: {}",
        String::from_utf8_lossy(&namespaces)
    );
    let _ = std::fs::remove_dir_all(&out);
}
