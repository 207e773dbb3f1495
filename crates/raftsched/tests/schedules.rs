//! Schedules and `submit --at` on real replica processes: exactly one task per occurrence across a
//! leader kill -9 and a full stop, each catch-up mode, `forbid` overlap, and the CLI.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{cli, list_all, stderr, stdout, Cluster, DEADLINE, FAST_WORKERS};
use raftsched_client::{api, Client};

fn spec(cron: &str, catch_up: &str, overlap: &str, start_deadline_ms: u64, task: api::TaskSpec) -> api::ScheduleSpec {
    api::ScheduleSpec {
        cron: cron.into(),
        timezone: "UTC".into(),
        overlap: overlap.into(),
        catch_up: catch_up.into(),
        max_catch_up: 10,
        start_deadline_ms,
        task: Some(task),
    }
}

/// Waits until `pred` holds for schedule `name` (read linearizably), returning it.
async fn wait_schedule(
    client: &Client,
    name: &str,
    what: &str,
    pred: impl Fn(&api::Schedule) -> bool,
) -> api::Schedule {
    let started = Instant::now();
    loop {
        if let Ok(s) = client.get_schedule(name, false).await {
            if pred(&s) {
                return s;
            }
        }
        assert!(started.elapsed() < DEADLINE, "schedule {name}: {what} not reached in {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tasks schedule `name` created, by occurrence time; fails on two tasks for one occurrence.
async fn runs_of(client: &Client, name: &str) -> Vec<api::Task> {
    let mut runs: Vec<api::Task> = list_all(client, false).await.into_iter().filter(|t| t.schedule == name).collect();
    runs.sort_by_key(|t| t.occurrence_ms);
    let distinct: BTreeSet<u64> = runs.iter().map(|t| t.occurrence_ms).collect();
    assert_eq!(distinct.len(), runs.len(), "schedule {name}: two tasks for one occurrence");
    for t in &runs {
        assert_eq!(t.key, format!("schedule:{name}:{}", t.occurrence_ms));
    }
    runs
}

/// Every `@every` occurrence from the first to the last fired is accounted for exactly once: a
/// task, or inside one missed record. Returns the missed occurrences.
fn account_every(s: &api::Schedule, runs: &[api::Task], interval_ms: u64) -> BTreeSet<u64> {
    let ran: BTreeSet<u64> = runs.iter().map(|t| t.occurrence_ms).collect();
    let mut missed = BTreeSet::new();
    for r in s.history.iter().filter(|r| !r.missed.is_empty()) {
        assert!(!r.count_capped);
        let range: Vec<u64> = (r.occurrence_ms..=r.last_occurrence_ms).step_by(interval_ms as usize).collect();
        assert_eq!(range.len() as u64, r.count, "record {r:?}");
        missed.extend(range);
    }
    assert!(ran.is_disjoint(&missed), "an occurrence both ran and was missed");
    let last = ran.iter().chain(missed.iter()).max().copied().expect("something fired");
    let first = s.created_at_ms + interval_ms;
    let expected: BTreeSet<u64> = (first..=last).step_by(interval_ms as usize).collect();
    let accounted: BTreeSet<u64> = ran.union(&missed).copied().collect();
    assert_eq!(accounted, expected, "occurrences skipped or invented");
    assert_eq!(s.runs_total + s.missed_total, expected.len() as u64);
    missed
}

/// Goal: a `@every 1s` schedule keeps firing once per second across a leader kill -9: no
/// occurrence twice, none skipped (a failover shorter than the start deadline just fires late).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_second_fires_once_per_occurrence_across_a_leader_kill() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader().await;
    let client = cluster.client();
    let reply = client.create_schedule("tick", spec("@every 1s", "one", "allow", 10_000, common::echo("tick"))).await;
    assert!(reply.unwrap().created);
    let before = wait_schedule(&client, "tick", "3 runs", |s| s.runs_total >= 3).await;
    let killed_at_ms = common_now_ms();
    cluster.kill9(leader);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    let after = wait_schedule(&client, "tick", "5 more runs", |s| s.runs_total >= before.runs_total + 5).await;
    let runs = runs_of(&client, "tick").await;
    let missed = account_every(&after, &runs, 1_000);
    // Misses are only possible if the failover outlasted the 10 s start deadline, and then only
    // for occurrences due while there was no leader.
    for m in &missed {
        assert!(*m >= killed_at_ms - 1_000, "occurrence {m} missed before the kill at {killed_at_ms}");
    }
    // Late fires happened only around the failover.
    for t in &runs {
        let late_ms = t.created_at_ms - t.occurrence_ms;
        assert!(
            late_ms < 10_000 || t.occurrence_ms >= killed_at_ms - 1_000,
            "occurrence {} ran {late_ms} ms late",
            t.occurrence_ms
        );
    }
    // Every replica agrees, after the old leader is back.
    cluster.start_replica(leader);
    cluster.wait_converged().await;
    let s_old = cluster.client_of(leader).get_schedule("tick", true).await.unwrap();
    assert!(s_old.runs_total >= after.runs_total);
}

fn common_now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Goal: the whole cluster stops across several occurrences, then starts. Each `--catch-up` mode
/// then does exactly what it says with the occurrences fired past their start deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stop_follows_each_catch_up_mode() {
    const INTERVAL_MS: u64 = 2_000;
    const DEADLINE_MS: u64 = 1_000;
    // Frequent snapshots with no log kept behind them: the restart rebuilds the schedules from a
    // snapshot, not only from the log.
    let mut cluster = Cluster::start(3, &["--snapshot-every-entries", "10", "--snapshot-logs-kept", "0"]);
    cluster.leader().await;
    let client = cluster.client();
    for mode in ["none", "one", "all"] {
        let s = spec("@every 2s", mode, "allow", DEADLINE_MS, common::echo(mode));
        client.create_schedule(mode, s).await.unwrap();
    }
    for mode in ["none", "one", "all"] {
        wait_schedule(&client, mode, "a first run", |s| s.runs_total >= 1).await;
    }
    for id in cluster.ids() {
        assert!(cluster.terminate(id).success());
    }
    let stopped_at_ms = common_now_ms();
    // The outage itself: time has to pass for occurrences to be missed.
    std::thread::sleep(Duration::from_millis(4 * INTERVAL_MS + 500));
    for id in cluster.ids() {
        cluster.start_replica(id);
    }
    cluster.wait_converged().await;
    let client = cluster.client();
    for mode in ["none", "one", "all"] {
        // The first fire after the restart, and one more so the restart fire is complete.
        let s = wait_schedule(&client, mode, "a fire after the restart", |s| {
            s.history.iter().filter(|r| r.fired_at_ms > stopped_at_ms).count() >= 2
        })
        .await;
        let runs = runs_of(&client, mode).await;
        account_every(&s, &runs, INTERVAL_MS);
        let restart_fire = s.history.iter().find(|r| r.fired_at_ms > stopped_at_ms).unwrap().fired_at_ms;
        let fire: Vec<&api::OccurrenceRecord> = s.history.iter().filter(|r| r.fired_at_ms == restart_fire).collect();
        let late: Vec<u64> = fire
            .iter()
            .flat_map(|r| (r.occurrence_ms..=r.last_occurrence_ms).step_by(INTERVAL_MS as usize))
            .filter(|o| restart_fire - o > DEADLINE_MS)
            .collect();
        assert!(late.len() >= 3, "{mode}: the outage should span several occurrences, got {late:?}");
        let on_time_ran = fire.iter().any(|r| r.missed.is_empty() && restart_fire - r.occurrence_ms <= DEADLINE_MS);
        let ran_late: Vec<u64> = runs.iter().map(|t| t.occurrence_ms).filter(|o| late.contains(o)).collect();
        match mode {
            "none" => assert!(ran_late.is_empty(), "none ran {ran_late:?}"),
            "one" if on_time_ran => assert!(ran_late.is_empty(), "one ran {ran_late:?} besides an on-time one"),
            "one" => assert_eq!(ran_late, vec![*late.iter().max().unwrap()], "one runs the latest"),
            _ => assert_eq!(ran_late, late, "all runs each"),
        }
        for r in fire.iter().filter(|r| !r.missed.is_empty()) {
            assert_eq!(r.missed, "late", "{mode}: {r:?}");
        }
    }
}

/// Goal: `--overlap forbid` never has two runs alive, and skipped occurrences are recorded;
/// `submit --at` fires once at its time; the schedule commands work from the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_never_overlaps_and_at_fires_once() {
    let mut cluster = Cluster::start(3, FAST_WORKERS);
    cluster.leader().await;
    cluster.start_worker("w1", &["--slots", "4"]);
    cluster.wait_workers_ready(1).await;
    let c = cluster.cluster_arg();
    let out = cli(
        &c,
        &["schedule", "create", "slow", "--cron", "@every 1s", "--overlap", "forbid", "--builtin", "sleep:2500"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&c, &["submit", "--at", "+3s", "--builtin", "echo:later"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let at_id: u64 = stdout(&out).parse().unwrap();
    let client = cluster.client();
    let task = client.get(at_id, false).await.unwrap();
    let run_at_ms = task.spec.as_ref().unwrap().run_at_ms;
    assert!(run_at_ms > task.created_at_ms);
    // Read well before its time (a loaded machine may have taken seconds to get here), the task
    // waits in `scheduled`; either way it must not run early (checked below).
    if common_now_ms() + 500 < run_at_ms {
        assert_eq!(task.state, "scheduled");
    }

    let s = wait_schedule(&client, "slow", "3 runs and 2 overlaps", |s| s.runs_total >= 3 && s.missed_total >= 2).await;
    assert!(s.history.iter().filter(|r| !r.missed.is_empty()).all(|r| r.missed == "overlap"), "{:?}", s.history);
    let runs = runs_of(&client, "slow").await;
    // Each run ended before the next was first assigned (its attempts' times, as the replicas
    // recorded them), and the skipped occurrences fell while one ran.
    for pair in runs.windows(2) {
        let prev_end = pair[0].attempts.last().map_or(0, |a| a.ended_at_ms);
        assert!(prev_end > 0, "run {} had not ended when {} was created", pair[0].id, pair[1].id);
        let next_start = pair[1].attempts.first().map_or(u64::MAX, |a| a.assigned_at_ms);
        assert!(next_start >= prev_end, "runs {} and {} overlap", pair[0].id, pair[1].id);
    }

    let done = cluster.wait_task(at_id, "succeeded", |t| t.state == "succeeded").await;
    assert_eq!(done.attempts.len(), 1);
    assert!(done.attempts[0].assigned_at_ms >= run_at_ms, "ran before its time");
    assert_eq!(done.output_tail.trim(), "later");

    // The CLI: get/list in JSON, pause, resume, delete; bad input is a usage error.
    let out = cli(&c, &["schedule", "get", "slow", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((json["name"].as_str(), json["overlap"].as_str()), (Some("slow"), Some("forbid")));
    let out = cli(&c, &["schedule", "pause", "slow"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&c, &["schedule", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list[0]["paused"], true);
    assert!(list[0]["next_due_ms"].is_null());
    assert!(cli(&c, &["schedule", "resume", "slow"]).status.success());
    assert!(cli(&c, &["schedule", "delete", "slow"]).status.success());
    let out = cli(&c, &["schedule", "get", "slow"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no schedule named"), "{}", stderr(&out));
    for bad in [
        vec!["schedule", "create", "x", "--cron", "not a cron", "--builtin", "echo:x"],
        vec!["schedule", "create", "x", "--cron", "@every 1s", "--timezone", "Nowhere/City", "--builtin", "echo:x"],
        vec!["schedule", "create", "bad name", "--cron", "@every 1s", "--builtin", "echo:x"],
        vec!["submit", "--at", "tomorrow", "--builtin", "echo:x"],
    ] {
        let out = cli(&c, &bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{bad:?}: {}", stderr(&out));
    }
}

/// A schedule whose tasks get a concurrency key keeps it through a snapshot and a kill -9 of every
/// replica (format 9 carries it beside the state), and gives it to the tasks it creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_schedule_keeps_its_key_through_a_snapshot_and_a_restart() {
    let mut cluster = Cluster::start(3, &["--snapshot-every-entries", "10", "--snapshot-logs-kept", "0"]);
    cluster.leader().await;
    cluster.wait_cluster_version(raftsched_format::FORMAT_VERSION_MAX).await;
    let args = ["schedule", "create", "keyed", "--cron", "@every 1s", "--concurrency-key", "nightly"];
    let out = cli(&cluster.cluster_arg(), &[&args[..], &["--concurrency-limit", "1", "--builtin", "echo:x"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..30 {
        cluster.client().submit(&format!("fill-{i}"), common::echo("x")).await.unwrap();
    }
    cluster.kill9_all_and_restart().await;
    let out = cli(&cluster.cluster_arg(), &["schedule", "get", "keyed", "--json"]);
    let got: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (got["concurrency_key"].as_str(), got["concurrency_limit"].as_u64()),
        (Some("nightly"), Some(1)),
        "{got}"
    );
    let client = cluster.client();
    let fired = loop {
        let page = client.list_page(api::ListTasksRequest { limit: 1_000, ..Default::default() }).await.unwrap();
        if let Some(t) = page.tasks.into_iter().find(|t| !t.schedule.is_empty()) {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((fired.concurrency_key.as_str(), fired.concurrency_limit), ("nightly", 1));
}
