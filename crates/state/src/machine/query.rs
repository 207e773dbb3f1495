//! Read-only queries over the state machine (`crate::query` has their filter and page types).

use crate::limits;
use crate::machine::StateMachine;
use crate::query::{ListFilter, ListPage};
use crate::task::{Task, TaskId, TaskState};

impl StateMachine {
    pub fn get(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(&id)
    }

    pub fn get_by_key(&self, key: &str) -> Option<&Task> {
        self.keys.get(key).and_then(|id| self.tasks.get(id))
    }

    /// Tasks in id order (= submission order), one bounded page at a time.
    pub fn list(&self, filter: &ListFilter) -> ListPage {
        let limit = match filter.limit {
            0 => limits::LIST_PAGE_SIZE_DEFAULT,
            n => n.min(limits::LIST_PAGE_SIZE_MAX),
        };
        let start = filter.after_id.map_or(0, |a| a.saturating_add(1));
        let mut tasks = Vec::with_capacity(limit.min(64));
        let mut next_after = None;
        for task in self.tasks.range(start..).map(|(_, t)| t) {
            if filter.state.is_some_and(|s| s != task.state) {
                continue;
            }
            if tasks.len() == limit {
                next_after = tasks.last().map(|t: &Task| t.id);
                break;
            }
            tasks.push(task.clone());
        }
        debug_assert!(tasks.len() <= limit);
        ListPage { tasks, next_after }
    }

    /// The `n` newest tasks (highest ids first) below id `before` (all when `None`), only those
    /// in `state` when given; `n` is capped at `LIST_PAGE_SIZE_MAX`, and at most `scan_max` tasks
    /// are looked at, so a rare state in a large table costs a bounded amount per call. The id
    /// to pass as `before` for the next (older) page, if there may be one.
    pub fn newest(
        &self,
        state: Option<TaskState>,
        before: Option<TaskId>,
        n: usize,
        scan_max: usize,
    ) -> (Vec<&Task>, Option<TaskId>) {
        let n = n.min(limits::LIST_PAGE_SIZE_MAX);
        let mut found = Vec::with_capacity(n.min(64));
        let mut last_seen = None;
        for (scanned, task) in self.tasks.range(..before.unwrap_or(TaskId::MAX)).rev().map(|(_, t)| t).enumerate() {
            if found.len() == n || scanned == scan_max {
                return (found, last_seen);
            }
            last_seen = Some(task.id);
            if state.is_none_or(|s| s == task.state) {
                found.push(task);
            }
        }
        (found, None)
    }

    /// Number of tasks in `state`.
    pub fn count(&self, state: TaskState) -> u64 {
        self.counts[state as usize]
    }

    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }
}
