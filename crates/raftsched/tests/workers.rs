//! Workers as real processes against a real trio: tasks run and report once, through worker and
//! leader crashes, pauses past the lease, cancels, timeouts, drains, labels and priorities.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use raftsched_client::api;
use tonic::Code;

/// The pid a task wrote into `path`, once it is there.
async fn read_pid_file(path: &std::path::Path) -> i32 {
    let started = std::time::Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        assert!(started.elapsed() < DEADLINE, "task never wrote its pid to {}", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the cluster lists worker `id` as `pred` wants it; `what` names that in the failure.
async fn wait_worker(client: &raftsched_client::Client, id: &str, what: &str, pred: impl Fn(&api::WorkerInfo) -> bool) {
    let started = std::time::Instant::now();
    while !client.list_workers(false).await.unwrap().workers.iter().any(|w| w.id == id && pred(w)) {
        assert!(started.elapsed() < DEADLINE, "worker {id} never {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the cluster lists worker `id` in `state`.
async fn wait_worker_state(client: &raftsched_client::Client, id: &str, state: &str) {
    wait_worker(client, id, state, |w| w.state == state).await;
}

/// Waits until process `pid` is gone; `what` names it in the failure.
async fn wait_until_dead(pid: i32, what: &str) {
    let alive = |pid: i32| unsafe { libc::kill(pid, 0) == 0 };
    let started = std::time::Instant::now();
    while alive(pid) {
        assert!(started.elapsed() < DEADLINE, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sleep_task(ms: u64) -> api::TaskSpec {
    raftsched_client::builtin("sleep", &ms.to_string())
}

/// Every attempt of `task` ended before the next one started (by the recorded times), and exactly
/// one attempt succeeded: the one whose result is recorded.
fn assert_one_result_and_no_overlap(task: &api::Task) {
    assert_eq!(task.state, "succeeded", "{task:?}");
    let succeeded: Vec<_> = task.attempts.iter().filter(|a| a.outcome == "succeeded").collect();
    assert_eq!(succeeded.len(), 1, "task {} has {} succeeded attempts", task.id, succeeded.len());
    assert_eq!(task.attempts.last().unwrap().outcome, "succeeded");
    for w in task.attempts.windows(2) {
        assert!(w[0].ended_at_ms > 0, "task {}: an earlier attempt never ended", task.id);
        assert!(w[1].token > w[0].token, "task {}: tokens must increase", task.id);
        let next_start = if w[1].started_at_ms > 0 { w[1].started_at_ms } else { w[1].ended_at_ms };
        assert!(w[0].ended_at_ms <= next_start, "task {}: attempts overlap: {w:?}", task.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_runs_a_process_and_returns_its_output() {
    let mut cluster = Cluster::start(3, FAST_WORKERS);
    cluster.leader().await;
    cluster.start_worker("w1", &["--slots", "2"]);
    cluster.wait_workers_ready(1).await;
    // Results keep stdout and stderr apart once every member records them (format 5).
    cluster.wait_cluster_version(raftsched_format::FORMAT_VERSION_MAX).await;
    let out = cli(
        &cluster.cluster_arg(),
        &["submit", "--wait", "--env", "GREETING=hello", "--", "sh", "-c", "echo $GREETING; exit 0"],
    );
    assert!(out.status.success(), "{}\n{}", stderr(&out), cluster.logs());
    assert_eq!(stdout(&out), "hello");
    let out = cli(
        &cluster.cluster_arg(),
        &["submit", "--wait", "--max-attempts", "1", "--", "sh", "-c", "echo out; echo oops >&2; exit 7"],
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "out");
    assert!(stderr(&out).ends_with("oops"), "{}", stderr(&out));
    // Output longer than the tail the result keeps: the tail starts at a line, and a note on
    // stderr says how much of the stream it is.
    let out = cli(&cluster.cluster_arg(), &["submit", "--wait", "--", "sh", "-c", "seq 1 5000; echo done >&2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.ends_with("\n4999\n5000"), "{shown}");
    let first: u32 = shown.lines().next().unwrap().parse().expect("the tail starts at a whole line");
    assert_eq!(shown.lines().count() as u32, 5001 - first, "{shown}");
    let err = stderr(&out);
    assert!(err.contains("done") && err.contains("stdout cut: "), "{err}");
    let kept = shown.len() as u64 + 1; // the last line's break, which `stdout` trims
    assert!(
        err.contains(&format!("{} bytes dropped, the result keeps the last {kept} of 23893", 23_893 - kept)),
        "{err}"
    );
    let id = err.lines().next().and_then(|l| l.strip_prefix("task ")).expect("the task's id first");
    let got: serde_json::Value =
        serde_json::from_str(&stdout(&cli(&cluster.cluster_arg(), &["get", id, "--json"]))).unwrap();
    let result = &got["result"];
    assert_eq!(
        (result["streams_apart"].as_bool(), result["stdout_bytes"].as_u64()),
        (Some(true), Some(23_893)),
        "{got}"
    );
    assert_eq!((result["stderr_tail"].as_str(), result["output_cut"].as_bool()), (Some("done\n"), Some(true)), "{got}");
    // The API's submit-and-wait in one call: answered with the ended task; a task that outlives
    // the wait is answered with it still unfinished; the same key again names the same task.
    let client = cluster.client();
    let quick = raftsched_client::builtin("echo", "in one call");
    let reply = client.submit_waiting("one-call", quick.clone(), Duration::from_secs(20)).await.unwrap();
    let task = reply.task.expect("a waiting submit returns the task");
    assert_eq!((task.id, task.state.as_str(), task.output_tail.as_str()), (reply.id, "succeeded", "in one call\n"));
    let again = client.submit_waiting("one-call", quick, Duration::from_secs(20)).await.unwrap();
    assert_eq!((again.id, again.created), (reply.id, false));
    // A long poll asking for more than 30 s is served 30 s and says so in its metadata.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.addr(cluster.ids()[0])))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = api::scheduler_client::SchedulerClient::new(channel);
    let ask = api::WaitTaskRequest { id: reply.id, after_version: 0, wait_ms: 60_000, until_ended: true };
    let answer = raw.wait_task(ask).await.unwrap();
    let capped = answer.metadata().get(api::WAIT_CAPPED_KEY).map(|v| v.to_str().unwrap().to_string());
    assert_eq!((capped.as_deref(), answer.get_ref().state.as_str()), (Some("30000"), "succeeded"));
    let ask = api::WaitTaskRequest { id: reply.id, after_version: 0, wait_ms: 30_000, until_ended: true };
    assert!(raw.wait_task(ask).await.unwrap().metadata().get(api::WAIT_CAPPED_KEY).is_none());
    let slow = client.submit_waiting("slow", sleep_task(3_000), Duration::from_millis(300)).await.unwrap();
    let state = slow.task.expect("returned after the wait").state;
    assert!(matches!(state.as_str(), "pending" | "assigned" | "running"), "{state}");
    let out = cli(&cluster.cluster_arg(), &["workers", "--json"]);
    let workers: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(workers[0]["id"], "w1");
    assert_eq!(workers[0]["state"], "ready");
    assert_eq!(workers[0]["slots"], 2);
}

/// Goal: 30 tasks are running when one worker and then the leader are killed with -9. All 30 end
/// succeeded with exactly one recorded result, and nothing the dead worker ran is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_survive_a_worker_kill_and_a_leader_kill() {
    const N: usize = 30;
    let mut cluster = Cluster::start(3, FAST_WORKERS);
    cluster.leader().await;
    cluster.start_worker("a", &["--slots", "16"]);
    cluster.start_worker("b", &["--slots", "16"]);
    cluster.wait_workers_ready(2).await;
    let client = cluster.client();
    let mut ids = Vec::new();
    for n in 0..N {
        ids.push(client.submit(&format!("t{n}"), sleep_task(5_000)).await.unwrap().id);
    }
    for id in &ids {
        cluster.wait_task(*id, "running", |t| t.state == "running").await;
    }
    cluster.kill9_worker("a");
    let leader = cluster.leader().await;
    cluster.kill9(leader);
    // "b" has 16 slots: it runs what "a" lost, in waves. On a loaded machine a few tasks may have
    // finished on "a" before the kill; those have exactly one attempt. Everything else was lost by
    // "a" and recorded from "b".
    let mut n_moved = 0;
    for id in &ids {
        let task = cluster.wait_task(*id, "succeeded", |t| t.state == "succeeded").await;
        assert_one_result_and_no_overlap(&task);
        let last = task.attempts.last().unwrap();
        if last.worker_id == "a" {
            assert_eq!(task.attempts.len(), 1, "task {id}: a result from the dead worker after a reassignment");
            continue;
        }
        assert_eq!(last.worker_id, "b");
        for a in &task.attempts[..task.attempts.len() - 1] {
            assert_eq!(a.outcome, "lost", "task {id}: {a:?}");
            n_moved += usize::from(a.worker_id == "a");
        }
    }
    assert!(n_moved > 0, "no task moved from the killed worker");
    let workers = client.list_workers(false).await.unwrap().workers;
    assert_eq!(workers.iter().find(|w| w.id == "a").unwrap().state, "down");
}

/// Goal: a worker paused (SIGSTOP) past its lease loses its attempt; the task runs elsewhere; when
/// it resumes its attempt is killed and its report is refused; exactly one result is recorded and
/// the recorded attempts never overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_is_fenced_and_its_late_report_refused() {
    let mut cluster = Cluster::start(3, FAST_WORKERS);
    cluster.leader().await;
    cluster.start_worker("slow", &["--slots", "1"]);
    cluster.wait_workers_ready(1).await;
    let client = cluster.client();
    let id = client.submit("paused", sleep_task(1_500)).await.unwrap().id;
    let first = cluster.wait_task(id, "running on slow", |t| t.state == "running").await;
    let old_token = first.token;
    let pid = cluster.worker_pid("slow");
    unsafe {
        libc::kill(-pid, libc::SIGSTOP);
    }
    cluster.start_worker("fast", &["--slots", "1"]);
    // The leader declares "slow" down; the task is requeued and runs on "fast".
    let task = cluster.wait_task(id, "succeeded", |t| t.state == "succeeded").await;
    unsafe {
        libc::kill(-pid, libc::SIGCONT);
    }
    assert_one_result_and_no_overlap(&task);
    assert_eq!(task.attempts[0].outcome, "lost");
    assert_eq!(task.attempts.last().unwrap().worker_id, "fast");
    // A report under the old token, such as the resumed worker would send, is refused.
    let late = api::ReportRequest {
        task_id: id,
        token: old_token,
        finished: true,
        exit_code: 0,
        output_tail: "late".into(),
        timed_out: false,
        worker_id: "slow".into(),
        instance: 0,
        ..Default::default()
    };
    // Refused as not the holder (cluster version 2), or for the stale token (before it).
    let err = client.report(late).await.unwrap_err();
    assert!(matches!(err.code(), Code::PermissionDenied | Code::FailedPrecondition), "{err}");
    let after = client.get(id, false).await.unwrap();
    assert_eq!(after.attempts, task.attempts);
    assert_eq!(after.output_tail, task.output_tail);
    // The resumed worker notices it was declared down and registers again with a new epoch.
    wait_worker(&client, "slow", "re-registered", |w| w.state == "ready" && w.epoch == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_process_and_timeouts_retry() {
    let mut cluster = Cluster::start(1, FAST_WORKERS);
    cluster.leader().await;
    cluster.start_worker("w", &["--slots", "2"]);
    cluster.wait_workers_ready(1).await;
    let client = cluster.client();
    let pid_file = cluster.dir.path().join("task.pid");
    let script = format!("echo $$ > {}; exec sleep 60", pid_file.display());
    let id =
        client.submit("cancel-me", raftsched_client::command(vec!["sh".into(), "-c".into(), script])).await.unwrap().id;
    cluster.wait_task(id, "running", |t| t.state == "running").await;
    let pid = read_pid_file(&pid_file).await;
    client.cancel(id).await.unwrap();
    wait_until_dead(pid, &format!("cancelled task's process {pid} still alive")).await;
    assert_eq!(client.get(id, false).await.unwrap().state, "cancelled");

    let mut spec = raftsched_client::command(vec!["sleep".into(), "60".into()]);
    spec.timeout_ms = 300;
    spec.max_attempts = 2;
    let id = client.submit("too-slow", spec).await.unwrap().id;
    let task = cluster.wait_task(id, "failed", |t| t.state == "failed").await;
    assert_eq!(task.attempts.len(), 2);
    assert!(task.attempts.iter().all(|a| a.outcome == "timed_out"), "{:?}", task.attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_labels_and_priority_steer_dispatch() {
    let mut cluster = Cluster::start(1, FAST_WORKERS);
    cluster.leader().await;
    cluster.start_worker("plain", &["--slots", "1"]);
    cluster.start_worker("gpu", &["--slots", "4", "--labels", "gpu=yes"]);
    cluster.wait_workers_ready(2).await;
    let client = cluster.client();

    // Label constraints: these may only run on "gpu".
    let mut ids = Vec::new();
    for n in 0..4 {
        let mut spec = sleep_task(10);
        spec.constraints.insert("gpu".into(), "yes".into());
        ids.push(client.submit(&format!("gpu-{n}"), spec).await.unwrap().id);
    }
    for id in &ids {
        let t = cluster.wait_task(*id, "succeeded", |t| t.state == "succeeded").await;
        assert!(t.attempts.iter().all(|a| a.worker_id == "gpu"), "{:?}", t.attempts);
    }

    // Priority: "plain" is busy with a blocker; "gpu" is drained; a low then a high priority task
    // queue up, and the high one runs first once the blocker ends.
    let out = cli(&cluster.cluster_arg(), &["worker", "drain", "gpu"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let blocker = client.submit("blocker", sleep_task(1_000)).await.unwrap().id;
    cluster.wait_task(blocker, "running", |t| t.state == "running").await;
    let low = client.submit("low", sleep_task(10)).await.unwrap().id;
    let mut high = sleep_task(10);
    high.priority = 10;
    let high = client.submit("high", high).await.unwrap().id;
    let low = cluster.wait_task(low, "succeeded", |t| t.state == "succeeded").await;
    let high = cluster.wait_task(high, "succeeded", |t| t.state == "succeeded").await;
    assert!(high.attempts[0].token < low.attempts[0].token, "high ran after low");
    // Drain: nothing landed on the drained worker.
    for t in [&low, &high] {
        assert!(t.attempts.iter().all(|a| a.worker_id == "plain"), "{:?}", t.attempts);
    }
    let workers = client.list_workers(false).await.unwrap().workers;
    let states: BTreeSet<(String, String)> = workers.iter().map(|w| (w.id.clone(), w.state.clone())).collect();
    assert!(states.contains(&("gpu".to_string(), "draining".to_string())), "{states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_live_worker_with_the_same_id_is_refused() {
    let mut cluster = Cluster::start(1, FAST_WORKERS);
    cluster.leader().await;
    cluster.start_worker("dup", &[]);
    cluster.wait_workers_ready(1).await;
    let out = std::process::Command::new(BIN)
        .args(["worker", "--id", "dup", "--cluster", &cluster.cluster_arg(), "--register-timeout-ms", "1500"])
        .args(WORKER_TIMING)
        .env("RAFTSCHED_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("held by another live process"), "{err}");
    // A restart of the same id after the first process died is accepted with a new epoch.
    cluster.kill9_worker("dup");
    cluster.start_worker("dup", &[]);
    let client = cluster.client();
    wait_worker(&client, "dup", "registered again", |w| w.state == "ready" && w.epoch == 2).await;
}

/// Goal: a worker killed with -9 leaves nothing of its attempts running, not even a command's
/// background grandchildren, so the reassigned attempt is the only live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_takes_its_attempts_descendants_with_it() {
    let mut cluster = Cluster::start(1, FAST_WORKERS);
    cluster.leader().await;
    cluster.start_worker("doomed", &["--slots", "1"]);
    cluster.wait_workers_ready(1).await;
    let client = cluster.client();
    let pid_file = cluster.dir.path().join("grandchild.pid");
    let script = format!("sleep 60 & echo $! > {}; wait", pid_file.display());
    let id =
        client.submit("forks", raftsched_client::command(vec!["sh".into(), "-c".into(), script])).await.unwrap().id;
    cluster.wait_task(id, "running", |t| t.state == "running").await;
    let grandchild = read_pid_file(&pid_file).await;
    // Only the worker process itself, as a crash would: not its process group.
    let worker_pid = cluster.worker_pid("doomed");
    unsafe {
        libc::kill(worker_pid, libc::SIGKILL);
    }
    wait_until_dead(grandchild, &format!("grandchild {grandchild} outlived its worker")).await;
}

/// Issue 18: heartbeats renew liveness in the leader's memory, not through the log. Idle workers
/// beating for several heartbeat timeouts add no log entries and stay ready; a follower shows
/// fresh `heartbeat_age_ms` (asked of the leader); a silent worker is still declared down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_not_log_entries_and_silence_still_expires() {
    let mut cluster = Cluster::start_with_http(3, FAST_WORKERS);
    let leader = cluster.leader().await;
    cluster.start_worker("a", &["--slots", "1"]);
    cluster.start_worker("b", &["--slots", "1"]);
    cluster.wait_workers_ready(2).await;
    let last_index = |status: &api::ClusterStatusResponse| {
        status.members.iter().find(|m| m.id == leader).map(|m| m.last_log_index).unwrap()
    };
    let client = cluster.client();
    let before = last_index(&client.cluster_status().await.unwrap());
    // Heartbeats answered by whichever replica leads (summed: a leader change on a loaded machine
    // moves the count to another replica, it does not stop it).
    let beats = || async {
        let mut total = 0.0;
        for id in cluster.ids() {
            total += metric(&cluster.http(id), "raftsched_worker_heartbeats_total").await;
        }
        total
    };
    let beats_at_start = beats().await;
    // FAST_WORKERS: a 1 s timeout, beats every 100 ms: 60 beats of two workers take three timeouts.
    let started = std::time::Instant::now();
    while beats().await < beats_at_start + 60.0 {
        assert!(started.elapsed() < DEADLINE, "the leader answered no heartbeats");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = last_index(&client.cluster_status().await.unwrap());
    // Nothing else writes while idle (a stray leader-loop decision would be one entry, not 60).
    assert!(after - before < 5, "{} log entries while idle workers beat", after - before);
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let workers = cluster.client_of(follower).list_workers(false).await.unwrap().workers;
    assert_eq!(workers.len(), 2);
    for w in &workers {
        assert_eq!((w.state.as_str(), w.epoch), ("ready", 1), "{w:?}");
        assert!(w.heartbeat_age_ms < 1_000, "a follower shows a stale heartbeat: {w:?}");
    }
    let pid = cluster.worker_pid("b");
    unsafe {
        libc::kill(-pid, libc::SIGSTOP);
    }
    let started = std::time::Instant::now();
    loop {
        let workers = client.list_workers(false).await.unwrap().workers;
        let state = |id: &str| workers.iter().find(|w| w.id == id).unwrap().state.clone();
        if state("b") == "down" {
            assert_eq!(state("a"), "ready");
            break;
        }
        assert!(started.elapsed() < DEADLINE, "a paused worker was never declared down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unsafe {
        libc::kill(-pid, libc::SIGCONT);
    }
}

/// `--heartbeats-per-second-max`: past half that many registered workers, the replicas ask every
/// worker to beat less often and hold it to a timeout scaled alike; a real worker follows (its
/// lease stretched with its interval) and stays ready, and its silence is still declared down, no
/// sooner than the scaled timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_capped_fleet_beats_less_often_and_silence_still_expires() {
    let mut cluster =
        Cluster::start_with_http(3, &["--heartbeat-timeout-ms", "3000", "--heartbeats-per-second-max", "100"]);
    cluster.leader().await;
    let client = cluster.client();
    // 60 registrations that never beat: 120 beats a second at the 500 ms reference, over the cap
    // of 100, so the factor is 2 (interval 1,000 ms, timeout 6,000 ms).
    for i in 0..60 {
        let req = api::RegisterWorkerRequest { id: format!("idle-{i}"), instance: 7, slots: 1, ..Default::default() };
        client.register_worker(req).await.unwrap();
    }
    // Only the leader tells terms (a follower answers 0: keep yours); the client moves to the
    // leader after a follower's answer names it.
    let started = std::time::Instant::now();
    let reply = loop {
        let reply = client.heartbeat("idle-0", 7).await.unwrap();
        if reply.heartbeat_timeout_ms > 0 {
            break reply;
        }
        assert!(started.elapsed() < DEADLINE, "no answer from the leader");
    };
    assert_eq!((reply.heartbeat_interval_ms, reply.heartbeat_timeout_ms), (1_000, 6_000));
    cluster.start_worker("a", &["--slots", "1"]); // WORKER_TIMING: its own interval is 100 ms
    wait_worker_state(&client, "a", "ready").await;
    // Only worker a beats now. Its first beats may reach a follower, which tells no terms, until
    // an answer names the leader; three beats in, it beats at the leader's 1,000 ms. Then three
    // more take two such intervals at least (at its own 100 ms they would take 0.2 s).
    // Counted by whichever replica led when it answered: summed, so a leader change loses none.
    let beats = || async {
        let mut total = 0.0;
        for id in cluster.ids() {
            total += metric(&cluster.http(id), "raftsched_worker_heartbeats_total").await;
        }
        total
    };
    let wait_beats = |n: f64| async move {
        let (b0, started) = (beats().await, std::time::Instant::now());
        while beats().await < b0 + n {
            assert!(started.elapsed() < DEADLINE, "worker a stopped beating");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        started.elapsed()
    };
    wait_beats(3.0).await;
    let took = wait_beats(3.0).await;
    assert!(took >= Duration::from_millis(1_800), "3 beats in {took:?}");
    let task = client.submit("capped", echo("still served")).await.unwrap().id;
    cluster.wait_task(task, "run by worker a", |t| t.state == "succeeded").await;
    let pid = cluster.worker_pid("a");
    unsafe {
        libc::kill(-pid, libc::SIGSTOP);
    }
    let stopped = std::time::Instant::now();
    wait_worker_state(&client, "a", "down").await;
    // Its last beat was at most an interval before the pause, the timeout 6 s after it.
    assert!(stopped.elapsed() >= Duration::from_millis(4_500), "declared down after {:?}", stopped.elapsed());
    unsafe {
        libc::kill(-pid, libc::SIGCONT);
    }
}
