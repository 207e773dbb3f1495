//! The checks after a run: the final reads and the scheduler's invariants over the final task
//! list, next to the linearizability verdict on the history.

use std::collections::{BTreeMap, HashMap};

use raftsched_api as api;
use serde::Serialize;

use super::recorder::Line;

/// One invariant's result.
#[derive(Debug, Clone, Serialize)]
pub struct Invariant {
    pub name: &'static str,
    pub holds: bool,
    /// What was checked, or the first problems found.
    pub detail: String,
}

pub(super) fn invariant(name: &'static str, problems: Vec<String>, checked: String) -> Invariant {
    let holds = problems.is_empty();
    let detail = if holds {
        checked
    } else {
        let n = problems.len();
        let mut shown: Vec<String> = problems.into_iter().take(5).collect();
        if n > shown.len() {
            shown.push(format!("... {} more", n - shown.len()));
        }
        shown.join("; ")
    };
    Invariant { name, holds, detail }
}

/// The ok submits in the history: key → ids returned (one, if all is well).
pub fn acked_submits(lines: &[Line]) -> BTreeMap<String, Vec<u64>> {
    // Pair each process's invoke with its completion to find the key of each ok.
    let mut open: HashMap<u64, Option<String>> = HashMap::new();
    let mut acked: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.f == "submit") {
        match l.kind {
            "invoke" => {
                open.insert(l.process, l.key.clone());
            }
            "ok" => {
                if let (Some(Some(key)), Some(id)) =
                    (open.remove(&l.process), l.value.get("id").and_then(|v| v.as_u64()))
                {
                    let ids = acked.entry(key).or_default();
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
            _ => {
                open.remove(&l.process);
            }
        }
    }
    acked
}

/// Checks the final task list (every task, read linearizably after the faults stopped).
pub fn final_invariants(
    lines: &[Line],
    tasks: &[api::Task],
    still_live: &[u64],
    stale_accepted: &[(u64, u64, u64)],
) -> Vec<Invariant> {
    let acked = acked_submits(lines);
    let stale = stale_accepted
        .iter()
        .map(|(id, stale, newer)| {
            format!("task {id}: a report with token {stale} was accepted after token {newer} was assigned")
        })
        .collect();
    let live = still_live.iter().map(|id| format!("task {id} still live")).collect();
    vec![
        acknowledged_survive(&acked, tasks),
        one_task_per_key(&acked, tasks),
        one_result_per_task(tasks),
        invariant("no completion from a stale fencing token", stale, "every stale report was refused".into()),
        invariant("every task ends once faults stop", live, "no task left pending, assigned or running".into()),
    ]
}

/// Every acknowledged submit's task is there, under its key.
fn acknowledged_survive(acked: &BTreeMap<String, Vec<u64>>, tasks: &[api::Task]) -> Invariant {
    let by_id: HashMap<u64, &api::Task> = tasks.iter().map(|t| (t.id, t)).collect();
    let mut problems = Vec::new();
    for (key, ids) in acked {
        for id in ids {
            match by_id.get(id) {
                None => problems.push(format!("acknowledged task {id} (key {key}) is gone")),
                Some(t) if &t.key != key => {
                    problems.push(format!("acknowledged task {id} has key {:?}, not {key:?}", t.key))
                }
                Some(_) => {}
            }
        }
    }
    let detail = format!("{} acknowledged tasks all present", acked.values().map(Vec::len).sum::<usize>());
    invariant("acknowledged submits survive", problems, detail)
}

/// A key was acknowledged with one id, and names one task.
fn one_task_per_key(acked: &BTreeMap<String, Vec<u64>>, tasks: &[api::Task]) -> Invariant {
    let mut problems = Vec::new();
    for (key, ids) in acked {
        if ids.len() > 1 {
            problems.push(format!("key {key} was acknowledged with ids {ids:?}"));
        }
    }
    let mut keys: HashMap<&str, u64> = HashMap::new();
    for t in tasks {
        if let Some(other) = keys.insert(&t.key, t.id) {
            problems.push(format!("tasks {other} and {} share key {:?}", t.id, t.key));
        }
    }
    invariant("one task per idempotency key", problems, format!("{} tasks, {} keys", tasks.len(), keys.len()))
}

/// At most one succeeded attempt per task, its last, and a succeeded task's last attempt succeeded.
fn one_result_per_task(tasks: &[api::Task]) -> Invariant {
    let mut problems = Vec::new();
    for t in tasks {
        let results: Vec<usize> =
            t.attempts.iter().enumerate().filter(|(_, a)| a.outcome == "succeeded").map(|(i, _)| i).collect();
        if results.len() > 1 {
            problems.push(format!("task {} has {} succeeded attempts", t.id, results.len()));
        }
        if t.state == "succeeded" && t.attempts.last().is_none_or(|a| a.outcome != "succeeded") {
            problems.push(format!("task {} succeeded but its last attempt did not", t.id));
        }
        if let Some(&i) = results.first() {
            if i + 1 != t.attempts.len() {
                problems.push(format!("task {}: attempt {} succeeded but a later attempt exists", t.id, i + 1));
            }
        }
    }
    invariant("no task has two recorded results", problems, format!("{} tasks' attempts", tasks.len()))
}
