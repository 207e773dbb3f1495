//! Rolling upgrade for real: a trio of commit cde735c's binaries (format 0), under a steady submit
//! load with a worker running tasks, gains a replica of this build, then has each old replica
//! replaced by this build in turn; the cluster version is raised (finalized) only once every
//! member reads format 1; afterwards an old binary refuses the data dir it can no longer read, an
//! old build cannot be added, and every acknowledged task is on every replica.
//!
//! Needs the old binary: `RAFTSCHED_OLD_BIN=$(scripts/old-build.sh) cargo test --test upgrade`
//! (`.ci/run` does this). Without it the test says so and passes without running.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;

fn old_bin() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("RAFTSCHED_OLD_BIN")?);
    assert!(path.exists(), "RAFTSCHED_OLD_BIN={} does not exist", path.display());
    Some(path)
}

async fn cluster_version(cluster: &Cluster) -> Option<u32> {
    cluster.client().cluster_status().await.ok().map(|s| s.cluster_version)
}

/// Replaces replica `id`'s binary: SIGTERM, then start `bin` on the same data dir.
async fn swap(cluster: &mut Cluster, id: u64, bin: &std::path::Path) {
    let status = cluster.terminate(id);
    assert!(status.success(), "replica {id} stopped with {status}\n{}", cluster.logs());
    cluster.replicas.get_mut(&id).unwrap().bin = bin.to_path_buf();
    cluster.start_replica(id);
    cluster.wait_converged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_from_cde735c_under_load() {
    let Some(old) = old_bin() else {
        eprintln!("skipped: set RAFTSCHED_OLD_BIN to commit cde735c's raftsched (scripts/old-build.sh)");
        return;
    };
    let new = PathBuf::from(BIN);
    let mut cluster = Cluster::start(0, &["--snapshot-every-entries", "50", "--snapshot-logs-kept", "10"]);
    // cde735c knows no cluster secret: its trio is open, and the new build joins it as such (how
    // to secure it afterwards is `security.rs`'s rolling test).
    cluster.peer_args = vec!["--insecure".into()];
    for (id, port) in (1..=3).zip(free_ports(3)) {
        let replica = cluster.new_replica(id, format!("127.0.0.1:{port}"), &old);
        cluster.replicas.insert(id, replica);
    }
    for id in 1..=3 {
        cluster.start_replica(id);
    }
    cluster.leader().await;
    cluster.start_worker("w1", &[]);
    cluster.wait_workers_ready(1).await;

    let addrs: Vec<String> = cluster.ids().iter().map(|id| cluster.addr(*id)).collect();
    let submitter = Submitter::start(addrs, "load", Duration::from_millis(5));

    // A replica of this build joins the old trio: it speaks format 0, and holds nothing back.
    let addr = cluster.start_joining_replica(4);
    let out = cli(&cluster.addr(1), &["cluster", "add", "--id", "4", "--addr", &addr]);
    assert!(out.status.success(), "add 4: {}\n{}", stderr(&out), cluster.logs());
    cluster.wait_converged().await;
    // Old members answer status without format fields: the cluster version stays 0.
    assert_eq!(cluster_version(&cluster).await, Some(0));
    // A command only the new build decodes is refused while an old member remains, saying why.
    let out = cli(&cluster.addr(4), &["submit", "--after", "1", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("the cluster must finish upgrading"), "{}", stderr(&out));

    for id in 1..=3 {
        swap(&mut cluster, id, &new).await;
        if id < 3 {
            tokio::time::sleep(Duration::from_millis(2 * 2_000 + 500)).await; // two version checks
            assert_eq!(cluster_version(&cluster).await, Some(0), "raised while an old member remains");
        }
    }
    // Every member reads the newest format now: the leader finalizes.
    cluster.wait_cluster_version(raftsched_format::FORMAT_VERSION_MAX).await;
    let out = cli(&cluster.cluster_arg(), &["submit", "--after", "1", "--after-policy", "finished", "--", "true"]);
    assert!(out.status.success(), "after finalizing: {}", stderr(&out));
    tokio::time::sleep(Duration::from_millis(500)).await; // some writes in format 1
    let acked = submitter.stop().await;
    assert!(acked.len() > 50, "only {} writes during the upgrade", acked.len());

    // kill -9 all: the data dirs, format 0 and 1 records mixed, reopen.
    cluster.kill9_all_and_restart().await;
    cluster.wait_cluster_version(raftsched_format::FORMAT_VERSION_MAX).await;
    for id in cluster.ids() {
        let tasks = list_all(&cluster.client_of(id), true).await;
        let by_key: BTreeMap<&str, u64> = tasks.iter().map(|t| (t.key.as_str(), t.id)).collect();
        for (key, tid) in &acked {
            assert_eq!(by_key.get(key.as_str()), Some(tid), "replica {id}: acknowledged {key} -> {tid}");
        }
    }

    // Finalized: an old binary no longer reads the data dir, and says so by exiting non-zero.
    cluster.terminate(1);
    let r = &cluster.replicas[&1];
    let mut child = std::process::Command::new(&old)
        .args(["server", "--id", "1", "--listen", &r.addr, "--initial-cluster", &cluster.initial_cluster()])
        .arg("--data-dir")
        .arg(&r.data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("an old build kept running on a finalized data dir");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "an old build served a finalized data dir");
    cluster.start_replica(1);
    cluster.wait_converged().await;

    // Nor can an old build be added to the finalized cluster: refused before it becomes a member.
    let addr = format!("127.0.0.1:{}", free_ports(1)[0]);
    let mut joining = cluster.new_replica(5, addr.clone(), &old);
    joining.join = true;
    cluster.replicas.insert(5, joining);
    cluster.start_replica(5);
    let started = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(started.elapsed() < DEADLINE, "the old replica never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = cli(&cluster.addr(2), &["cluster", "add", "--id", "5", "--addr", &addr]);
    assert_eq!(out.status.code(), Some(1), "an old build was added: {}", stdout(&out));
    assert!(stderr(&out).contains("upgrade it first"), "{}", stderr(&out));
    cluster.forget_replica(5);
    let voters = cluster.client().cluster_status().await.unwrap().members.len();
    assert_eq!(voters, 4, "the refused replica is not a member");
}
