//! Goal: a partition that heals costs no election (pre-vote and leader stickiness,
//! `crates/server/src/election.rs`). A trio in network namespaces; one follower is cut off from
//! both others for 10 s, then healed: the leader and the term are unchanged. Needs root (network
//! namespaces); elsewhere the test says it skips.

use std::time::{Duration, Instant};

use jepsen_like_tests::run::netns::{self, Netns};
use jepsen_like_tests::run::procs::{Procs, ReplicaOptions, Topology};
use raftsched_client::Client;

const DEADLINE: Duration = Duration::from_secs(60);

/// (leader, term) once every replica answers, names the same leader and has the same term.
async fn settled(client_of: &[Client]) -> (u64, u64) {
    let started = Instant::now();
    loop {
        let mut views = Vec::new();
        for c in client_of {
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), c.cluster_status()).await {
                if let Some(m) = s.members.iter().find(|m| m.id == s.answered_by) {
                    views.push((m.current_leader, m.term));
                }
            }
        }
        if views.len() == client_of.len() && views.iter().all(|v| *v == views[0] && v.0 != 0) {
            return views[0];
        }
        assert!(started.elapsed() < DEADLINE, "no settled leader: {views:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_partitioned_for_10_s_changes_neither_leader_nor_term() {
    if let Err(why) = netns::available() {
        eprintln!("skipping: {why} (network namespaces need root; CI runs as root)");
        return;
    }
    let bin = jepsen_like_tests::run::default_raftsched_bin();
    assert!(bin.exists(), "{} not built (cargo test --workspace builds it)", bin.display());
    netns::clean_stale();
    let ns = Netns::create(3).expect("network namespaces");
    let dir = std::env::temp_dir().join(format!("raftsched-faults-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let options = ReplicaOptions { faults: Vec::new(), extra_args: Vec::new() };
    let mut procs = Procs::new(bin, dir.clone(), Topology::Netns(ns), 3, options);
    for i in 0..3 {
        procs.start_replica(i).unwrap();
    }
    let addrs = procs.replica_addrs();
    let client_of: Vec<Client> =
        addrs.iter().map(|a| Client::new(vec![a.clone()], Duration::from_secs(2)).unwrap()).collect();
    let (leader, term) = settled(&client_of).await;
    let follower = (1..=3u64).find(|id| *id != leader).unwrap();
    let f = (follower - 1) as usize;
    let ns = procs.topology.netns().unwrap();
    for other in (0..3).filter(|j| *j != f) {
        ns.cut(f, other).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    ns.heal().unwrap();
    let (after_leader, after_term) = settled(&client_of).await;
    // A second look a moment later: nothing happened on the way either.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = settled(&client_of).await;
    procs.stop_all(Duration::from_secs(5));
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        (after_leader, after_term),
        (leader, term),
        "the partition of replica {follower} changed the leader or term"
    );
    assert_eq!(again, (leader, term));
}
