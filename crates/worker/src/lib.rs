//! A raftsched worker process.
//!
//! Delivery design (pull): the worker long-polls `Worker.Assignments` on any replica for the set of
//! tasks it holds, and reports `Started` (for attempts still running after 50 ms) and `Finished`
//! with each attempt's fencing token. Why pull:
//! the worker needs no inbound port, works through any replica (a leader change costs it nothing),
//! and the replicated state stays the single source of truth: whatever the worker runs that is not
//! in its held set is killed, whatever is in it and not running is started.
//!
//! Self-fencing: every acknowledged heartbeat renews a lease of `lease_ms` counted from when the
//! heartbeat was *sent*. When the lease runs out the worker kills every attempt and drops their
//! results. The leader declares the worker down (and reassigns its tasks) only after
//! `heartbeat_timeout_ms` of silence, which is longer than the lease by a drift margin, so a task
//! never has two live attempts as long as clocks drift in rate by less than that margin.
//!
//! The replicas may ask a large fleet to beat less often (`server --heartbeats-per-second-max`):
//! each answer carries the interval to keep and the timeout that beat is held to; the worker then
//! stretches its lease by the same factor as its interval, still within two thirds of that timeout
//! (`Terms`).

pub mod exec;
pub mod output;
pub mod output_server;
mod reporter;
mod stats;

pub use stats::Stats;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftsched_client::{api, Client, ClientError};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::Code;

use crate::exec::Ended;

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub id: String,
    /// Address recorded in the registry: where replicas fetch the output this worker keeps
    /// (`output_server.rs`; the pull design needs no other inbound port).
    pub addr: String,
    pub cluster: Vec<String>,
    pub slots: u32,
    pub labels: BTreeMap<String, String>,
    pub heartbeat_interval_ms: u64,
    pub lease_ms: u64,
    /// How long to keep trying to register while another live process holds the id.
    pub register_timeout_ms: u64,
    /// TLS and bearer token for every call.
    pub dialer: raftsched_client::Dialer,
    /// What the worker counts, for its `/metrics` (see [`Stats`]).
    pub stats: Arc<Stats>,
    /// Where each attempt's whole output is kept (none: only the tails reported).
    pub output: Option<Arc<output::OutputStore>>,
}

pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 500;
pub const LEASE_MS_DEFAULT: u64 = 2_000;
pub const REGISTER_TIMEOUT_MS_DEFAULT: u64 = 15_000;
/// Long-poll length of one assignments call.
const POLL_WAIT_MS: u32 = 5_000;
/// How often the lease is checked.
const LEASE_CHECK_MS: u64 = 20;
/// An attempt still running after this long is reported `Started`; one that ends sooner is
/// reported only once, `Finished` (which the state machine accepts from `assigned` too). A task
/// that ends at once then costs one report, one RPC and one Raft write instead of two.
const STARTED_REPORT_DELAY_MS: u64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker id {id:?} is held by another live process (tried for {waited_ms} ms)")]
    IdInUse { id: String, waited_ms: u64 },
    #[error("registration refused: {0}")]
    Refused(String),
    #[error("no replica answered: {0}")]
    Unavailable(String),
}

/// How often to beat and how long an acknowledged beat's lease lasts, under what a replica told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Terms {
    interval_ms: u64,
    lease_ms: u64,
}

impl Terms {
    /// From a replica's answer: `told_interval_ms` (0: none told, keep the configured one) and the
    /// leader's `timeout_ms`. The lease grows with the interval, in the configured proportion (so a
    /// lost beat or two never fences a live worker), and ends before the leader's timeout with a
    /// third of it as margin for clock-rate drift and delays.
    fn new(config: &WorkerConfig, told_interval_ms: u64, timeout_ms: u64) -> Terms {
        let own_ms = config.heartbeat_interval_ms.max(1);
        let interval_ms = own_ms.max(told_interval_ms);
        let stretched_ms = config.lease_ms.saturating_mul(interval_ms) / own_ms;
        Terms { interval_ms, lease_ms: stretched_ms.min(timeout_ms.saturating_mul(2) / 3).max(1) }
    }
}

/// The lease and registration, shared by the heartbeat task and the main loop.
struct Lease {
    deadline: Instant,
    /// The cluster says this registration is over (declared down or superseded).
    lost: bool,
}

struct Running {
    token: u64,
    /// Distinguishes this spawn from an earlier one of the same (task, token), whose late
    /// completion must not remove this one.
    spawn_id: u64,
    kill: watch::Sender<bool>,
}

