//! Replicated behaviour of real replica processes: writes through any replica, linearizable
//! follower reads, leader kill -9 while submitting, full-cluster kill -9 and restart, idempotency
//! across a leader change, catch-up through a snapshot.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::*;
use raftsched_client::{api, Client};
use tokio::sync::{watch, Mutex};

/// Goal: any replica accepts writes, and a write acknowledged by one replica is visible to a
/// linearizable read on every other replica right away (no waiting for replication).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_replica_are_read_linearizably_everywhere() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    for writer in cluster.ids() {
        let reply = cluster.client_of(writer).submit(&format!("via-{writer}"), echo("hi")).await.unwrap();
        assert!(reply.created);
        for reader in cluster.ids() {
            let task = cluster.client_of(reader).get(reply.id, false).await.unwrap_or_else(|e| {
                panic!("task {} written via {writer} not readable via {reader}: {e}\n{}", reply.id, cluster.logs())
            });
            assert_eq!(task.key, format!("via-{writer}"));
            assert_eq!(task.state, "pending");
            assert_eq!(task.state_enum, raftsched_client::api::TaskState::Pending as i32);
        }
    }
    // The CLI: submit through one replica, get --json through another.
    let out = cli(&cluster.addr(1), &["submit", "--key", "cli-key", "--builtin", "sleep:5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out);
    assert!(id.parse::<u64>().is_ok(), "submit printed {id:?}");
    let out = cli(&cluster.addr(3), &["get", "--json", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["id"].to_string(), id);
    assert_eq!(json["key"], "cli-key");
    assert_eq!(json["state"], "pending");
    assert_eq!(json["spec"]["builtin"]["name"], "sleep");
    assert!(json["created_at_ms"].as_u64().unwrap() > 0);
    // Cluster status names the leader and every member.
    let out = cli(&cluster.cluster_arg(), &["cluster", "status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(status["leader"].is_u64(), "{status}");
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(members.iter().filter(|m| m["role"] == "leader").count(), 1);
    for m in members {
        assert!(m["id"].is_u64() && m["addr"].is_string() && m["reachable"] == true, "{m}");
    }
    // People read times as RFC 3339 with an age; a list cut by --limit says how to page on (on
    // stderr, so stdout stays the list).
    let out = cli(&cluster.addr(2), &["get", &id]);
    let text = stdout(&out);
    let created = text.lines().find(|l| l.starts_with("created_at:")).unwrap_or_else(|| panic!("{text}"));
    assert!(created.contains("T") && created.contains("Z (") && created.contains(" ago)"), "{created}");
    let out = cli(&cluster.cluster_arg(), &["list", "--limit", "1"]);
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
    let first = stdout(&out).lines().nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    assert!(stderr(&out).contains(&format!("raftsched list --after {first}")), "{}", stderr(&out));
    // A reader that went away (`| head -1`) ends a command quietly: exit 0, no panic.
    for args in [&["list"][..], &["list", "--json"], &["cluster", "status"], &["get", "--json", &id]] {
        let out = cli_into_closed_pipe(&cluster.cluster_arg(), args);
        assert!(out.status.success(), "{args:?}: {:?} {}", out.status, stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?}: {}", stderr(&out));
    }
}

/// Runs the CLI with its stdout a pipe whose reading end is already closed.
fn cli_into_closed_pipe(cluster: &str, args: &[&str]) -> std::process::Output {
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .env("RAFTSCHED_CLUSTER", cluster)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run raftsched");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait for raftsched")
}

/// Goal: the acceptance scenario. 40 tasks submitted round-robin through the three
/// replicas while the leader is killed with -9; then every replica is killed with -9 and
/// restarted. Every acknowledged task must be readable on every replica, one task per key, and
/// resubmitting the keys after the leader change returns the same ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_tasks_survive_leader_kill_and_full_restart() {
    const N_TASKS: usize = 40;
    const N_LOOPS: usize = 4;
    let mut cluster = Cluster::start(3, &[]);
    let first_leader = cluster.leader().await;
    let addrs: Vec<String> = cluster.ids().iter().map(|id| cluster.addr(*id)).collect();
    let acked: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let mut loops = Vec::new();
    for l in 0..N_LOOPS {
        let addrs = addrs.clone();
        let acked = acked.clone();
        let count_tx = count_tx.clone();
        loops.push(tokio::spawn(async move {
            for n in (l..N_TASKS).step_by(N_LOOPS) {
                // Round-robin: task n starts at replica n % 3; the client moves on if it is down.
                let client = Client::new(addrs.clone(), DEADLINE).unwrap().prefer(n);
                let key = format!("task-{n}");
                let reply = client.submit(&key, echo(&key)).await.unwrap_or_else(|e| panic!("{key}: {e}"));
                acked.lock().await.insert(key, reply.id);
                count_tx.send_modify(|c| *c += 1);
            }
        }));
    }
    // Kill the leader once a quarter of the tasks are acknowledged, while the rest are in flight.
    count_rx.wait_for(|c| *c >= N_TASKS / 4).await.unwrap();
    cluster.kill9(first_leader);
    for l in loops {
        l.await.expect("submit loop");
    }
    let acked = acked.lock().await.clone();
    assert_eq!(acked.len(), N_TASKS);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, first_leader);

    // Idempotency across the leader change: the same keys give the same ids and create nothing.
    let client = cluster.client();
    for (key, id) in &acked {
        let reply = client.submit(key, echo(key)).await.unwrap();
        assert_eq!((reply.id, reply.created), (*id, false), "resubmit of {key}");
    }
    let conflict = client.submit("task-0", echo("other")).await.unwrap_err();
    assert_eq!(conflict.code(), tonic::Code::AlreadyExists);

    // Bring the old leader back, then kill everyone with -9 and restart from the data dirs.
    cluster.start_replica(first_leader);
    cluster.wait_converged().await;
    cluster.kill9_all_and_restart().await;

    for id in cluster.ids() {
        for stale in [false, true] {
            let tasks = list_all(&cluster.client_of(id), stale).await;
            let keys: BTreeSet<&str> = tasks.iter().map(|t| t.key.as_str()).collect();
            assert_eq!(keys.len(), tasks.len(), "one task per key on replica {id}");
            assert_eq!(tasks.len(), N_TASKS, "replica {id} (stale={stale}) holds {} tasks", tasks.len());
            for t in &tasks {
                assert_eq!(acked.get(&t.key), Some(&t.id), "replica {id}: task {} under key {}", t.id, t.key);
            }
        }
    }
}

/// Goal: a replica that missed entries the leader has already compacted away catches up by
/// installing a snapshot, and a whole cluster restarts from snapshots plus log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_replica_catches_up_through_a_snapshot() {
    const N_TASKS: usize = 60;
    let mut cluster = Cluster::start(3, &["--snapshot-every-entries", "10", "--snapshot-logs-kept", "0"]);
    let leader = cluster.leader().await;
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.kill9(lagging);
    let client = cluster.client();
    for n in 0..N_TASKS {
        client.submit(&format!("snap-{n}"), echo("x")).await.unwrap();
    }
    cluster.start_replica(lagging);
    cluster.wait_converged().await;
    let tasks = list_all(&cluster.client_of(lagging), true).await;
    assert_eq!(tasks.len(), N_TASKS, "lagging replica's local state\n{}", cluster.logs());
    let log = std::fs::read_to_string(&cluster.replicas[&lagging].log_path).unwrap();
    assert!(log.contains("installed snapshot"), "replica {lagging} caught up without a snapshot:\n{log}");

    cluster.kill9_all_and_restart().await;
    for id in cluster.ids() {
        assert_eq!(list_all(&cluster.client_of(id), false).await.len(), N_TASKS, "replica {id} after restart");
    }
    // Still writable after the restart, and ids keep growing.
    let reply = cluster.client().submit("after-restart", echo("x")).await.unwrap();
    assert!(reply.created);
    assert!(tasks.iter().all(|t| t.id < reply.id));
}

