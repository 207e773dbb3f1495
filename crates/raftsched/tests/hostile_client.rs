//! A hostile client on the network against a trio in the default mode (plaintext with a cluster
//! secret, as `raftsched dev` and the bootstrap in docs/operations.md run it): forged Forward,
//! Vote, AppendEntries and InstallSnapshot from an outsider, a wrong secret, a non-member, a
//! replica claiming to be another, a vote flood during writes, fake heartbeats after a leader
//! kill. Each is refused and counted; after each attack every replica holds the same, complete
//! task list and nobody's term moved.

mod common;

use std::time::{Duration, Instant};

use common::*;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{Entry, EntryPayload, LogId, Vote};
use raftsched_client::api;
use raftsched_state::{Command as SmCommand, Op};
use tonic::Code;

fn submit_op(key: &str) -> Op {
    let spec = raftsched_state::TaskSpec::command(vec!["echo".into(), "forged".into()]);
    Op::Submit { key: key.into(), spec }
}

fn forward(ops: &[Op]) -> api::RaftBytes {
    api::RaftBytes { data: raftsched_format::encode_forward(ops, 1).unwrap() }
}

fn vote(term: u64, candidate: u64) -> api::RaftBytes {
    let rpc = VoteRequest {
        vote: Vote::new(term, candidate),
        last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(term, candidate), 1 << 40)),
    };
    api::RaftBytes { data: raftsched_format::encode_vote_request(&rpc, 1).unwrap() }
}

/// An AppendEntries from `leader` at `term`: a heartbeat, or one forged entry at `index`.
fn append(term: u64, leader: u64, entry_at: Option<u64>) -> api::RaftBytes {
    let entries = entry_at
        .map(|index| {
            let log_id = LogId::new(openraft::CommittedLeaderId::new(term, leader), index);
            let payload = EntryPayload::Normal(SmCommand { now_ms: 0, op: submit_op("forged-entry") });
            vec![Entry { log_id, payload }]
        })
        .unwrap_or_default();
    let prev_log_id = entry_at.map(|i| LogId::new(openraft::CommittedLeaderId::new(term, leader), i - 1));
    let rpc =
        AppendEntriesRequest { vote: Vote::new_committed(term, leader), prev_log_id, entries, leader_commit: None };
    api::RaftBytes { data: raftsched_format::encode_append_entries(&rpc, 1).unwrap() }
}

fn refused<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>, code: Code, what: &str) {
    let status = r.expect_err(what);
    assert_eq!(status.code(), code, "{what}: {status:?}");
}

/// Every replica's term, from its metrics.
async fn terms(cluster: &Cluster) -> Vec<f64> {
    let mut terms = Vec::new();
    for id in cluster.ids() {
        terms.push(metric(&cluster.http(id), "raftsched_raft_term").await);
    }
    terms
}

