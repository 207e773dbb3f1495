//! Concurrency keys with real processes: 20 tasks of 1.2 s under one key with limit 2, two workers with
//! room for more, and one worker paused (SIGSTOP) past its lease while it runs tasks of the key.
//! From the records the tasks themselves write (start, then a line every 100 ms, then end),
//! never more than two are alive at once: the paused worker's attempts die with its lease (its
//! supervisors hold the lease, not the paused worker) before the leader gives them to the other.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

/// Each attempt's life as the task wrote it: first and last timestamp in ns, and whether it wrote
/// its end line (else it was killed).
fn lives(dir: &std::path::Path) -> Vec<(u128, u128, bool)> {
    let mut lives = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let stamps: Vec<u128> = text.lines().filter_map(|l| l.split_whitespace().nth(1)?.parse().ok()).collect();
        let ended = text.lines().last().is_some_and(|l| l.starts_with("end "));
        if let (Some(first), Some(last)) = (stamps.first(), stamps.last()) {
            lives.push((*first, *last, ended));
        }
    }
    lives
}

/// The most lives that overlap at any instant; a killed attempt may have lived up to `slack_ns`
/// past its last line (it was killed between two).
fn most_alive(lives: &[(u128, u128, bool)], slack_ns: u128) -> usize {
    let end = |e: u128, ended: bool| if ended { e } else { e + slack_ns };
    let mut events: Vec<(u128, i32)> =
        lives.iter().flat_map(|(s, e, ended)| [(*s, 1), (end(*e, *ended), -1)]).collect();
    events.sort();
    let (mut alive, mut most) = (0i32, 0i32);
    for (_, d) in events {
        alive += d;
        most = most.max(alive);
    }
    most as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_never_runs_more_than_its_limit_even_when_a_worker_is_paused_past_its_lease() {
    let cluster = Cluster::trio_with_workers(["a", "b"]).await;
    let records = tempfile::tempdir().unwrap();
    let script = format!(
        "f={}/$$; echo start $(date +%s%N) > $f; i=0; while [ $i -lt 12 ]; do sleep 0.1; echo alive $(date +%s%N) >> $f; \
         i=$((i+1)); done; echo end $(date +%s%N) >> $f",
        records.path().display()
    );
    let mut ids = Vec::new();
    for n in 0..20 {
        let key = format!("db-{n}");
        let args =
            ["submit", "--key", &key, "--concurrency-key", "db", "--concurrency-limit", "2", "--max-attempts", "5"];
        let out = cli(&cluster.cluster_arg(), &[&args[..], &["--", "sh", "-c", &script]].concat());
        assert!(out.status.success(), "{}", stderr(&out));
        ids.push(stdout(&out).parse::<u64>().unwrap());
    }
    // Two run (on either worker); the rest queue under the key.
    let running = cluster.wait_task(ids[0], "the first running", |t| t.state == "running").await;
    let out = cli(&cluster.cluster_arg(), &["keys", "--json"]);
    let keys: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((keys[0]["key"].as_str(), keys[0]["limit"].as_u64()), (Some("db"), Some(2)), "{keys}");
    assert!(keys[0]["held"].as_u64().unwrap() <= 2, "{keys}");
    // The worker running it stops (not its tasks) for well past its lease and its timeout.
    let pid = cluster.worker_pid(&running.worker_id);
    unsafe { libc::kill(-pid, libc::SIGSTOP) };
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    unsafe { libc::kill(-pid, libc::SIGCONT) };
    let mut tasks = BTreeMap::new();
    for id in &ids {
        tasks.insert(*id, cluster.wait_task(*id, "succeeded", |t| t.state == "succeeded").await);
    }
    assert!(tasks.values().any(|t| t.attempts.iter().any(|a| a.outcome == "lost")), "no attempt was lost to the pause");
    let lives = lives(records.path());
    assert!(lives.len() >= 21, "{} attempts recorded (20 tasks, one lost at least)", lives.len());
    let most = most_alive(&lives, 100_000_000);
    assert!(most <= 2, "{most} attempts of key db alive at once (limit 2): {lives:?}");
    assert!(most_alive(&lives, 0) >= 2, "the key's two slots were never used together");
}
