//! How the machine applies dependencies (`crate::after` says what they are): submit with
//! dependencies, release or skip the tasks waiting when one ends, and the `dependents` index.

use crate::after::{After, AfterPolicy, AfterSpec};
use crate::command::{Rejection, Response};
use crate::concurrency::Concurrency;
use crate::limits;
use crate::machine::StateMachine;
use crate::spec::TaskSpec;
use crate::task::{TaskId, TaskState};
use std::collections::{BTreeMap, BTreeSet};

impl StateMachine {
    /// Creates a task with options: dependencies (`Op::SubmitAfter`, `Op::SubmitWith`) and a
    /// concurrency key (`Op::SubmitWith`), refused below cluster version `since`. The same key with
    /// the same spec and options is the same task; with others, a conflict.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn submit_with(
        &mut self,
        index: u64,
        now_ms: u64,
        key: &str,
        spec: &TaskSpec,
        after: Option<&AfterSpec>,
        concurrency: Option<&Concurrency>,
        since: u32,
    ) -> Response {
        if self.cluster_version < since {
            // Never proposed before (the edge checks); refused alike by every replica if it were.
            let reason = format!("this submit needs cluster version {since}, at {}", self.cluster_version);
            return Response::Rejected(Rejection::Invalid { reason });
        }
        if let Some(reason) = concurrency.and_then(|c| c.validate().err()) {
            return Response::Rejected(Rejection::Invalid { reason });
        }
        let (ids, policy) = match after {
            Some(a) => match self.resolve_after(a) {
                Ok(ids) => (ids, Some(a.policy)),
                Err(refused) => return Response::Rejected(refused),
            },
            None => (Vec::new(), None),
        };
        if let Some(&existing_id) = self.keys.get(key) {
            let existing = &self.tasks[&existing_id];
            let same_after = match (policy, existing.after.as_deref()) {
                (None, None) => true,
                (Some(p), Some(a)) => a.ids == ids && a.policy == p,
                _ => false,
            };
            if existing.spec == *spec && same_after && existing.concurrency.as_deref() == concurrency {
                return Response::Submitted { id: existing_id, created: false };
            }
            return Response::Rejected(Rejection::KeyConflict { key: key.to_string(), existing_id });
        }
        let start = policy.map_or(Start::Run, |p| self.start_of(&ids, p));
        let waiting = self.count(TaskState::Waiting) as usize;
        if matches!(start, Start::Wait(_)) && waiting >= limits::TASKS_WAITING_MAX {
            let reason =
                format!("{waiting} tasks waiting for others, at tasks_waiting_max {}", limits::TASKS_WAITING_MAX);
            return Response::Rejected(Rejection::Invalid { reason });
        }
        let response = self.create_task(index, now_ms, key, spec, None);
        let Response::Submitted { id, created: true } = response else { return response };
        self.limit_concurrency(id, concurrency.cloned());
        if let Some(policy) = policy {
            self.start_waiting(index, now_ms, id, After { ids, policy, left: Vec::new(), skipped_by: None }, start);
        }
        response
    }

    /// Puts new task `id` where its dependencies say it starts, recording them with it.
    fn start_waiting(&mut self, index: u64, now_ms: u64, id: TaskId, mut record: After, start: Start) {
        match start {
            Start::Run => {}
            Start::Wait(left) => {
                for dep in &left {
                    self.dependents.0.entry(*dep).or_default().insert(id);
                }
                record.left = left;
                self.tasks.get_mut(&id).expect("just created").after = Some(Box::new(record));
                self.set_state(index, now_ms, id, TaskState::Waiting);
                return;
            }
            Start::Skip(by) => {
                record.skipped_by = Some(by);
                self.tasks.get_mut(&id).expect("just created").after = Some(Box::new(record));
                self.set_state(index, now_ms, id, TaskState::Skipped);
                return;
            }
        }
        self.tasks.get_mut(&id).expect("just created").after = Some(Box::new(record));
    }

    /// The dependencies' ids, from ids and keys, in order without repeats; each must exist.
    fn resolve_after(&self, after: &AfterSpec) -> Result<Vec<TaskId>, Rejection> {
        let named = after.ids.len() + after.keys.len();
        if named > limits::DEPENDENCIES_PER_TASK_MAX {
            let reason =
                format!("{named} dependencies, over dependencies_per_task_max {}", limits::DEPENDENCIES_PER_TASK_MAX);
            return Err(Rejection::Invalid { reason });
        }
        let mut ids = BTreeSet::new();
        for id in &after.ids {
            if !self.tasks.contains_key(id) {
                return Err(Rejection::NotFound { id: *id });
            }
            ids.insert(*id);
        }
        for key in &after.keys {
            let Some(id) = self.keys.get(key) else {
                return Err(Rejection::Invalid {
                    reason: format!("no task with idempotency key {key:?} to run after"),
                });
            };
            ids.insert(*id);
        }
        Ok(ids.into_iter().collect())
    }

    fn start_of(&self, ids: &[TaskId], policy: AfterPolicy) -> Start {
        let mut left = Vec::new();
        for id in ids {
            let state = self.tasks[id].state;
            if !state.is_terminal() {
                left.push(*id);
            } else if policy == AfterPolicy::Success && state != TaskState::Succeeded {
                return Start::Skip(*id);
            }
        }
        if left.is_empty() {
            Start::Run
        } else {
            Start::Wait(left)
        }
    }

    /// Task `id` has ended in `state`: the tasks waiting on it go on, wait for the rest, or are
    /// skipped, and the skips cascade. Each task ends once, so the work is bounded by the edges.
    pub(crate) fn dependency_ended(&mut self, index: u64, now_ms: u64, id: TaskId, state: TaskState) {
        let mut ended = vec![(id, state)];
        while let Some((dep, state)) = ended.pop() {
            let Some(waiting) = self.dependents.0.remove(&dep) else { continue };
            for dependent in waiting {
                let task = self.tasks.get_mut(&dependent).expect("a dependent is a known task");
                let after = task.after.as_mut().expect("a dependent has its dependencies");
                after.left.retain(|d| *d != dep);
                if after.policy == AfterPolicy::Success && state != TaskState::Succeeded {
                    after.skipped_by = Some(dep);
                    self.set_state(index, now_ms, dependent, TaskState::Skipped);
                    ended.push((dependent, TaskState::Skipped));
                } else if after.left.is_empty() {
                    let run_at = task.spec.run_at_ms.filter(|&at| at > now_ms);
                    let to = if run_at.is_some() { TaskState::Scheduled } else { TaskState::Pending };
                    self.set_state(index, now_ms, dependent, to);
                }
            }
        }
    }

    /// Task `id` leaves `waiting` (released, skipped or cancelled): it no longer waits on anything.
    pub(crate) fn unlink_waiting(&mut self, id: TaskId) {
        let left = self.tasks[&id].after.as_ref().map(|a| a.left.clone()).unwrap_or_default();
        for dep in left {
            if let Some(set) = self.dependents.0.get_mut(&dep) {
                set.remove(&id);
                if set.is_empty() {
                    self.dependents.0.remove(&dep);
                }
            }
        }
    }

    /// Tasks with dependencies, by id: what the format layer writes beside the state from format 6.
    pub fn after_entries(&self) -> impl Iterator<Item = (TaskId, &After)> {
        self.tasks.iter().filter_map(|(id, t)| Some((*id, t.after.as_deref()?)))
    }

    /// Restores what a snapshot recorded beside the state (the format layer's decoder): each task's
    /// dependencies, then the counts of the states after format 5's and the dependents index.
    pub fn restore_after(&mut self, entries: Vec<(TaskId, After)>) -> Result<(), String> {
        for (id, after) in entries {
            let Some(task) = self.tasks.get_mut(&id) else { return Err(format!("dependencies for unknown task {id}")) };
            task.after = Some(Box::new(after));
        }
        for state in [TaskState::Waiting, TaskState::Skipped] {
            self.counts[state as usize] = self.tasks.values().filter(|t| t.state == state).count() as u64;
        }
        self.dependents = Dependents::default();
        for (id, task) in &self.tasks {
            if task.state != TaskState::Waiting {
                continue;
            }
            for dep in task.after.as_ref().map(|a| a.left.as_slice()).unwrap_or_default() {
                self.dependents.0.entry(*dep).or_default().insert(*id);
            }
        }
        Ok(())
    }

    /// The dependency invariants: a waiting task waits on tasks that have not ended (and the index
    /// says so), a skipped one names what skipped it, and the index holds nothing else.
    pub(crate) fn check_after(&self) -> Result<(), String> {
        let mut edges = 0usize;
        for (id, task) in &self.tasks {
            let after = task.after.as_deref();
            match task.state {
                TaskState::Waiting => {
                    let Some(after) = after.filter(|a| !a.left.is_empty() && a.skipped_by.is_none()) else {
                        return Err(format!("task {id} waits on nothing: {after:?}"));
                    };
                    for dep in &after.left {
                        if self.tasks.get(dep).is_none_or(|d| d.state.is_terminal()) {
                            return Err(format!("task {id} waits on task {dep}, which has ended or is gone"));
                        }
                        if !self.dependents.0.get(dep).is_some_and(|s| s.contains(id)) {
                            return Err(format!("task {id} is not indexed as waiting on task {dep}"));
                        }
                    }
                    edges += after.left.len();
                }
                TaskState::Skipped if after.is_none_or(|a| a.skipped_by.is_none()) => {
                    return Err(format!("skipped task {id} does not say what skipped it"));
                }
                _ => {}
            }
        }
        let indexed: usize = self.dependents.0.values().map(BTreeSet::len).sum();
        if indexed != edges {
            return Err(format!("the dependents index holds {indexed} edges for {edges}"));
        }
        Ok(())
    }
}

/// Where a new task with dependencies starts.
enum Start {
    Wait(Vec<TaskId>),
    Run,
    Skip(TaskId),
}

/// Waiting tasks by the dependency they still wait for: derived from the waiting tasks' `left`
/// lists, never encoded, equal whatever it holds (rebuilt by `StateMachine::restore_after`).
#[derive(Clone, Default)]
pub(crate) struct Dependents(pub(crate) BTreeMap<TaskId, BTreeSet<TaskId>>);
