//! The workload: concurrent clients submitting (with idempotency keys), reading and cancelling
//! tasks, each call recorded with its outcome; and the zombie reporter, which replays reports
//! with fencing tokens it has seen superseded, as a worker that was paused through its lease
//! would.
//!
//! Outcomes follow Jepsen: `ok` took effect; `fail` certainly did not (a refusal decided by the
//! state machine or at the edge); `info` may or may not have (a time-out, a lost connection).
//! Every call is a single attempt ([`Client::single_attempt`]), so what is recorded is what
//! happened on the wire.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftsched_api as api;
use raftsched_client::{Client, ClientError};
use serde_json::{json, Value};

use super::recorder::{Recorder, VIRTUAL_PROCESS_BASE};
use super::rng::Rng;

/// One client call waits at most this long before it is recorded as `info`.
pub const CALL_TIMEOUT_MS: u64 = 3_000;
/// Attempts per task: high, so that a task whose workers keep dying still ends succeeded (the
/// workload's expectation) rather than failed for running out of attempts.
pub const TASK_ATTEMPTS: u32 = raftsched_state::limits::ATTEMPTS_MAX;
/// Ids a client picks from for gets and cancels: the most recent ones.
const RECENT_IDS: usize = 200;
/// ... and, half the time, the very newest.
const NEWEST_IDS: usize = 8;

/// Tasks the workload knows about.
#[derive(Default)]
pub struct Known {
    /// (key, spec text, id once an ok submit returned it)
    pub tasks: Vec<(String, String, Option<u64>)>,
    pub ids: Vec<u64>,
}

/// State shared by the clients, the zombie and the final checks.
pub struct Shared {
    pub recorder: Recorder,
    pub known: Mutex<Known>,
    pub stop: AtomicBool,
    pub n_ok: AtomicU64,
    pub n_fail: AtomicU64,
    pub n_info: AtomicU64,
    /// Zombie reports the cluster accepted: (task id, stale token, newer token seen first).
    pub stale_accepted: Mutex<Vec<(u64, u64, u64)>>,
    pub n_zombie: AtomicU64,
}

impl Shared {
    pub fn new(recorder: Recorder) -> Shared {
        Shared {
            recorder,
            known: Mutex::new(Known::default()),
            stop: AtomicBool::new(false),
            n_ok: AtomicU64::new(0),
            n_fail: AtomicU64::new(0),
            n_info: AtomicU64::new(0),
            stale_accepted: Mutex::new(Vec::new()),
            n_zombie: AtomicU64::new(0),
        }
    }

