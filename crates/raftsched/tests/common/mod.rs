//! A test cluster of real `raftsched server` processes on ports picked at run time, with data in a
//! temp dir. Every process is killed when the `Cluster` is dropped, also when a test fails.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use raftsched_client::{api, Client};
use raftsched_launcher::{Proc, Tie};

pub const BIN: &str = env!("CARGO_BIN_EXE_raftsched");

/// A Raft-service client with its credentials (`Cluster::raft_client`).
pub type RaftClient = api::raft_client::RaftClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, raftsched_client::BearerToken>,
>;
/// Generous: a loaded 2-core CI box may take seconds to elect a leader or start a process.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A replica process of a test cluster (the shared launcher's: killed when dropped).
pub use raftsched_launcher::ReplicaProc as Replica;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub replicas: BTreeMap<u64, Replica>,
    pub extra_args: Vec<String>,
    /// Worker processes by worker id, each in a process group of its own.
    pub workers: BTreeMap<String, Proc>,
    /// How the test's clients dial (TLS, token); plaintext by default.
    pub dialer: raftsched_client::Dialer,
    /// How replicas of this build prove themselves to each other: `--cluster-secret-file` with
    /// the cluster's own secret (`secret_file`) unless a test says otherwise (`--insecure` for a
    /// cluster of older builds, which know no secret). Older builds get none of these.
    pub peer_args: Vec<String>,
}

/// Fast liveness for tests: workers heartbeat every 100 ms, hold a 600 ms lease, and the leader
/// declares them down after 1 s of silence.
pub const FAST_WORKERS: &[&str] = &["--heartbeat-timeout-ms", "1000"];
pub const WORKER_TIMING: &[&str] = &["--heartbeat-interval-ms", "100", "--lease-ms", "600"];

/// Ports that were free a moment ago: bound to port 0, read, released.
pub fn free_ports(n: usize) -> Vec<u16> {
    raftsched_launcher::free_ports(n).expect("bind port 0")
}

impl Cluster {
    pub fn start(n: u64, extra_args: &[&str]) -> Cluster {
        let mut cluster = Cluster::new(extra_args);
        for (i, port) in free_ports(n as usize).into_iter().enumerate() {
            let id = i as u64 + 1;
            let replica = cluster.new_replica(id, format!("127.0.0.1:{port}"), Path::new(BIN));
            cluster.replicas.insert(id, replica);
        }
        for id in cluster.ids() {
            cluster.start_replica(id);
        }
        cluster
    }

    /// A cluster of no replicas yet, with its temp dir and cluster secret.
    pub fn new(extra_args: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new().prefix("raftsched-test-").tempdir().unwrap();
        let secret = dir.path().join("cluster-secret");
        let out = Command::new(BIN).args(["secret", "generate", "--out"]).arg(&secret).output().unwrap();
        assert!(out.status.success(), "secret generate: {}", String::from_utf8_lossy(&out.stderr));
        Cluster {
            dir,
            replicas: BTreeMap::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            workers: BTreeMap::new(),
            dialer: Default::default(),
            peer_args: vec!["--cluster-secret-file".into(), secret.display().to_string()],
        }
    }

    /// Replica `id` of this cluster at `addr`, running `bin`, not started (data and log in the
    /// cluster's dir).
    pub fn new_replica(&self, id: u64, addr: String, bin: &Path) -> Replica {
        Replica::new(id, addr, self.dir.path(), bin)
    }

    /// The cluster secret's file.
    pub fn secret_file(&self) -> PathBuf {
        self.dir.path().join("cluster-secret")
    }

    /// Like `start`, each replica also serving `--http` on a port of its own (see `http`).
    pub fn start_with_http(n: u64, extra_args: &[&str]) -> Cluster {
        let mut cluster = Cluster::new(extra_args);
        let ports = free_ports(2 * n as usize);
        for id in 1..=n {
            let (port, http) = (ports[2 * (id as usize - 1)], ports[2 * (id as usize - 1) + 1]);
            let mut replica = cluster.new_replica(id, format!("127.0.0.1:{port}"), Path::new(BIN));
            replica.http = Some(format!("127.0.0.1:{http}"));
            cluster.replicas.insert(id, replica);
        }
        for id in cluster.ids() {
            cluster.start_replica(id);
        }
        cluster
    }

    /// Replica `id`'s `--http` address.
    pub fn http(&self, id: u64) -> String {
        self.replicas[&id].http.clone().expect("started with start_with_http")
    }

