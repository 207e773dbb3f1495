//! Goal: quorum loss is survivable by an operator. Two of three data dirs are destroyed; the
//! survivor is rewritten with `recover --force-new-cluster`, serves every acknowledged task on its
//! own, and the others rejoin empty with `server --join` + `cluster add`.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_survivor_recovers_the_cluster_after_quorum_loss() {
    let mut cluster = Cluster::start(3, &["--snapshot-every-entries", "15", "--snapshot-logs-kept", "3"]);
    cluster.leader().await;
    let client = cluster.client();
    let mut acked = Vec::new();
    for n in 0..40 {
        acked.push((format!("k{n}"), client.submit(&format!("k{n}"), echo("x")).await.unwrap().id));
    }
    cluster.wait_converged().await;
    for id in cluster.ids() {
        cluster.kill9(id);
    }
    // Replicas 2 and 3 are gone for good.
    for id in [2, 3] {
        std::fs::remove_dir_all(&cluster.replicas[&id].data_dir).unwrap();
        cluster.forget_replica(id);
    }
    // Without --force-new-cluster nothing is touched.
    let data_dir = path_str(&cluster.replicas[&1].data_dir);
    let out = cli("127.0.0.1:1", &["recover", "--data-dir", &data_dir]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = cli("127.0.0.1:1", &["recover", "--data-dir", &data_dir, "--force-new-cluster"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("40 tasks"), "{}", stdout(&out));

    cluster.start_replica(1);
    assert_eq!(cluster.leader().await, 1);
    let solo = cluster.client_of(1);
    for (key, id) in &acked {
        assert_eq!(&solo.get(*id, false).await.unwrap().key, key);
    }
    let after = solo.submit("after-recovery", echo("x")).await.unwrap();
    assert!(after.created && after.id > acked.last().unwrap().1);

    // A new replica joins and catches up.
    let addr = cluster.start_joining_replica(2);
    let out = cli(&cluster.addr(1), &["cluster", "add", "--id", "2", "--addr", &addr]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), cluster.logs());
    cluster.wait_converged().await;
    let tasks = list_all(&cluster.client_of(2), true).await;
    assert_eq!(tasks.len(), acked.len() + 1);
}
