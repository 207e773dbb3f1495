//! The command line, as clap sees it. Names and flags here are an interface: scripts call them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// `raftsched --version`: the package version, the commit and the record formats this build reads.
pub static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(raftsched_server::version_line);

#[derive(Parser)]
#[command(name = "raftsched", version = VERSION.as_str(), about = "A Raft-replicated task scheduler", propagate_version = true)]
pub struct Cli {
    /// Log format on stderr: text (default) or json (one object per line).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run one replica.
    Server(ServerArgs),
    /// Run a local trio on 127.0.0.1:7001-7003 for trying raftsched out (data in a temp dir).
    Dev(DevArgs),
    /// Submit a task; prints its id alone on stdout.
    Submit(SubmitArgs),
    /// Show one task.
    Get(GetArgs),
    /// List tasks in id (= submission) order.
    List(ListArgs),
    /// Cancel a pending task.
    Cancel(CancelArgs),
    /// Run a worker (or, with `drain ID`, drain one).
    #[command(args_conflicts_with_subcommands = true)]
    Worker {
        #[command(subcommand)]
        command: Option<WorkerCommand>,
        #[command(flatten)]
        args: WorkerArgs,
    },
    /// List workers: id, address, state, slots in use, last heartbeat age.
    Workers(ReadArgs),
    /// List the concurrency keys in use: each with its limit, tasks held and tasks queued.
    Keys(ReadArgs),
    /// Print an attempt's stdout (or stderr), fetched through any replica from the worker that
    /// ran it; with --follow, stream it until the attempt ends.
    Logs(LogsArgs),
    /// Stream a task's state changes until it ends.
    Watch(WatchArgs),
    /// Cluster membership and health.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Flows: a graph of named tasks created whole, in one command, or not at all.
    Flow {
        #[command(subcommand)]
        command: FlowCommand,
    },
    /// Internal: the per-attempt supervisor a worker runs commands under.
    #[command(name = "__supervise", hide = true)]
    Supervise {
        #[arg(last = true)]
        argv: Vec<String>,
    },
    /// Quorum-loss recovery: rewrite a surviving replica's data dir into a one-replica cluster.
    Recover(RecoverArgs),
    /// TLS certificates and tokens.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// The cluster secret replicas prove themselves to each other with.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Recurring tasks: cron expressions or `@every`, exactly one task per occurrence.
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Measure the cluster.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// This build: version, commit, the record formats it reads and writes.
    Version {
        /// As JSON: `version`, `commit`, `format_min`, `format_max`.
        #[arg(long)]
        json: bool,
    },
    /// A shell completion script on stdout, e.g. `raftsched completions bash >
    /// /etc/bash_completion.d/raftsched`, or `source <(raftsched completions zsh)`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
pub enum WorkerCommand {
    /// Stop new assignments to worker ID; its running tasks finish.
    Drain(DrainArgs),
}

#[derive(Args)]
pub struct WorkerArgs {
    /// Settings from a TOML file: the flags' names as keys (`heartbeat-timeout-ms = 3000`).
    /// Flags and RAFTSCHED_* variables (every flag has one: RAFTSCHED_HEARTBEAT_TIMEOUT_MS) win
    /// over it.
    #[arg(long, value_name = "FILE", env = "RAFTSCHED_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// This worker's unique id.
    #[arg(long)]
    pub id: Option<String>,
    /// Where this worker serves the output it keeps to replicas (`raftsched logs`): loopback
    /// unless TLS is on (or --insecure). Workers pull their work; nothing else listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// The address replicas dial for that output, recorded in the registry (default: the bound
    /// --listen address; needed when --listen is 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Where each attempt's whole stdout and stderr are kept (default: a directory named after
    /// the worker id in the temp dir, so a restarted worker finds it again).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Bytes of one stream of one attempt kept; past that the stream is cut (its result still
    /// records the last 4 KiB).
    #[arg(long, default_value_t = raftsched_worker::output::OUTPUT_ATTEMPT_BYTES_MAX_DEFAULT)]
    pub output_attempt_bytes_max: u64,
    /// Bytes of all kept output; the oldest ended attempts are removed first. Running attempts
    /// are never removed, so each stream keeps at most its share, this / (2 x --slots), when
    /// --output-attempt-bytes-max asks for more.
    #[arg(long, default_value_t = raftsched_worker::output::OUTPUT_BYTES_MAX_DEFAULT)]
    pub output_bytes_max: u64,
    /// Serve output without TLS on a non-loopback --listen address (anyone who reaches it can
    /// read it).
    #[arg(long)]
    pub insecure: bool,
    /// Tasks run at once.
    #[arg(long, default_value_t = 4)]
    pub slots: u32,
    /// Labels, k=v,k=v (matched by `submit --constraint`).
    #[arg(long, default_value = "")]
    pub labels: String,
    #[arg(long, default_value_t = raftsched_worker::HEARTBEAT_INTERVAL_MS_DEFAULT)]
    pub heartbeat_interval_ms: u64,
    /// Lease renewed by each acknowledged heartbeat; when it runs out the worker kills its tasks.
    #[arg(long, default_value_t = raftsched_worker::LEASE_MS_DEFAULT)]
    pub lease_ms: u64,
    /// How long to wait for an id held by another live process to be released.
    #[arg(long, default_value_t = raftsched_worker::REGISTER_TIMEOUT_MS_DEFAULT)]
    pub register_timeout_ms: u64,
    /// Serve this worker's Prometheus metrics at http://HOST:PORT/metrics (running attempts,
    /// reports, lease renewals).
    #[arg(long)]
    pub http: Option<std::net::SocketAddr>,
}

#[derive(Args)]
pub struct DrainArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Worker id.
    pub id: String,
}