    /// Starts a new, empty replica `id` that joins the running cluster (it serves once added).
    pub fn start_joining_replica(&mut self, id: u64) -> String {
        let port = free_ports(1)[0];
        let addr = format!("127.0.0.1:{port}");
        let mut replica = self.new_replica(id, addr.clone(), Path::new(BIN));
        replica.join = true;
        self.replicas.insert(id, replica);
        self.start_replica(id);
        addr
    }

    /// Forgets replica `id` (after it was removed from the cluster and killed).
    pub fn forget_replica(&mut self, id: u64) {
        self.kill9(id);
        self.replicas.remove(&id);
    }

    pub fn ids(&self) -> Vec<u64> {
        self.replicas.keys().copied().collect()
    }

    pub fn initial_cluster(&self) -> String {
        raftsched_launcher::initial_cluster(self.replicas.values())
    }

    pub fn cluster_arg(&self) -> String {
        raftsched_launcher::addrs(self.replicas.values())
    }

    pub fn addr(&self, id: u64) -> String {
        self.replicas[&id].addr.clone()
    }

    pub fn start_replica(&mut self, id: u64) {
        let initial = self.initial_cluster();
        let join = self.cluster_arg();
        let mut extra = self.extra_args.clone();
        let r = self.replicas.get_mut(&id).unwrap();
        if r.bin == Path::new(BIN) {
            extra.extend(self.peer_args.iter().cloned());
        }
        r.start(&initial, &join, &extra).expect("spawn raftsched server");
    }

    /// kill -9: no flush, no goodbye.
    pub fn kill9(&mut self, id: u64) {
        self.replicas.get_mut(&id).unwrap().kill9();
    }

    /// Starts `raftsched worker --id ID` against every replica, in its own process group.
    pub fn start_worker(&mut self, id: &str, extra: &[&str]) {
        assert!(!self.workers.contains_key(id), "worker {id} already running");
        let log_path = self.dir.path().join(format!("worker-{id}.log"));
        let mut command = Command::new(BIN);
        command
            .args(["worker", "--id", id, "--cluster", &self.cluster_arg()])
            .args(WORKER_TIMING)
            .arg("--output-dir")
            .arg(self.dir.path().join(format!("worker-{id}-output")))
            .args(extra)
            .env("RAFTSCHED_LOG", "info");
        let tie = Tie { die_with_parent: false, own_group: true };
        let worker = Proc::spawn(&mut command, &log_path, tie).expect("spawn raftsched worker");
        self.workers.insert(id.to_string(), worker);
    }

    pub fn worker_pid(&self, id: &str) -> i32 {
        self.workers[id].pid() as i32
    }

    /// kill -9 a worker's whole process group (its tasks too).
    pub fn kill9_worker(&mut self, id: &str) {
        self.workers.remove(id);
    }

