//! `raftsched bench fleet --workers N`: what a large fleet of workers costs a trio.
//!
//! Simulated workers, in this one process over real gRPC connections (`--workers-per-connection`
//! share one client, i.e. one HTTP/2 connection per replica), each registering, heartbeating at
//! the default interval and long-polling its assignments exactly as `raftsched worker` does; a
//! probe task (an `echo`) is reported finished at once, a held task (a long `sleep`) is kept.
//!
//! Phases: (1) submits at `--concurrency` on a fresh trio without workers (the no-fleet figure);
//! then on a second fresh trio (2) the fleet registers and idles: the leader's CPU over
//! `--idle-s`; (3) probes one at a time: dispatch latency, from the submit call to the worker having
//! the assignment; (4) one long task per worker, so every slot is busy; (5) the same submits with
//! the fleet connected. Heartbeat latency over (2)-(5); at the end no worker may have been
//! declared down or lost its registration.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftsched_client::{api, Client};
use serde_json::json;
use tokio::sync::watch;

use crate::bench::local_cluster::LocalCluster;
use crate::bench::{percentile_ms, run_loops, Load, LoadStats, Run};
use crate::cli::BenchFleetArgs;
use crate::error::CliError;

const WORKERS_MAX: usize = raftsched_client::rules::limits::WORKERS_MAX;
const STEP_WAIT: Duration = Duration::from_secs(120);
const PROBES_MAX: usize = 10_000;

/// What the simulated workers saw.
#[derive(Default)]
struct Fleet {
    beats_us: Mutex<Vec<u64>>,
    beat_errors: AtomicU64,
    /// The longest heartbeat interval the replicas asked for (0: none asked).
    interval_ms_told: AtomicU64,
    /// Registrations lost: a heartbeat refused as not current, or a poll answered "not registered".
    lost: AtomicU64,
    /// Probe and long-task submits refused as overload (and sent again).
    refused: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Task id -> when a worker first had it.
    received: Mutex<HashMap<u64, Instant>>,
    n_received: watch::Sender<usize>,
}

impl Fleet {
    fn error(&self, e: String) {
        self.first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
    }

    fn received(&self, task_id: u64) {
        let mut received = self.received.lock().unwrap_or_else(|p| p.into_inner());
        if received.insert(task_id, Instant::now()).is_none() {
            self.n_received.send_replace(received.len());
        }
    }
}

/// Ticks of CPU (user + system) process `pid` used so far, from /proc.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Percent of one core the processes `pids` used while `f` ran: (the first, all together).
async fn cpu_pct_during<T>(pids: &[u32], f: impl std::future::Future<Output = T>) -> (T, (f64, f64)) {
    let ticks = || pids.iter().map(|p| cpu_ticks(*p).unwrap_or(0)).collect::<Vec<_>>();
    let (t0, c0) = (Instant::now(), ticks());
    let out = f.await;
    let used: Vec<f64> = ticks().iter().zip(&c0).map(|(now, then)| now.saturating_sub(*then) as f64).collect();
    // Clock ticks are 10 ms: ticks per second is percent of a core.
    let secs = t0.elapsed().as_secs_f64();
    (out, (used[0] / secs, used.iter().sum::<f64>() / secs))
}

async fn wait_until<T>(what: &str, probe: impl AsyncFnMut() -> Option<T>) -> Result<T, CliError> {
    super::wait_until(what, STEP_WAIT, Duration::from_millis(20), probe).await
}

/// A trio of this binary, its replicas' pids (the leader's first), and `connections` clients.
async fn trio(
    connections: usize,
    heartbeats_per_second_max: u64,
) -> Result<(LocalCluster, Vec<u32>, Vec<Arc<Client>>), CliError> {
    let cap = heartbeats_per_second_max.to_string();
    let flags = ["--tasks-pending-max", "1000000", "--heartbeats-per-second-max", &cap];
    let cluster = LocalCluster::start(3, None, &flags)?;
    let client = Client::new(cluster.addrs(), Duration::from_secs(10))?;
    let leader = LocalCluster::wait_leader(&client, STEP_WAIT).await?;
    let mut pids: Vec<u32> = cluster.replicas.iter().filter_map(|r| cluster.pid(r.id)).collect();
    let leader_pid = cluster.pid(leader).ok_or_else(|| CliError::Failed("the leader has no process".into()))?;
    pids.retain(|p| *p != leader_pid);
    pids.insert(0, leader_pid);
    let mut clients = Vec::new();
    for i in 0..connections.max(1) {
        // Long polls wait up to 10 s: the client's budget must outlast them.
        clients.push(Arc::new(Client::new(cluster.addrs(), Duration::from_secs(40))?.prefer(i)));
    }
    Ok((cluster, pids, clients))
}