/// A read: where, how it is printed, and whether it may be stale; shared by `get`, `workers`,
/// `keys` and `schedule list`.
#[derive(Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Read this replica's local state without a read index (may be behind).
    #[arg(long)]
    pub stale: bool,
}

#[derive(Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print one JSON task object per change.
    #[arg(long)]
    pub json: bool,
    /// Task id.
    pub id: String,
}

#[derive(Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Which attempt (1 for the first; default: the latest).
    #[arg(long)]
    pub attempt: Option<u32>,
    /// Print stderr instead of stdout.
    #[arg(long)]
    pub stderr: bool,
    /// Keep printing as the attempt writes, until it ends (through a worker restart: the output
    /// kept so far, then the end).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Start at this byte of the stream.
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Task id.
    pub id: String,
}

#[derive(Subcommand)]
pub enum FlowCommand {
    /// Submit a flow from FILE (JSON, or YAML for .yaml/.yml): {"key": K, "tasks": [{"name": N,
    /// "spec": {"command": [...]}, "after": [NAMES], "after_policy": "success"}]}. Prints the task
    /// ids in the file's order. The same flow under the same key again is the same tasks.
    Submit(FlowSubmitArgs),
    /// The tasks of flow KEY with their states.
    Get(FlowGetArgs),
}

#[derive(Args)]
pub struct FlowSubmitArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The flow file ("-": stdin).
    pub file: String,
    /// The flow's idempotency key (instead of, or the same as, the file's "key").
    #[arg(long)]
    pub key: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct FlowGetArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    pub key: String,
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub stale: bool,
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Every replica's id, address, role, term, log and applied index, reachability.
    Status(StatusArgs),
    /// Add replica ID at ADDR (learner until caught up, then voter). Idempotent.
    Add(MemberAddArgs),
    /// Remove replica ID. Idempotent.
    Remove(MemberRemoveArgs),
    /// Make replica N the leader.
    TransferLeader(TransferArgs),
}

#[derive(Args)]
pub struct TransferArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[arg(long)]
    pub to: u64,
}

#[derive(Args)]
pub struct MemberAddArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[arg(long)]
    pub id: u64,
    #[arg(long)]
    pub addr: String,
}

#[derive(Args)]
pub struct MemberRemoveArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[arg(long)]
    pub id: u64,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Durable, replicated submits at a fixed concurrency.
    Submit(BenchSubmitArgs),
    /// Linearizable reads (`get`) of one task at a fixed concurrency.
    Get(BenchSubmitArgs),
    /// End to end: submit a no-op task and wait until a worker has run it (needs running workers).
    Dispatch(BenchSubmitArgs),
    /// The disk's fdatasync latency (what every durable commit waits for at least once).
    Fsync(BenchFsyncArgs),
    /// Leader kill -9 under load on a trio it starts: time from the kill to the first
    /// acknowledged submit sent after it.
    Failover(BenchFailoverArgs),
    /// Hold many finished tasks on a trio it starts: memory per task, data dir size, restart and
    /// join times.
    Scale(BenchScaleArgs),
    /// Kill -9 a worker holding tasks (a trio and two workers it starts): time until its tasks
    /// run elsewhere.
    WorkerLoss(BenchWorkerLossArgs),
    /// A fleet of simulated workers (registering, heartbeating, polling over real gRPC) on a trio
    /// it starts: leader CPU per 1,000 workers, heartbeat and dispatch latency, and submits with
    /// the fleet connected against a trio without one.
    Fleet(BenchFleetArgs),
}

