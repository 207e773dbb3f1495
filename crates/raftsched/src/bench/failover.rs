//! `raftsched bench failover`: leader kill -9 under load, on a trio the benchmark starts.
//!
//! `concurrency` loops submit continuously (unique keys, through every replica). Each round waits
//! until the cluster is whole and caught up, lets the load run for a second, kills the leader with
//! SIGKILL, and measures the time from the kill to the first acknowledgement of a submit that was
//! *sent after* the kill (a submit in flight at the kill does not count: its answer may have been
//! decided before). Then the old leader restarts and the next round begins. Each acknowledged
//! task is cancelled right away (untimed), so the state stays small over many rounds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftsched_client::Client;
use serde_json::json;

use crate::bench::local_cluster::LocalCluster;
use crate::cli::BenchFailoverArgs;
use crate::error::CliError;

const KILLS_MAX: usize = 1_000;
const CONCURRENCY_MAX: usize = 1_024;
/// Longest a round may wait for the first acknowledgement after a kill.
const FAILOVER_WAIT: Duration = Duration::from_secs(60);

pub async fn run(args: BenchFailoverArgs) -> Result<(), CliError> {
    if args.kills == 0 || args.kills > KILLS_MAX {
        return Err(CliError::Usage(format!("--kills must be 1..={KILLS_MAX}")));
    }
    if args.concurrency == 0 || args.concurrency > CONCURRENCY_MAX {
        return Err(CliError::Usage(format!("--concurrency must be 1..={CONCURRENCY_MAX}")));
    }
    let timing = timing_flags(&args);
    let timing: Vec<&str> = timing.iter().map(String::as_str).collect();
    let mut cluster = LocalCluster::start(3, args.data_dir.as_deref(), &timing)?;
    let addrs = cluster.addrs();
    let admin = Client::new(addrs.clone(), Duration::from_secs(5))?;
    LocalCluster::wait_leader(&admin, Duration::from_secs(60)).await?;
    let load = Submitters::start(&args, &addrs)?;
    let mut results_ms = Vec::with_capacity(args.kills);
    for round in 1..=args.kills {
        LocalCluster::wait_converged(&admin, Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let leader = LocalCluster::wait_leader(&admin, Duration::from_secs(60)).await?;
        cluster.kill9(leader);
        let killed_at = Instant::now();
        let Some(first_ack) = load.first_ack_after(killed_at).await else {
            load.stop.store(true, Ordering::Relaxed);
            return Err(CliError::Failed(format!(
                "round {round}: no acknowledgement within {FAILOVER_WAIT:?} of the kill"
            )));
        };
        let ms = first_ack.duration_since(killed_at).as_secs_f64() * 1000.0;
        results_ms.push(ms);
        if !args.json {
            eprintln!("round {round}/{}: killed leader {leader}, first acknowledgement after {ms:.0} ms", args.kills);
        }
        cluster.start_replica(leader)?;
        load.forget_before(killed_at);
    }
    load.stop().await;
    let q = |p: f64| super::quantile(&results_ms, p);
    let (p50, p99, max) = (q(0.5), q(0.99), q(1.0));
    if args.json {
        outln!(
            "{}",
            json!({"bench": "failover", "kills": args.kills, "concurrency": args.concurrency,
                   "p50_ms": p50, "p99_ms": p99, "max_ms": max, "rounds_ms": results_ms})
        );
    } else {
        outln!(
            "failover: {} leader kills at concurrency {}: kill to first acknowledgement p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms",
            args.kills, args.concurrency
        );
    }
    Ok(())
}

/// The replicas' Raft timing flags that were given (the server's defaults otherwise).
fn timing_flags(args: &BenchFailoverArgs) -> Vec<String> {
    let mut timing = Vec::new();
    for (flag, value) in [
        ("--heartbeat-interval-ms", args.heartbeat_interval_ms),
        ("--election-timeout-ms-min", args.election_timeout_ms_min),
        ("--election-timeout-ms-max", args.election_timeout_ms_max),
    ] {
        if let Some(v) = value {
            timing.extend([flag.to_string(), v.to_string()]);
        }
    }
    timing
}

/// `--concurrency` loops submitting (and cancelling) without pause, noting each acknowledgement.
struct Submitters {
    /// (sent, acknowledged) of each acknowledged submit.
    acks: Arc<Mutex<Vec<(Instant, Instant)>>>,
    stop: Arc<AtomicBool>,
    loops: Vec<tokio::task::JoinHandle<()>>,
}

impl Submitters {
    fn start(args: &BenchFailoverArgs, addrs: &[String]) -> Result<Submitters, CliError> {
        let acks: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let payload = "x".repeat(args.payload_bytes.min(raftsched_client::rules::limits::SPEC_BYTES_MAX - 64));
        let payload = Arc::new(payload);
        let run_id = format!("{:016x}", rand::random::<u64>());
        let mut loops = Vec::new();
        for i in 0..args.concurrency {
            let client = Client::new(addrs.to_vec(), Duration::from_secs(30))?.prefer(i);
            let (acks, stop, payload, run_id) = (acks.clone(), stop.clone(), payload.clone(), run_id.clone());
            loops.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let sent = Instant::now();
                    let key = format!("failover-{run_id}-{i}-{n}");
                    if let Ok(reply) = client.submit(&key, raftsched_client::builtin("echo", &payload)).await {
                        acks.lock().unwrap_or_else(|p| p.into_inner()).push((sent, Instant::now()));
                        // No workers run these: cancel each so that pending tasks stay far below
                        // tasks_pending_max over a long run (not timed).
                        let _ = client.cancel(reply.id).await;
                    }
                }
            }));
        }
        Ok(Submitters { acks, stop, loops })
    }

    /// When the first submit sent after `killed_at` was acknowledged; `None` past `FAILOVER_WAIT`.
    async fn first_ack_after(&self, killed_at: Instant) -> Option<Instant> {
        loop {
            let found = {
                let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
                acks.iter().filter(|(sent, _)| *sent > killed_at).map(|(_, acked)| *acked).min()
            };
            if found.is_some() || killed_at.elapsed() > FAILOVER_WAIT {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Drops the acknowledgements of submits sent before `at` (they are of no later round).
    fn forget_before(&self, at: Instant) {
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).retain(|(sent, _)| *sent > at);
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for l in self.loops {
            let _ = l.await;
        }
    }
}