/// Runs the worker until `shutdown` turns true.
pub async fn run(config: WorkerConfig, mut shutdown: watch::Receiver<bool>) -> Result<(), WorkerError> {
    let instance: u64 = rand::random();
    let client = Arc::new(
        Client::with_dialer(config.cluster.clone(), Duration::from_secs(10), &config.dialer)
            .map_err(|e| WorkerError::Refused(e.to_string()))?,
    );
    let reporter = reporter::Reporter::start(client.clone(), &config.id, instance, config.stats.clone());
    loop {
        let (epoch, terms) = register(&client, &config, instance).await?;
        Stats::add(&config.stats.registrations_total, 1);
        config.stats.epoch.store(epoch, std::sync::atomic::Ordering::Relaxed);
        let lease = Arc::new(Mutex::new(Lease {
            deadline: Instant::now() + Duration::from_millis(terms.lease_ms),
            lost: false,
        }));
        tracing::info!(id = %config.id, epoch, lease_ms = terms.lease_ms, interval_ms = terms.interval_ms, "worker registered");
        let heartbeats = tokio::spawn(heartbeat_loop(config.clone(), instance, terms, lease.clone()));
        let stopped = serve(&client, &reporter, &config, epoch, &lease, &mut shutdown).await;
        heartbeats.abort();
        if stopped {
            return Ok(());
        }
        tracing::warn!(id = %config.id, "registration lost; registering again");
    }
}

