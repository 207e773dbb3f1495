//! The state machine and its one mutator, `apply`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Command, Op, Rejection, Response};
use crate::limits;
use crate::node::Node;
use crate::spec::{validate_key, TaskSpec};
use crate::task::{Task, TaskId, TaskState};

/// The replicated scheduler state. Ordered maps only, so iteration order and the snapshot encoding
/// are the same on every replica.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMachine {
    /// Log index of the last entry applied (commands and Raft's own blank/membership entries);
    /// `None` before the first. Raft's first entry (index 0) is the initial membership, so task ids
    /// start at 1.
    pub(crate) applied_index: Option<u64>,
    pub(crate) tasks: BTreeMap<TaskId, Task>,
    /// Idempotency key -> task. A key lives exactly as long as its task.
    pub(crate) keys: BTreeMap<String, TaskId>,
    /// Worker registry (filled by the worker issue).
    pub(crate) nodes: BTreeMap<String, Node>,
    /// Tasks per state, indexed by `TaskState as usize`; kept so limits are O(1) to check.
    pub(crate) counts: [u64; 6],
}

impl StateMachine {
    pub fn new() -> StateMachine {
        StateMachine::default()
    }

    pub fn applied_index(&self) -> Option<u64> {
        self.applied_index
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Records that the entry at `index` carried no command (a Raft blank or membership entry).
    pub fn advance(&mut self, index: u64) {
        assert!(
            self.applied_index.is_none_or(|a| index > a),
            "log index {index} applied after {:?}",
            self.applied_index
        );
        self.applied_index = Some(index);
    }

    /// Applies the command committed at log `index`. Deterministic: depends on `self`, `index` and
    /// `cmd` only. A rejected command leaves the state unchanged apart from `applied_index`.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Response {
        self.advance(index);
        let response = match &cmd.op {
            Op::Submit { key, spec } => self.submit(index, cmd.now_ms, key, spec),
            Op::Cancel { id } => self.cancel(*id, cmd.now_ms),
        };
        debug_assert_eq!(self.check_invariants(), Ok(()));
        response
    }

    fn submit(&mut self, index: u64, now_ms: u64, key: &str, spec: &TaskSpec) -> Response {
        if let Err(e) = validate_key(key).and_then(|()| spec.validate()) {
            return Response::Rejected(Rejection::Invalid { reason: e.to_string() });
        }
        // The idempotency decision is made here, in apply, so two racing submits of one key that
        // both passed some replica's edge still create one task.
        if let Some(&existing_id) = self.keys.get(key) {
            let existing = &self.tasks[&existing_id];
            if existing.spec == *spec {
                return Response::Submitted { id: existing_id, created: false };
            }
            return Response::Rejected(Rejection::KeyConflict { key: key.to_string(), existing_id });
        }
        let pending = self.count(TaskState::Pending) as usize;
        if pending >= limits::TASKS_PENDING_MAX {
            return Response::Rejected(Rejection::TooManyPending { count: pending, limit: limits::TASKS_PENDING_MAX });
        }
        if self.tasks.len() >= limits::TASKS_TOTAL_MAX {
            let count = self.tasks.len();
            return Response::Rejected(Rejection::TooManyTasks { count, limit: limits::TASKS_TOTAL_MAX });
        }
        let id: TaskId = index;
        assert!(!self.tasks.contains_key(&id), "task id {id} reused");
        let task = Task {
            id,
            key: key.to_string(),
            spec: spec.clone(),
            state: TaskState::Pending,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            attempt: 0,
            assignment: None,
            result: None,
        };
        self.tasks.insert(id, task);
        self.keys.insert(key.to_string(), id);
        self.counts[TaskState::Pending as usize] += 1;
        Response::Submitted { id, created: true }
    }

    fn cancel(&mut self, id: TaskId, now_ms: u64) -> Response {
        let Some(task) = self.tasks.get_mut(&id) else {
            return Response::Rejected(Rejection::NotFound { id });
        };
        match task.state {
            TaskState::Cancelled => Response::Cancelled { id },
            TaskState::Pending => {
                task.state = TaskState::Cancelled;
                task.updated_at_ms = now_ms.max(task.updated_at_ms);
                self.counts[TaskState::Pending as usize] -= 1;
                self.counts[TaskState::Cancelled as usize] += 1;
                Response::Cancelled { id }
            }
            state => Response::Rejected(Rejection::NotCancellable { id, state }),
        }
    }