/// Every replica holds exactly `ids`, in the same order, and no forged task.
async fn assert_identical(cluster: &mut Cluster, ids: &[u64]) {
    cluster.wait_converged().await;
    for id in cluster.ids() {
        let tasks = list_all(&cluster.client_of(id), true).await;
        assert_eq!(tasks.iter().map(|t| t.id).collect::<Vec<_>>(), ids, "replica {id}");
        assert!(tasks.iter().all(|t| !t.key.starts_with("forged")), "replica {id} holds a forged task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_wrong_secrets_and_non_members_are_refused_and_nothing_changes() {
    let mut cluster = Cluster::start_with_http(3, &[]);
    let leader = cluster.leader().await;
    let client = cluster.client();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(client.submit(&format!("t{i}"), echo("x")).await.unwrap().id);
    }
    cluster.wait_converged().await;
    let terms_before = terms(&cluster).await;
    let term = terms_before[0] as u64;

    let other_secret = cluster.dir.path().join("other-secret");
    assert!(cli("", &["secret", "generate", "--out", &path_str(&other_secret)]).status.success());
    for id in cluster.ids() {
        // No proof at all: an outsider.
        let mut outsider = cluster.raft_client(id, None).await;
        refused(outsider.forward(forward(&[submit_op("forged-1")])).await, Code::Unauthenticated, "forged submit");
        refused(outsider.forward(forward(&[Op::PurgeFinished { keep: 0 }])).await, Code::Unauthenticated, "purge");
        refused(outsider.vote(vote(term + 50, 1)).await, Code::Unauthenticated, "vote");
        refused(outsider.append_entries(append(term, leader, Some(1 << 20))).await, Code::Unauthenticated, "entry");
        refused(outsider.read_index(api::ReadIndexRequest {}).await, Code::Unauthenticated, "read index");
        refused(outsider.node_status(api::NodeStatusRequest {}).await, Code::Unauthenticated, "node status");
        // A proof made with another secret.
        let creds = raftsched_client::BearerToken::new(None)
            .unwrap()
            .with_peer_proof(&raftsched_api::security::ClusterSecret::from_file(&other_secret).unwrap(), 1)
            .unwrap();
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.addr(id)))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut wrong = api::raft_client::RaftClient::with_interceptor(channel, creds);
        refused(wrong.vote(vote(term + 50, 1)).await, Code::Unauthenticated, "wrong secret");
        refused(wrong.forward(forward(&[submit_op("forged-2")])).await, Code::Unauthenticated, "forward");
        // The secret, but not a member (a removed replica): no votes, no writes.
        let mut removed = cluster.raft_client(id, Some(9)).await;
        refused(removed.vote(vote(term + 50, 9)).await, Code::PermissionDenied, "non-member vote");
        refused(removed.forward(forward(&[submit_op("forged-3")])).await, Code::PermissionDenied, "non-member write");
        // A member claiming to be another.
        let mut liar = cluster.raft_client(id, Some(2)).await;
        refused(liar.vote(vote(term + 50, 3)).await, Code::PermissionDenied, "vote for another candidate");
        refused(liar.append_entries(append(term + 50, 3, None)).await, Code::PermissionDenied, "append as another");
    }

    // A vote flood from outsiders while a client writes: every write succeeds.
    let mut flood = Vec::new();
    for id in cluster.ids() {
        let mut outsider = cluster.raft_client(id, None).await;
        flood.push(tokio::spawn(async move {
            for round in 0..300u64 {
                let _ = outsider.vote(vote(term + 100 + round, 1)).await;
            }
        }));
    }
    for i in 0..20 {
        ids.push(client.submit(&format!("during-flood-{i}"), echo("x")).await.unwrap().id);
    }
    for f in flood {
        f.await.unwrap();
    }

    assert_identical(&mut cluster, &ids).await;
    assert_eq!(terms(&cluster).await, terms_before, "an attacker moved a term");
    let secret = std::fs::read_to_string(cluster.secret_file()).unwrap();
    let secret = secret.lines().find(|l| !l.starts_with('#')).unwrap().trim().to_string();
    for id in cluster.ids() {
        let http = cluster.http(id);
        let series = r#"raftsched_requests_refused_auth_total{service="raft",reason="no_peer_proof"}"#;
        assert!(metric(&http, series).await >= 6.0, "replica {id}: refusals not counted");
        let series = r#"raftsched_requests_refused_auth_total{service="raft",reason="not_member"}"#;
        assert!(metric(&http, series).await >= 2.0, "replica {id}: non-member refusals not counted");
        assert_eq!(metric(&http, "raftsched_insecure").await, 0.0);
        for page in ["/metrics", "/status.json"] {
            assert!(!http_get(&http, page).await.contains(&secret), "the secret is on {page}");
        }
    }
    // Logged at most once per caller per minute: a few lines per replica, not thousands.
    let logs = cluster.logs();
    assert!(!logs.contains(&secret), "the secret is in a log");
    let lines = logs.lines().filter(|l| l.contains("refused a request")).count();
    assert!((1..=3 * 3).contains(&lines), "{lines} refusal log lines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_heartbeats_from_an_outsider_after_a_leader_kill_do_not_stop_the_election() {
    let mut cluster = Cluster::start_with_http(3, &[]);
    let leader = cluster.leader().await;
    let client = cluster.client();
    let mut ids = vec![client.submit("before", echo("x")).await.unwrap().id];
    let term = metric(&cluster.http(leader), "raftsched_raft_term").await as u64;
    cluster.kill9(leader);
    // The dead leader's heartbeats, replayed by an outsider at both survivors, every 20 ms.
    let survivors: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    let mut fakes = Vec::new();
    for id in &survivors {
        let mut outsider = cluster.raft_client(*id, None).await;
        fakes.push(tokio::spawn(async move {
            for _ in 0..500 {
                let _ = outsider.append_entries(append(term, leader, None)).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let started = Instant::now();
    ids.push(client.submit("after", echo("x")).await.unwrap().id);
    assert!(started.elapsed() < Duration::from_secs(8), "the write took {:?}", started.elapsed());
    for f in fakes {
        f.abort();
    }
    cluster.start_replica(leader);
    assert_identical(&mut cluster, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_replica_must_be_asked_for_and_is_announced() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let listen = format!("127.0.0.1:{port}");
    let server = |listen: &str, extra: &[&str]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["server", "--id", "1", "--listen", listen, "--initial-cluster", &format!("1={listen}")])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra);
        cmd
    };
    // Neither TLS nor a cluster secret: one line naming both, exit 1, the data dir untouched.
    let out = server(&listen, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--cluster-secret-file") && err.contains("--insecure") && err.contains("--tls"), "{err}");
    assert!(!dir.path().join("data").exists());
    // A cluster secret, but the client API on a non-loopback address without TLS and tokens.
    let secret = dir.path().join("secret");
    let out = cli("", &["secret", "generate", "--out", &path_str(&secret)]);
    assert!(out.status.success(), "{}", stderr(&out));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
    let again = cli("", &["secret", "generate", "--out", &path_str(&secret)]);
    assert_eq!(again.status.code(), Some(2), "overwrote a secret: {}", stderr(&again));
    let wide = format!("0.0.0.0:{port}");
    let out = server(&wide, &["--cluster-secret-file", &path_str(&secret)]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not loopback"), "{}", stderr(&out));
    // A short or garbled secret is named.
    std::fs::write(dir.path().join("short"), "abc\n").unwrap();
    let out = server(&listen, &["--cluster-secret-file", &path_str(&dir.path().join("short"))]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("hex characters"), "{}", stderr(&out));

    // --insecure starts, and says so in the log, the metrics and the status page.
    let http = format!("127.0.0.1:{}", free_ports(1)[0]);
    let log = dir.path().join("log");
    let mut child =
        server(&listen, &["--insecure", "--http", &http]).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(&http).is_err() {
        assert!(started.elapsed() < DEADLINE, "no http server");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&http, "raftsched_insecure").await, 1.0);
    let status = http_get(&http, "/status.json").await;
    assert!(status.contains(r#""insecure":true"#), "{status}");
    let _ = child.kill();
    let _ = child.wait();
    assert!(std::fs::read_to_string(&log).unwrap().contains("INSECURE"));
}

/// A process's resident memory, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Opens `n` Submit calls on one HTTP/2 connection to `addr`, each declaring a 1,000,000-byte
/// message and sending 1,000 bytes of it, and never finishes them. Returns the call handles (kept
/// alive by the caller) and the connection task.
async fn unfinished_calls(
    addr: &str,
    n: usize,
) -> (Vec<(h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>)>, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut calls = Vec::new();
    for _ in 0..n {
        let mut ready = client.clone().ready().await.unwrap();
        let request = http::Request::post(format!("http://{addr}/raftsched.v1.Scheduler/Submit"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut send) = ready.send_request(request, false).unwrap();
        let mut data = vec![0u8];
        data.extend_from_slice(&1_000_000u32.to_be_bytes());
        data.extend_from_slice(&[0u8; 1_000]);
        send.send_data(bytes::Bytes::from(data), false).unwrap();
        calls.push((response, send));
    }
    (calls, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_calls_and_idle_connections_hold_bounded_memory_and_others_are_served() {
    let mut cluster = Cluster::start_with_http(3, &[]);
    cluster.leader().await;
    let client = cluster.client_of(1);
    let mut ids = vec![client.submit("before", echo("x")).await.unwrap().id];
    let (pid, http, addr) = (cluster.pid(1), cluster.http(1), cluster.addr(1));
    let rss_before = rss_bytes(pid);

    // Two connections, 256 unfinished 1 MB calls each: each connection may hold 32 MiB.
    let (calls_a, conn_a) = unfinished_calls(&addr, 256).await;
    let (calls_b, conn_b) = unfinished_calls(&addr, 256).await;
    let series = r#"raftsched_requests_rejected_overload_total{reason="request_body_bytes_per_connection_max"}"#;
    let started = Instant::now();
    while metric(&http, series).await < 2.0 * 200.0 {
        assert!(started.elapsed() < DEADLINE, "over-budget calls not refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grown = rss_bytes(pid).saturating_sub(rss_before);
    assert!(grown < 96 << 20, "RSS grew by {} MiB", grown >> 20);
    // Others are served meanwhile.
    ids.push(client.submit("during-calls", echo("x")).await.unwrap().id);
    // The held calls end at request_body_ms_max (10 s): nothing stays held.
    let started = Instant::now();
    for (response, _send) in calls_a.into_iter().chain(calls_b).take(8) {
        let answer = tokio::time::timeout(DEADLINE, response).await.expect("a held call never ended");
        let head = answer.unwrap();
        let status = head.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_string());
        assert!(matches!(status.as_deref(), Some("4") | Some("8")), "{status:?}");
    }
    assert!(started.elapsed() < DEADLINE);
    conn_a.abort();
    conn_b.abort();

    // Two thousand idle connections: the replica keeps serving, and closes them after 10 s.
    let fds_before = open_fds(pid);
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    ids.push(client.submit("during-idle", echo("x")).await.unwrap().id);
    let started = Instant::now();
    while open_fds(pid) > fds_before + 100 {
        assert!(started.elapsed() < DEADLINE, "idle connections kept: {} fds", open_fds(pid));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(idle);
    assert_identical(&mut cluster, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_worker_cannot_report_on_a_task_it_does_not_hold() {
    let mut cluster = Cluster::start(3, FAST_WORKERS);
    cluster.leader().await;
    let client = cluster.client();
    let started = Instant::now();
    while client.cluster_status().await.map(|s| s.cluster_version).unwrap_or(0) < raftsched_format::FORMAT_VERSION_MAX {
        assert!(started.elapsed() < DEADLINE, "cluster version not raised");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.start_worker("w1", &["--slots", "1"]);
    cluster.wait_workers_ready(1).await;
    let id = client.submit("victim", raftsched_client::builtin("sleep", "20000")).await.unwrap().id;
    let task = cluster.wait_task(id, "running", |t| t.state == "running").await;
    assert_eq!(task.worker_id, "w1");

    let forged = |worker_id: &str, instance: u64, token: u64| api::ReportRequest {
        task_id: id,
        token,
        finished: true,
        exit_code: 0,
        output_tail: "forged".into(),
        worker_id: worker_id.into(),
        instance,
        ..Default::default()
    };
    // 172 guessed tokens from a worker that holds nothing, the real token among them; the same
    // with the holder's id but not its registration; and a report that names no worker.
    let mut reports: Vec<api::ReportRequest> =
        (task.token.saturating_sub(86)..task.token + 86).map(|t| forged("rogue", 1, t)).collect();
    reports.push(forged("w1", 12345, task.token));
    let outcomes = client.report_many(reports).await.unwrap().outcomes;
    assert!(outcomes.iter().all(|o| Code::from(o.code) == Code::PermissionDenied), "{:?}", &outcomes[..3]);
    let legacy = api::ReportRequest { task_id: id, token: task.token, finished: true, ..Default::default() };
    let outcomes = client.report_many(vec![legacy]).await.unwrap().outcomes;
    assert_eq!(Code::from(outcomes[0].code), Code::FailedPrecondition, "{outcomes:?}");

    // Nothing changed: still running on w1, no result, on every replica.
    cluster.wait_converged().await;
    for replica in cluster.ids() {
        let t = cluster.client_of(replica).get(id, true).await.unwrap();
        assert_eq!(
            (t.state.as_str(), t.worker_id.as_str(), t.has_result),
            ("running", "w1", false),
            "replica {replica}"
        );
    }
}
