//! Goal: operators change membership while clients keep submitting, and lose nothing: grow a trio
//! to five with `server --join` + `cluster add`, replace a replica killed with -9 by removing it,
//! shrink back to three; add and remove are idempotent.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

fn voters(out: &std::process::Output) -> String {
    stdout(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_replace_and_shrink_while_submitting() {
    let mut cluster = Cluster::start(3, &["--snapshot-every-entries", "20", "--snapshot-logs-kept", "5"]);
    cluster.leader().await;
    let client = cluster.client();
    for n in 0..30 {
        client.submit(&format!("before-{n}"), echo("x")).await.unwrap();
    }

    // Clients keep submitting through the whole test.
    let addrs: Vec<String> = cluster.ids().iter().map(|id| cluster.addr(*id)).collect();
    let submitter = Submitter::start(addrs, "during", Duration::ZERO);

    // Grow to five.
    for id in [4, 5] {
        let addr = cluster.start_joining_replica(id);
        let out = cli(&cluster.addr(2), &["cluster", "add", "--id", &id.to_string(), "--addr", &addr]);
        assert!(out.status.success(), "add {id}: {}\n{}", stderr(&out), cluster.logs());
        assert!(voters(&out).starts_with("changed;"), "{}", voters(&out));
        // Idempotent: adding it again changes nothing.
        let out = cli(&cluster.addr(3), &["cluster", "add", "--id", &id.to_string(), "--addr", &addr]);
        assert!(out.status.success() && voters(&out).starts_with("unchanged;"), "{}", stderr(&out));
    }
    let out = cli(&cluster.cluster_arg(), &["cluster", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["members"].as_array().unwrap().len(), 5, "{status}");
    // The same id at another address is refused.
    let out = cli(&cluster.addr(1), &["cluster", "add", "--id", "4", "--addr", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("FAILED_PRECONDITION"), "{}", stderr(&out));

    // Replica 1 dies for good: remove it; then shrink back to three by removing 5.
    cluster.kill9(1);
    for id in [1, 5] {
        let out = cli(&cluster.addr(4), &["cluster", "remove", "--id", &id.to_string()]);
        assert!(out.status.success(), "remove {id}: {}\n{}", stderr(&out), cluster.logs());
        let out = cli(&cluster.addr(2), &["cluster", "remove", "--id", &id.to_string()]);
        assert!(out.status.success() && voters(&out).starts_with("unchanged;"), "{}", stderr(&out));
        cluster.forget_replica(id);
    }
    let acked = submitter.stop().await;
    cluster.wait_converged().await;

    assert!(!acked.is_empty());
    assert_eq!(cluster.ids(), vec![2, 3, 4]);
    for id in cluster.ids() {
        let tasks = list_all(&cluster.client_of(id), true).await;
        let by_key: BTreeMap<&str, u64> = tasks.iter().map(|t| (t.key.as_str(), t.id)).collect();
        assert_eq!(by_key.len(), tasks.len(), "one task per key on replica {id}");
        for (key, task_id) in &acked {
            assert_eq!(by_key.get(key.as_str()), Some(task_id), "replica {id} lacks {key}");
        }
        assert!((0..30).all(|n| by_key.contains_key(format!("before-{n}").as_str())), "replica {id}");
    }
    // Leadership moves where the operator says, and moving it again is a no-op.
    for _ in 0..2 {
        let out = cli(&cluster.addr(2), &["cluster", "transfer-leader", "--to", "4"]);
        assert!(out.status.success(), "{}\n{}", stderr(&out), cluster.logs());
        assert!(stdout(&out).starts_with("leader: 4"), "{}", stdout(&out));
    }
    assert_eq!(cluster.leader().await, 4);
    let out = cli(&cluster.cluster_arg(), &["cluster", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ids: Vec<u64> = status["members"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![2, 3, 4], "{status}");
}