    /// Checks every structural invariant; returns the first violation. Used by debug builds after
    /// each apply, by the property tests after every step, and by the store after loading a snapshot.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut counts = [0u64; 6];
        for (&id, task) in &self.tasks {
            if task.id != id {
                return Err(format!("task stored under {id} has id {}", task.id));
            }
            if self.applied_index.is_none_or(|a| id > a) {
                return Err(format!("task {id} is newer than applied index {:?}", self.applied_index));
            }
            if self.keys.get(&task.key) != Some(&id) {
                return Err(format!("task {id}'s key {:?} does not map back to it", task.key));
            }
            if task.state.is_held() != task.assignment.is_some() {
                return Err(format!("task {id} is {:?} with assignment {:?}", task.state, task.assignment));
            }
            if task.result.is_some() && !matches!(task.state, TaskState::Succeeded | TaskState::Failed) {
                return Err(format!("task {id} is {:?} but has a result", task.state));
            }
            if task.updated_at_ms < task.created_at_ms {
                return Err(format!("task {id} updated before it was created"));
            }
            counts[task.state as usize] += 1;
        }
        if self.keys.len() != self.tasks.len() {
            return Err(format!("{} keys for {} tasks", self.keys.len(), self.tasks.len()));
        }
        if counts != self.counts {
            return Err(format!("state counts {:?} but tasks say {:?}", self.counts, counts));
        }
        if counts[TaskState::Pending as usize] as usize > limits::TASKS_PENDING_MAX {
            return Err("more pending tasks than tasks_pending_max".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(key: &str, spec: TaskSpec) -> Command {
        Command { now_ms: 1_000, op: Op::Submit { key: key.into(), spec } }
    }

    #[test]
    fn task_id_is_the_log_index() {
        let mut sm = StateMachine::new();
        let r = sm.apply(7, &submit("a", TaskSpec::builtin("echo", "hi")));
        assert_eq!(r, Response::Submitted { id: 7, created: true });
        let t = sm.get(7).unwrap();
        assert_eq!((t.state, t.created_at_ms, t.key.as_str()), (TaskState::Pending, 1_000, "a"));
    }

    #[test]
    fn same_key_same_spec_is_a_retry_different_spec_conflicts() {
        let mut sm = StateMachine::new();
        sm.apply(1, &submit("k", TaskSpec::builtin("echo", "hi")));
        assert_eq!(
            sm.apply(2, &submit("k", TaskSpec::builtin("echo", "hi"))),
            Response::Submitted { id: 1, created: false }
        );
        assert_eq!(
            sm.apply(3, &submit("k", TaskSpec::builtin("echo", "ho"))),
            Response::Rejected(Rejection::KeyConflict { key: "k".into(), existing_id: 1 })
        );
        assert_eq!(sm.task_count(), 1);
        // The key outlives the task's end.
        sm.apply(4, &Command { now_ms: 2_000, op: Op::Cancel { id: 1 } });
        assert_eq!(
            sm.apply(5, &submit("k", TaskSpec::builtin("echo", "hi"))),
            Response::Submitted { id: 1, created: false }
        );
    }

    #[test]
    fn cancel_pending_only() {
        let mut sm = StateMachine::new();
        sm.apply(1, &submit("k", TaskSpec::builtin("sleep", "10")));
        assert_eq!(
            sm.apply(2, &Command { now_ms: 5, op: Op::Cancel { id: 9 } }),
            Response::Rejected(Rejection::NotFound { id: 9 })
        );
        assert_eq!(sm.apply(3, &Command { now_ms: 5_000, op: Op::Cancel { id: 1 } }), Response::Cancelled { id: 1 });
        assert_eq!(sm.apply(4, &Command { now_ms: 6_000, op: Op::Cancel { id: 1 } }), Response::Cancelled { id: 1 });
        assert_eq!(sm.get(1).unwrap().updated_at_ms, 5_000);
        assert_eq!(sm.count(TaskState::Cancelled), 1);
        assert_eq!(sm.count(TaskState::Pending), 0);
    }

    #[test]
    fn invalid_specs_are_rejected_in_apply() {
        let mut sm = StateMachine::new();
        let r = sm.apply(1, &submit("k", TaskSpec::builtin("nope", "")));
        assert!(matches!(r, Response::Rejected(Rejection::Invalid { .. })));
        let r = sm.apply(2, &submit("", TaskSpec::builtin("echo", "")));
        assert!(matches!(r, Response::Rejected(Rejection::Invalid { .. })));
        assert_eq!(sm.task_count(), 0);
        assert_eq!(sm.applied_index(), Some(2));
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn list_pages_in_id_order() {
        let mut sm = StateMachine::new();
        for i in 1..=25u64 {
            sm.apply(i, &submit(&format!("k{i}"), TaskSpec::builtin("echo", "x")));
        }
        sm.apply(26, &Command { now_ms: 1, op: Op::Cancel { id: 3 } });
        let page = sm.list(&ListFilter { limit: 10, ..Default::default() });
        assert_eq!(page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
        assert_eq!(page.next_after, Some(10));
        let page = sm.list(&ListFilter { limit: 10, after_id: Some(20), ..Default::default() });
        assert_eq!(page.tasks.len(), 5);
        assert_eq!(page.next_after, None);
        let page = sm.list(&ListFilter { state: Some(TaskState::Cancelled), ..Default::default() });
        assert_eq!(page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), vec![3]);
    }

    use crate::query::ListFilter;
}
