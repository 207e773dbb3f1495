//! The runner: a real raftsched cluster under a nemesis, a recorded workload, and the verdict.
//!
//! [`run`] goes through these phases, each bounded in time:
//! 1. set up: network namespaces when root ([`netns`]), replicas and workers as processes
//!    ([`procs`]), wait for a leader;
//! 2. load: `clients` recorded clients ([`clients`]), the zombie reporter and the recurring
//!    schedules ([`schedules`]) while the nemesis ([`nemesis`]) injects faults, for `time_limit_s`;
//! 3. recover: heal every fault, wait (at most `recovery_timeout_s`) for a leader and for every
//!    task to end, read every task back (recorded), list all tasks;
//! 4. check: the history against the `scheduler` model, the invariants ([`checks`]), and write
//!    `--out`: `history.jsonl`, `nemesis.jsonl`, `terms.jsonl` ([`terms`]), `verdict.json`,
//!    `report.html`, `logs/`; with the availability figures ([`availability`]).
//!
//! Everything started is torn down on every path out (processes first, then namespaces), also
//! on Ctrl-C and on a panic; children also die with the harness (`PR_SET_PDEATHSIG`).

pub mod availability;
pub mod checks;
pub mod clients;
pub mod damage;
pub mod flows;
pub mod hostile;
pub mod nemesis;
pub mod netns;
pub mod procs;
pub mod recorder;
pub mod report;
pub mod rng;
pub mod schedules;
pub mod terms;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use raftsched_api as api;
use raftsched_client::Client;
use serde::Serialize;

use crate::check::{check_history, CheckOptions, Verdict};
use crate::model::ModelKind;
use checks::Invariant;
use clients::Shared;
use nemesis::{Fault, Nemesis, NemesisEvent};
use procs::{Procs, ReplicaOptions, Topology};
use recorder::Recorder;
use rng::Rng;

/// Slots per worker process.
pub const WORKER_SLOTS: u32 = 4;
/// Longest wait for a leader at start and after the faults stop.
pub const LEADER_WAIT_S: u64 = 60;
/// Budget of the linearizability check.
pub const CHECK_TIMEOUT_MS: u64 = 120_000;

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub nodes: usize,
    pub workers: usize,
    pub clients: usize,
    pub time_limit_s: u64,
    pub nemeses: Vec<Fault>,
    pub seed: u64,
    pub out: PathBuf,
    pub raftsched_bin: PathBuf,
    /// Start every replica on this older build instead; the `upgrade` nemesis moves them to
    /// `raftsched_bin` one at a time.
    pub old_bin: Option<PathBuf>,
    /// `--fault` flags passed to every replica (needs a fault-injection build).
    pub faults: Vec<String>,
    /// Use network namespaces when possible (root).
    pub netns: bool,
    /// How long each fault is held, in ms (min, max).
    pub fault_hold_ms: (u64, u64),
    /// Quiet time between faults, in ms (min, max).
    pub fault_quiet_ms: (u64, u64),
    /// Pause between one client's calls, in ms (min, max).
    pub think_ms: (u64, u64),
    pub recovery_timeout_s: u64,
    /// Show a progress bar on stderr (otherwise a line every 10 s).
    pub progress: bool,
    /// Keep the replicas' data dirs after a run that passed.
    pub keep_data: bool,
    /// Run the `schedules` workload (recurring schedules firing through the faults).
    pub schedules: bool,
    /// Run the `flows` workload (dependent tasks under a concurrency key, `flows.rs`).
    pub flows: bool,
}

impl RunConfig {
    pub fn new(raftsched_bin: PathBuf, out: PathBuf) -> RunConfig {
        RunConfig {
            nodes: 3,
            workers: 2,
            clients: 8,
            time_limit_s: 60,
            nemeses: Fault::ALL.to_vec(),
            seed: 1,
            out,
            raftsched_bin,
            old_bin: None,
            faults: Vec::new(),
            netns: true,
            fault_hold_ms: (1_000, 5_000),
            fault_quiet_ms: (1_000, 4_000),
            think_ms: (20, 200),
            recovery_timeout_s: 90,
            progress: std::io::stderr().is_terminal(),
            keep_data: false,
            schedules: true,
            flows: true,
        }
    }
}

