//! Read-only queries over the state machine.

use crate::task::{Task, TaskId, TaskState};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub state: Option<TaskState>,
    /// Return tasks with ids strictly greater than this (the previous page's `next_after`).
    pub after_id: Option<TaskId>,
    /// Page size; 0 means `LIST_PAGE_SIZE_DEFAULT`, anything over `LIST_PAGE_SIZE_MAX` is clamped.
    pub limit: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPage {
    pub tasks: Vec<Task>,
    /// Set when more tasks may follow: pass it as `after_id` for the next page.
    pub next_after: Option<TaskId>,
}