/// The flags' bounds.
fn check_args(args: &BenchFleetArgs) -> Result<(), CliError> {
    if args.workers == 0 || args.workers > WORKERS_MAX {
        return Err(CliError::Usage(format!("--workers must be 1..={WORKERS_MAX} (workers_max)")));
    }
    if args.workers_per_connection == 0 || args.concurrency == 0 || args.concurrency > 4096 {
        return Err(CliError::Usage("--workers-per-connection must be at least 1, --concurrency 1..=4096".into()));
    }
    let seconds_ok = |s: u64| (1..=3600).contains(&s);
    if !seconds_ok(args.duration_s) || !seconds_ok(args.idle_s) || args.probes > PROBES_MAX {
        return Err(CliError::Usage(format!(
            "--duration-s and --idle-s must be 1..=3600, --probes at most {PROBES_MAX}"
        )));
    }
    Ok(())
}

/// (1) Submits at `--concurrency` against a trio with no fleet: the figures and the CPU shares
/// to compare with.
async fn no_fleet(
    args: &BenchFleetArgs,
    load_clients: usize,
    payload: &Arc<String>,
) -> Result<(LoadStats, (f64, f64)), CliError> {
    let duration = Duration::from_secs(args.duration_s);
    let (cluster, pids, clients) = trio(load_clients, args.heartbeats_per_second_max).await?;
    let run = Run::new(false);
    let load = run_loops(Load::Submit, &clients, args.concurrency, duration, payload, 0, &run);
    let (baseline, cpu) = cpu_pct_during(&pids, load).await;
    drop(cluster);
    let baseline = baseline?;
    eprintln!(
        "no fleet: {:.0} submits/s, p99 {:.1} ms, leader {:.0} % of a core",
        baseline.ops_per_s, baseline.p99, cpu.0
    );
    Ok((baseline, cpu))
}

pub async fn run(args: BenchFleetArgs) -> Result<(), CliError> {
    check_args(&args)?;
    let payload = Arc::new("x".repeat(256));
    let duration = Duration::from_secs(args.duration_s);
    let load_clients = 12.min(args.concurrency);
    let bench_ticks0 = cpu_ticks(std::process::id()).unwrap_or(0);
    let started = Instant::now();
    let (baseline, base_cpu) = no_fleet(&args, load_clients, &payload).await?;

    // (2)-(5) With the fleet.
    let n_conns = args.workers.div_ceil(args.workers_per_connection);
    let (cluster, pids, clients) = trio(n_conns.max(load_clients), args.heartbeats_per_second_max).await?;
    let fleet = Arc::new(Fleet::default());
    let (stop_tx, stop) = watch::channel(false);
    let interval = Duration::from_millis(args.heartbeat_interval_ms);
    start_fleet(&args, &clients, &fleet, interval, &stop).await?;
    let status = clients[0].clone();
    wait_until("every simulated worker ready", async || {
        let w = status.list_workers(false).await.ok()?;
        (w.workers.iter().filter(|w| w.state == "ready").count() == args.workers).then_some(())
    })
    .await?;
    fleet.beats_us.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let ((), idle_cpu) = cpu_pct_during(&pids, tokio::time::sleep(Duration::from_secs(args.idle_s))).await;
    eprintln!("{} workers idle: leader {:.1} %, trio {:.1} % of a core", args.workers, idle_cpu.0, idle_cpu.1);
    let dispatch_us = probe_dispatch(&clients[0], &fleet, args.probes).await?;
    let held = hold_every_slot(&clients, &fleet, args.workers).await?;
    let load_set = &clients[..load_clients];
    let (with_fleet, fleet_cpu) = cpu_pct_during(
        &pids,
        run_loops(Load::Submit, load_set, args.concurrency, duration, &payload, 0, &Run::new(false)),
    )
    .await;
    let with_fleet = with_fleet?;
    let workers = status.list_workers(false).await?.workers;
    let down = workers.iter().filter(|w| w.state != "ready").count();
    stop_tx.send_replace(true);
    let bench_cpu =
        (cpu_ticks(std::process::id()).unwrap_or(0) - bench_ticks0) as f64 / started.elapsed().as_secs_f64();
    let mut beats = std::mem::take(&mut *fleet.beats_us.lock().unwrap_or_else(|p| p.into_inner()));
    beats.sort_unstable();
    let report = Report {
        args: &args,
        baseline: &baseline,
        with_fleet: &with_fleet,
        cpu: [base_cpu, idle_cpu, fleet_cpu],
        bench_cpu,
        beats: &beats,
        dispatch_us: &dispatch_us,
        fleet: &fleet,
        down,
        held,
    };
    report.print();
    drop(cluster);
    let lost = fleet.lost.load(Ordering::Relaxed);
    if down > 0 || lost > 0 || held < args.workers {
        // The figures are printed; the exit code says they are not those of a healthy fleet.
        let why = format!("{down} workers not ready, {lost} registrations lost, {held} of {} busy", args.workers);
        return Err(CliError::Failed(why));
    }
    Ok(())
}