/// What a run found; also written to `verdict.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// Everything held: linearizable and every invariant.
    pub valid: bool,
    /// `linearizable`, `not linearizable` or `unknown (why)`.
    pub linearizability: String,
    pub invariants: Vec<Invariant>,
    pub operations: usize,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub zombie_reports: u64,
    pub faults: usize,
    pub fault_kinds: Vec<String>,
    pub partitions_possible: bool,
    pub seed: u64,
    pub nodes: usize,
    pub workers: usize,
    pub clients: usize,
    pub time_limit_s: u64,
    pub replica_faults: Vec<String>,
    pub out: String,
    pub duration_s: f64,
    /// Per fault kind (and `none`, `all`): see [`availability`].
    pub availability: BTreeMap<String, availability::KindFigures>,
}

/// The run's result in a few lines: the verdict, each invariant that failed, where the report is.
pub fn summary(o: &RunOutcome) -> String {
    let mut text = format!(
        "{}: {} operations ({} ok, {} fail, {} info), {} faults ({}), {} stale reports; history {}; {}",
        if o.valid { "VALID" } else { "INVALID" },
        o.operations,
        o.ok,
        o.fail,
        o.info,
        o.faults,
        if o.fault_kinds.is_empty() { "none".to_string() } else { o.fault_kinds.join(", ") },
        o.zombie_reports,
        o.linearizability,
        format_args!("report {}/report.html", o.out),
    );
    for inv in o.invariants.iter().filter(|i| !i.holds) {
        text.push_str(&format!("\n  violated: {}: {}", inv.name, inv.detail));
    }
    for line in availability::summary_lines(&o.availability) {
        text.push_str(&format!("\n  {line}"));
    }
    text
}

/// Where the `raftsched` binary is by default: beside this executable (`target/<profile>/`).
pub fn default_raftsched_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("raftsched")
}