/// Goal: retention. With `--retain-finished 5`, finished tasks beyond the newest five are removed
/// with their keys on every replica (a purged key is free again); live tasks are never removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_tasks_beyond_the_retention_limit_are_purged() {
    let mut cluster = Cluster::start(3, &["--retain-finished", "5"]);
    cluster.leader().await;
    let client = cluster.client();
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(client.submit(&format!("r{n}"), echo("x")).await.unwrap().id);
    }
    // 15 end (cancelled); 5 stay pending.
    for id in &ids[..15] {
        client.cancel(*id).await.unwrap();
    }
    let started = std::time::Instant::now();
    let remaining = loop {
        let tasks = list_all(&client, false).await;
        if tasks.len() == 10 {
            break tasks;
        }
        assert!(started.elapsed() < DEADLINE, "{} tasks held, expected 10", tasks.len());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let kept: Vec<u64> = remaining.iter().map(|t| t.id).collect();
    assert_eq!(kept, ids[10..].to_vec(), "the oldest finished tasks go first; pending ones stay");
    let gone = client.get(ids[0], false).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let again = client.submit("r0", echo("x")).await.unwrap();
    assert!(again.created && again.id > ids[19], "a purged key names a new task");
    cluster.wait_converged().await;
    for id in cluster.ids() {
        assert_eq!(list_all(&cluster.client_of(id), true).await.len(), 11, "replica {id}");
    }
}

