//! Flows (`raftsched flow submit FILE`): a graph of named tasks, created by one command in one log
//! entry under one idempotency key, all or nothing. Each task's idempotency key is the flow's key,
//! a slash and its name (`flow_task_key`), so a flow is read back by key prefix, and its edges are
//! ordinary dependencies (`after.rs`).
//!
//! Checked in `apply` before anything is created: names unique and well formed, every `after`
//! naming a task of the flow, no cycle, at most `TASKS_PER_FLOW_MAX` tasks, each spec valid, and
//! room under every state limit for the whole flow. Proposed only from cluster version
//! `FLOW_VERSION` (format 8).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::after::AfterPolicy;
use crate::concurrency::Concurrency;
use crate::limits;
use crate::spec::{validate_key, TaskSpec};

/// The cluster version from which `Op::SubmitFlow` is proposed: format 8.
pub const FLOW_VERSION: u32 = 8;

/// One task of a flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowTask {
    pub name: String,
    pub spec: TaskSpec,
    /// Names of tasks of the same flow it runs after.
    pub after: Vec<String>,
    pub policy: AfterPolicy,
    pub concurrency: Option<Concurrency>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowSpec {
    pub tasks: Vec<FlowTask>,
}

/// The idempotency key of task `name` of flow `flow_key`.
pub fn flow_task_key(flow_key: &str, name: &str) -> String {
    format!("{flow_key}/{name}")
}

/// The flow's tasks in an order in which each comes after the tasks it names (Kahn's algorithm,
/// ties by position), or why the flow is refused.
pub fn check_flow(flow_key: &str, flow: &FlowSpec) -> Result<Vec<usize>, String> {
    let n = flow.tasks.len();
    if n == 0 || n > limits::TASKS_PER_FLOW_MAX {
        return Err(format!("a flow has 1 to {} tasks (tasks_per_flow_max), not {n}", limits::TASKS_PER_FLOW_MAX));
    }
    let mut position = BTreeMap::new();
    for (i, t) in flow.tasks.iter().enumerate() {
        let bad_name = t.name.is_empty() || t.name.len() > limits::FLOW_TASK_NAME_BYTES_MAX || t.name.contains('/');
        if bad_name {
            return Err(format!("task name {:?}: 1 to {} bytes, no '/'", t.name, limits::FLOW_TASK_NAME_BYTES_MAX));
        }
        if position.insert(t.name.as_str(), i).is_some() {
            return Err(format!("two tasks are named {:?}", t.name));
        }
        validate_key(&flow_task_key(flow_key, &t.name)).map_err(|e| format!("task {:?}: {e}", t.name))?;
        t.spec.validate().map_err(|e| format!("task {:?}: {e}", t.name))?;
        if let Some(c) = &t.concurrency {
            c.validate().map_err(|e| format!("task {:?}: {e}", t.name))?;
        }
        if t.after.len() > limits::DEPENDENCIES_PER_TASK_MAX {
            return Err(format!("task {:?} runs after more than {} tasks", t.name, limits::DEPENDENCIES_PER_TASK_MAX));
        }
    }
    let mut waits_on = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, t) in flow.tasks.iter().enumerate() {
        let deps: BTreeSet<&str> = t.after.iter().map(String::as_str).collect();
        for dep in deps {
            let Some(&d) = position.get(dep) else {
                return Err(format!("task {:?} runs after {dep:?}, which is not a task of the flow", t.name));
            };
            waits_on[i] += 1;
            dependents[d].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|i| waits_on[*i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            waits_on[d] -= 1;
            if waits_on[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() < n {
        let cycle: Vec<&str> = (0..n).filter(|i| waits_on[*i] > 0).map(|i| flow.tasks[i].name.as_str()).collect();
        return Err(format!("the flow has a cycle through {cycle:?}"));
    }
    Ok(order)
}