/// Runs one test; `Err` only when the run could not be carried out (setup failed, interrupted).
pub fn run(config: &RunConfig) -> anyhow::Result<RunOutcome> {
    if !(1..=7).contains(&config.nodes) {
        bail!("--nodes must be 1..=7");
    }
    if config.clients == 0 || config.clients > 256 {
        bail!("--clients must be 1..=256");
    }
    if config.workers > 32 {
        bail!("--workers must be at most 32");
    }
    if !config.raftsched_bin.is_file() {
        bail!(
            "no raftsched binary at {} (build it: cargo build --release -p raftsched, or pass --raftsched-bin)",
            config.raftsched_bin.display()
        );
    }
    std::fs::create_dir_all(config.out.join("logs")).with_context(|| format!("create {}", config.out.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    runtime.block_on(run_async(config))
}

fn say(text: &str) {
    eprintln!("jepsen-like-tests: {text}");
}

async fn run_async(config: &RunConfig) -> anyhow::Result<RunOutcome> {
    let started = Instant::now();
    let cluster = start_cluster(config).await?;
    let mut load = Load::start(config, &cluster, started)?;
    let interrupted = stop_on_signal(load.shared.clone());
    let mut faults = Faults::new(config, load.shared.clone());
    faults.inject(config, &cluster, started, &interrupted).await;
    load.shared.stop.store(true, Ordering::Relaxed);
    let load_end_ns = load.shared.recorder.now_ns();
    faults.progress.finish(started, &load.shared, faults.n);
    for t in std::mem::take(&mut load.tasks) {
        let _ = t.await;
    }
    if interrupted.load(Ordering::Relaxed) {
        bail!("interrupted; everything the run started was stopped (partial output in {})", config.out.display());
    }
    let settled = settle(config, &cluster, &load, &mut faults).await?;
    check_exits(&cluster.procs, &mut faults.replica_faults, &faults.timeline);
    stop_samplers(&load.shared, load_end_ns, &load.sampler_stop, std::mem::take(&mut load.samplers)).await;
    tokio::task::block_in_place(|| lock(&cluster.procs).stop_all(Duration::from_secs(10)));
    let outcome = judge(config, &cluster, &load, &faults, &settled, load_end_ns)?;
    if outcome.valid && !config.keep_data {
        let _ = std::fs::remove_dir_all(lock(&cluster.procs).data_root());
    }
    Ok(outcome)
}

/// The cluster a run starts: its processes and the harness's own clients.
struct Cluster {
    procs: Arc<Mutex<Procs>>,
    addrs: Vec<String>,
    /// Short calls: who leads.
    admin: Client,
    /// Membership changes, which wait for a new replica to catch up.
    membership: Client,
    partitions_possible: bool,
}

/// Network namespaces when this machine has them (and `--no-netns` was not given), else loopback.
fn topology(config: &RunConfig) -> anyhow::Result<Topology> {
    if !config.netns {
        say("--no-netns: no partitions (nemeses kill, pause, worker only)");
        return Ok(Topology::Loopback(procs::free_ports(config.nodes)?));
    }
    match netns::available() {
        Ok(()) => {
            netns::clean_stale();
            Ok(Topology::Netns(netns::Netns::create(config.nodes).map_err(anyhow::Error::msg)?))
        }
        Err(why) => {
            say(&format!("{why}: no network namespaces, so no partitions (nemeses kill, pause, worker only)"));
            Ok(Topology::Loopback(procs::free_ports(config.nodes)?))
        }
    }
}

/// Starts the replicas (on the old build for an upgrade run), waits for a leader, starts the
/// workers and creates the schedules.
async fn start_cluster(config: &RunConfig) -> anyhow::Result<Cluster> {
    let topology = topology(config)?;
    let partitions_possible = topology.netns().is_some();
    let options = ReplicaOptions {
        faults: config.faults.clone(),
        // Small snapshots so compaction and snapshot installs happen during the faults.
        extra_args: ["--snapshot-every-entries", "500", "--snapshot-logs-kept", "100"].map(String::from).to_vec(),
    };
    let procs = Procs::new(config.raftsched_bin.clone(), config.out.clone(), topology, config.nodes, options);
    let procs = Arc::new(Mutex::new(procs));
    let addrs = lock(&procs).replica_addrs();
    for i in 0..config.nodes {
        if let Some(old) = &config.old_bin {
            lock(&procs).set_replica_bin(i, old.clone());
        }
    }
    for i in 0..config.nodes {
        lock(&procs).start_replica(i).with_context(|| format!("start replica n{}", i + 1))?;
    }
    let admin = Client::new(addrs.clone(), Duration::from_secs(5)).context("client")?;
    let membership = Client::new(addrs.clone(), Duration::from_secs(60)).context("client")?;
    wait_for_leader(&admin, Duration::from_secs(LEADER_WAIT_S)).await.context("no leader at start")?;
    for _ in 0..config.workers {
        lock(&procs).add_worker(WORKER_SLOTS).context("start a worker")?;
    }
    if config.schedules {
        let deadline = Instant::now() + Duration::from_secs(LEADER_WAIT_S);
        schedules::create(&admin, deadline).await.map_err(anyhow::Error::msg).context("create the schedules")?;
    }
    say(&format!(
        "{} replicas ({}), {} workers, {} clients, {} s, nemesis {}, seed {}; output in {}",
        config.nodes,
        addrs.join(" "),
        config.workers,
        config.clients,
        config.time_limit_s,
        config.nemeses.iter().map(|f| f.name()).collect::<Vec<_>>().join(",").if_empty("none"),
        config.seed,
        config.out.display()
    ));
    Ok(Cluster { procs, addrs, admin, membership, partitions_possible })
}

/// The workload and the term samplers, running.
struct Load {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    flows_sent: flows::Sent,
    /// When the workload started, on the recorder's clock.
    start_ns: u64,
    term_samples: terms::Samples,
    sampler_stop: Arc<AtomicBool>,
    samplers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the clients (each on one replica), the zombie reporter, the flow submitter and the
    /// term samplers.
    fn start(config: &RunConfig, cluster: &Cluster, started: Instant) -> anyhow::Result<Load> {
        let addrs = &cluster.addrs;
        let shared = Arc::new(Shared::new(Recorder::new(started)));
        let root_rng = Rng::new(config.seed);
        let call_timeout = Duration::from_millis(clients::CALL_TIMEOUT_MS);
        let mut tasks = Vec::new();
        for p in 0..config.clients {
            let client = Client::new(vec![addrs[p % addrs.len()].clone()], call_timeout)?.single_attempt();
            let rng = root_rng.fork(p as u64);
            tasks.push(tokio::spawn(clients::run_client(p as u64, client, shared.clone(), rng, config.think_ms)));
        }
        let zombie_client = Client::new(addrs.clone(), call_timeout)?;
        tasks.push(tokio::spawn(clients::run_zombie(zombie_client, shared.clone(), Duration::from_millis(100))));
        let flows_sent: flows::Sent = Arc::default();
        if config.flows {
            let client = Client::new(addrs.clone(), call_timeout)?;
            tasks.push(tokio::spawn(flows::run(client, shared.clone(), flows_sent.clone())));
        }
        let start_ns = shared.recorder.now_ns();
        // Terms and leaders, sampled until the processes are stopped.
        let term_samples: terms::Samples = Arc::default();
        let sampler_stop = Arc::new(AtomicBool::new(false));
        let samplers = terms::spawn(addrs, shared.clone(), term_samples.clone(), sampler_stop.clone())?;
        Ok(Load { shared, tasks, flows_sent, start_ns, term_samples, sampler_stop, samplers })
    }
}

/// Ctrl-C / SIGTERM: stop at once (the guards tear everything down); the flag says it happened.
fn stop_on_signal(shared: Arc<Shared>) -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term_recv = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term_recv => {}
        }
        flag.store(true, Ordering::Relaxed);
        shared.stop.store(true, Ordering::Relaxed);
    });
    interrupted
}