    /// Waits until `n` workers are registered and ready.
    pub async fn wait_workers_ready(&self, n: usize) {
        let client = self.client();
        let started = Instant::now();
        loop {
            if let Ok(reply) = client.list_workers(false).await {
                if reply.workers.iter().filter(|w| w.state == "ready").count() >= n {
                    return;
                }
            }
            assert!(started.elapsed() < DEADLINE, "{n} workers not ready in {DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `pred` holds for task `id` (read linearizably), returning the task.
    pub async fn wait_task(&self, id: u64, what: &str, pred: impl Fn(&api::Task) -> bool) -> api::Task {
        let client = self.client();
        let started = Instant::now();
        let mut version = 0;
        loop {
            if let Ok(task) = client.wait_task(id, version, Duration::from_secs(2)).await {
                if pred(&task) {
                    return task;
                }
                version = task.version;
            }
            assert!(started.elapsed() < DEADLINE, "task {id}: {what} not reached in {DEADLINE:?}\n{}", self.logs());
        }
    }

    /// kill -9 every replica at once, restart them all from their data dirs, and wait until they
    /// have converged again.
    pub async fn kill9_all_and_restart(&mut self) -> u64 {
        for id in self.ids() {
            self.kill9(id);
        }
        for id in self.ids() {
            self.start_replica(id);
        }
        self.wait_converged().await
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self, id: u64) -> std::process::ExitStatus {
        self.replicas.get_mut(&id).unwrap().terminate(DEADLINE).unwrap_or_else(|e| panic!("{e}"))
    }

    /// How replica `id` ended, if it has (the child is then forgotten); `None` while it runs.
    pub fn exit_status(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        self.replicas.get_mut(&id).unwrap().exit_status()
    }

    /// The process id of running replica `id`.
    pub fn pid(&self, id: u64) -> u32 {
        self.replicas[&id].pid().expect("replica running")
    }

    pub fn is_running(&mut self, id: u64) -> bool {
        self.replicas.get_mut(&id).unwrap().is_running()
    }

    pub fn client(&self) -> Client {
        Client::with_dialer(self.replicas.values().map(|r| r.addr.clone()).collect(), DEADLINE, &self.dialer).unwrap()
    }

    /// The Raft service of replica `id`, called as a peer that proves it is replica `as_peer`
    /// with the cluster secret (`None`: no proof, as an outsider would).
    pub async fn raft_client(&self, id: u64, as_peer: Option<u64>) -> RaftClient {
        let mut creds = raftsched_client::BearerToken::new(None).unwrap();
        if let Some(peer) = as_peer {
            let secret = raftsched_api::security::ClusterSecret::from_file(&self.secret_file()).unwrap();
            creds = creds.with_peer_proof(&secret, peer).unwrap();
        }
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr(id)))
            .unwrap()
            .connect()
            .await
            .unwrap();
        api::raft_client::RaftClient::with_interceptor(channel, creds).max_encoding_message_size(64 << 20)
    }

    /// kill -9 the leader and the worker running `task` at once: the task's attempt is lost and
    /// must run again under a new leader.
    pub async fn kill_leader_and_worker_running(&mut self, task: u64) {
        let running = self.wait_task(task, "running", |t| t.state == "running").await;
        let leader = self.leader().await;
        self.kill9(leader);
        self.kill9_worker(&running.worker_id);
    }

    /// Waits until every task in `after` (a task and its dependencies) has succeeded, and checks
    /// that none started before each of its dependencies ended; the tasks as they ended.
    pub async fn wait_succeeded_in_order(&self, after: &[(u64, Vec<u64>)]) -> BTreeMap<u64, api::Task> {
        let mut ended = BTreeMap::new();
        for id in after.iter().flat_map(|(task, deps)| std::iter::once(task).chain(deps)) {
            if !ended.contains_key(id) {
                ended.insert(*id, self.wait_task(*id, "succeeded", |t| t.state == "succeeded").await);
            }
        }
        for (task, deps) in after {
            for dep in deps {
                let dep_end = ended[dep].attempts.last().unwrap().ended_at_ms;
                assert!(first_start(&ended[task]) >= dep_end, "task {task} started before its dependency {dep} ended");
            }
        }
        ended
    }

    /// A trio that declares a worker down after 1 s, with two 4-slot workers `names`, both ready,
    /// at this build's cluster version: where the scheduling tests start.
    pub async fn trio_with_workers(names: [&str; 2]) -> Cluster {
        let mut cluster = Cluster::start(3, FAST_WORKERS);
        cluster.leader().await;
        for name in names {
            cluster.start_worker(name, &["--slots", "4"]);
        }
        cluster.wait_workers_ready(2).await;
        cluster.wait_cluster_version(raftsched_format::FORMAT_VERSION_MAX).await;
        cluster
    }

    /// A client that talks to one replica only.
    /// Waits until the cluster version is `version` (raised every couple of seconds once every
    /// member reads it; a fresh cluster starts at 0).
    pub async fn wait_cluster_version(&self, version: u32) {
        let started = Instant::now();
        let client = self.client();
        while client.cluster_status().await.ok().map(|s| s.cluster_version) != Some(version) {
            assert!(started.elapsed() < DEADLINE, "cluster version {version} not reached\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn client_of(&self, id: u64) -> Client {
        Client::with_dialer(vec![self.addr(id)], DEADLINE, &self.dialer).unwrap()
    }

    /// Waits until a leader is elected and every running replica has applied up to the leader's
    /// last log index. Returns the leader's id.
    pub async fn wait_converged(&mut self) -> u64 {
        let running: Vec<u64> = self.ids().into_iter().filter(|id| self.is_running(*id)).collect();
        let client = Client::with_dialer(
            running.iter().map(|id| self.addr(*id)).collect(),
            Duration::from_secs(5),
            &self.dialer,
        )
        .unwrap();
        let started = Instant::now();
        loop {
            if let Ok(status) = client.cluster_status().await {
                if status.has_leader {
                    let leader = status.members.iter().find(|m| m.id == status.leader).unwrap();
                    let caught_up = status
                        .members
                        .iter()
                        .filter(|m| running.contains(&m.id))
                        .all(|m| m.reachable && m.applied_index >= leader.last_log_index);
                    if caught_up {
                        return status.leader;
                    }
                }
            }
            assert!(started.elapsed() < DEADLINE, "cluster did not converge in {DEADLINE:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn leader(&mut self) -> u64 {
        let client = self.client();
        let started = Instant::now();
        loop {
            if let Ok(status) = client.cluster_status().await {
                if status.has_leader {
                    return status.leader;
                }
            }
            assert!(started.elapsed() < DEADLINE, "no leader in {DEADLINE:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The tail of every replica's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for r in self.replicas.values() {
            let text = std::fs::read_to_string(&r.log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out.push_str(&format!("--- replica {} log tail ---\n", r.id));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // RAFTSCHED_TEST_KEEP=1 keeps data dirs and logs of every test cluster for inspection.
        if std::env::var_os("RAFTSCHED_TEST_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("kept test cluster files in {}", self.dir.path().display());
        }
        // Each worker's group is continued and killed as it drops.
        self.workers.clear();
        for id in self.ids() {
            self.kill9(id);
        }
    }
}

/// Runs the CLI with `args`; the cluster comes from `--cluster`.
pub fn cli(cluster: &str, args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("RAFTSCHED_CLUSTER", cluster).output().expect("run raftsched")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// When `task` first ran: its first attempt's start, or its end for an attempt that went straight
/// there (a task that ends within 50 ms is reported once).
#[allow(dead_code)]
pub fn first_start(task: &api::Task) -> u64 {
    let a = task.attempts.first().expect("it ran");
    if a.started_at_ms > 0 {
        a.started_at_ms
    } else {
        a.ended_at_ms
    }
}

pub fn echo(text: &str) -> api::TaskSpec {
    raftsched_client::builtin("echo", text)
}

/// Every task, through `client`, page by page.
pub async fn list_all(client: &Client, stale: bool) -> Vec<api::Task> {
    let mut tasks = Vec::new();
    let mut after_id = 0;
    loop {
        let page = client
            .list_page(api::ListTasksRequest { state: String::new(), after_id, limit: 1000, stale })
            .await
            .expect("list");
        tasks.extend(page.tasks);
        if page.next_after == 0 {
            return tasks;
        }
        after_id = page.next_after;
    }
}

/// Fetches `path` from `addr` with a plain HTTP/1.1 GET (no client library needed).
pub async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// Lints a `/metrics` body with `promtool check metrics` (Debian's prometheus, which `.ci/run`
/// installs); says so and checks nothing where promtool is missing.
pub fn promtool_check(what: &str, body: &str) {
    use std::io::Write;
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not found: {what}'s /metrics not linted (apt-get install prometheus)");
        return;
    };
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics on {what}: {said}\n{body}");
}

/// The value of one series (`name{labels}` exactly as rendered) on replica `http`'s `/metrics`;
/// 0 for a labelled series not seen yet of a family that is there.
pub async fn metric(http: &str, series: &str) -> f64 {
    let body = http_get(http, "/metrics").await;
    let family = series.split('{').next().unwrap();
    match body.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' '))) {
        Some(value) => value.trim().parse().unwrap(),
        None if body.contains(&format!("# TYPE {family} ")) => 0.0,
        None => panic!("no series {series} on /metrics"),
    }
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A client submitting `PREFIX-N` keys one after another (pausing `pause` between them) until
/// stopped; every acknowledged key with its task id.
pub struct Submitter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<BTreeMap<String, u64>>,
}

impl Submitter {
    pub fn start(addrs: Vec<String>, prefix: &str, pause: Duration) -> Submitter {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, prefix) = (stop.clone(), prefix.to_string());
        let task = tokio::spawn(async move {
            let client = Client::new(addrs, DEADLINE).unwrap();
            let mut acked = BTreeMap::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("{prefix}-{}", acked.len());
                let reply = client.submit(&key, echo("x")).await.unwrap_or_else(|e| panic!("{key}: {e}"));
                acked.insert(key, reply.id);
                tokio::time::sleep(pause).await;
            }
            acked
        });
        Submitter { stop, task }
    }

    /// Stops submitting; returns what was acknowledged.
    pub async fn stop(self) -> BTreeMap<String, u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap()
    }
}
