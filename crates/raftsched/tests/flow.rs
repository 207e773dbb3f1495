//! Flows with real processes (`raftsched flow submit FILE`): a diamond from a YAML file is created
//! whole and runs in order across a kill -9 of the leader and of the worker running its root; the
//! same file again names the same tasks; `flow get` shows the graph; a cycle is refused with the
//! reason and creates nothing.

mod common;

use common::*;

const DIAMOND: &str = r#"
key: etl-1
tasks:
  - name: load
    spec: {command: ["true"]}
    after: [left, right]
  - name: extract
    spec: {command: ["sleep", "2"], max_attempts: 5}
  - name: left
    spec: {command: ["true"]}
    after: [extract]
  - name: right
    spec: {builtin: {name: echo, arg: right}}
    after: [extract]
    after_policy: finished
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_file_runs_whole_and_in_order_across_kills() {
    let mut cluster = Cluster::trio_with_workers(["w1", "w2"]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etl.yaml");
    std::fs::write(&file, DIAMOND).unwrap();
    let file = file.to_str().unwrap().to_string();

    let out = cli(&cluster.cluster_arg(), &["flow", "submit", &file, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reply: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(reply["created"], true, "{reply}");
    let id = |name: &str| -> u64 {
        reply["tasks"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap()["id"].as_u64().unwrap()
    };
    let (extract, left, right, load) = (id("extract"), id("left"), id("right"), id("load"));

    cluster.kill_leader_and_worker_running(extract).await;
    let edges = [(left, vec![extract]), (right, vec![extract]), (load, vec![left, right])];
    cluster.wait_succeeded_in_order(&edges).await;

    // The same file again: the same tasks, nothing new.
    let out = cli(&cluster.cluster_arg(), &["flow", "submit", &file, "--json"]);
    let again: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((again["created"].clone(), again["tasks"].clone()), (serde_json::json!(false), reply["tasks"].clone()));
    let out = cli(&cluster.cluster_arg(), &["flow", "get", "etl-1"]);
    let shown = stdout(&out);
    assert!(
        shown.lines().any(|l| l.starts_with("load") && l.contains("succeeded") && l.contains("left, right")),
        "{shown}"
    );

    // A cycle: refused with the reason, nothing created.
    let cycle = r#"{"key": "bad", "tasks": [{"name": "a", "spec": {"command": ["true"]}, "after": ["b"]},
                   {"name": "b", "spec": {"command": ["true"]}, "after": ["a"]}]}"#;
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, cycle).unwrap();
    let out = cli(&cluster.cluster_arg(), &["flow", "submit", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("cycle"), "{}", stderr(&out));
    let out = cli(&cluster.cluster_arg(), &["flow", "get", "bad"]);
    assert!(!out.status.success() && stderr(&out).contains("no flow"), "{}", stderr(&out));
}
