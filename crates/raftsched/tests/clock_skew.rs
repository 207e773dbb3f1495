//! Goal: a leader's wrong clock decides nothing (`crates/server/src/clock.rs`, `leader_loop.rs`).
//! One replica of a trio runs under Debian's `faketime` (a day ahead, an hour behind); it is made
//! leader; it must fire nothing early, run no `--at` task early, step aside, and the schedule must
//! go on within one period, with no burst of "missed" records. `.ci/run` installs `faketime`;
//! elsewhere the test says it skips.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use raftsched_client::api;

const PERIOD_MS: u64 = 2_000;

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// libfaketime, preloaded directly rather than through the `faketime` command: that command forks,
/// so killing it would leave the replica running.
fn libfaketime() -> Option<String> {
    ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"]
        .iter()
        .map(|dir| format!("{dir}/faketime/libfaketime.so.1"))
        .find(|p| std::path::Path::new(p).exists())
}

/// A trio whose replica 3 runs `offset` off (faketime's syntax: `+1d`, `-1h`).
fn trio_with_a_wrong_clock(offset: &str, lib: &str) -> Cluster {
    let mut cluster = Cluster::new(&[]);
    for (i, port) in free_ports(3).into_iter().enumerate() {
        let id = i as u64 + 1;
        let mut replica = cluster.new_replica(id, format!("127.0.0.1:{port}"), std::path::Path::new(BIN));
        if id == 3 {
            // Only the wall clock: monotonic time (timers) runs true, as it does on a host whose
            // clock was set wrong.
            replica.wrapper = vec![
                "env".into(),
                format!("LD_PRELOAD={lib}"),
                format!("FAKETIME={offset}"),
                "FAKETIME_DONT_FAKE_MONOTONIC=1".into(),
            ];
        }
        cluster.replicas.insert(id, replica);
    }
    for id in cluster.ids() {
        cluster.start_replica(id);
    }
    cluster
}

async fn member(client: &raftsched_client::Client, id: u64) -> Option<api::MemberStatus> {
    client.cluster_status().await.ok()?.members.into_iter().find(|m| m.id == id)
}

async fn a_wrong_clock_decides_nothing(offset: &str, skew_ms: i64) {
    let Some(lib) = libfaketime() else {
        eprintln!("skipping: libfaketime is not installed (apt-get install faketime; .ci/run does)");
        return;
    };
    let mut cluster = trio_with_a_wrong_clock(offset, &lib);
    let leader = cluster.wait_converged().await;
    let client = cluster.client();
    if leader == 3 {
        client.transfer_leader(1).await.unwrap();
    }
    cluster.start_worker("w1", &[]);
    cluster.wait_workers_ready(1).await;
    // The replicas see replica 3's skew.
    let started = Instant::now();
    loop {
        let m = member(&client, 3).await;
        if m.as_ref().is_some_and(|m| m.clock_skew_known && (m.clock_skew_ms - skew_ms).abs() < 5_000) {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "replica 3's skew not reported: {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spec = api::ScheduleSpec {
        cron: "@every 2s".into(),
        timezone: "UTC".into(),
        overlap: "allow".into(),
        catch_up: "one".into(),
        max_catch_up: 10,
        start_deadline_ms: 10_000,
        task: Some(echo("tick")),
    };
    client.create_schedule("tick", spec).await.unwrap();
    let first = wait_runs(&client, 1).await;
    // A task for 5 s from now, then leadership to the wrong clock.
    let run_at_ms = wall_ms() + 5_000;
    let at = api::TaskSpec { run_at_ms, ..echo("later") };
    let id = client.submit("at-5s", at).await.unwrap().id;
    let moved = client.transfer_leader(3).await.unwrap();
    assert_eq!(moved.leader, 3, "replica 3 leads for a moment");
    // It steps aside within a few seconds.
    let led_by_3 = Instant::now();
    let handed_at = loop {
        let status = client.cluster_status().await;
        if status.is_ok_and(|s| s.has_leader && s.leader != 3) {
            break Instant::now();
        }
        assert!(
            led_by_3.elapsed() < Duration::from_secs(15),
            "replica 3 did not hand leadership on\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let handed_wall_ms = wall_ms();
    eprintln!("replica 3 ({offset}) led for {:?}", handed_at - led_by_3);
    // The schedule goes on within one period (plus a loaded box's second).
    let started = Instant::now();
    loop {
        let s = client.get_schedule("tick", false).await.unwrap();
        if s.history.iter().any(|r| r.missed.is_empty() && r.fired_at_ms >= handed_wall_ms) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(PERIOD_MS + 1_500),
            "no fire within a period after the hand-off: {s:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The --at task ran, and not early.
    let task = cluster.wait_task(id, "ran", |t| t.state == "succeeded").await;
    let started_at = task.attempts.first().map(|a| a.assigned_at_ms).unwrap_or(0);
    assert!(started_at + 50 >= run_at_ms, "assigned at {started_at}, {} ms before its time", run_at_ms - started_at);
    // Nothing fired early, nothing bogus missed.
    let s = client.get_schedule("tick", false).await.unwrap();
    let now = wall_ms();
    for r in &s.history {
        assert!(r.occurrence_ms <= now + 1_000, "occurrence {} is in the future: {r:?}", r.occurrence_ms);
        assert!(r.fired_at_ms <= now + 1_000 && r.fired_at_ms + 1_000 >= r.occurrence_ms, "fired early: {r:?}");
    }
    assert!(s.missed_total <= 3, "missed {} occurrences: {:?}", s.missed_total, s.history);
    assert!(s.has_next_due && s.next_due_ms <= now + PERIOD_MS + 1_000, "next due {} (now {now})", s.next_due_ms);
    assert!(s.runs_total > first, "runs went on");
}

/// Waits until schedule "tick" has run `n` times; returns runs_total.
async fn wait_runs(client: &raftsched_client::Client, n: u64) -> u64 {
    let started = Instant::now();
    loop {
        if let Ok(s) = client.get_schedule("tick", false).await {
            if s.runs_total >= n {
                return s.runs_total;
            }
        }
        assert!(started.elapsed() < DEADLINE, "schedule did not run {n} times");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_a_day_ahead_decides_nothing_and_steps_aside() {
    a_wrong_clock_decides_nothing("+1d", 86_400_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_an_hour_behind_decides_nothing_and_steps_aside() {
    a_wrong_clock_decides_nothing("-1h", -3_600_000).await;
}