/// Goal: writes find the leader by themselves. A follower's answer to a write names the leader
/// (`raftsched-leader` metadata; the leader's own answer names nobody), a client given every
/// replica sends its next writes there, and after the leader is killed the client's writes still
/// succeed and it follows the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_the_leader_hint_across_a_leader_kill() {
    let mut cluster = Cluster::start(3, &[]);
    let hint_of = |addr: String, key: &'static str| async move {
        let mut raw =
            raftsched_client::api::scheduler_client::SchedulerClient::connect(format!("http://{addr}")).await.unwrap();
        let req = raftsched_client::api::SubmitRequest { key: key.into(), spec: Some(echo(key)), ..Default::default() };
        let reply = raw.submit(req).await.unwrap();
        reply.metadata().get(raftsched_client::api::LEADER_HINT_KEY).map(|v| v.to_str().unwrap().to_string())
    };
    // Right after a first start leadership may still move once (every member initializes the
    // cluster and may campaign; seen: a leader of term 1 replaced within 0.4 s): the follower's
    // answer is checked against a leader that stayed put around it. The same key each time: one task.
    let started = std::time::Instant::now();
    let (leader, follower) = loop {
        let leader = cluster.leader().await;
        let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
        let hint = hint_of(cluster.addr(follower), "raw-via-follower").await;
        if hint.as_deref() == Some(cluster.addr(leader).as_str()) && cluster.leader().await == leader {
            break (leader, follower);
        }
        assert!(started.elapsed() < DEADLINE, "a follower's answer named {hint:?}, not leader {leader}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(hint_of(cluster.addr(leader), "raw-via-leader").await, None);

    // A client that starts at the follower moves its writes to the leader after one answer.
    let addrs: Vec<String> = cluster.ids().into_iter().map(|id| cluster.addr(id)).collect();
    let follower_idx = addrs.iter().position(|a| *a == cluster.addr(follower)).unwrap();
    let client = Client::new(addrs, DEADLINE).unwrap().prefer(follower_idx);
    assert_eq!(client.leader_addr(), None);
    client.submit("hinted-1", echo("1")).await.unwrap();
    assert_eq!(client.leader_addr(), Some(cluster.addr(leader).as_str()));
    client.submit("hinted-2", echo("2")).await.unwrap();

    // The leader dies: the next write still succeeds (through another replica), and the client's
    // writes then follow whoever leads now.
    cluster.kill9(leader);
    let reply = client.submit("after-kill", echo("3")).await.unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    assert!(reply.created);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    client.submit("after-kill-2", echo("4")).await.unwrap();
    assert_eq!(client.leader_addr(), Some(cluster.addr(new_leader).as_str()));
    // Every write is there, once.
    let tasks = list_all(&cluster.client(), false).await;
    for key in ["raw-via-follower", "raw-via-leader", "hinted-1", "hinted-2", "after-kill", "after-kill-2"] {
        assert_eq!(tasks.iter().filter(|t| t.key == key).count(), 1, "{key}");
    }
}

/// Goal: `--tasks-pending-max`. The leader admits that many pending tasks; the next new submit,
/// through any replica, is refused with RESOURCE_EXHAUSTED naming the limit; a retry of an admitted
/// key still answers with its task; ending a task makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_admits_at_most_tasks_pending_max_pending_tasks() {
    let mut cluster = Cluster::start(3, &["--tasks-pending-max", "3"]);
    cluster.leader().await;
    let client = cluster.client();
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(client.submit(&format!("p{n}"), echo("x")).await.unwrap().id);
    }
    for id in cluster.ids() {
        match cluster.client_of(id).submit("p-over", echo("x")).await {
            Err(raftsched_client::ClientError::Refused(status)) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("tasks_pending_max 3"), "{}", status.message());
                // Programs read the limit from the status details, not the message.
                use tonic_types::StatusExt;
                let info = status.get_details_error_info().expect("a google.rpc.ErrorInfo detail");
                assert_eq!(info.reason, "LIMIT_REACHED");
                assert_eq!(info.metadata.get("limit").map(String::as_str), Some("tasks_pending_max"));
                assert!(status.get_details_retry_info().is_some_and(|r| r.retry_delay.is_some()));
            }
            other => panic!("replica {id}: a fourth pending task was not refused: {other:?}"),
        }
    }
    let again = client.submit("p0", echo("x")).await.unwrap();
    assert_eq!((again.id, again.created), (ids[0], false), "a retry of an admitted key");
    client.cancel(ids[0]).await.unwrap();
    assert!(client.submit("p-over", echo("x")).await.unwrap().created, "room again after a cancel");
}

/// Goal: `bench submit` leaves no queued work behind. Without workers every task it submits stays
/// pending; unless `--keep`, it cancels them at the end (and says so on stderr), so a worker that
/// joins later runs none of them. Its stdout is the one JSON line scripts read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_submit_cancels_what_it_left_pending_unless_kept() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let bench = |keep: bool| {
        let mut args = vec!["bench", "submit", "--duration-s", "1", "--concurrency", "2", "--json"];
        if keep {
            args.push("--keep");
        }
        cli(&cluster.cluster_arg(), &args)
    };
    let out = bench(false);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ops = report["ops"].as_u64().unwrap();
    assert!(ops > 0, "{report}");
    assert!(stderr(&out).contains(&format!("{ops} pending cancelled")), "{}", stderr(&out));
    let pending = |tasks: &[api::Task]| tasks.iter().filter(|t| t.state == "pending").count();
    assert_eq!(pending(&list_all(&cluster.client(), false).await), 0);
    let out = bench(true);
    assert!(out.status.success() && stderr(&out).contains("kept (--keep)"), "{}", stderr(&out));
    assert!(pending(&list_all(&cluster.client(), false).await) > 0);
}
