//! Dependencies with real processes (`submit --after`): a diamond runs in order across a kill -9
//! of the leader and of a worker, each task starting only after its dependencies ended (by the
//! recorded attempt times); a failure skips its dependents and theirs, and `submit --wait` on a
//! skipped task says why and exits non-zero.

mod common;

use common::*;
use raftsched_client::api;

fn submit(cluster: &Cluster, args: &[&str]) -> u64 {
    let out = cli(&cluster.cluster_arg(), args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out).parse().expect("submit prints the task's id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diamond_runs_in_order_across_kills_and_a_failure_skips_its_dependents() {
    let mut cluster = Cluster::trio_with_workers(["w1", "w2"]).await;

    let a = submit(&cluster, &["submit", "--key", "a", "--", "sleep", "2"]);
    let b = submit(&cluster, &["submit", "--key", "b", "--after", &a.to_string(), "--", "true"]);
    let c = submit(&cluster, &["submit", "--key", "c", "--after-key", "a", "--", "sleep", "1"]);
    let d = submit(&cluster, &["submit", "--key", "d", "--after", &format!("{b},{c}"), "--", "true"]);
    let got: serde_json::Value =
        serde_json::from_str(&stdout(&cli(&cluster.cluster_arg(), &["get", &d.to_string(), "--json"]))).unwrap();
    assert_eq!((got["state"].as_str(), got["after"].clone()), (Some("waiting"), serde_json::json!([b, c])), "{got}");

    // While a runs: the leader dies, and so does the worker that runs it.
    cluster.kill_leader_and_worker_running(a).await;

    let client = cluster.client();
    let ended = cluster.wait_succeeded_in_order(&[(b, vec![a]), (c, vec![a]), (d, vec![b, c])]).await;
    assert!(ended[&a].attempts.len() >= 2, "a's attempt on the killed worker was lost and run again");

    // A failure skips what needs it, and what needs that; `finished` runs anyway.
    let x = submit(&cluster, &["submit", "--key", "x", "--max-attempts", "1", "--", "sh", "-c", "exit 3"]);
    let y = submit(&cluster, &["submit", "--key", "y", "--after", &x.to_string(), "--", "true"]);
    let cleanup = submit(
        &cluster,
        &["submit", "--key", "cleanup", "--after", &x.to_string(), "--after-policy", "finished", "--", "true"],
    );
    let out = cli(&cluster.cluster_arg(), &["submit", "--wait", "--key", "z", "--after-key", "y", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("was skipped: task {y} did not succeed")), "{}", stderr(&out));
    let y_task = client.get(y, false).await.unwrap();
    assert_eq!((y_task.state.as_str(), y_task.skipped_by), ("skipped", x));
    cluster.wait_task(cleanup, "cleanup ran", |t| t.state == "succeeded").await;
    let skipped = client.list_page(api::ListTasksRequest { state: "skipped".into(), ..Default::default() }).await;
    assert_eq!(skipped.unwrap().tasks.len(), 2, "y and z");

    // Refused with the reason: an unknown dependency, a bad policy.
    let out = cli(&cluster.cluster_arg(), &["submit", "--after", "999999", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no task with id 999999"), "{}", stderr(&out));
}
