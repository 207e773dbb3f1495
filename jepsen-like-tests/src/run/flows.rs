//! The `flows` workload: every `FLOW_PERIOD_MS` a client submits a flow through the faults: a
//! diamond of builtin sleeps whose two middle tasks share a concurrency key with limit 1, and whose
//! root fails now and then (so its dependents must be skipped). Before the cluster version allows
//! flows (an upgrade run) the submits are refused and tried again later.
//!
//! Checked on the final task list (every task, read linearizably once the faults stopped):
//! - every flow is all or nothing (its 4 tasks, or none);
//! - no task was assigned before each of its dependencies had ended, and under `success` only
//!   after they succeeded;
//! - a dependency that did not succeed skipped exactly the tasks that needed it (and theirs);
//! - never more than the key's limit of attempts held at once (assignment to end, in the state's
//!   time, from the recorded attempts).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftsched_api as api;
use raftsched_client::Client;

use super::checks::{invariant, Invariant};
use super::clients::Shared;

/// How often a flow is submitted.
const FLOW_PERIOD_MS: u64 = 400;
/// The concurrency key of the middle tasks, and its limit.
pub const CONCURRENCY_KEY: &str = "harness-flows";
const KEY_LIMIT: u32 = 1;
/// Tasks per flow.
const FLOW_TASKS: usize = 4;

/// The flow keys whose submit was sent (acknowledged or not).
pub type Sent = Arc<Mutex<Vec<String>>>;

fn flow(n: u64) -> api::SubmitFlowRequest {
    let sleep = |ms: &str| {
        let mut spec = raftsched_client::builtin("sleep", ms);
        spec.max_attempts = 5;
        spec
    };
    let root = if n % 5 == 4 {
        let mut spec = raftsched_client::builtin("fail", "3");
        spec.max_attempts = 1;
        spec
    } else {
        sleep("50")
    };
    let task = |name: &str, spec: api::TaskSpec, after: &[&str], keyed: bool| api::FlowTaskSpec {
        name: name.into(),
        spec: Some(spec),
        after: after.iter().map(|a| a.to_string()).collect(),
        after_policy: String::new(),
        concurrency_key: if keyed { CONCURRENCY_KEY.into() } else { String::new() },
        concurrency_limit: if keyed { KEY_LIMIT } else { 0 },
    };
    api::SubmitFlowRequest {
        key: format!("flow-{n}"),
        tasks: vec![
            task("root", root, &[], false),
            task("left", sleep("150"), &["root"], true),
            task("right", sleep("150"), &["root"], true),
            task("join", sleep("20"), &["left", "right"], false),
        ],
    }
}

/// Submits a flow every `FLOW_PERIOD_MS` until the run stops.
pub async fn run(client: Client, shared: Arc<Shared>, sent: Sent) {
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(FLOW_PERIOD_MS)).await;
        let request = flow(n);
        n += 1;
        sent.lock().unwrap_or_else(|p| p.into_inner()).push(request.key.clone());
        let _ = tokio::time::timeout(Duration::from_secs(5), client.submit_flow(request)).await;
    }
}

/// The checks above, over the final task list.
pub fn invariants(sent: &[String], tasks: &[api::Task]) -> Vec<Invariant> {
    let by_key: HashMap<&str, &api::Task> = tasks.iter().map(|t| (t.key.as_str(), t)).collect();
    let by_id: HashMap<u64, &api::Task> = tasks.iter().map(|t| (t.id, t)).collect();
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut created = 0;
    for key in sent {
        let present = ["root", "left", "right", "join"]
            .iter()
            .filter(|n| by_key.contains_key(format!("{key}/{n}").as_str()))
            .count();
        match present {
            0 => {}
            FLOW_TASKS => created += 1,
            n => problems.push(format!("flow {key} has {n} of its {FLOW_TASKS} tasks")),
        }
    }
    out.push(invariant(
        "every flow is all or nothing",
        problems,
        format!("{created} of {} flows sent were created whole", sent.len()),
    ));
    out.push(dependency_order(tasks, &by_id));
    out.push(key_limit(tasks));
    out
}

/// No task assigned before its dependencies ended (succeeded, under `success`); a task skipped
/// exactly when a dependency did not succeed.
fn dependency_order(tasks: &[api::Task], by_id: &HashMap<u64, &api::Task>) -> Invariant {
    let mut problems = Vec::new();
    let mut checked = 0;
    for t in tasks.iter().filter(|t| !t.after.is_empty()) {
        checked += 1;
        let deps: Vec<&api::Task> = t.after.iter().filter_map(|id| by_id.get(id).copied()).collect();
        let all_succeeded = deps.len() == t.after.len() && deps.iter().all(|d| d.state == "succeeded");
        let any_failed = deps.iter().any(|d| matches!(d.state.as_str(), "failed" | "cancelled" | "skipped"));
        match t.state.as_str() {
            "skipped" if !any_failed => problems.push(format!("task {} skipped though no dependency failed", t.id)),
            "skipped" => {}
            _ if any_failed && t.after_policy != "finished" => {
                problems.push(format!("task {} is {} though a dependency did not succeed", t.id, t.state))
            }
            _ => {}
        }
        let Some(first) = t.attempts.first() else { continue };
        if t.after_policy != "finished" && !all_succeeded {
            problems.push(format!("task {} ran though its dependencies did not all succeed", t.id));
        }
        for d in &deps {
            let ended = d.attempts.last().map_or(0, |a| a.ended_at_ms);
            if ended == 0 || first.assigned_at_ms < ended {
                problems.push(format!(
                    "task {} was assigned at {} before task {} ended ({ended})",
                    t.id, first.assigned_at_ms, d.id
                ));
            }
        }
    }
    invariant(
        "no task runs before its dependencies; failures skip exactly their dependents",
        problems,
        format!("{checked} tasks with dependencies"),
    )
}

/// Never more than a key's limit of its attempts held at once, in the state's time.
fn key_limit(tasks: &[api::Task]) -> Invariant {
    let mut events: BTreeMap<&str, Vec<(u64, i32)>> = BTreeMap::new();
    for t in tasks.iter().filter(|t| !t.concurrency_key.is_empty()) {
        for a in &t.attempts {
            let end = if a.ended_at_ms > 0 { a.ended_at_ms } else { u64::MAX };
            let e = events.entry(t.concurrency_key.as_str()).or_default();
            e.push((a.assigned_at_ms, 1));
            e.push((end, -1));
        }
    }
    let mut problems = Vec::new();
    let mut most = 0;
    for (key, mut e) in events {
        // An attempt ending at the instant another is assigned freed its slot first.
        e.sort_by_key(|(at, d)| (*at, *d));
        let mut held = 0i32;
        for (at, d) in e {
            held += d;
            most = most.max(held);
            if held > KEY_LIMIT as i32 {
                problems.push(format!("{held} attempts of key {key:?} held at {at} (limit {KEY_LIMIT})"));
            }
        }
    }
    invariant("never more attempts of a key held than its limit", problems, format!("at most {most} held at once"))
}
