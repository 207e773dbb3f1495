//! How the machine applies a flow (`crate::flow` says what one is): all of its tasks, or none.

use crate::after::AfterSpec;
use crate::command::{Rejection, Response};
use crate::flow::{check_flow, flow_task_key, FlowSpec, FlowTask, FLOW_VERSION};
use crate::limits;
use crate::machine::StateMachine;
use crate::task::{Task, TaskId, TaskState};
use std::collections::BTreeMap;

impl StateMachine {
    /// Creates every task of `flow` under `key`, or none. The same flow under the same key again is
    /// the same tasks. Answers a `Response::Batch` of one `Submitted` per task, in the flow's order.
    pub(crate) fn submit_flow(&mut self, index: u64, now_ms: u64, key: &str, flow: &FlowSpec) -> Response {
        let invalid = |reason: String| Response::Rejected(Rejection::Invalid { reason });
        if self.cluster_version < FLOW_VERSION {
            return invalid(format!("flows need cluster version {FLOW_VERSION}, at {}", self.cluster_version));
        }
        let order = match check_flow(key, flow) {
            Ok(order) => order,
            Err(reason) => return invalid(reason),
        };
        if let Some(answer) = self.existing_flow(key, flow) {
            return answer;
        }
        if let Err(refused) = self.room_for_flow(now_ms, flow) {
            return Response::Rejected(refused);
        }
        let mut ids: BTreeMap<&str, TaskId> = BTreeMap::new();
        for i in order {
            let t = &flow.tasks[i];
            let deps: Vec<TaskId> = t.after.iter().map(|name| ids[name.as_str()]).collect();
            let after = (!deps.is_empty()).then(|| AfterSpec { ids: deps, keys: Vec::new(), policy: t.policy });
            let task_key = flow_task_key(key, &t.name);
            let answer = self.submit_with(
                index,
                now_ms,
                &task_key,
                &t.spec,
                after.as_ref(),
                t.concurrency.as_ref(),
                FLOW_VERSION,
            );
            match answer {
                Response::Submitted { id, created: true } => ids.insert(t.name.as_str(), id),
                // Checked above; a refusal here is a bug, and what was created stays.
                other => {
                    debug_assert!(false, "flow task {task_key} refused after the checks: {other:?}");
                    return other;
                }
            };
        }
        Response::Batch(
            flow.tasks.iter().map(|t| Response::Submitted { id: ids[t.name.as_str()], created: true }).collect(),
        )
    }

    /// The answer to a flow whose key is taken: the same tasks again (`created: false`), or a
    /// conflict naming the first task that differs. `None`: no task of the flow exists yet.
    fn existing_flow(&self, key: &str, flow: &FlowSpec) -> Option<Response> {
        let existing: Vec<Option<TaskId>> =
            flow.tasks.iter().map(|t| self.keys.get(&flow_task_key(key, &t.name)).copied()).collect();
        if existing.iter().all(Option::is_none) {
            return None;
        }
        let ids: BTreeMap<&str, Option<TaskId>> =
            flow.tasks.iter().zip(&existing).map(|(t, id)| (t.name.as_str(), *id)).collect();
        for (t, id) in flow.tasks.iter().zip(&existing) {
            let same = id.and_then(|id| self.tasks.get(&id)).is_some_and(|task| same_task(task, t, &ids));
            if !same {
                let task_key = flow_task_key(key, &t.name);
                let existing_id = id.or_else(|| existing.iter().flatten().next().copied()).unwrap_or(0);
                return Some(Response::Rejected(Rejection::KeyConflict { key: task_key, existing_id }));
            }
        }
        Some(Response::Batch(
            existing.into_iter().flatten().map(|id| Response::Submitted { id, created: false }).collect(),
        ))
    }

    /// Whether every state limit has room for the whole flow (so that no task of it is refused
    /// half way). Counted as if every task were pending and every dependent one waiting.
    fn room_for_flow(&self, now_ms: u64, flow: &FlowSpec) -> Result<(), Rejection> {
        let n = flow.tasks.len();
        let ahead = flow.tasks.iter().filter(|t| t.spec.run_at_ms.is_some_and(|at| at > now_ms)).count();
        if let Some(t) =
            flow.tasks.iter().find(|t| t.spec.run_at_ms.is_some_and(|at| at > now_ms + limits::RUN_AT_AHEAD_MS_MAX))
        {
            let reason = format!("task {:?}'s run-at time is over run_at_ahead_ms_max ahead", t.name);
            return Err(Rejection::Invalid { reason });
        }
        if self.scheduled.len() + ahead > limits::TASKS_SCHEDULED_MAX {
            return Err(Rejection::TooManyScheduled {
                count: self.scheduled.len(),
                limit: limits::TASKS_SCHEDULED_MAX,
            });
        }
        let (pending, limit) = (self.count(TaskState::Pending) as usize, self.tasks_pending_max());
        if pending + (n - ahead) > limit {
            return Err(Rejection::TooManyPending { count: pending, limit });
        }
        if self.tasks.len() + n > limits::TASKS_TOTAL_MAX {
            return Err(Rejection::TooManyTasks { count: self.tasks.len(), limit: limits::TASKS_TOTAL_MAX });
        }
        let waiting = self.count(TaskState::Waiting) as usize;
        let dependent = flow.tasks.iter().filter(|t| !t.after.is_empty()).count();
        if waiting + dependent > limits::TASKS_WAITING_MAX {
            let reason = format!(
                "{waiting} tasks waiting for others, and the flow adds {dependent}: over tasks_waiting_max {}",
                limits::TASKS_WAITING_MAX
            );
            return Err(Rejection::Invalid { reason });
        }
        Ok(())
    }

    /// The tasks whose key starts `key/`: a flow's (and any other task keyed so), at most `max`.
    pub fn flow_tasks(&self, key: &str, max: usize) -> Vec<&Task> {
        let prefix = format!("{key}/");
        self.keys
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(_, id)| self.tasks.get(id))
            .take(max)
            .collect()
    }
}

/// Whether `task` is flow task `t` as submitted, its dependencies named by `ids`.
fn same_task(task: &Task, t: &FlowTask, ids: &BTreeMap<&str, Option<TaskId>>) -> bool {
    let mut deps: Vec<TaskId> = t.after.iter().filter_map(|name| ids.get(name.as_str()).copied().flatten()).collect();
    deps.sort_unstable();
    deps.dedup();
    let same_after = match task.after.as_deref() {
        None => t.after.is_empty(),
        Some(a) => !t.after.is_empty() && a.ids == deps && a.policy == t.policy,
    };
    task.spec == t.spec && same_after && task.concurrency.as_deref() == t.concurrency.as_ref()
}