    fn count(&self, kind: &str) {
        match kind {
            "ok" => &self.n_ok,
            "fail" => &self.n_fail,
            _ => &self.n_info,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

/// The gRPC status code as the history's error string (`already_exists`, `not_found`, ...).
pub fn code_name(code: tonic::Code) -> String {
    let debug = format!("{code:?}");
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Classifies a failed call: `("fail", error)` when it certainly did not take effect, else
/// `("info", why)`. `write` is false for reads, whose failures never take effect.
pub fn classify(err: &ClientError, write: bool) -> (&'static str, String) {
    match err {
        ClientError::Refused(status) => {
            let code = status.code();
            let definite = matches!(
                code,
                tonic::Code::AlreadyExists
                    | tonic::Code::NotFound
                    | tonic::Code::FailedPrecondition
                    | tonic::Code::InvalidArgument
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::OutOfRange
            );
            if definite || !write {
                ("fail", code_name(code))
            } else {
                ("info", code_name(code))
            }
        }
        other if write => ("info", other.to_string()),
        other => ("fail", format!("unavailable: {other}")),
    }
}

/// The `get` result as the scheduler model reads it.
pub fn task_value(t: &api::Task) -> Value {
    let ended = matches!(t.state.as_str(), "succeeded" | "failed");
    json!({"state": t.state, "result_exit_code": if ended && t.has_result { json!(t.exit_code) } else { Value::Null }})
}

/// The spec the workload submits: a builtin sleep, so the expected exit code is 0.
pub fn spec_of(text: &str) -> api::TaskSpec {
    let ms = text.strip_prefix("sleep:").unwrap_or("0");
    let mut spec = raftsched_client::builtin("sleep", ms);
    spec.max_attempts = TASK_ATTEMPTS;
    spec
}

async fn timed<T>(fut: impl std::future::Future<Output = Result<T, ClientError>>) -> Result<T, ClientError> {
    match tokio::time::timeout(Duration::from_millis(CALL_TIMEOUT_MS), fut).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Unavailable { timeout_ms: CALL_TIMEOUT_MS as u128, last: "timed out".into() }),
    }
}

/// One client: `process` is its number in the history, `client` talks to one replica.
pub async fn run_client(process: u64, client: Client, shared: Arc<Shared>, mut rng: Rng, think_ms: (u64, u64)) {
    assert!(process < VIRTUAL_PROCESS_BASE);
    let mut seq = 0u64;
    let rec = &shared.recorder;
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(rng.between(think_ms.0, think_ms.1))).await;
        let roll = rng.below(100);
        let (recent_task, recent_id) = {
            let known = shared.known.lock().unwrap_or_else(|p| p.into_inner());
            let t = (!known.tasks.is_empty()).then(|| {
                let from = known.tasks.len().saturating_sub(RECENT_IDS);
                known.tasks[from + rng.below((known.tasks.len() - from) as u64) as usize].clone()
            });
            let id = (!known.ids.is_empty()).then(|| {
                // Half the time one of the newest: reading what another client just wrote is
                // what exposes a replica that serves old state.
                let window = if rng.chance(50) { NEWEST_IDS } else { RECENT_IDS };
                let from = known.ids.len().saturating_sub(window);
                known.ids[from + rng.below((known.ids.len() - from) as u64) as usize]
            });
            (t, id)
        };
        let known = match (recent_task, recent_id) {
            (Some(task), Some(id)) if roll >= 45 => Some((task, id)),
            _ => None,
        };
        let Some(((key, spec, _), id)) = known else {
            // A new task. Most are instant; some run long enough to be caught by faults.
            seq += 1;
            let key = format!("c{process}-{seq}");
            let ms = if rng.chance(25) { rng.between(100, 2_000) } else { 0 };
            let spec = format!("sleep:{ms}");
            shared.known.lock().unwrap_or_else(|p| p.into_inner()).tasks.push((key.clone(), spec.clone(), None));
            // The worker's completion, which the recorder cannot see: an operation by its own
            // process that may take effect any time after this submit is invoked, or never.
            rec.record(rec.virtual_process(), "invoke", "complete", Some(&key), json!({"exit_code": 0}));
            submit(process, &client, &shared, &key, &spec).await;
            continue;
        };
        if roll < 55 {
            // The same submit again: must return the same id.
            submit(process, &client, &shared, &key, &spec).await;
        } else if roll < 60 {
            // The same key with another spec: must be refused.
            submit(process, &client, &shared, &key, "sleep:7").await;
        } else if roll < 90 {
            get(process, &client, &shared, id).await;
        } else {
            rec.record(process, "invoke", "cancel", None, json!({"id": id}));
            let (kind, value) = match timed(client.cancel(id)).await {
                Ok(_) => ("ok", Value::Null),
                Err(e) => {
                    let (kind, why) = classify(&e, true);
                    (kind, json!({"error": why}))
                }
            };
            shared.count(kind);
            rec.record(process, kind, "cancel", None, value);
        }
    }
}

