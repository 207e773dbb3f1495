//! `raftsched bench submit`: durable, replicated submits at a fixed concurrency.
//!
//! Each of `concurrency` loops submits one task at a time (unique idempotency keys), spread over
//! the replicas, for `duration_s`. Latency is measured per acknowledged submit.

pub mod failover;
pub mod fleet;
pub mod local_cluster;
pub mod scale;
pub mod tidy;
pub mod worker_loss;

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftsched_client::{parse_cluster, Client};
use serde_json::json;

use crate::cli::{BenchCommand, BenchFsyncArgs, BenchSubmitArgs};
use crate::error::CliError;

/// Bounds on the benchmark's own inputs.
const CONCURRENCY_MAX: usize = 4096;
const DURATION_S_MAX: u64 = 3600;
const PAYLOAD_BYTES_MAX: usize = raftsched_client::rules::limits::SPEC_BYTES_MAX - 64;

pub async fn run(command: BenchCommand) -> Result<(), CliError> {
    match command {
        BenchCommand::Submit(args) => run_load(args, Load::Submit).await,
        BenchCommand::Get(args) => run_load(args, Load::Get).await,
        BenchCommand::Dispatch(args) => run_load(args, Load::Dispatch).await,
        BenchCommand::Fsync(args) => fsync(args),
        BenchCommand::Failover(args) => crate::bench::failover::run(args).await,
        BenchCommand::Scale(args) => crate::bench::scale::run(args).await,
        BenchCommand::WorkerLoss(args) => crate::bench::worker_loss::run(args).await,
        BenchCommand::Fleet(args) => crate::bench::fleet::run(args).await,
    }
}

/// Bound on fsync rounds.
const FSYNC_COUNT_MAX: usize = 1_000_000;

/// Writes 4 KiB at the end of a file and fdatasyncs it, `count` times, like a log append; then the
/// same number of 256-byte appends through the log store's own sync path (sled's insert and flush,
/// `fdatasync`), which is what a replica's Raft log pays per group commit.
fn fsync(args: BenchFsyncArgs) -> Result<(), CliError> {
    if args.count == 0 || args.count > FSYNC_COUNT_MAX {
        return Err(CliError::Usage(format!("--count must be 1..={FSYNC_COUNT_MAX}")));
    }
    let cannot = |e: std::io::Error| CliError::Failed(format!("cannot write in {}: {e}", args.dir.display()));
    let raw = Syncs::from_us(time_file_syncs(&args, 4096).map_err(cannot)?);
    let store_dir = tempfile::TempDir::new_in(&args.dir).map_err(cannot)?;
    let store = Syncs::from_us(raftsched_store::time_log_syncs(store_dir.path(), args.count, 256).map_err(cannot)?);
    if args.json {
        // The plain file's figures at the top level (as before), the log store's under `log_store`.
        let mut out = raw.json();
        out["bench"] = json!("fsync");
        out["count"] = json!(args.count);
        out["log_store"] = store.json();
        outln!("{out}");
    } else {
        let dir = args.dir.display();
        outln!("fsync ({dir}): {} x 4 KiB write+fdatasync: {}", args.count, raw.line());
        outln!("log store ({dir}): {} x 256 B sled insert+flush+fdatasync: {}", args.count, store.line());
    }
    Ok(())
}

/// `count` 4 KiB (`block_bytes`) appends to a new file in `args.dir`, each followed by `fdatasync`.
fn time_file_syncs(args: &BenchFsyncArgs, block_bytes: usize) -> std::io::Result<Vec<u64>> {
    use std::io::Write;
    let file = tempfile::NamedTempFile::new_in(&args.dir)?;
    let mut f = file.as_file();
    let block = vec![0x5au8; block_bytes];
    let mut latencies_us = Vec::with_capacity(args.count);
    for _ in 0..args.count {
        let t0 = Instant::now();
        f.write_all(&block).and_then(|()| f.sync_data())?;
        latencies_us.push(t0.elapsed().as_micros() as u64);
    }
    Ok(latencies_us)
}

/// Sync latencies: rate and quantiles.
struct Syncs {
    per_s: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Syncs {
    fn from_us(mut latencies_us: Vec<u64>) -> Syncs {
        let total_s = latencies_us.iter().sum::<u64>() as f64 / 1e6;
        latencies_us.sort_unstable();
        Syncs {
            per_s: latencies_us.len() as f64 / total_s.max(1e-9),
            p50: percentile_ms(&latencies_us, 0.5),
            p99: percentile_ms(&latencies_us, 0.99),
            max: percentile_ms(&latencies_us, 1.0),
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({ "ops_per_s": self.per_s, "p50_ms": self.p50, "p99_ms": self.p99, "max_ms": self.max })
    }

    fn line(&self) -> String {
        format!("{:.0}/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms", self.per_s, self.p50, self.p99, self.max)
    }
}

/// Where the `p` quantile (0..=1) of `len` sorted samples is (nearest rank; `len` > 0).
fn quantile_index(len: usize, p: f64) -> usize {
    ((len as f64 * p).ceil() as usize).clamp(1, len) - 1
}

/// The `p` quantile (0..=1) of sorted microsecond samples, in milliseconds.
pub(crate) fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    sorted_us[quantile_index(sorted_us.len(), p)] as f64 / 1000.0
}

/// The `p` quantile (0..=1) of `samples` (0 for none), whatever their order.
pub(crate) fn quantile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(quantile_index(sorted.len().max(1), p)).copied().unwrap_or(0.0)
}

