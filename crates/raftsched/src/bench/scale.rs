//! `raftsched bench scale`: a trio (started by the benchmark) made to hold `tasks` finished
//! tasks, then measured: memory per task, data dir size, a replica's restart to serving, the
//! whole trio's restart to serving, and the time for a new, empty replica to join.
//!
//! Tasks are loaded by `concurrency` loops that each submit a task and cancel it (a finished
//! task, without needing workers to run a million of them); the proposer batches these writes.
//! "Serving" means answering a linearizable read through that replica.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftsched_client::Client;
use serde_json::json;

use crate::bench::local_cluster::LocalCluster;
use crate::cli::BenchScaleArgs;
use crate::error::CliError;

const CONCURRENCY_MAX: usize = 4_096;
/// Longest any one measured step may take.
const STEP_WAIT: Duration = Duration::from_secs(600);

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Waits until replica `addr` answers a linearizable read of task `id`.
async fn wait_serving(addr: &str, id: u64, wait: Duration) -> Result<Duration, CliError> {
    let started = Instant::now();
    let client = Client::new(vec![addr.to_string()], Duration::from_secs(2))?.single_attempt();
    loop {
        if client.get(id, false).await.is_ok() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > wait {
            return Err(CliError::Failed(format!("{addr} did not serve within {} s", wait.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn run(args: BenchScaleArgs) -> Result<(), CliError> {
    if args.tasks == 0 || args.tasks > raftsched_client::rules::limits::TASKS_TOTAL_MAX as u64 {
        return Err(CliError::Usage(format!(
            "--tasks must be 1..={}",
            raftsched_client::rules::limits::TASKS_TOTAL_MAX
        )));
    }
    if args.concurrency == 0 || args.concurrency > CONCURRENCY_MAX {
        return Err(CliError::Usage(format!("--concurrency must be 1..={CONCURRENCY_MAX}")));
    }
    let (snapshot_every, retain) = (args.snapshot_every_entries.to_string(), args.tasks.to_string());
    // Every task the bench makes is kept: it measures a state of `--tasks` finished tasks.
    let extra = ["--snapshot-every-entries", snapshot_every.as_str(), "--retain-finished", retain.as_str()];
    let mut cluster = LocalCluster::start(3, args.data_dir.as_deref(), &extra)?;
    let addrs = cluster.addrs();
    let admin = Client::new(addrs.clone(), Duration::from_secs(30))?;
    LocalCluster::wait_leader(&admin, Duration::from_secs(60)).await?;
    let rss_before: u64 = (1..=3).filter_map(|id| cluster.rss_bytes(id)).max().unwrap_or(0);

    let load_s = load(&args, &addrs).await?;
    LocalCluster::wait_converged(&admin, STEP_WAIT).await?;
    let leader = LocalCluster::wait_leader(&admin, STEP_WAIT).await?;
    let count = admin
        .list_page(raftsched_client::api::ListTasksRequest {
            state: "cancelled".into(),
            after_id: args.tasks.saturating_sub(1),
            limit: 10,
            stale: false,
        })
        .await?;
    let last_id = count.tasks.last().map(|t| t.id).unwrap_or(args.tasks);
    let rss: Vec<u64> = (1..=3).filter_map(|id| cluster.rss_bytes(id)).collect();
    let rss_max = rss.iter().copied().max().unwrap_or(0);
    let dirs: Vec<u64> = (1..=3).map(|id| cluster.data_dir_bytes(id)).collect();
    let per_task = rss_max.saturating_sub(rss_before) as f64 / args.tasks as f64;

    let restart_one_s = restart_follower(&mut cluster, leader, last_id).await?;
    let restart_all_s = restart_all(&mut cluster, &addrs, last_id).await?;
    LocalCluster::wait_converged(&admin, STEP_WAIT).await?;
    // A new replica joins (catches up by snapshot install), then serves.
    let t0 = Instant::now();
    let addr = cluster.start_joining(4)?;
    admin.add_member(4, &addr).await?;
    let join_added_s = t0.elapsed().as_secs_f64();
    wait_serving(&addr, last_id, STEP_WAIT).await?;
    let join_s = t0.elapsed().as_secs_f64();
    let dir4 = cluster.data_dir_bytes(4);

    if args.json {
        outln!(
            "{}",
            json!({"bench": "scale", "tasks": args.tasks, "load_s": load_s, "rss_bytes": rss, "rss_bytes_before": rss_before,
                   "memory_bytes_per_task": per_task, "data_dir_bytes": dirs, "joined_data_dir_bytes": dir4,
                   "restart_one_to_serving_s": restart_one_s, "restart_all_to_serving_s": restart_all_s,
                   "join_added_s": join_added_s, "join_to_serving_s": join_s,
                   "snapshot_every_entries": args.snapshot_every_entries})
        );
    } else {
        outln!(
            "scale: {} finished tasks (loaded in {load_s:.0} s, {:.0} tasks/s, each a submit and a cancel)",
            args.tasks,
            args.tasks as f64 / load_s
        );
        outln!(
            "  memory: replica RSS {} MiB (was {:.0} MiB empty): {per_task:.0} bytes per task",
            rss.iter().map(|b| format!("{:.0}", mib(*b))).collect::<Vec<_>>().join(" / "),
            mib(rss_before)
        );
        outln!(
            "  data dir: {} MiB per replica",
            dirs.iter().map(|b| format!("{:.0}", mib(*b))).collect::<Vec<_>>().join(" / ")
        );
        outln!("  restart of one replica (kill -9) to serving a linearizable read: {restart_one_s:.2} s");
        outln!("  restart of all three (kill -9) to serving: {restart_all_s:.2} s");
        outln!("  a new replica joins: added as a voter after {join_added_s:.2} s, serving after {join_s:.2} s ({:.0} MiB data dir)", mib(dir4));
    }
    Ok(())
}

/// `--tasks` submits, each cancelled at once, from `--concurrency` loops; a progress bar (on a
/// terminal) or a line every 10 s. How long it took, in seconds.
async fn load(args: &BenchScaleArgs, addrs: &[String]) -> Result<f64, CliError> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let run_id = format!("{:08x}", rand::random::<u32>());
    let mut loops = Vec::new();
    for i in 0..args.concurrency {
        let client = Client::new(addrs.to_vec(), Duration::from_secs(60))?.prefer(i);
        let (next, total, run_id) = (next.clone(), args.tasks, run_id.clone());
        loops.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<(), String>(());
                }
                let key = format!("scale-{run_id}-{n}");
                let id =
                    client.submit(&key, raftsched_client::builtin("echo", "x")).await.map_err(|e| e.to_string())?.id;
                client.cancel(id).await.map_err(|e| e.to_string())?;
            }
        }));
    }
    let bar = std::io::stderr().is_terminal() && !args.json;
    let mut last_line = Instant::now();
    while loops.iter().any(|l| !l.is_finished()) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let done = next.load(Ordering::Relaxed).min(args.tasks);
        let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
        if bar {
            eprint!("\r{} {done}/{} tasks, {rate:.0}/s", raftsched_client::progress_bar(done, args.tasks), args.tasks);
        } else if last_line.elapsed() > Duration::from_secs(10) && !args.json {
            last_line = Instant::now();
            eprintln!("{done}/{} tasks, {rate:.0}/s", args.tasks);
        }
    }
    if bar {
        eprintln!();
    }
    for l in loops {
        l.await.map_err(|e| CliError::Failed(e.to_string()))?.map_err(|e| CliError::Failed(format!("load: {e}")))?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// kill -9 of one follower, then its restart: seconds until it serves a linearizable read of task
/// `last_id`.
async fn restart_follower(cluster: &mut LocalCluster, leader: u64, last_id: u64) -> Result<f64, CliError> {
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    cluster.kill9(follower);
    let t0 = Instant::now();
    cluster.start_replica(follower)?;
    wait_serving(&cluster.replica(follower).addr, last_id, STEP_WAIT).await?;
    Ok(t0.elapsed().as_secs_f64())
}

/// kill -9 of the whole trio, then its restart: seconds until any replica serves task `last_id`.
async fn restart_all(cluster: &mut LocalCluster, addrs: &[String], last_id: u64) -> Result<f64, CliError> {
    for id in 1..=3 {
        cluster.kill9(id);
    }
    let t0 = Instant::now();
    for id in 1..=3 {
        cluster.start_replica(id)?;
    }
    loop {
        for addr in addrs {
            if wait_serving(addr, last_id, Duration::from_millis(200)).await.is_ok() {
                return Ok(t0.elapsed().as_secs_f64());
            }
        }
        if t0.elapsed() > STEP_WAIT {
            return Err(CliError::Failed("the restarted trio did not serve".into()));
        }
    }
}