async fn submit(process: u64, client: &Client, shared: &Shared, key: &str, spec: &str) {
    let rec = &shared.recorder;
    rec.record(process, "invoke", "submit", Some(key), json!({"spec": spec}));
    let (kind, value) = match timed(client.submit(key, spec_of(spec))).await {
        Ok(reply) => {
            let mut known = shared.known.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = known.tasks.iter_mut().rev().find(|t| t.0 == key && t.2.is_none() && t.1 == spec) {
                t.2 = Some(reply.id);
                known.ids.push(reply.id);
            }
            ("ok", json!({"id": reply.id}))
        }
        Err(e) => {
            let (kind, why) = classify(&e, true);
            (kind, json!({"error": why}))
        }
    };
    shared.count(kind);
    rec.record(process, kind, "submit", Some(key), value);
}

/// What a recorded get found.
pub enum GetOutcome {
    Found(Box<api::Task>),
    NotFound,
    /// An error or a time-out: no answer about the task.
    NoAnswer,
}

/// A linearizable get, recorded.
pub async fn get(process: u64, client: &Client, shared: &Shared, id: u64) -> GetOutcome {
    let rec = &shared.recorder;
    rec.record(process, "invoke", "get", None, json!({"id": id}));
    let (kind, value, outcome) = match timed(client.get(id, false)).await {
        Ok(task) => ("ok", task_value(&task), GetOutcome::Found(Box::new(task))),
        Err(e) => {
            let (kind, why) = classify(&e, false);
            let outcome = if e.code() == tonic::Code::NotFound { GetOutcome::NotFound } else { GetOutcome::NoAnswer };
            (kind, json!({"error": why}), outcome)
        }
    };
    shared.count(kind);
    rec.record(process, kind, "get", None, value);
    outcome
}

/// The zombie: every `period`, lists the held tasks and, for each one that has an earlier
/// attempt (it was taken from a worker and given to another), reports it finished under the
/// superseded token once. The cluster must refuse every such report.
pub async fn run_zombie(client: Client, shared: Arc<Shared>, period: Duration) {
    let mut done: std::collections::HashSet<u64> = std::collections::HashSet::new();
    let rec = &shared.recorder;
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(period).await;
        for state in ["assigned", "running"] {
            let req = api::ListTasksRequest { state: state.into(), after_id: 0, limit: 500, stale: true };
            let Ok(Ok(page)) =
                tokio::time::timeout(Duration::from_millis(CALL_TIMEOUT_MS), client.list_page(req)).await
            else {
                continue;
            };
            for task in page.tasks {
                if task.attempts.len() < 2 || task.token == 0 || done.contains(&task.id) {
                    continue;
                }
                let previous = &task.attempts[task.attempts.len() - 2];
                let (stale, zombie_worker) = (previous.token, previous.worker_id.clone());
                if stale >= task.token {
                    continue;
                }
                done.insert(task.id);
                let process = rec.virtual_process();
                let input = json!({"id": task.id, "exit_code": 0, "token": stale, "stale": true});
                rec.record(process, "invoke", "complete", None, input);
                shared.n_zombie.fetch_add(1, Ordering::Relaxed);
                let report = api::ReportRequest {
                    task_id: task.id,
                    token: stale,
                    finished: true,
                    exit_code: 0,
                    output_tail: "zombie".into(),
                    timed_out: false,
                    // The previous attempt's worker (its instance unknown to this client): refused
                    // as not the holder, or for its stale token.
                    worker_id: zombie_worker,
                    instance: 0,
                    ..Default::default()
                };
                match timed(client.report(report)).await {
                    Ok(_) => {
                        shared
                            .stale_accepted
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((task.id, stale, task.token));
                        rec.record(process, "ok", "complete", None, Value::Null);
                    }
                    // A refused stale report says nothing about the task's state.
                    Err(ClientError::Refused(s))
                        if matches!(s.code(), tonic::Code::FailedPrecondition | tonic::Code::PermissionDenied) =>
                    {
                        rec.record(process, "fail", "complete", None, json!({"error": "stale_token"}));
                    }
                    Err(e) => {
                        let (kind, why) = classify(&e, true);
                        rec.record(process, kind, "complete", None, json!({"error": why}));
                    }
                }
            }
        }
    }
}
