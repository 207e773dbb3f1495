//! Goal: strangers on the network are kept out. With `raftsched certs generate` files, replicas,
//! workers and clients speak mutual TLS and carry bearer tokens: each missing or wrong credential
//! is refused with the right code, each role is confined to its API, tokens never reach a log,
//! and a TLS cluster survives a leader kill -9 like a plaintext one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use raftsched_client::{api, Client, Dialer, TlsFiles};
use tonic::Code;

fn generate(dir: &Path) {
    let out = Command::new(BIN).args(["certs", "generate", "--workers", "w1,w2", "--out"]).arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

fn file(dir: &Path, name: &str) -> String {
    path_str(&dir.join(name))
}

fn tls(dir: &Path, who: &str) -> TlsFiles {
    TlsFiles { ca: dir.join("ca.pem"), cert: dir.join(format!("{who}.pem")), key: dir.join(format!("{who}-key.pem")) }
}

fn token(dir: &Path, role: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{role}.token"))).unwrap().trim().to_string()
}

/// A client with the TLS identity `who` and the bearer `token`.
fn client(cluster: &Cluster, tls_files: Option<&TlsFiles>, token: Option<&str>) -> Client {
    let addrs: Vec<String> = cluster.ids().iter().map(|id| cluster.addr(*id)).collect();
    Client::with_dialer(addrs, std::time::Duration::from_secs(5), &Dialer::new(tls_files, token).unwrap()).unwrap()
}

/// `raftsched submit` with these credential flags; (exit code, stderr).
fn cli_submit(cluster: &Cluster, creds: &[String]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(["submit", "--timeout", "5s", "--cluster", &cluster.cluster_arg()])
        .args(creds)
        .args(["--builtin", "echo:hi"])
        .output()
        .unwrap();
    (out.status.code(), stderr(&out))
}

fn creds(dir: &Path, who: &str, token_file: Option<&str>) -> Vec<String> {
    let mut c = vec![
        "--tls-ca".into(),
        file(dir, "ca.pem"),
        "--tls-cert".into(),
        file(dir, &format!("{who}.pem")),
        "--tls-key".into(),
        file(dir, &format!("{who}-key.pem")),
    ];
    if let Some(t) = token_file {
        c.extend(["--token-file".into(), file(dir, t)]);
    }
    c
}

/// Certificates and tokens in a temp dir (`certs generate`), and a trio that uses them.
fn secure_trio() -> (tempfile::TempDir, Cluster) {
    let certs_dir = tempfile::tempdir().unwrap();
    generate(certs_dir.path());
    let cluster = start_secure_trio(certs_dir.path());
    (certs_dir, cluster)
}

fn start_secure_trio(certs: &Path) -> Cluster {
    let args = [
        "--tls-ca".to_string(),
        file(certs, "ca.pem"),
        "--tls-cert".into(),
        file(certs, "replica.pem"),
        "--tls-key".into(),
        file(certs, "replica-key.pem"),
        "--token-file".into(),
        file(certs, "tokens"),
        "--heartbeat-timeout-ms".into(),
        "1000".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cluster = Cluster::start(3, &args);
    cluster.dialer = Dialer::new(Some(&tls(certs, "client")), Some(&token(certs, "admin"))).unwrap();
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_missing_or_wrong_credential_is_refused_and_roles_stay_in_their_lane() {
    let (certs_dir, mut cluster) = secure_trio();
    let certs = certs_dir.path();
    cluster.leader().await;

    // The right certificate and token: accepted.
    let (code, err) = cli_submit(&cluster, &creds(certs, "client", Some("client.token")));
    assert_eq!(code, Some(0), "{err}\n{}", cluster.logs());

    // No token; an unknown token.
    let (code, err) = cli_submit(&cluster, &creds(certs, "client", None));
    assert_eq!(code, Some(1));
    assert!(err.contains("UNAUTHENTICATED"), "{err}");
    let wrong = certs.join("wrong.token");
    std::fs::write(&wrong, "0123456789abcdef0123456789abcdef\n").unwrap();
    let (code, err) = cli_submit(&cluster, &creds(certs, "client", Some("wrong.token")));
    assert_eq!(code, Some(1));
    assert!(err.contains("UNAUTHENTICATED") && err.contains("unknown bearer token"), "{err}");

    // A worker token cannot submit; a client token cannot report results or change the cluster.
    let (code, err) = cli_submit(&cluster, &creds(certs, "worker", Some("worker.token")));
    assert_eq!(code, Some(1));
    assert!(err.contains("PERMISSION_DENIED"), "{err}");
    let as_client = client(&cluster, Some(&tls(certs, "client")), Some(&token(certs, "client")));
    let report = api::ReportRequest { task_id: 1, token: 1, finished: true, ..Default::default() };
    assert_eq!(as_client.report(report).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(as_client.remove_member(3).await.unwrap_err().code(), Code::PermissionDenied);
    let as_worker = client(&cluster, Some(&tls(certs, "worker")), Some(&token(certs, "worker")));
    assert_eq!(as_worker.get(1, false).await.unwrap_err().code(), Code::PermissionDenied);

    // TLS without a client certificate: UNAUTHENTICATED, even with a good token.
    let ca_only = Dialer {
        tls: Some(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(certs.join("ca.pem")).unwrap())),
        ),
        token: raftsched_client::BearerToken::new(Some(&token(certs, "client"))).unwrap(),
    };
    let no_cert = Client::with_dialer(vec![cluster.addr(1)], std::time::Duration::from_secs(5), &ca_only).unwrap();
    let err = no_cert.get(1, false).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    // A certificate from another CA, and plaintext: no answer at all.
    let other_dir = tempfile::tempdir().unwrap();
    generate(other_dir.path());
    let stranger = client(&cluster, Some(&tls(other_dir.path(), "client")), Some(&token(certs, "client")));
    assert!(stranger.get(1, false).await.is_err());
    let plain = Client::new(vec![cluster.addr(1)], std::time::Duration::from_secs(3)).unwrap();
    let err = plain.get(1, false).await.unwrap_err();
    assert!(err.to_string().contains("requires TLS"), "a plaintext client is not told: {err}");

    // Nothing secret in any log.
    let logs = cluster.logs();
    for role in ["admin", "client", "worker"] {
        assert!(!logs.contains(&token(certs, role)), "the {role} token appears in a log");
    }
    let tokens_file = std::fs::read_to_string(certs.join("tokens")).unwrap();
    let replica_token = tokens_file.lines().find_map(|l| l.strip_prefix("replica ")).unwrap();
    assert!(!logs.contains(replica_token), "the replica token appears in a log");
    assert!(!logs.contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_survives_a_leader_kill_and_runs_tasks_on_a_tls_worker() {
    let (certs_dir, mut cluster) = secure_trio();
    let certs = certs_dir.path();
    let leader = cluster.leader().await;
    let worker_creds = creds(certs, "worker", Some("worker.token"));
    let mut worker_args: Vec<&str> = worker_creds.iter().map(String::as_str).collect();
    worker_args.extend(["--slots", "4"]);
    cluster.start_worker("tls-worker", &worker_args);

    let c = cluster.client();
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(c.submit(&format!("before-{i}"), echo("x")).await.unwrap().id);
    }
    cluster.kill9(leader);
    for i in 0..10 {
        // The client retries through the survivors until a new leader answers.
        ids.push(c.submit(&format!("after-{i}"), echo("x")).await.unwrap().id);
    }
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    cluster.start_replica(leader);
    for id in &ids {
        let t = cluster.wait_task(*id, "succeeded", |t| t.state == "succeeded").await;
        assert!(t.has_result && t.exit_code == 0);
    }
    output_reaches_clients_through_replicas_only(&cluster, certs, ids[0]).await;
    // The restarted ex-leader caught up over TLS: it answers with every task.
    let converged = cluster.wait_converged().await;
    assert!(converged > 0);
    let only_old = cluster.client_of(leader);
    assert_eq!(only_old.get(1, true).await.unwrap().key, "before-0");
    let logs = cluster.logs();
    assert!(!logs.contains(&token(certs, "worker")));
}

/// Task output over TLS: a client reads it through a replica (which dials the worker with its
/// replica certificate); the worker's own port refuses every other certificate, and callers
/// without one.
async fn output_reaches_clients_through_replicas_only(cluster: &Cluster, certs: &Path, id: u64) {
    let req = api::ReadOutputRequest { task_id: id, ..Default::default() };
    let mut stream = cluster.client().read_output(req).await.unwrap();
    let chunk = stream.message().await.unwrap().unwrap();
    assert_eq!((chunk.data.as_slice(), chunk.ended, chunk.worker_id.as_str()), (&b"x\n"[..], true, "tls-worker"));
    let workers = cluster.client().list_workers(false).await.unwrap().workers;
    let addr = &workers.iter().find(|w| w.id == "tls-worker").unwrap().addr;
    for (who, code) in [
        (Some("client"), Code::PermissionDenied),
        (Some("worker"), Code::PermissionDenied),
        (None, Code::Unauthenticated),
    ] {
        let tls = match who {
            Some(who) => tls(certs, who).client_config().unwrap(),
            None => {
                let ca = std::fs::read(certs.join("ca.pem")).unwrap();
                tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca))
            }
        };
        let dialer = Dialer { tls: Some(tls), token: Default::default() }.for_workers();
        let channel = dialer.endpoint(addr).unwrap().connect().await.unwrap();
        let mut direct = api::worker_output_client::WorkerOutputClient::new(channel);
        let ask = api::ReadOutputRequest { task_id: id, attempt: 1, ..Default::default() };
        let status = direct.read_output(ask).await.unwrap_err();
        assert_eq!(status.code(), code, "{who:?}: {status:?}");
    }
}

#[test]
fn certs_generate_refuses_to_overwrite_and_the_server_refuses_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let again = Command::new(BIN).args(["certs", "generate", "--out"]).arg(dir.path()).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    // Keys and tokens readable by the owner only.
    use std::os::unix::fs::PermissionsExt;
    for name in ["ca-key.pem", "replica-key.pem", "tokens", "client.token"] {
        let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    // A server with a garbled token file, or TLS flags missing one, stops with one line.
    let bad = dir.path().join("bad-tokens");
    std::fs::write(&bad, "superuser short\n").unwrap();
    let data: PathBuf = dir.path().join("data");
    let port = free_ports(1)[0];
    let listen = format!("127.0.0.1:{port}");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["server", "--id", "1", "--listen", &listen, "--initial-cluster", &format!("1={listen}")])
            .arg("--data-dir")
            .arg(&data)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--token-file", &path_str(&bad)]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("line 1"), "{}", stderr(&out));
    let out = run(&["--tls-ca", &file(dir.path(), "ca.pem")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("go together"), "{}", stderr(&out));
}

/// Restarts every replica in turn (SIGTERM, start, wait until all agree) with `peer_args`.
async fn roll(cluster: &mut Cluster, peer_args: &[String]) {
    cluster.peer_args = peer_args.to_vec();
    for id in cluster.ids() {
        let status = cluster.terminate(id);
        assert!(status.success(), "replica {id}: {status}\n{}", cluster.logs());
        cluster.start_replica(id);
        cluster.wait_converged().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_trio_moves_to_a_cluster_secret_by_rolling_restarts_without_downtime() {
    // A trio as every cluster before cluster secrets ran: open to anyone.
    let mut cluster = Cluster::new(&[]);
    cluster.peer_args = vec!["--insecure".into()];
    for (id, port) in (1..=3).zip(free_ports(3)) {
        let replica = cluster.new_replica(id, format!("127.0.0.1:{port}"), Path::new(BIN));
        cluster.replicas.insert(id, replica);
    }
    for id in cluster.ids() {
        cluster.start_replica(id);
    }
    cluster.leader().await;
    let addrs: Vec<String> = cluster.ids().iter().map(|id| cluster.addr(*id)).collect();
    let submitter = Submitter::start(addrs, "rolling", std::time::Duration::from_millis(5));
    let mut outsider = cluster.raft_client(1, None).await;
    assert!(outsider.node_status(api::NodeStatusRequest {}).await.is_ok(), "an open replica answers anyone");

    // Step 1: every replica gets the secret, sends its proof, and still accepts peers without one.
    let secret = path_str(&cluster.secret_file());
    roll(&mut cluster, &["--cluster-secret-file".into(), secret.clone(), "--accept-unauthenticated-peers".into()])
        .await;
    // Step 2: every replica has the secret; each in turn stops accepting calls without a proof.
    roll(&mut cluster, &["--cluster-secret-file".into(), secret]).await;

    let acked = submitter.stop().await;
    assert!(acked.len() > 20, "only {} writes during the rolling change", acked.len());
    cluster.wait_converged().await;
    for id in cluster.ids() {
        let tasks = list_all(&cluster.client_of(id), true).await;
        let by_key: std::collections::BTreeMap<&str, u64> = tasks.iter().map(|t| (t.key.as_str(), t.id)).collect();
        for (key, tid) in &acked {
            assert_eq!(by_key.get(key.as_str()), Some(tid), "replica {id}: acknowledged {key} -> {tid}");
        }
    }
    let mut outsider = cluster.raft_client(1, None).await;
    let err = outsider.node_status(api::NodeStatusRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_and_tokens_name_one_identity_and_a_worker_acts_only_as_itself() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = certs_dir.path();
    generate(certs);
    // Each replica with the certificate that names its id.
    let mut cluster = Cluster::new(&[]);
    for (id, port) in (1..=3).zip(free_ports(3)) {
        let replica = cluster.new_replica(id, format!("127.0.0.1:{port}"), Path::new(BIN));
        cluster.replicas.insert(id, replica);
    }
    cluster.dialer = Dialer::new(Some(&tls(certs, "client")), Some(&token(certs, "admin"))).unwrap();
    for id in cluster.ids() {
        let own = format!("replica-{id}");
        cluster.extra_args = creds(certs, &own, Some("tokens"));
        cluster.start_replica(id);
    }
    cluster.leader().await;
    let register = |id: &str| api::RegisterWorkerRequest { id: id.into(), instance: 7, slots: 1, ..Default::default() };

    // A client certificate with a worker token, or with an admin token on the Raft service.
    let mixed = client(&cluster, Some(&tls(certs, "client")), Some(&token(certs, "worker")));
    let err = mixed.register_worker(register("w9")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.to_string().contains("certificate names"), "{err}");
    let mut raft_as_admin = {
        let dialer = Dialer::new(Some(&tls(certs, "client")), Some(&token(certs, "admin"))).unwrap();
        let channel = dialer.endpoint(&cluster.addr(1)).unwrap().connect().await.unwrap();
        api::raft_client::RaftClient::with_interceptor(channel, dialer.token.clone())
    };
    let err = raft_as_admin.node_status(api::NodeStatusRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");

    // Worker w1's certificate and token: w1 only.
    let w1 = client(&cluster, Some(&tls(certs, "worker-w1")), Some(&token(certs, "worker-w1")));
    assert!(w1.register_worker(register("w1")).await.is_ok());
    let err = w1.register_worker(register("w2")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let err = w1.heartbeat("w2", 7).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    // w1's certificate with w2's token: they disagree.
    let crossed = client(&cluster, Some(&tls(certs, "worker-w1")), Some(&token(certs, "worker-w2")));
    let err = crossed.register_worker(register("w2")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    // A real worker process with its own credentials runs tasks.
    let worker_creds = creds(certs, "worker-w2", Some("worker-w2.token"));
    let mut worker_args: Vec<&str> = worker_creds.iter().map(String::as_str).collect();
    worker_args.extend(["--slots", "2"]);
    cluster.start_worker("w2", &worker_args);
    let id = cluster.client().submit("on-w2", echo("x")).await.unwrap().id;
    let task = cluster.wait_task(id, "succeeded", |t| t.state == "succeeded").await;
    assert_eq!(task.attempts.last().unwrap().worker_id, "w2");
}