async fn register(client: &Client, config: &WorkerConfig, instance: u64) -> Result<(u64, Terms), WorkerError> {
    let started = Instant::now();
    let req = api::RegisterWorkerRequest {
        id: config.id.clone(),
        instance,
        addr: config.addr.clone(),
        slots: config.slots,
        labels: config.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    loop {
        match client.register_worker(req.clone()).await {
            Ok(reply) => {
                return Ok((reply.epoch, Terms::new(config, reply.heartbeat_interval_ms, reply.heartbeat_timeout_ms)));
            }
            Err(ClientError::Refused(s)) if s.code() == Code::AlreadyExists => {
                let waited_ms = started.elapsed().as_millis() as u64;
                if waited_ms >= config.register_timeout_ms {
                    return Err(WorkerError::IdInUse { id: config.id.clone(), waited_ms });
                }
                tracing::warn!(id = %config.id, "id held by a live process; waiting for it to stop or expire");
                tokio::time::sleep(Duration::from_millis(config.heartbeat_interval_ms)).await;
            }
            Err(ClientError::Refused(s)) => return Err(WorkerError::Refused(s.message().to_string())),
            Err(e) => return Err(WorkerError::Unavailable(e.to_string())),
        }
    }
}

async fn heartbeat_loop(config: WorkerConfig, instance: u64, mut terms: Terms, lease: Arc<Mutex<Lease>>) {
    // A heartbeat that takes longer than the lease is worthless: bound each call by it (the
    // registration's lease, the shortest this registration is told: the timeout only grows).
    let call_timeout = Duration::from_millis(terms.lease_ms);
    let Ok(client) = Client::with_dialer(config.cluster.clone(), call_timeout, &config.dialer) else {
        return;
    };
    let mut next = Instant::now();
    loop {
        tokio::time::sleep_until(next).await;
        let sent = Instant::now();
        next = sent + Duration::from_millis(terms.interval_ms);
        match client.heartbeat(&config.id, instance).await {
            Ok(reply) => {
                // A follower, or a build that does not scale, tells no timeout: the last terms stand.
                if reply.heartbeat_timeout_ms > 0 {
                    terms = Terms::new(&config, reply.heartbeat_interval_ms, reply.heartbeat_timeout_ms);
                }
                let mut l = lease.lock().unwrap_or_else(|p| p.into_inner());
                l.deadline = l.deadline.max(sent + Duration::from_millis(terms.lease_ms));
                Stats::add(&config.stats.lease_renewals_total, 1);
            }
            Err(ClientError::Refused(s)) if matches!(s.code(), Code::FailedPrecondition | Code::NotFound) => {
                lease.lock().unwrap_or_else(|p| p.into_inner()).lost = true;
                return;
            }
            Err(e) => {
                Stats::add(&config.stats.heartbeats_failed_total, 1);
                tracing::warn!(error = %e, "heartbeat failed");
            }
        }
    }
}

/// Serves one registration. Returns true on shutdown, false when the registration was lost.
async fn serve(
    client: &Arc<Client>,
    reporter: &reporter::Reporter,
    config: &WorkerConfig,
    epoch: u64,
    lease: &Arc<Mutex<Lease>>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut running: HashMap<u64, Running> = HashMap::new();
    // (task id, spawn id, whether an acknowledged report already changed what the cluster says
    // this worker holds)
    let (done_tx, mut done_rx) = mpsc::channel::<(u64, u64, bool)>(1024);
    let mut n_spawned: u64 = 0;
    let mut poll: Option<tokio::task::JoinHandle<Result<api::AssignmentsResponse, ClientError>>> = None;
    let mut lease_check = tokio::time::interval(Duration::from_millis(LEASE_CHECK_MS));
    let stats = &config.stats;
    loop {
        stats.running.store(running.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if poll.is_none() {
            let req = api::AssignmentsRequest {
                id: config.id.clone(),
                epoch,
                known: running.iter().map(|(id, r)| api::HeldTask { task_id: *id, token: r.token }).collect(),
                wait_ms: POLL_WAIT_MS,
            };
            let client = client.clone();
            poll = Some(tokio::spawn(async move { client.assignments(req).await }));
        }
        tokio::select! {
            _ = shutdown.changed() => {
                kill_all(&mut running);
                if let Some(p) = poll.take() { p.abort(); }
                return true;
            }
            _ = lease_check.tick() => {
                if check_lease(lease, &mut running, stats) {
                    if let Some(p) = poll.take() { p.abort(); }
                    return false;
                }
            }
            Some((task_id, spawn_id, reported)) = done_rx.recv() => {
                if running.get(&task_id).is_some_and(|r| r.spawn_id == spawn_id) {
                    running.remove(&task_id);
                    // An acknowledged `Finished` changed the held set, which answers the poll in
                    // flight by itself. Otherwise tell the cluster at once what we hold now.
                    if !reported {
                        if let Some(p) = poll.take() { p.abort(); }
                    }
                }
            }
            result = async { poll.as_mut().expect("poll set above").await } => {
                poll = None;
                let reply = match result {
                    Ok(Ok(reply)) => reply,
                    Ok(Err(e)) => { tracing::warn!(error = %e, "assignments poll failed"); continue; }
                    Err(_) => continue,
                };
                if !reply.registered {
                    kill_all(&mut running);
                    lease.lock().unwrap_or_else(|p| p.into_inner()).lost = true;
                    return false;
                }
                let starts = Starts { reporter, config, lease, done: &done_tx };
                follow_assignments(reply.assignments, &mut running, &mut n_spawned, &starts);
            }
        }
    }
}

fn kill_all(running: &mut HashMap<u64, Running>) {
    for (_, r) in running.drain() {
        r.kill.send_replace(true);
    }
}

/// Kills every attempt once the lease has run out or the registration is lost (their results
/// are dropped: another worker may hold the tasks by now). Returns whether the registration is
/// lost.
fn check_lease(lease: &Mutex<Lease>, running: &mut HashMap<u64, Running>, stats: &Stats) -> bool {
    let (expired, lost) = {
        let l = lease.lock().unwrap_or_else(|p| p.into_inner());
        (Instant::now() >= l.deadline, l.lost)
    };
    if expired || lost {
        if !running.is_empty() {
            tracing::warn!(n = running.len(), expired, lost, "lease gone: killing every attempt and dropping results");
            Stats::add(&stats.leases_lost_total, 1);
        }
        kill_all(running);
    }
    lost
}

/// What starting an attempt needs from the registration being served.
struct Starts<'a> {
    reporter: &'a reporter::Reporter,
    config: &'a WorkerConfig,
    lease: &'a Arc<Mutex<Lease>>,
    done: &'a mpsc::Sender<(u64, u64, bool)>,
}

/// Makes what runs match what the cluster says this worker holds: kills what it runs and no
/// longer holds (cancelled, reassigned), starts what it holds and does not run, while the lease
/// is valid and a slot is free.
fn follow_assignments(
    assignments: Vec<api::WorkAssignment>,
    running: &mut HashMap<u64, Running>,
    n_spawned: &mut u64,
    starts: &Starts<'_>,
) {
    let lease_valid = Instant::now() < starts.lease.lock().unwrap_or_else(|p| p.into_inner()).deadline;
    let wanted: HashMap<u64, u64> = assignments.iter().map(|a| (a.task_id, a.token)).collect();
    running.retain(|id, r| {
        let keep = wanted.get(id) == Some(&r.token);
        if !keep {
            r.kill.send_replace(true);
        }
        keep
    });
    for a in assignments {
        if running.contains_key(&a.task_id) || !lease_valid || running.len() >= starts.config.slots as usize {
            continue;
        }
        let (kill_tx, kill_rx) = watch::channel(false);
        *n_spawned += 1;
        Stats::add(&starts.config.stats.attempts_started_total, 1);
        running.insert(a.task_id, Running { token: a.token, spawn_id: *n_spawned, kill: kill_tx });
        let kept = (starts.config.output.as_ref())
            .map(|store| Arc::new(store.begin(output::AttemptKey { task_id: a.task_id, attempt: a.attempt })));
        let (reporter, lease, done) = (starts.reporter.clone(), starts.lease.clone(), starts.done.clone());
        tokio::spawn(attempt(reporter, a, *n_spawned, kill_rx, lease, done, kept));
    }
}

async fn attempt(
    reporter: reporter::Reporter,
    a: api::WorkAssignment,
    spawn_id: u64,
    kill: watch::Receiver<bool>,
    lease: Arc<Mutex<Lease>>,
    done: mpsc::Sender<(u64, u64, bool)>,
    kept: Option<Arc<output::AttemptOutput>>,
) {
    let (task_id, token) = (a.task_id, a.token);
    let spec = a.spec.unwrap_or_default();
    let (refused_tx, refused_rx) = watch::channel(false);
    let lease_left: exec::LeaseLeft = Arc::new(move || {
        let l = lease.lock().unwrap_or_else(|p| p.into_inner());
        if l.lost {
            Duration::ZERO
        } else {
            l.deadline.saturating_duration_since(Instant::now())
        }
    });
    let run = exec::run(&spec, merge_kills(kill.clone(), refused_rx), lease_left.clone(), kept);
    tokio::pin!(run);
    let started_report = tokio::time::sleep(Duration::from_millis(STARTED_REPORT_DELAY_MS));
    let ended = tokio::select! {
        ended = &mut run => ended,
        _ = started_report => {
            let req = api::ReportRequest { task_id, token, finished: false, ..Default::default() };
            let report = async {
                if !reporter.report(req).await {
                    // Not ours any more (cancelled, reassigned), or no replica took the report.
                    refused_tx.send_replace(true);
                }
            };
            // The attempt keeps being driven while the report is out (it may be retried for a
            // long time with the cluster out of reach): a kill (cancel, lease lost) must reach the
            // process at once, or it could outlive the lease and overlap its reassigned attempt.
            let (ended, ()) = tokio::join!(&mut run, report);
            ended
        }
    };
    let lease_valid = !lease_left().is_zero();
    let reported = match ended {
        Ended::Exited { exit_code, output, timed_out } if lease_valid && !*kill.borrow() && !*refused_tx.borrow() => {
            let req = api::ReportRequest {
                task_id,
                token,
                finished: true,
                exit_code,
                output_tail: exec::joined_tail(&output),
                timed_out,
                streams_apart: true,
                stdout_tail: output.stdout_tail,
                stderr_tail: output.stderr_tail,
                stdout_bytes: output.stdout_bytes,
                stderr_bytes: output.stderr_bytes,
                ..Default::default()
            };
            reporter.report(req).await
        }
        _ => {
            tracing::info!(task_id, token, "attempt killed; result dropped");
            false
        }
    };
    let _ = done.send((task_id, spawn_id, reported)).await;
}

/// A kill signal that fires when either `a` or `b` does.
fn merge_kills(mut a: watch::Receiver<bool>, mut b: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(*a.borrow() || *b.borrow());
    tokio::spawn(async move {
        loop {
            if *a.borrow_and_update() || *b.borrow_and_update() {
                tx.send_replace(true);
                return;
            }
            tokio::select! {
                r = a.changed() => if r.is_err() { return },
                r = b.changed() => if r.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(heartbeat_interval_ms: u64, lease_ms: u64) -> WorkerConfig {
        WorkerConfig {
            id: "w".into(),
            addr: String::new(),
            cluster: vec![],
            slots: 1,
            labels: BTreeMap::new(),
            heartbeat_interval_ms,
            lease_ms,
            register_timeout_ms: 1,
            dialer: Default::default(),
            stats: Default::default(),
            output: None,
        }
    }

    #[test]
    fn the_lease_stretches_with_the_interval_and_stays_inside_the_timeout() {
        let defaults = config(HEARTBEAT_INTERVAL_MS_DEFAULT, LEASE_MS_DEFAULT);
        // Nothing told (a build that does not scale): the configured interval, the usual lease.
        assert_eq!(Terms::new(&defaults, 0, 3_000), Terms { interval_ms: 500, lease_ms: 2_000 });
        assert_eq!(Terms::new(&defaults, 0, 1_500), Terms { interval_ms: 500, lease_ms: 1_000 });
        // Told to beat 10x less often, with a 10x timeout: the lease grows as much.
        assert_eq!(Terms::new(&defaults, 5_000, 30_000), Terms { interval_ms: 5_000, lease_ms: 20_000 });
        // A longer own interval than told is kept; the lease never passes 2/3 of the timeout.
        assert_eq!(Terms::new(&config(2_000, 8_000), 1_000, 6_000), Terms { interval_ms: 2_000, lease_ms: 4_000 });
        for (told, timeout) in [(0, 100), (500, 3_000), (100_000, 600_000), (u64::MAX / 4, u64::MAX / 4)] {
            let t = Terms::new(&defaults, told, timeout);
            assert!(t.lease_ms >= 1 && t.lease_ms <= (timeout * 2 / 3).max(1), "{t:?} under timeout {timeout}");
        }
    }
}