/// Registers every simulated worker (64 at a time) and starts its heartbeat and poll loops.
async fn start_fleet(
    args: &BenchFleetArgs,
    clients: &[Arc<Client>],
    fleet: &Arc<Fleet>,
    interval: Duration,
    stop: &watch::Receiver<bool>,
) -> Result<(), CliError> {
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut registrations = Vec::new();
    for i in 0..args.workers {
        let client = clients[i / args.workers_per_connection].clone();
        let (gate, fleet, stop) = (gate.clone(), fleet.clone(), stop.clone());
        registrations.push(tokio::spawn(async move {
            let _slot = gate.acquire().await;
            let id = format!("fleet-{i}");
            let instance = rand::random::<u64>();
            let req = api::RegisterWorkerRequest {
                id: id.clone(),
                instance,
                addr: String::new(),
                slots: 1,
                labels: Default::default(),
            };
            let epoch = client.register_worker(req).await.map_err(|e| format!("register {id}: {e}"))?.epoch;
            tokio::spawn(beat_loop(client.clone(), id.clone(), instance, interval, fleet.clone(), stop.clone()));
            tokio::spawn(poll_loop(client, id, instance, epoch, fleet, stop));
            Ok::<(), String>(())
        }));
    }
    for r in registrations {
        r.await.map_err(|e| CliError::Failed(e.to_string()))?.map_err(CliError::Failed)?;
    }
    Ok(())
}

async fn beat_loop(
    client: Arc<Client>,
    id: String,
    instance: u64,
    interval: Duration,
    fleet: Arc<Fleet>,
    mut stop: watch::Receiver<bool>,
) {
    // Spread the fleet's beats over the interval, as independent processes would be.
    let offset = Duration::from_micros(rand::random::<u64>() % interval.as_micros().max(1) as u64);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let t0 = Instant::now();
        match client.heartbeat(&id, instance).await {
            Ok(reply) => {
                fleet.beats_us.lock().unwrap_or_else(|p| p.into_inner()).push(t0.elapsed().as_micros() as u64);
                // As a real worker does: beat no more often than the replicas ask.
                let told = Duration::from_millis(reply.heartbeat_interval_ms);
                if told > tick.period() {
                    fleet.interval_ms_told.fetch_max(reply.heartbeat_interval_ms, Ordering::Relaxed);
                    tick = tokio::time::interval_at(tokio::time::Instant::now() + told, told);
                }
            }
            Err(e) if matches!(e.code(), tonic::Code::FailedPrecondition | tonic::Code::NotFound) => {
                fleet.lost.fetch_add(1, Ordering::Relaxed);
                fleet.error(format!("heartbeat {id}: {e}"));
                return;
            }
            Err(e) => {
                fleet.beat_errors.fetch_add(1, Ordering::Relaxed);
                fleet.error(format!("heartbeat {id}: {e}"));
            }
        }
    }
}

