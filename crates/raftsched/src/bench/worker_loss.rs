//! `raftsched bench worker-loss`: how long a killed worker's tasks take to run elsewhere.
//!
//! A trio and two worker processes (this binary) start; each round submits long tasks (they
//! spread over both workers), waits until all run, kills -9 the worker holding most of them, and
//! measures the time until every one of its tasks is running again on the other worker. The
//! target is `heartbeat_timeout_ms` + 200 ms: the leader must first wait the timeout (the dead
//! worker's lease is shorter, so it stopped its attempts by then).

use std::process::Command;

use raftsched_launcher::{Proc, Tie};
use std::time::{Duration, Instant};

use raftsched_client::Client;
use serde_json::json;

use crate::bench::local_cluster::LocalCluster;
use crate::cli::BenchWorkerLossArgs;
use crate::error::CliError;

const ROUNDS_MAX: usize = 100;
const TASKS_MAX: usize = 256;
const STEP_WAIT: Duration = Duration::from_secs(60);

fn spawn_worker(id: &str, addrs: &[String], slots: usize, dir: &std::path::Path) -> Result<Proc, CliError> {
    let bin = std::env::current_exe().map_err(|e| CliError::Failed(format!("own binary: {e}")))?;
    let mut cmd = Command::new(bin);
    cmd.args(["worker", "--id", id, "--cluster", &addrs.join(","), "--slots", &slots.to_string()])
        .args(["--heartbeat-interval-ms", "100", "--lease-ms", "600"])
        .arg("--output-dir")
        .arg(dir.join(format!("{id}-output")))
        .env("RAFTSCHED_LOG", "warn");
    let tie = Tie { die_with_parent: true, own_group: false };
    Proc::spawn(&mut cmd, &dir.join(format!("{id}.log")), tie)
        .map_err(|e| CliError::Failed(format!("start worker {id}: {e}")))
}

/// `n` tasks that sleep for ten minutes (retried as often as allowed), once every one runs: their
/// ids, and (id, worker) of each.
async fn submit_running(client: &Client, round: usize, n: usize) -> Result<(Vec<u64>, Vec<(u64, String)>), CliError> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mut spec = raftsched_client::builtin("sleep", "600000");
        spec.max_attempts = raftsched_client::rules::limits::ATTEMPTS_MAX;
        ids.push(client.submit(&format!("worker-loss-{round}-{i}-{:x}", rand::random::<u32>()), spec).await?.id);
    }
    let placed = wait("every task running", async || {
        let mut placed = Vec::new();
        for id in &ids {
            let t = client.get(*id, false).await.ok()?;
            (t.state == "running").then_some(())?;
            placed.push((t.id, t.worker_id));
        }
        Some(placed)
    })
    .await?;
    Ok((ids, placed))
}

async fn wait<T>(what: &str, probe: impl AsyncFnMut() -> Option<T>) -> Result<T, CliError> {
    super::wait_until(what, STEP_WAIT, Duration::from_millis(5), probe).await
}

pub async fn run(args: BenchWorkerLossArgs) -> Result<(), CliError> {
    if args.rounds == 0 || args.rounds > ROUNDS_MAX {
        return Err(CliError::Usage(format!("--rounds must be 1..={ROUNDS_MAX}")));
    }
    if args.tasks == 0 || args.tasks > TASKS_MAX {
        return Err(CliError::Usage(format!("--tasks must be 1..={TASKS_MAX}")));
    }
    let timeout = args.heartbeat_timeout_ms.to_string();
    let cluster = LocalCluster::start(3, None, &["--heartbeat-timeout-ms", &timeout])?;
    let addrs = cluster.addrs();
    let client = Client::new(addrs.clone(), Duration::from_secs(10))?;
    LocalCluster::wait_leader(&client, STEP_WAIT).await?;
    let names = ["bench-w1", "bench-w2"];
    let mut workers: Vec<Option<Proc>> = Vec::new();
    for name in names {
        workers.push(Some(spawn_worker(name, &addrs, args.tasks, &cluster.dir)?));
    }
    let mut results_ms = Vec::new();
    for round in 1..=args.rounds {
        wait("both workers ready", async || {
            let w = client.list_workers(false).await.ok()?;
            (w.workers.iter().filter(|w| w.state == "ready").count() == 2).then_some(())
        })
        .await?;
        let (ids, placed) = submit_running(&client, round, args.tasks).await?;
        let victim = names.iter().max_by_key(|n| placed.iter().filter(|(_, w)| w == *n).count()).expect("two names");
        let k = names.iter().position(|n| n == victim).expect("known");
        let moved: Vec<u64> = placed.iter().filter(|(_, w)| w == victim).map(|(id, _)| *id).collect();
        workers[k] = None; // kill -9
        let killed_at = Instant::now();
        wait("the lost tasks running elsewhere", async || {
            for id in &moved {
                let t = client.get(*id, false).await.ok()?;
                (t.state == "running" && t.worker_id != *victim).then_some(())?;
            }
            Some(())
        })
        .await?;
        let ms = killed_at.elapsed().as_secs_f64() * 1000.0;
        results_ms.push(ms);
        if !args.json {
            eprintln!(
                "round {round}/{}: killed {victim} holding {} tasks; all running elsewhere after {ms:.0} ms",
                args.rounds,
                moved.len()
            );
        }
        for id in &ids {
            let _ = client.cancel(*id).await;
        }
        workers[k] = Some(spawn_worker(victim, &addrs, args.tasks, &cluster.dir)?);
    }
    drop(workers);
    let q = |p: f64| super::quantile(&results_ms, p);
    let target = args.heartbeat_timeout_ms as f64 + 200.0;
    if args.json {
        outln!(
            "{}",
            json!({"bench": "worker-loss", "rounds": args.rounds, "tasks": args.tasks, "heartbeat_timeout_ms": args.heartbeat_timeout_ms,
                   "p50_ms": q(0.5), "max_ms": q(1.0), "target_ms": target, "rounds_ms": results_ms})
        );
    } else {
        outln!(
            "worker-loss: {} rounds, heartbeat_timeout_ms {}: lost tasks running elsewhere after p50 {:.0} ms, max {:.0} ms (target {target:.0} ms)",
            args.rounds, args.heartbeat_timeout_ms, q(0.5), q(1.0)
        );
    }
    Ok(())
}
