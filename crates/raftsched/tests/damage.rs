//! The damage matrix: a replica killed with -9 and one of its files damaged (truncated at a random
//! offset, bytes flipped, a block zeroed, the file deleted), on a replica of a healthy trio and on
//! one whose peer is behind, over many seeds. Whatever the damage, a cluster that serves has every
//! acknowledged task, and no two replicas ever disagree on a task id; a damaged replica either
//! starts (the damage hit nothing it had made durable, or only a torn tail) or exits 1 with one
//! line saying the data dir is damaged.
//!
//! `RAFTSCHED_DAMAGE_SEEDS=N` runs N seeds per scenario (default 3; docs/testing.md).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use jepsen_like_tests::run::rng::Rng;

fn damage(dir: &Path, rng: &mut Rng) -> String {
    jepsen_like_tests::run::damage::damage_one_file(dir, rng).unwrap()
}

async fn submit_n(cluster: &Cluster, prefix: &str, n: usize, acked: &mut BTreeMap<String, u64>) {
    let client = cluster.client();
    for i in 0..n {
        let key = format!("{prefix}-{i}");
        let reply = client.submit(&key, echo("x")).await.unwrap_or_else(|e| panic!("{key}: {e}"));
        acked.insert(key, reply.id);
    }
}

/// Starts `id` after the damage and waits until it either runs on (started) or exits; an exit
/// must be code 1 with one line naming the damage.
async fn restart_damaged(cluster: &mut Cluster, id: u64, what: &str) -> bool {
    cluster.start_replica(id);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if let Some(status) = cluster.exit_status(id) {
            let log = std::fs::read_to_string(&cluster.replicas[&id].log_path).unwrap();
            let last = log.lines().last().unwrap_or_default().to_string();
            assert_eq!(status.code(), Some(1), "{what}: replica {id} ended with {status}\n{log}");
            assert!(last.starts_with("raftsched: error: ") && !log.contains("panicked"), "{what}: {log}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Every running replica holds every acknowledged task under its id, and all agree on all ids.
async fn check(cluster: &mut Cluster, acked: &BTreeMap<String, u64>, what: &str) {
    cluster.wait_converged().await;
    let mut seen: Option<BTreeMap<String, u64>> = None;
    for id in cluster.ids() {
        if !cluster.is_running(id) {
            continue;
        }
        let tasks = list_all(&cluster.client_of(id), true).await;
        let by_key: BTreeMap<String, u64> = tasks.into_iter().map(|t| (t.key, t.id)).collect();
        for (key, tid) in acked {
            assert_eq!(by_key.get(key), Some(tid), "{what}: replica {id} lost or renamed acknowledged {key}");
        }
        if let Some(other) = &seen {
            assert_eq!(other, &by_key, "{what}: replicas disagree");
        }
        seen = Some(by_key);
    }
}

fn seeds() -> u64 {
    std::env::var("RAFTSCHED_DAMAGE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3)
}

const ARGS: &[&str] = &["--snapshot-every-entries", "40", "--snapshot-logs-kept", "10"];

/// One replica of a healthy trio is damaged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_one_replica_loses_nothing() {
    for seed in 1..=seeds() {
        let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ seed);
        let mut cluster = Cluster::start(3, ARGS);
        cluster.leader().await;
        let mut acked = BTreeMap::new();
        submit_n(&cluster, "a", 30 + rng.below(40) as usize, &mut acked).await;
        let victim = 1 + rng.below(3);
        cluster.kill9(victim);
        let what = format!("seed {seed}: {}", damage(&cluster.replicas[&victim].data_dir, &mut rng));
        let started = restart_damaged(&mut cluster, victim, &what).await;
        eprintln!("{what}: {}", if started { "started" } else { "refused" });
        submit_n(&cluster, "b", 10, &mut acked).await;
        check(&mut cluster, &acked, &what).await;
    }
}

/// The damaged replica's only live peer is behind: if the damage went unnoticed, those two would
/// form a quorum without the writes the third replica and the damaged one had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_a_replica_whose_peer_is_behind_loses_nothing() {
    for seed in 1..=seeds() {
        let mut rng = Rng::new(0x2545_f491_4f6c_dd1d ^ (seed << 8));
        let mut cluster = Cluster::start(3, ARGS);
        cluster.leader().await;
        let mut acked = BTreeMap::new();
        submit_n(&cluster, "a", 10, &mut acked).await;
        let ids: Vec<u64> = cluster.ids();
        let behind = ids[rng.below(3) as usize];
        let others: Vec<u64> = ids.iter().copied().filter(|i| *i != behind).collect();
        let (victim, third) = if rng.below(2) == 0 { (others[0], others[1]) } else { (others[1], others[0]) };
        cluster.kill9(behind);
        submit_n(&cluster, "b", 30 + rng.below(40) as usize, &mut acked).await;
        cluster.kill9(victim);
        cluster.kill9(third);
        let what = format!("seed {seed}: {}", damage(&cluster.replicas[&victim].data_dir, &mut rng));
        cluster.start_replica(behind);
        let started = restart_damaged(&mut cluster, victim, &what).await;
        eprintln!("{what} (peer behind): {}", if started { "started" } else { "refused" });
        if started {
            // Damaged and behind together: whatever they serve must hold every acknowledged task.
            let client =
                raftsched_client::Client::new(vec![cluster.addr(victim), cluster.addr(behind)], Duration::from_secs(8))
                    .unwrap();
            if let Ok(page) =
                client.list_page(raftsched_client::api::ListTasksRequest { limit: 1000, ..Default::default() }).await
            {
                let keys: BTreeMap<String, u64> = page.tasks.into_iter().map(|t| (t.key, t.id)).collect();
                for (key, tid) in &acked {
                    assert_eq!(keys.get(key), Some(tid), "{what}: a damaged + behind quorum lost {key}");
                }
            }
        }
        cluster.start_replica(third);
        check(&mut cluster, &acked, &what).await;
    }
}