/// The nemesis's events, timed on the recorder's clock.
#[derive(Clone)]
struct Timeline {
    events: Arc<Mutex<Vec<NemesisEvent>>>,
    shared: Arc<Shared>,
}

impl Timeline {
    fn note(&self, phase: &'static str, fault: &str, targets: Vec<String>) {
        let time_ns = self.shared.recorder.now_ns();
        lock(&self.events).push(NemesisEvent { time_ns, phase, fault: fault.to_string(), targets });
    }
}

/// The fault phase: what it did and saw.
struct Faults {
    nemesis: Nemesis,
    timeline: Timeline,
    /// Processes that exited without the nemesis killing them.
    replica_faults: Vec<String>,
    n: usize,
    progress: Progress,
}

impl Faults {
    fn new(config: &RunConfig, shared: Arc<Shared>) -> Faults {
        let nemesis = Nemesis {
            faults: config.nemeses.clone(),
            rng: Rng::new(config.seed).fork(u64::MAX),
            hostile_accepted: hostile::Accepted::default(),
        };
        Faults {
            nemesis,
            timeline: Timeline { events: Arc::default(), shared },
            replica_faults: Vec::new(),
            n: 0,
            progress: Progress::new(config.progress, config.time_limit_s),
        }
    }

    /// Starts a fault, holds it, heals it, keeps quiet, again, until the time limit (each fault
    /// healed before the next).
    async fn inject(&mut self, config: &RunConfig, cluster: &Cluster, started: Instant, interrupted: &AtomicBool) {
        let shared = self.timeline.shared.clone();
        let deadline = started + Duration::from_secs(config.time_limit_s);
        // Let the workload start before the first fault.
        let mut next_fault = Instant::now() + Duration::from_millis(config.fault_quiet_ms.0);
        while Instant::now() < deadline && !interrupted.load(Ordering::Relaxed) {
            self.progress.tick(started, &shared, self.n);
            check_exits(&cluster.procs, &mut self.replica_faults, &self.timeline);
            if Instant::now() < next_fault {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let leader = current_leader(&cluster.admin).await;
            let procs = &cluster.procs;
            let nemesis = &mut self.nemesis;
            let begun = tokio::task::block_in_place(|| nemesis.start(&mut lock(procs), leader, &cluster.membership));
            let Some((fault, targets, active)) = begun else {
                next_fault = Instant::now() + Duration::from_secs(1);
                continue;
            };
            self.n += 1;
            self.timeline.note("start", &fault, targets.clone());
            let (hold, quiet) = self.nemesis.durations(config.fault_hold_ms, config.fault_quiet_ms);
            let heal_at = (Instant::now() + hold).min(deadline);
            while Instant::now() < heal_at && !interrupted.load(Ordering::Relaxed) {
                self.progress.tick(started, &shared, self.n);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let healed = tokio::task::block_in_place(|| {
                nemesis::heal(&mut lock(procs), &active, WORKER_SLOTS, &cluster.membership)
            });
            match healed {
                Err(e) => self.timeline.note("error", &fault, vec![e]),
                Ok(Some(repair)) => self.timeline.note("repair", &fault, vec![repair]),
                Ok(None) => {}
            }
            self.timeline.note("stop", &fault, targets);
            next_fault = Instant::now() + quiet;
        }
    }
}

/// What the cluster looked like once the faults stopped and every task could end.
struct Settled {
    leader: anyhow::Result<u64>,
    /// Tasks still not ended at the recovery deadline.
    still_live: Vec<u64>,
    all_tasks: Result<Vec<api::Task>, String>,
    final_schedules: Result<Vec<api::Schedule>, String>,
}

/// Recovery: every fault is healed already; restarts anything down, waits for a leader, makes
/// every replica a voter again, pauses the schedules, waits for every task to end, and reads
/// everything once more (recorded, so lost tasks show in the history too).
async fn settle(config: &RunConfig, cluster: &Cluster, load: &Load, faults: &mut Faults) -> anyhow::Result<Settled> {
    check_exits(&cluster.procs, &mut faults.replica_faults, &faults.timeline);
    tokio::task::block_in_place(|| restart_down(&cluster.procs));
    say("faults stopped; waiting for a leader and for every task to end");
    let recovery_deadline = Instant::now() + Duration::from_secs(config.recovery_timeout_s);
    let leader = wait_for_leader(&cluster.admin, Duration::from_secs(config.recovery_timeout_s)).await;
    // Every replica a voter again (idempotent; a no-op unless a re-add failed during the run).
    if leader.is_ok() {
        for (i, addr) in cluster.addrs.iter().enumerate() {
            if let Err(e) = cluster.membership.add_member(i as u64 + 1, addr).await {
                say(&format!("add n{} back: {e}", i + 1));
            }
        }
    }
    let reader = Client::new(cluster.addrs.clone(), Duration::from_secs(10))?;
    if let Err(e) = &leader {
        say(&format!("no leader after the faults stopped: {e}"));
        let all_tasks = Err("no leader: the final reads and the task list were skipped".to_string());
        let final_schedules = Err("no leader: the schedules were not read".to_string());
        return Ok(Settled { leader, still_live: Vec::new(), all_tasks, final_schedules });
    }
    // Schedules would keep making tasks: pause them so that every task can end.
    if config.schedules {
        if let Err(e) = schedules::pause_all(&reader, recovery_deadline).await {
            say(&format!("could not pause the schedules: {e}"));
        }
    }
    let still_live = wait_all_ended(&reader, recovery_deadline).await;
    let ids: Vec<u64> = lock(&load.shared.known).ids.clone();
    final_reads(&cluster.addrs, &load.shared, &ids).await;
    let all_tasks = list_all(&reader).await;
    let final_schedules = if config.schedules { schedules::fetch(&reader).await } else { Ok(Vec::new()) };
    Ok(Settled { leader, still_live, all_tasks, final_schedules })
}

/// Writes the history, the nemesis timeline and the term samples, checks them, and writes the
/// verdict and the report.
fn judge(
    config: &RunConfig,
    cluster: &Cluster,
    load: &Load,
    faults: &Faults,
    settled: &Settled,
    load_end_ns: u64,
) -> anyhow::Result<RunOutcome> {
    let shared = &load.shared;
    let lines = shared.recorder.snapshot();
    let history_path = config.out.join("history.jsonl");
    write_lines(&history_path, lines.iter().map(|l| l.to_json()))?;
    let events = lock(&faults.timeline.events).clone();
    write_lines(&config.out.join("nemesis.jsonl"), events.iter().map(json_line))?;
    let samples = lock(&load.term_samples).clone();
    write_lines(&config.out.join("terms.jsonl"), samples.iter().map(json_line))?;
    let writes = availability::write_completions(&lines);
    let availability = availability::availability(&events, &writes, &samples, (load.start_ns, load_end_ns));
    say(&format!("checking {} operations", lines.len() / 2));
    let history = crate::parse::parse_file(&history_path).map_err(|e| anyhow::anyhow!("re-read the history: {e}"))?;
    let opts = CheckOptions { timeout_ms: CHECK_TIMEOUT_MS, ..CheckOptions::default() };
    let verdict = check_history(ModelKind::Scheduler, &history, &opts).map_err(|e| anyhow::anyhow!("check: {e}"))?;
    let invariants = invariants(config, load, faults, settled, &lines);
    let violation_html = match &verdict {
        Verdict::NotLinearizable(v) => {
            eprint!("{}", v.to_text());
            Some(v.write_artifacts(&config.out, "history")?.1)
        }
        _ => None,
    };
    let linearizability = match &verdict {
        Verdict::Linearizable => "linearizable".to_string(),
        Verdict::NotLinearizable(_) => "not linearizable".to_string(),
        Verdict::Unknown(why) => format!("unknown ({why})"),
    };
    let mut fault_kinds: Vec<String> = events.iter().filter(|e| e.phase == "start").map(|e| e.fault.clone()).collect();
    fault_kinds.sort();
    fault_kinds.dedup();
    let outcome = RunOutcome {
        valid: verdict.is_linearizable() && invariants.iter().all(|i| i.holds),
        linearizability,
        invariants,
        operations: history.ops.len(),
        ok: shared.n_ok.load(Ordering::Relaxed),
        fail: shared.n_fail.load(Ordering::Relaxed),
        info: shared.n_info.load(Ordering::Relaxed),
        zombie_reports: shared.n_zombie.load(Ordering::Relaxed),
        faults: faults.n,
        fault_kinds,
        partitions_possible: cluster.partitions_possible,
        seed: config.seed,
        nodes: config.nodes,
        workers: config.workers,
        clients: config.clients,
        time_limit_s: config.time_limit_s,
        replica_faults: config.faults.clone(),
        out: config.out.display().to_string(),
        duration_s: shared.recorder.now_ns() as f64 / 1e9,
        availability,
    };
    std::fs::write(config.out.join("verdict.json"), serde_json::to_string_pretty(&outcome)? + "\n")?;
    let html = report::render(&outcome, &lines, &events, violation_html.as_deref());
    std::fs::write(config.out.join("report.html"), html)?;
    Ok(outcome)
}

/// Every invariant of the run, beside linearizability.
fn invariants(
    config: &RunConfig,
    load: &Load,
    faults: &Faults,
    settled: &Settled,
    lines: &[recorder::Line],
) -> Vec<Invariant> {
    let mut invariants = vec![Invariant {
        name: "a leader after the faults stopped",
        holds: settled.leader.is_ok(),
        detail: match &settled.leader {
            Ok(id) => format!("replica {id} leads"),
            Err(e) => e.to_string(),
        },
    }];
    match &settled.all_tasks {
        Ok(tasks) => {
            let stale = lock(&load.shared.stale_accepted).clone();
            invariants.extend(checks::final_invariants(lines, tasks, &settled.still_live, &stale));
            if config.flows {
                invariants.extend(flows::invariants(&lock(&load.flows_sent), tasks));
            }
            if config.schedules {
                match &settled.final_schedules {
                    Ok(list) => invariants.extend(schedules::invariants(list, tasks)),
                    Err(e) => invariants.push(Invariant { name: "final schedules", holds: false, detail: e.clone() }),
                }
            }
        }
        Err(e) => invariants.push(Invariant { name: "final task list", holds: false, detail: e.clone() }),
    }
    let accepted = lock(&faults.nemesis.hostile_accepted).clone();
    invariants.push(Invariant {
        name: "nothing forged was accepted",
        holds: accepted.is_empty(),
        detail: if accepted.is_empty() {
            "every forged replica message and rogue report was refused".into()
        } else {
            accepted.iter().take(10).cloned().collect::<Vec<_>>().join("; ")
        },
    });
    invariants.push(Invariant {
        name: "no process exited by itself",
        holds: faults.replica_faults.is_empty(),
        detail: if faults.replica_faults.is_empty() { "none did".into() } else { faults.replica_faults.join("; ") },
    });
    invariants
}

trait IfEmpty {
    fn if_empty(self, other: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, other: &str) -> String {
        if self.is_empty() {
            other.to_string()
        } else {
            self
        }
    }
}

/// One JSON line of a record (an empty line if it cannot be written, which a record cannot).
fn json_line(v: &impl Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn write_lines(path: &Path, lines: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for line in lines {
        writeln!(w, "{line}")?;
    }
    w.flush()?;
    Ok(())
}

/// Records processes that exited without the nemesis killing them (a crash is a finding).
fn check_exits(procs: &Mutex<Procs>, found: &mut Vec<String>, timeline: &Timeline) {
    for (name, status) in lock(procs).reap_exited() {
        let text = format!("{name} exited by itself ({status})");
        say(&text);
        timeline.note("crash", &name, vec![status]);
        found.push(text);
    }
}

/// Stops the term samplers once the elections after the last fault have been seen (at least
/// `ELECTION_TAIL_MS` after the load, which is usually over by now), and waits for them.
async fn stop_samplers(
    shared: &Shared,
    load_end_ns: u64,
    stop: &AtomicBool,
    samplers: Vec<tokio::task::JoinHandle<()>>,
) {
    let until_ns = load_end_ns + (availability::ELECTION_TAIL_MS + terms::SAMPLE_EVERY_MS) * 1_000_000;
    let now_ns = shared.recorder.now_ns();
    if now_ns < until_ns {
        tokio::time::sleep(Duration::from_nanos(until_ns - now_ns)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for s in samplers {
        let _ = s.await;
    }
}

fn restart_down(procs: &Mutex<Procs>) {
    let mut p = lock(procs);
    for i in 0..p.n_replicas() {
        p.resume_replica(i);
        if p.replica_state(i) == procs::ProcState::Down {
            if let Err(e) = p.start_replica(i) {
                say(&format!("restart n{}: {e}", i + 1));
            }
        }
    }
    for k in 0..p.n_workers() {
        p.resume_worker(k);
        if p.worker_state(k) == procs::ProcState::Down {
            if let Err(e) = p.start_worker(k, WORKER_SLOTS) {
                say(&format!("restart w{}: {e}", k + 1));
            }
        }
    }
    if let Some(ns) = p.topology.netns() {
        if let Err(e) = ns.heal() {
            say(&format!("heal: {e}"));
        }
    }
}

/// The leader's index (0-based), if some replica knows it.
async fn current_leader(client: &Client) -> Option<usize> {
    let status = tokio::time::timeout(Duration::from_secs(2), client.cluster_status()).await.ok()?.ok()?;
    (status.has_leader && status.leader > 0).then(|| status.leader as usize - 1)
}

async fn wait_for_leader(client: &Client, wait: Duration) -> anyhow::Result<u64> {
    let started = Instant::now();
    loop {
        if let Some(i) = current_leader(client).await {
            return Ok(i as u64 + 1);
        }
        if started.elapsed() > wait {
            bail!("no leader within {} s", wait.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until no task is pending, assigned or running; returns those still live at `deadline`.
async fn wait_all_ended(client: &Client, deadline: Instant) -> Vec<u64> {
    loop {
        let mut live = Vec::new();
        let mut answered = true;
        for state in ["pending", "assigned", "running"] {
            let req = api::ListTasksRequest { state: state.into(), after_id: 0, limit: 100, stale: false };
            match client.list_page(req).await {
                Ok(page) => live.extend(page.tasks.iter().map(|t| t.id)),
                Err(_) => answered = false,
            }
        }
        if answered && live.is_empty() {
            return live;
        }
        if Instant::now() > deadline {
            return live;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every known id read back, linearizably, by a few virtual processes; recorded.
/// Stops early when the cluster stops answering (`FINAL_READ_FAILURES_MAX` failed reads in a row
/// on one reader) or after `FINAL_READS_S`: a dead cluster is reported, not waited on.
async fn final_reads(addrs: &[String], shared: &Arc<Shared>, ids: &[u64]) {
    const READERS: usize = 8;
    const FINAL_READ_FAILURES_MAX: u32 = 10;
    const FINAL_READS_S: u64 = 180;
    let deadline = Instant::now() + Duration::from_secs(FINAL_READS_S);
    let mut handles = Vec::new();
    for r in 0..READERS {
        let mine: Vec<u64> = ids.iter().copied().skip(r).step_by(READERS).collect();
        let Ok(client) = Client::new(addrs.to_vec(), Duration::from_secs(10)) else { continue };
        let shared = shared.clone();
        handles.push(tokio::spawn(async move {
            let mut failures_in_a_row = 0;
            for id in mine {
                if failures_in_a_row >= FINAL_READ_FAILURES_MAX || Instant::now() > deadline {
                    say("final reads stopped: the cluster does not answer");
                    return;
                }
                let process = shared.recorder.virtual_process();
                match clients::get(process, &client, &shared, id).await {
                    clients::GetOutcome::NoAnswer => failures_in_a_row += 1,
                    _ => failures_in_a_row = 0,
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}

/// Every task, linearizably, page by page.
async fn list_all(client: &Client) -> Result<Vec<api::Task>, String> {
    let mut tasks = Vec::new();
    let mut after = 0;
    loop {
        let req = api::ListTasksRequest { state: String::new(), after_id: after, limit: 1_000, stale: false };
        let page = client.list_page(req).await.map_err(|e| format!("list tasks: {e}"))?;
        tasks.extend(page.tasks);
        if page.next_after == 0 {
            return Ok(tasks);
        }
        after = page.next_after;
    }
}

/// A progress bar on a terminal, a line every 10 s otherwise.
struct Progress {
    bar: bool,
    total_s: u64,
    last_line: Instant,
}

impl Progress {
    fn new(bar: bool, total_s: u64) -> Progress {
        Progress { bar, total_s: total_s.max(1), last_line: Instant::now() }
    }

    fn line(&self, started: Instant, shared: &Shared, faults: usize) -> String {
        let s = started.elapsed().as_secs().min(self.total_s);
        format!(
            "{} {s}/{} s  ops ok {} fail {} info {}  faults {faults}",
            raftsched_client::progress_bar(s, self.total_s),
            self.total_s,
            shared.n_ok.load(Ordering::Relaxed),
            shared.n_fail.load(Ordering::Relaxed),
            shared.n_info.load(Ordering::Relaxed),
        )
    }

    fn tick(&mut self, started: Instant, shared: &Shared, faults: usize) {
        if self.bar {
            eprint!("\r{}", self.line(started, shared, faults));
        } else if self.last_line.elapsed() >= Duration::from_secs(10) {
            self.last_line = Instant::now();
            say(&self.line(started, shared, faults));
        }
    }

    fn finish(&mut self, started: Instant, shared: &Shared, faults: usize) {
        if self.bar {
            eprintln!("\r{}", self.line(started, shared, faults));
        } else {
            say(&self.line(started, shared, faults));
        }
    }
}