#[derive(Args)]
pub struct BenchFleetArgs {
    /// Simulated workers (at most workers_max, 10,000).
    #[arg(long, default_value_t = 1000)]
    pub workers: usize,
    /// Workers sharing one client (one HTTP/2 connection per replica), as processes on one host
    /// behind a proxy would; each keeps one long poll open on it.
    #[arg(long, default_value_t = 64)]
    pub workers_per_connection: usize,
    /// Each worker's heartbeat interval (the worker's default); longer when the replicas ask.
    #[arg(long, default_value_t = 500)]
    pub heartbeat_interval_ms: u64,
    /// The replicas' `--heartbeats-per-second-max` (0: no cap, every worker beats at its interval).
    #[arg(long, default_value_t = 0)]
    pub heartbeats_per_second_max: u64,
    /// Submits in flight at once, with and without the fleet.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How long each submit phase runs.
    #[arg(long, default_value_t = 15)]
    pub duration_s: u64,
    /// Dispatch-latency probes, one at a time.
    #[arg(long, default_value_t = 200)]
    pub probes: usize,
    /// How long the fleet idles while the leader's CPU is measured.
    #[arg(long, default_value_t = 5)]
    pub idle_s: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BenchWorkerLossArgs {
    /// Worker kills (rounds).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Long tasks submitted per round (spread over the two workers).
    #[arg(long, default_value_t = 8)]
    pub tasks: usize,
    /// The replicas' --heartbeat-timeout-ms.
    #[arg(long, default_value_t = 1000)]
    pub heartbeat_timeout_ms: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BenchFailoverArgs {
    /// Leader kills (rounds).
    #[arg(long, default_value_t = 20)]
    pub kills: usize,
    /// Submits in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Size of each task's payload.
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// Where the replicas keep their data and logs [default: a temp dir, removed after].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The replicas' Raft timing (the server's flags; their defaults when not given): failover
    /// time is about the maximum election timeout (openraft's leader lease) plus a slot of
    /// (max - min) / 2 per rank.
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,
    #[arg(long)]
    pub election_timeout_ms_min: Option<u64>,
    #[arg(long)]
    pub election_timeout_ms_max: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BenchScaleArgs {
    /// Finished tasks to hold (each submitted, then cancelled).
    #[arg(long, default_value_t = 1_000_000)]
    pub tasks: u64,
    /// Writes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// The replicas' --snapshot-every-entries.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_every_entries: u64,
    /// Where the replicas keep their data [default: a temp dir, removed after].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BenchFsyncArgs {
    /// Directory on the disk to measure (a temp file is written and removed there).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Number of 4 KiB write + fdatasync rounds.
    #[arg(long, default_value_t = 2000)]
    pub count: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Make a development CA, certificates for replicas, workers and clients, and bearer tokens.
    Generate(CertsArgs),
}

#[derive(Args)]
pub struct CertsArgs {
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Extra names and addresses the replicas' certificate is valid for (localhost, 127.0.0.1
    /// and ::1 always are), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Replica ids to issue certificates (`replica-ID.pem`, naming the id) and tokens for.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub replicas: Vec<u64>,
    /// Worker ids to issue certificates (`worker-ID.pem`) and tokens (`worker-ID.token`) for;
    /// such a worker may act only as itself.
    #[arg(long, value_delimiter = ',')]
    pub workers: Vec<String>,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Write a new cluster secret (64 hex characters, mode 0600) for `server --cluster-secret-file`.
    Generate(SecretArgs),
}

#[derive(Args)]
pub struct SecretArgs {
    /// The file to write; the same file goes to every replica.
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite a file that already exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Clone)]
pub struct ClusterArgs {
    /// Replicas to talk to, tried in turn: HOST:PORT,HOST:PORT,...
    #[arg(long, env = "RAFTSCHED_CLUSTER", default_value = raftsched_client::DEFAULT_CLUSTER)]
    pub cluster: String,
    /// Give up after this long, retries included (e.g. 10s, 500ms; a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// File holding the bearer token to send (one line; made by `raftsched certs generate`).
    #[arg(long, env = "RAFTSCHED_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// Mutual TLS: the cluster CA and this process's certificate and key (PEM), all three or none.
#[derive(Args, Clone, Default)]
pub struct TlsArgs {
    /// The CA certificate that signed every replica's, worker's and client's certificate.
    #[arg(long, env = "RAFTSCHED_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This process's certificate.
    #[arg(long, env = "RAFTSCHED_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// This process's private key.
    #[arg(long, env = "RAFTSCHED_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServerArgs {
    /// Settings from a TOML file: the flags' names as keys (`heartbeat-timeout-ms = 3000`).
    /// Flags and RAFTSCHED_* variables (every flag has one: RAFTSCHED_HEARTBEAT_TIMEOUT_MS) win
    /// over it.
    #[arg(long, value_name = "FILE", env = "RAFTSCHED_CONFIG")]
    pub config: Option<PathBuf>,
    /// This replica's id (a positive integer, unique in the cluster).
    #[arg(long)]
    pub id: u64,
    /// Address to listen on for Raft and the client API.
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    /// Directory for this replica's log, vote and snapshots.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Every member: "1=HOST:PORT,2=HOST:PORT,3=HOST:PORT". Used on the first start only.
    #[arg(long, required_unless_present = "join", conflicts_with = "join")]
    pub initial_cluster: Option<String>,
    /// Join an existing cluster (members HOST:PORT,...) instead of forming one: the replica starts
    /// empty and waits until `raftsched cluster add --id ID --addr ADDR` adds it.
    #[arg(long)]
    pub join: Option<String>,
    /// The address other replicas reach this one at (default: --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics.
    #[arg(long)]
    pub http: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Require bearer tokens: a file of `ROLE TOKEN` lines (roles client, worker, admin, replica;
    /// replicas call each other with the first replica token).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The secret every replica shares (`raftsched secret generate --out FILE`): only a replica
    /// that proves it holds it may make replica-to-replica calls.
    #[arg(long)]
    pub cluster_secret_file: Option<PathBuf>,
    /// While a running cluster moves to a cluster secret: also accept replica-to-replica calls
    /// that carry no proof. Restart without it once every replica has the secret.
    #[arg(long, requires = "cluster_secret_file")]
    pub accept_unauthenticated_peers: bool,
    /// Run with replica-to-replica calls, or a non-loopback client API, open to anyone who
    /// reaches the port. Announced in the log, in `raftsched_insecure` and on the status page.
    #[arg(long)]
    pub insecure: bool,
    /// Deliberately break a guarantee, for the jepsen-like harness: stale-reads, skip-fsync,
    /// unfenced-reports. Only in builds with the `fault-injection` feature.
    #[arg(long, value_name = "NAME", hide = !raftsched_server::fault::AVAILABLE)]
    pub fault: Vec<String>,
    #[command(flatten)]
    pub timing: TimingArgs,
}

#[derive(Args, Clone)]
pub struct TimingArgs {
    /// Leader heartbeat period.
    #[arg(long, default_value_t = raftsched_server::config::HEARTBEAT_INTERVAL_MS_DEFAULT)]
    pub heartbeat_interval_ms: u64,
    /// Shortest election timeout: a candidate that did not win campaigns again after
    /// min..max ms.
    #[arg(long, default_value_t = raftsched_server::config::ELECTION_TIMEOUT_MS_MIN_DEFAULT)]
    pub election_timeout_ms_min: u64,
    /// Longest election timeout; also the leader lease (a follower refuses votes this long after
    /// a heartbeat), after which the first follower campaigns.
    #[arg(long, default_value_t = raftsched_server::config::ELECTION_TIMEOUT_MS_MAX_DEFAULT)]
    pub election_timeout_ms_max: u64,
    /// The leader declares a worker down after this long without a heartbeat.
    #[arg(long, default_value_t = raftsched_server::WORKER_HEARTBEAT_TIMEOUT_MS_DEFAULT)]
    pub heartbeat_timeout_ms: u64,
    /// Hold the workers' heartbeats under this many a second (0: no cap): past half as many
    /// workers, the leader asks them to beat less often and scales the timeout with it. The same
    /// value on every replica, each of this build or later (docs/operations.md, "Large fleets").
    #[arg(long, default_value_t = 0)]
    pub heartbeats_per_second_max: u64,
    /// Applied entries between state-machine snapshots, at least: replica ID waits (ID % 4)
    /// quarters longer, so the replicas of a trio do not all snapshot at once.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_every_entries: u64,
    /// Log entries kept behind a snapshot (a replica further behind receives the snapshot).
    #[arg(long, default_value_t = 1_000)]
    pub snapshot_logs_kept: u64,
    /// Finished tasks kept: the oldest (by id) beyond it are removed with their idempotency keys,
    /// so the state does not grow forever. 0 keeps every finished task.
    #[arg(long, default_value_t = raftsched_server::RETAIN_FINISHED_DEFAULT)]
    pub retain_finished: u64,
    /// Pending tasks the leader admits: over it a new submit is refused (RESOURCE_EXHAUSTED).
    /// At most 1,000,000 (the bound every replica applies once the cluster version is 4).
    #[arg(long, default_value_t = raftsched_client::rules::limits::TASKS_PENDING_MAX_DEFAULT)]
    pub tasks_pending_max: usize,
    /// A leader whose wall clock is further than this from the median of the voters' clocks
    /// fires, releases, expires and retries nothing and hands leadership to a replica in bounds.
    #[arg(long, default_value_t = raftsched_server::clock::CLOCK_SKEW_MS_MAX_DEFAULT)]
    pub clock_skew_ms_max: u64,
}

#[derive(Args)]
pub struct RecoverArgs {
    /// The surviving replica's data dir (the replica must be stopped).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Required: acknowledges that this forms a new one-replica cluster from this dir alone.
    #[arg(long)]
    pub force_new_cluster: bool,
    /// The address the replica will listen on (default: its address in the old membership).
    #[arg(long)]
    pub advertise: Option<String>,
}

#[derive(Args)]
pub struct DevArgs {
    /// Settings from a TOML file: the flags' names as keys (`heartbeat-timeout-ms = 3000`).
    /// Flags and RAFTSCHED_* variables (every flag has one: RAFTSCHED_HEARTBEAT_TIMEOUT_MS) win
    /// over it.
    #[arg(long, value_name = "FILE", env = "RAFTSCHED_CONFIG")]
    pub config: Option<PathBuf>,
    /// Local workers to start with the trio.
    #[arg(long, default_value_t = 2)]
    pub workers: u32,
    /// Keep data here instead of a temp dir (one subdir per replica).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// First port; the replicas listen on BASE, BASE+1, BASE+2.
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
    /// First HTTP port (status page, metrics, the HTTP/JSON API): HTTP_BASE_PORT, +1, +2 on
    /// 127.0.0.1; 0 serves no HTTP.
    #[arg(long, default_value_t = 8001)]
    pub http_base_port: u16,
    #[command(flatten)]
    pub timing: TimingArgs,
}

#[derive(Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Idempotency key: the same key submitted again returns the same task. Generated if absent.
    #[arg(long)]
    pub key: Option<String>,
    /// Run at this time, not now: RFC 3339 (2026-11-25T03:00:00Z, 2026-11-25T03:00:00+01:00) or
    /// relative (+30s, +5m, +1h30m). The task waits in state `scheduled` until then.
    #[arg(long)]
    pub at: Option<String>,
    /// Wait for the task to end, print its output, and exit with its exit code.
    #[arg(long)]
    pub wait: bool,
    /// Run after these tasks (ids, comma-separated, repeatable): it waits in state `waiting`
    /// until they have ended.
    #[arg(long, value_delimiter = ',')]
    pub after: Vec<u64>,
    /// Run after the task with this idempotency key (repeatable).
    #[arg(long = "after-key")]
    pub after_keys: Vec<String>,
    /// success: run only once every dependency succeeded, else end `skipped` (and so do the tasks
    /// after it); finished: run once they have ended, whatever the outcome.
    #[arg(long, default_value = "success", value_parser = ["success", "finished"])]
    pub after_policy: String,
    #[command(flatten)]
    pub concurrency: ConcurrencyArgs,
    #[command(flatten)]
    pub task: TaskArgs,
}

/// A concurrency key and its limit; shared by `submit` and `schedule create`.
#[derive(Args)]
pub struct ConcurrencyArgs {
    /// At most --concurrency-limit tasks with this key run at once, across the cluster.
    #[arg(long, requires = "concurrency_limit")]
    pub concurrency_key: Option<String>,
    /// How many tasks with --concurrency-key may be assigned or running at once (1 to 10000).
    #[arg(long, requires = "concurrency_key")]
    pub concurrency_limit: Option<u32>,
}

/// What a task runs and how; shared by `submit` and `schedule create`.
#[derive(Args)]
pub struct TaskArgs {
    /// A builtin task: sleep:MS, echo:TEXT or fail:CODE.
    #[arg(long, conflicts_with = "argv")]
    pub builtin: Option<String>,
    /// Higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Worker label the task requires, k=v (repeatable).
    #[arg(long = "constraint")]
    pub constraints: Vec<String>,
    /// Environment variable for a command task, K=V (repeatable).
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// Working directory of a command task.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Kill an attempt that runs longer than this (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub timeout_ms: u64,
    /// Attempts before the task fails for good.
    #[arg(long, default_value_t = raftsched_client::rules::limits::ATTEMPTS_DEFAULT)]
    pub max_attempts: u32,
    /// The command to run, after `--`.
    #[arg(last = true)]
    pub argv: Vec<String>,
}

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule (the same name and spec again is a retry).
    Create(Box<ScheduleCreateArgs>),
    /// List schedules.
    List(ReadArgs),
    /// Show one schedule: its next occurrence and what became of recent ones (runs and misses).
    Get(ScheduleNameArgs),
    /// Stop firing (occurrences while paused are not run and not counted as missed).
    Pause(ScheduleNameArgs),
    /// Fire again, from the first occurrence after now.
    Resume(ScheduleNameArgs),
    /// Delete a schedule; the tasks it created stay.
    Delete(ScheduleNameArgs),
}

#[derive(Args)]
pub struct ScheduleCreateArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Schedule name: 1-64 characters of A-Z a-z 0-9 . _ -
    pub name: String,
    /// When: 5 fields (min hour dom month dow), 6 (seconds first), @hourly/@daily/..., or
    /// "@every 30s".
    #[arg(long)]
    pub cron: String,
    /// IANA time zone the cron fields are read in.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    /// An occurrence due while the previous one's task has not ended: allow (run both), forbid
    /// (skip and record it), replace (cancel the running one first).
    #[arg(long, default_value = "allow", value_parser = ["allow", "forbid", "replace"])]
    pub overlap: String,
    /// Occurrences missed while the cluster was down or leaderless (fired later than
    /// --start-deadline-ms): none (record them), one (run the latest), all (run each, at most
    /// --max-catch-up).
    #[arg(long, default_value = "one", value_parser = ["none", "one", "all"])]
    pub catch_up: String,
    /// With --catch-up all: missed occurrences one fire still runs (the latest ones), 1-100.
    #[arg(long, default_value_t = raftsched_client::rules::limits::CATCH_UP_RUNS_DEFAULT)]
    pub max_catch_up: u32,
    /// An occurrence fired more than this after its time counts as missed.
    #[arg(long, default_value_t = raftsched_client::rules::limits::START_DEADLINE_MS_DEFAULT)]
    pub start_deadline_ms: u64,
    /// Every task of the schedule gets the concurrency key.
    #[command(flatten)]
    pub concurrency: ConcurrencyArgs,
    #[command(flatten)]
    pub task: TaskArgs,
}

#[derive(Args)]
pub struct ScheduleNameArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print JSON (`get` only).
    #[arg(long)]
    pub json: bool,
    /// Schedule name.
    pub name: String,
}

#[derive(Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Task id.
    pub id: String,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Only tasks in this state (waiting, scheduled, pending, assigned, running, succeeded, failed,
    /// cancelled, skipped).
    #[arg(long)]
    pub state: Option<String>,
    /// Print JSON (an array of task objects).
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub stale: bool,
    /// Most tasks to print (fetched page by page); when there are more, stderr says which
    /// `--after` shows the next page.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// Start after this task id.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
}

#[derive(Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Task id.
    pub id: String,
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BenchSubmitArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Submits in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    /// Size of each task's payload (an echo builtin's text).
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// gRPC connections per replica that the loops share (loop i uses connection i mod N), as
    /// `scripts/etcd-load` shares its 12; at most the concurrency.
    #[arg(long, default_value_t = 12)]
    pub connections: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Leave the run's tasks as they are. Otherwise those still pending at the end are
    /// cancelled, so no worker runs them later (their keys all start `bench-RUN-`).
    #[arg(long)]
    pub keep: bool,
}

/// `10s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 10s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?} (use ms, s or m)")),
    };
    if !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range (0 to 24h)"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("x").is_err());
    }
}