struct LoopResult {
    latencies_us: Vec<u64>,
    n_errors: u64,
    /// The loop's first error, and when (from the run's start).
    first_error: Option<(Duration, String)>,
    last_error: Option<String>,
}

/// What each load loop does per operation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Load {
    /// A durable, replicated submit with a unique key.
    Submit,
    /// A linearizable read of one task.
    Get,
    /// Submit a no-op task and wait until a worker has run it and its result is recorded.
    Dispatch,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::Submit => "submit",
            Load::Get => "get",
            Load::Dispatch => "dispatch",
        }
    }
}

async fn one_op(load: Load, client: &Client, key: &str, payload: &str, get_id: u64) -> Result<(), String> {
    match load {
        Load::Submit => client.submit(key, raftsched_client::builtin("echo", payload)).await.map(|_| ()),
        Load::Get => client.get(get_id, false).await.map(|_| ()),
        Load::Dispatch => {
            // Submit and wait in one call; a task not ended within the wait is waited for on.
            let reply = client
                .submit_waiting(key, raftsched_client::builtin("echo", payload), Duration::from_secs(5))
                .await
                .map_err(|e| e.to_string())?;
            if reply.task.is_some_and(|t| matches!(t.state.as_str(), "succeeded" | "failed" | "cancelled" | "skipped"))
            {
                return Ok(());
            }
            let id = reply.id;
            loop {
                let task = client.wait_task_ended(id, Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
                if matches!(task.state.as_str(), "succeeded" | "failed" | "cancelled" | "skipped") {
                    return Ok(());
                }
            }
        }
    }
    .map_err(|e| e.to_string())
}

/// What a load run measured.
pub(crate) struct LoadStats {
    pub ops: usize,
    pub n_errors: u64,
    pub first_error: Option<String>,
    pub first_error_at_s: Option<f64>,
    pub last_error: Option<String>,
    pub ops_per_s: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub elapsed_s: f64,
}

/// One benchmark run: the prefix of its keys (`bench-RUN-`, see [`crate::bench::tidy`]) and
/// whether to draw a progress bar.
pub(crate) struct Run {
    pub prefix: String,
    pub progress: bool,
}

impl Run {
    pub fn new(progress: bool) -> Run {
        Run { prefix: format!("bench-{:016x}-", rand::random::<u64>()), progress }
    }
}

/// Runs `concurrency` loops of `load` over `clients` (loop i uses client i mod N) for `duration`.
pub(crate) async fn run_loops(
    load: Load,
    clients: &[Arc<Client>],
    concurrency: usize,
    duration: Duration,
    payload: &Arc<String>,
    get_id: u64,
    run: &Run,
) -> Result<LoadStats, CliError> {
    let counts = Arc::new(crate::bench::tidy::Counts::default());
    let progress = run.progress.then(|| crate::bench::tidy::Progress::start(counts.clone(), duration));
    let started = Instant::now();
    let mut loops = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let client = clients[i % clients.len()].clone();
        let payload = payload.clone();
        let (prefix, counts) = (run.prefix.clone(), counts.clone());
        loops.push(tokio::spawn(async move {
            let mut result = LoopResult { latencies_us: Vec::new(), n_errors: 0, first_error: None, last_error: None };
            let mut n = 0u64;
            while started.elapsed() < duration {
                let key = format!("{prefix}{i}-{n}");
                n += 1;
                let t0 = Instant::now();
                match one_op(load, &client, &key, &payload, get_id).await {
                    Ok(()) => {
                        result.latencies_us.push(t0.elapsed().as_micros() as u64);
                        counts.ops.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        counts.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        result.n_errors += 1;
                        if result.first_error.is_none() {
                            result.first_error = Some((started.elapsed(), e.clone()));
                        }
                        result.last_error = Some(e);
                    }
                }
            }
            result
        }));
    }
    let mut latencies_us = Vec::new();
    let mut n_errors = 0;
    let (mut first_error, mut last_error): (Option<(Duration, String)>, _) = (None, None);
    for l in loops {
        let r = l.await.map_err(|e| CliError::Failed(format!("bench loop failed: {e}")))?;
        latencies_us.extend(r.latencies_us);
        n_errors += r.n_errors;
        if r.first_error.as_ref().is_some_and(|(at, _)| first_error.as_ref().is_none_or(|(first, _)| at < first)) {
            first_error = r.first_error;
        }
        last_error = r.last_error.or(last_error);
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    if let Some(progress) = progress {
        progress.finish().await;
    }
    latencies_us.sort_unstable();
    let pct = |p: f64| percentile_ms(&latencies_us, p);
    Ok(LoadStats {
        ops: latencies_us.len(),
        n_errors,
        first_error_at_s: first_error.as_ref().map(|(at, _)| at.as_secs_f64()),
        first_error: first_error.map(|(_, e)| e),
        last_error,
        ops_per_s: latencies_us.len() as f64 / elapsed_s,
        p50: pct(0.50),
        p99: pct(0.99),
        max: latencies_us.last().map_or(0.0, |&m| m as f64 / 1000.0),
        elapsed_s,
    })
}

async fn run_load(args: BenchSubmitArgs, load: Load) -> Result<(), CliError> {
    if args.concurrency == 0 || args.concurrency > CONCURRENCY_MAX {
        return Err(CliError::Usage(format!("--concurrency must be 1..={CONCURRENCY_MAX}")));
    }
    if args.duration_s == 0 || args.duration_s > DURATION_S_MAX {
        return Err(CliError::Usage(format!("--duration-s must be 1..={DURATION_S_MAX}")));
    }
    if args.payload_bytes > PAYLOAD_BYTES_MAX {
        return Err(CliError::Usage(format!("--payload-bytes must be at most {PAYLOAD_BYTES_MAX}")));
    }
    if args.connections == 0 || args.connections > CONCURRENCY_MAX {
        return Err(CliError::Usage(format!("--connections must be 1..={CONCURRENCY_MAX}")));
    }
    parse_cluster(&args.cluster.cluster)?;
    let payload = Arc::new("x".repeat(args.payload_bytes));
    let run = Run::new(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // Reads need a task to read.
    let get_id = match load {
        Load::Get => {
            crate::client_cmds::connect(&args.cluster)?
                .submit(&format!("{}read-me", run.prefix), raftsched_client::builtin("echo", &payload))
                .await?
                .id
        }
        _ => 0,
    };
    // Loops share clients (each client holds one HTTP/2 connection per replica it talks to), so
    // concurrent requests multiplex over a few connections, as etcd's load generator's do.
    let n_clients = args.connections.min(args.concurrency);
    let mut clients = Vec::with_capacity(n_clients);
    for i in 0..n_clients {
        clients.push(Arc::new(crate::client_cmds::connect(&args.cluster)?.prefer(i)));
    }
    let duration = Duration::from_secs(args.duration_s);
    let stats = run_loops(load, &clients, args.concurrency, duration, &payload, get_id, &run).await?;
    let tidy = tidy(&clients[0], &run.prefix, args.keep).await;
    let LoadStats { ops, n_errors, ops_per_s, p50, p99, max, elapsed_s, .. } = stats;
    let (first_error, first_error_at_s, last_error) = (stats.first_error, stats.first_error_at_s, stats.last_error);
    if args.json {
        outln!(
            "{}",
            json!({
                "bench": load.name(),
                "concurrency": args.concurrency,
                "duration_s": elapsed_s,
                "payload_bytes": args.payload_bytes,
                "ops": ops,
                "errors": n_errors,
                "first_error": first_error,
                "first_error_at_s": first_error_at_s,
                "ops_per_s": ops_per_s,
                "p50_ms": p50,
                "p99_ms": p99,
                "max_ms": max,
            })
        );
    } else {
        outln!(
            "{}: concurrency {} payload {} B: {ops} ops in {elapsed_s:.1} s = {ops_per_s:.0} ops/s, p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms, {n_errors} errors",
            load.name(),
            args.concurrency,
            args.payload_bytes
        );
    }
    if let (Some(first), Some(at)) = (&first_error, first_error_at_s) {
        eprintln!("first error (after {at:.1} s): {first}");
    }
    if let Some(e) = last_error {
        eprintln!("last error: {e}");
    }
    eprintln!("{tidy}");
    Ok(())
}

/// Cancels the run's pending tasks unless `keep`; one line saying what happened to them.
async fn tidy(client: &Arc<Client>, prefix: &str, keep: bool) -> String {
    if keep {
        return format!("bench tasks kept (--keep): keys {prefix}*");
    }
    match crate::bench::tidy::cancel_pending(client, prefix).await {
        Ok(t) => format!(
            "bench tasks (keys {prefix}*): {} pending cancelled, {} assigned or ended left (--keep keeps them all)",
            t.cancelled, t.left
        ),
        Err(e) => format!("bench tasks (keys {prefix}*) not cleaned up: {e}"),
    }
}

/// Polls `probe` every `poll` until it gives a value, for at most `limit`: a benchmark step that
/// waits on a condition (a leader, a worker declared down), never on a fixed sleep.
pub async fn wait_until<T>(
    what: &str,
    limit: Duration,
    poll: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> Result<T, CliError> {
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if started.elapsed() > limit {
            return Err(CliError::Failed(format!("{what}: not within {} s", limit.as_secs())));
        }
        tokio::time::sleep(poll).await;
    }
}