async fn poll_loop(
    client: Arc<Client>,
    id: String,
    instance: u64,
    epoch: u64,
    fleet: Arc<Fleet>,
    mut stop: watch::Receiver<bool>,
) {
    let mut known: Vec<api::HeldTask> = Vec::new();
    loop {
        let req = api::AssignmentsRequest { id: id.clone(), epoch, known: known.clone(), wait_ms: 10_000 };
        let reply = tokio::select! {
            r = client.assignments(req) => r,
            _ = stop.changed() => return,
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                fleet.error(format!("assignments {id}: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !reply.registered {
            fleet.lost.fetch_add(1, Ordering::Relaxed);
            fleet.error(format!("{id} lost its registration"));
            return;
        }
        known.clear();
        for a in reply.assignments {
            fleet.received(a.task_id);
            let probe = a
                .spec
                .as_ref()
                .is_some_and(|s| matches!(&s.exec, Some(api::task_spec::Exec::Builtin(b)) if b.name == "echo"));
            if !probe {
                known.push(api::HeldTask { task_id: a.task_id, token: a.token });
                continue;
            }
            let report = api::ReportRequest {
                task_id: a.task_id,
                token: a.token,
                finished: true,
                exit_code: 0,
                worker_id: id.clone(),
                instance,
                ..Default::default()
            };
            if let Err(e) = client.report(report).await {
                fleet.error(format!("report {}: {e}", a.task_id));
            }
        }
    }
}

/// Submits `spec` under `key`, again after an overload refusal (RESOURCE_EXHAUSTED, counted in
/// `Fleet::refused`), as a client would, for up to `STEP_WAIT`.
async fn submit_retrying(client: &Client, fleet: &Fleet, key: &str, spec: api::TaskSpec) -> Result<u64, CliError> {
    let started = Instant::now();
    loop {
        match client.submit(key, spec.clone()).await {
            Ok(reply) => return Ok(reply.id),
            Err(e) if e.code() == tonic::Code::ResourceExhausted && started.elapsed() < STEP_WAIT => {
                if fleet.refused.fetch_add(1, Ordering::Relaxed) == 0 {
                    fleet.error(format!("submit {key}: {e}"));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Submits `n` probes one at a time; each one's time from the submit call to a worker having it.
async fn probe_dispatch(client: &Client, fleet: &Fleet, n: usize) -> Result<Vec<u64>, CliError> {
    let mut latencies_us = Vec::with_capacity(n);
    let mut seen = fleet.n_received.subscribe();
    for i in 0..n {
        let t0 = Instant::now();
        let key = format!("fleet-probe-{i}-{:x}", rand::random::<u32>());
        let id = submit_retrying(client, fleet, &key, raftsched_client::builtin("echo", "probe")).await?;
        let at = loop {
            if let Some(at) = fleet.received.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
                break *at;
            }
            if tokio::time::timeout(STEP_WAIT, seen.changed()).await.is_err() {
                return Err(CliError::Failed(format!("probe {id} never reached a worker")));
            }
        };
        latencies_us.push(at.saturating_duration_since(t0).as_micros() as u64);
    }
    latencies_us.sort_unstable();
    Ok(latencies_us)
}

/// Gives every worker a long task and waits until each has it: every slot busy.
/// Returns how many workers hold one (all of them, unless `STEP_WAIT` passed first: the figures
/// that follow are then reported with the count, not dropped).
async fn hold_every_slot(clients: &[Arc<Client>], fleet: &Arc<Fleet>, n: usize) -> Result<usize, CliError> {
    let before = *fleet.n_received.borrow();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut submits = Vec::new();
    for i in 0..n {
        let (client, gate, fleet) = (clients[i % clients.len()].clone(), gate.clone(), fleet.clone());
        submits.push(tokio::spawn(async move {
            let _slot = gate.acquire().await;
            let key = format!("fleet-hold-{i}-{:x}", rand::random::<u32>());
            submit_retrying(&client, &fleet, &key, raftsched_client::builtin("sleep", "3600000")).await.map(|_| ())
        }));
    }
    for s in submits {
        s.await.map_err(|e| CliError::Failed(e.to_string()))??;
    }
    let mut seen = fleet.n_received.subscribe();
    let _ = tokio::time::timeout(STEP_WAIT, seen.wait_for(|got| *got >= before + n)).await;
    let held = fleet.n_received.borrow().saturating_sub(before);
    if held < n {
        fleet.error(format!("only {held} of {n} workers got their long task within {} s", STEP_WAIT.as_secs()));
    }
    Ok(held)
}

struct Report<'a> {
    args: &'a BenchFleetArgs,
    baseline: &'a LoadStats,
    with_fleet: &'a LoadStats,
    /// Percent of a core (the leader's, the trio's): without a fleet, with the fleet idle, with
    /// the fleet under load; and this benchmark process over the whole run.
    cpu: [(f64, f64); 3],
    bench_cpu: f64,
    beats: &'a [u64],
    dispatch_us: &'a [u64],
    fleet: &'a Fleet,
    down: usize,
    /// Workers holding a long task during the with-fleet submits.
    held: usize,
}

impl Report<'_> {
    fn print(&self) {
        let [(base_cpu, base_trio), (idle_cpu, idle_trio), (fleet_cpu, fleet_trio)] = self.cpu;
        let bench_cpu = self.bench_cpu;
        let n = self.args.workers;
        let ratio = self.with_fleet.ops_per_s / self.baseline.ops_per_s.max(1e-9);
        let first_error = self.fleet.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let errors = self.baseline.n_errors + self.with_fleet.n_errors;
        let out = json!({
            "bench": "fleet",
            "workers": n,
            "connections": n.div_ceil(self.args.workers_per_connection),
            "heartbeat_interval_ms": self.args.heartbeat_interval_ms,
            "heartbeats_per_second_max": self.args.heartbeats_per_second_max,
            "heartbeat_interval_ms_told": self.fleet.interval_ms_told.load(Ordering::Relaxed),
            "concurrency": self.args.concurrency,
            "no_fleet_submits_per_s": self.baseline.ops_per_s,
            "no_fleet_p99_ms": self.baseline.p99,
            "fleet_submits_per_s": self.with_fleet.ops_per_s,
            "fleet_p99_ms": self.with_fleet.p99,
            "submit_ratio": ratio,
            "submit_errors": errors,
            "submit_first_error": self.baseline.first_error.clone().or(self.with_fleet.first_error.clone()),
            "leader_cpu_no_fleet_pct": base_cpu,
            "leader_cpu_idle_fleet_pct": idle_cpu,
            "leader_cpu_pct_per_1000_workers": idle_cpu / (n as f64 / 1000.0),
            "leader_cpu_fleet_load_pct": fleet_cpu,
            "trio_cpu_no_fleet_pct": base_trio,
            "trio_cpu_idle_fleet_pct": idle_trio,
            "trio_cpu_pct_per_1000_workers": idle_trio / (n as f64 / 1000.0),
            "trio_cpu_fleet_load_pct": fleet_trio,
            "bench_cpu_pct": bench_cpu,
            "heartbeats": self.beats.len(),
            "heartbeat_p50_ms": percentile_ms(self.beats, 0.5),
            "heartbeat_p99_ms": percentile_ms(self.beats, 0.99),
            "heartbeat_errors": self.fleet.beat_errors.load(Ordering::Relaxed),
            "dispatch_probes": self.dispatch_us.len(),
            "dispatch_p50_ms": percentile_ms(self.dispatch_us, 0.5),
            "dispatch_p99_ms": percentile_ms(self.dispatch_us, 0.99),
            "workers_not_ready": self.down,
            "workers_busy": self.held,
            "registrations_lost": self.fleet.lost.load(Ordering::Relaxed),
            "setup_submits_refused": self.fleet.refused.load(Ordering::Relaxed),
            "first_error": first_error,
        });
        if self.args.json {
            outln!("{out}");
            return;
        }
        outln!(
            "fleet of {n}: submits {:.0}/s with it vs {:.0}/s without ({:.2}x, p99 {:.1} vs {:.1} ms, {errors} errors); \
             leader CPU {idle_cpu:.1} % idle ({:.1} % per 1,000 workers), {fleet_cpu:.0} % under load ({base_cpu:.0} % without); \
             heartbeat p50 {:.2} / p99 {:.2} ms (interval asked: {} ms); dispatch p50 {:.2} / p99 {:.2} ms; {} not ready, {} registrations lost; \
             this process {bench_cpu:.0} % of a core",
            self.with_fleet.ops_per_s,
            self.baseline.ops_per_s,
            ratio,
            self.with_fleet.p99,
            self.baseline.p99,
            idle_cpu / (n as f64 / 1000.0),
            percentile_ms(self.beats, 0.5),
            percentile_ms(self.beats, 0.99),
            self.fleet.interval_ms_told.load(Ordering::Relaxed),
            percentile_ms(self.dispatch_us, 0.5),
            percentile_ms(self.dispatch_us, 0.99),
            self.down,
            self.fleet.lost.load(Ordering::Relaxed),
        );
        if let Some(e) = first_error {
            eprintln!("first error: {e}");
        }
    }
}
