//! Reads right after a kill -9 of every replica. openraft 0.9 restores the replica that led before
//! the restart as leader at once, and its persisted commit index (saved lazily) may lag entries it
//! had committed and acknowledged just before the kill. A linearizable read on it must still see
//! every acknowledged write: the read index is never below the leader's log as of its term's first
//! read (`Replica::local_read_index`). Found by the harness (`--nemesis all --seed 2115`).
//!
//! The window is narrow (the read must beat the restored leader's first replication round), so
//! the test makes 20 rounds: without the floor, a third of its runs failed here (10 rounds), with
//! it none did.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_leader_reads_every_write_it_acknowledged_before_a_kill_all() {
    let mut cluster = Cluster::start(3, &[]);
    for round in 0..20 {
        let leader = cluster.wait_converged().await;
        // A burst of writes through the leader, then nothing: the last commit index is saved only
        // with a later write (or sled's own periodic flush), so a kill now leaves it behind.
        let client = cluster.client_of(leader);
        let client = &client;
        let writes =
            (0..32).map(|i| async move { client.submit(&format!("r{round}-{i}"), echo("x")).await.unwrap().id });
        let ids = futures::future::join_all(writes).await;
        for id in cluster.ids() {
            cluster.kill9(id);
        }
        for id in cluster.ids() {
            cluster.start_replica(id);
        }
        // Read at once, through the replica that led (restored as leader, or not: either way the
        // answer must be the task).
        let reader = cluster.client_of(leader);
        let started = Instant::now();
        for id in &ids {
            let task = loop {
                match reader.get(*id, false).await {
                    Ok(task) => break task,
                    Err(raftsched_client::ClientError::Refused(status)) => {
                        panic!("round {round}: acknowledged task {id} read as {status:?}\n{}", cluster.logs())
                    }
                    Err(_) if started.elapsed() < Duration::from_secs(30) => continue,
                    Err(e) => panic!("round {round}: task {id}: {e}"),
                }
            };
            assert_eq!(task.id, *id);
        }
    }
}
