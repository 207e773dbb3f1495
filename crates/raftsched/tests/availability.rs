//! Goal: available under faults, with health that tells the truth (pre-vote, check-quorum, leader
//! stickiness; `crates/server/src/election.rs`). Real replicas, stopped and paused for real; the
//! fault lasts as long as the issue says, everything else waits on conditions.
//!
//! Partitions with network namespaces are in the harness (`jepsen-like-tests/tests/faults.rs`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use raftsched_api::v1 as api;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Replica `id`'s own view (term, role, leader), asked of it alone; `None` if it does not answer.
async fn own_view(cluster: &Cluster, id: u64) -> Option<api::MemberStatus> {
    let status =
        tokio::time::timeout(Duration::from_secs(2), cluster.client_of(id).cluster_status()).await.ok()?.ok()?;
    status.members.into_iter().find(|m| m.id == id && m.reachable)
}

/// Waits until `pred` holds, at most `within`; returns how long it took.
async fn within<F: std::future::Future<Output = bool>>(
    within: Duration,
    what: &str,
    mut pred: impl FnMut() -> F,
) -> Duration {
    let started = Instant::now();
    loop {
        if pred().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn health(addr: &str) -> Option<i32> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?.connect().await.ok()?;
    let request = HealthCheckRequest { service: "raftsched.v1.Scheduler".into() };
    let reply = tokio::time::timeout(Duration::from_secs(1), HealthClient::new(channel).check(request)).await.ok()?;
    reply.ok().map(|r| r.into_inner().status)
}

fn pause(cluster: &Cluster, id: u64, signal: i32) {
    unsafe {
        libc::kill(cluster.pid(id) as i32, signal);
    }
}

/// The term every running replica agrees on once converged, and the leader.
async fn settled(cluster: &mut Cluster) -> (u64, u64) {
    let leader = cluster.wait_converged().await;
    let term = own_view(cluster, leader).await.expect("the leader answers").term;
    (leader, term)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_follower_changes_neither_leader_nor_term() {
    let mut cluster = Cluster::start(3, &[]);
    let (leader, term) = settled(&mut cluster).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    pause(&cluster, follower, libc::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(3)).await;
    pause(&cluster, follower, libc::SIGCONT);
    // It catches up with the same leader; nobody changed term.
    cluster.wait_converged().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in cluster.ids() {
        let view = own_view(&cluster, id).await.expect("answers");
        assert_eq!((view.term, view.current_leader), (term, leader), "replica {id}\n{}", cluster.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_stopped_inflate_no_terms_and_the_survivor_says_so() {
    let mut cluster = Cluster::start_with_http(3, &[]);
    let (leader, term) = settled(&mut cluster).await;
    // The leader survives: check-quorum must notice that it leads nobody.
    let others: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    let (addr, http) = (cluster.addr(leader), cluster.http(leader));
    within(Duration::from_secs(10), "health SERVING on the leader", || async {
        health(&addr).await == Some(ServingStatus::Serving as i32)
    })
    .await;
    for id in &others {
        cluster.kill9(*id);
    }
    let stopped = Instant::now();
    let flipped = within(Duration::from_secs(2), "health NOT_SERVING without a quorum", || async {
        health(&addr).await == Some(ServingStatus::NotServing as i32)
    })
    .await;
    within(Duration::from_secs(2), "/readyz 503", || async {
        http_get(&http, "/readyz").await.starts_with("HTTP/1.1 503")
    })
    .await;
    assert!(http_get(&http, "/healthz").await.starts_with("HTTP/1.1 200"), "the process is alive");
    let out = cli(&addr, &["cluster", "status"]);
    assert_eq!(out.status.code(), Some(3), "cluster status without a leader: {}\n{}", stdout(&out), stderr(&out));
    // A write gets a fast answer that names the missing quorum.
    let asked = Instant::now();
    let err = cluster.client_of(leader).submit("during", echo("x")).await.unwrap_err().to_string();
    assert!(err.contains("no quorum"), "{err}");
    assert!(asked.elapsed() < Duration::from_secs(2), "took {:?}", asked.elapsed());
    let out = cli(&addr, &["submit", "--key", "cli-during", "--", "true"]);
    assert!(!out.status.success() && stderr(&out).contains("no quorum"), "{}", stderr(&out));
    // Ten seconds alone: the term grows by at most 2.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed())).await;
    let alone = own_view(&cluster, leader).await.expect("the survivor answers").term;
    assert!(alone <= term + 2, "term {term} -> {alone} alone\n{}", cluster.logs());
    // They come back: a leader within 2 s of their answering, after at most one election.
    for id in &others {
        cluster.start_replica(*id);
    }
    for id in others.clone() {
        within(DEADLINE, "a restarted replica answers", || {
            let cluster = &cluster;
            async move { own_view(cluster, id).await.is_some() }
        })
        .await;
    }
    within(Duration::from_secs(2), "a leader after the return", || async {
        cluster.client_of(leader).cluster_status().await.is_ok_and(|s| s.has_leader)
    })
    .await;
    within(Duration::from_secs(2), "health SERVING again", || async {
        health(&addr).await == Some(ServingStatus::Serving as i32)
    })
    .await;
    let (_, back) = settled(&mut cluster).await;
    assert!(back <= alone + 1, "term {alone} -> {back}: more than one election on return\n{}", cluster.logs());
    let out = cli(&addr, &["cluster", "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    eprintln!("health flipped {flipped:?} after the stop; terms {term} -> {alone} -> {back}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_left_alone_does_not_raise_its_term() {
    let mut cluster = Cluster::start(3, &[]);
    let (leader, term) = settled(&mut cluster).await;
    let survivor = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let others: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != survivor).collect();
    for id in &others {
        cluster.kill9(*id);
    }
    let addr = cluster.addr(survivor);
    within(Duration::from_secs(2), "health NOT_SERVING on the survivor", || async {
        health(&addr).await == Some(ServingStatus::NotServing as i32)
    })
    .await;
    let err = cluster.client_of(survivor).submit("alone", echo("x")).await.unwrap_err().to_string();
    assert!(err.contains("no quorum") || err.contains("no leader"), "{err}");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let alone = own_view(&cluster, survivor).await.expect("answers").term;
    assert!(alone <= term + 2, "term {term} -> {alone}\n{}", cluster.logs());
    for id in &others {
        cluster.start_replica(*id);
    }
    let (_, back) = settled(&mut cluster).await;
    assert!(back <= alone + 1, "term {alone} -> {back}\n{}", cluster.logs());
}
