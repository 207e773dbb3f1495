//! The state machine and its one mutator, `apply`.

mod after;
mod concurrency;
mod dispatch;
mod flow;
mod free_slots;
mod query;
mod schedule;
mod workers;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::command::{Command, Op, Output, Rejection, ReportEvent, Response};
use crate::limits;
use crate::schedule::{Schedule, OCCURRENCE_KEY_PREFIX};
use crate::spec::{validate_key, SpecError, TaskSpec};
use crate::task::{Occurrence, Outcome, Streams, Task, TaskId, TaskResult, TaskState, TASK_STATES};
use crate::worker::{Worker, WorkerState};

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
    /// Worker registry.
    pub(crate) workers: BTreeMap<String, Worker>,
    /// Tasks per state, indexed by `TaskState as usize`; kept so limits are O(1) to check.
    pub(crate) counts: Counts,
    /// Pending tasks in dispatch order: higher priority first (negated), then FIFO by id.
    pub(crate) pending: BTreeSet<(i64, TaskId)>,
    /// The id given to the last task created; ids are 1, 2, 3... in submission order. Not the log
    /// index: one entry may carry a batch of submits.
    pub(crate) last_task_id: TaskId,
    /// Tasks in state `scheduled`, by the time they become pending.
    pub(crate) scheduled: BTreeSet<(u64, TaskId)>,
    /// Recurring schedules by name.
    pub(crate) schedules: BTreeMap<String, Schedule>,
    /// Finished (terminal) tasks in id order: what retention removes first.
    pub(crate) finished: BTreeSet<TaskId>,
    /// The record format every member reads, agreed through the log (`Op::SetClusterVersion`).
    /// Not in this type's own encoding, which is format 0's snapshot body and must stay as it
    /// was: the format layer carries it beside the state from format 1 on.
    #[serde(skip)]
    pub(crate) cluster_version: u32,
    /// The state's time: the largest entry time applied since the cluster version reached
    /// `CLOCK_VERSION` (0 before). `apply` decides with it, so time in the state never goes
    /// backwards when leadership moves to a replica whose clock is a little behind. Carried beside
    /// the state by the format layer from format 3 on, like `cluster_version`.
    #[serde(skip)]
    pub(crate) clock_ms: u64,
    /// Workers whose view changed (held set, state, registration) since the host last took them
    /// (`take_touched_workers`): not state, a note for the host's long polls.
    #[serde(skip)]
    pub(crate) touched: Touched,
    /// Ready workers by free slots, for dispatch (`free_slots.rs`): derived, not state.
    #[serde(skip)]
    pub(crate) free: free_slots::FreeSlots,
    /// Outcomes and queue waits `apply` saw, for the host's metrics (`observed.rs`): not state.
    #[serde(skip)]
    pub(crate) observed: crate::observed::Observed,
    /// Waiting tasks by the dependency they wait on (`after.rs`): derived, not state.
    #[serde(skip)]
    pub(crate) dependents: after::Dependents,
    /// Concurrency keys of the tasks that have not ended (`concurrency.rs`): derived, not state.
    #[serde(skip)]
    pub(crate) keys_in_use: concurrency::KeysInUse,
}

/// Tasks per state (`TaskState as usize`). Encoded as the seven states before format 6, the layout
/// every earlier snapshot body pins; the states after them are recounted from the tasks when a
/// state is decoded (`StateMachine::restore_after`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts(pub(crate) [u64; TASK_STATES]);

/// The states an encoded `Counts` holds.
const COUNTS_ENCODED: usize = 7;

impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut encoded = [0u64; COUNTS_ENCODED];
        encoded.copy_from_slice(&self.0[..COUNTS_ENCODED]);
        encoded.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Counts, D::Error> {
        let encoded = <[u64; COUNTS_ENCODED]>::deserialize(d)?;
        let mut all = [0u64; TASK_STATES];
        all[..COUNTS_ENCODED].copy_from_slice(&encoded);
        Ok(Counts(all))
    }
}

impl std::ops::Index<usize> for Counts {
    type Output = u64;
    fn index(&self, i: usize) -> &u64 {
        &self.0[i]
    }
}

impl std::ops::IndexMut<usize> for Counts {
    fn index_mut(&mut self, i: usize) -> &mut u64 {
        &mut self.0[i]
    }
}

/// What `apply` changed, noted for others. Not part of the state: equal whatever it holds, never
/// encoded, and bounded by the registry and by what one entry may change.
#[derive(Clone, Default)]
pub(crate) struct Touched {
    /// Workers whose view changed since the host last took them (`take_touched_workers`).
    pub(crate) workers: BTreeSet<String>,
    /// Tasks and workers the entry being applied changed: `check_touched` checks them after it.
    pub(crate) entry_tasks: BTreeSet<TaskId>,
    pub(crate) entry_workers: BTreeSet<String>,
}

not_state!(after::Dependents, concurrency::KeysInUse, free_slots::FreeSlots, Touched, crate::observed::Observed);

/// The cluster version from which `apply` uses the state's time (`clock_ms`) rather than each
/// entry's own: format 3, which carries it in snapshots.
pub const CLOCK_VERSION: u32 = 3;

/// The cluster version from which a result keeps stdout and stderr apart
/// (`ReportEvent::EndedApart`, `TaskResult::streams`): format 5, which carries them in snapshots.
pub const OUTPUT_APART_VERSION: u32 = 5;

/// Dispatch order key of a pending task.
pub(crate) fn queue_key(task: &Task) -> (i64, TaskId) {
    (-i64::from(task.spec.priority), task.id)
}

/// Backoff before retry `n_attempts + 1`.
pub fn retry_backoff_ms(n_attempts: u32) -> u64 {
    let shift = n_attempts.saturating_sub(1).min(20);
    (limits::RETRY_BACKOFF_MS_BASE << shift).min(limits::RETRY_BACKOFF_MS_MAX)
}

impl StateMachine {
    pub fn new() -> StateMachine {
        StateMachine::default()
    }

    pub fn applied_index(&self) -> Option<u64> {
        self.applied_index
    }

    /// The cluster version agreed through the log (0 until the first `SetClusterVersion`).
    pub fn cluster_version(&self) -> u32 {
        self.cluster_version
    }

    /// The state's time (`clock_ms`): 0 before the cluster version reached `CLOCK_VERSION`.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Restores the state's time a snapshot recorded beside the state (the format layer's decoder).
    pub fn restore_clock_ms(&mut self, clock_ms: u64) {
        self.clock_ms = clock_ms;
    }

    /// Restores the cluster version a snapshot recorded beside the state (the format layer's
    /// decoder calls it; `apply` raises it only through `Op::SetClusterVersion`).
    pub fn restore_cluster_version(&mut self, version: u32) {
        self.cluster_version = version;
    }

    pub fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers.values()
    }

    /// The workers whose view (held set, state, registration) changed since the last call: the
    /// host wakes their long polls only. Holds no decision: `apply` never reads it.
    /// Outcomes and queue waits applied so far (`observed.rs`), for metrics.
    pub fn observed(&self) -> &crate::observed::Observed {
        &self.observed
    }

    /// Keeps counting from `from`'s figures: a state that replaces another (an installed snapshot)
    /// continues its metrics rather than starting them again.
    pub fn continue_observed(&mut self, from: &StateMachine) {
        self.observed = from.observed.clone();
    }

    pub fn take_touched_workers(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.touched.workers)
    }

    /// `worker_id`'s state or held set changed: its polls wake and the free-slot index follows.
    pub(crate) fn worker_changed(&mut self, worker_id: &str) {
        self.touched.workers.insert(worker_id.to_string());
        self.touched.entry_workers.insert(worker_id.to_string());
        self.free.update(worker_id, self.workers.get(worker_id));
    }

    /// Registered workers (any state), in O(1).
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    pub fn worker(&self, worker_id: &str) -> Option<&Worker> {
        self.workers.get(worker_id)
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
        if !self.free.is_built() {
            self.free.build(self.workers.values());
        }
        self.advance(index);
        self.touched.entry_tasks.clear();
        self.touched.entry_workers.clear();
        // From CLOCK_VERSION on, the larger of the entry's time and the last applied: a leader
        // whose clock is behind its predecessor's cannot move time back.
        let now_ms = if self.cluster_version >= CLOCK_VERSION {
            self.clock_ms = self.clock_ms.max(cmd.now_ms);
            self.clock_ms
        } else {
            cmd.now_ms
        };
        let response = match &cmd.op {
            Op::Batch { ops } => self.batch(index, now_ms, ops),
            Op::BatchDispatch { ops } => {
                let response = self.batch(index, now_ms, ops);
                if !matches!(response, Response::Rejected(_)) {
                    self.dispatch(index, now_ms);
                }
                response
            }
            op => self.apply_op(index, now_ms, op),
        };
        debug_assert_eq!(self.check_invariants(), Ok(()));
        response
    }

    /// `apply`, then `check_touched`: what every replica runs (release builds included). A broken
    /// invariant is a bug in this code, never disk damage (the entry's checksum was good): the
    /// caller stops the replica with the entry's index rather than decide on a wrong state.
    pub fn apply_checked(&mut self, index: u64, cmd: &Command) -> Result<Response, InvariantBroken> {
        let response = self.apply(index, cmd);
        self.check_touched().map_err(|why| InvariantBroken { index, op: cmd.op.name(), why })?;
        Ok(response)
    }

    /// A batch applies its ops in order, each exactly as if it were an entry of its own at the same
    /// index. `Assign` is not allowed in a batch: its token is the entry's index, and two
    /// assignments of one task in one entry would share a token.
    fn batch(&mut self, index: u64, now_ms: u64, ops: &[Op]) -> Response {
        if ops.len() > limits::BATCH_LEN_MAX {
            let reason = format!("{} ops in a batch, over batch_len_max {}", ops.len(), limits::BATCH_LEN_MAX);
            return Response::Rejected(Rejection::Invalid { reason });
        }
        if ops.iter().any(|op| {
            matches!(op, Op::Batch { .. } | Op::BatchDispatch { .. } | Op::Assign { .. } | Op::SetClusterVersion { .. })
        }) {
            let reason = "a batch may not hold batches, assignments or a cluster version".to_string();
            return Response::Rejected(Rejection::Invalid { reason });
        }
        Response::Batch(ops.iter().map(|op| self.apply_op(index, now_ms, op)).collect())
    }

    fn apply_op(&mut self, index: u64, now_ms: u64, op: &Op) -> Response {
        match op {
            Op::Batch { .. } | Op::BatchDispatch { .. } => {
                Response::Rejected(Rejection::Invalid { reason: "nested batch".to_string() })
            }
            Op::Submit { key, spec } => self.submit(index, now_ms, key, spec),
            Op::SubmitAfter { key, spec, after } => {
                self.submit_with(index, now_ms, key, spec, Some(after), None, crate::after::AFTER_VERSION)
            }
            Op::SubmitFlow { key, flow } => self.submit_flow(index, now_ms, key, flow),
            Op::SubmitWith { key, spec, options } => {
                let (after, concurrency) = (options.after.as_ref(), options.concurrency.as_ref());
                self.submit_with(index, now_ms, key, spec, after, concurrency, crate::concurrency::CONCURRENCY_VERSION)
            }
            Op::Cancel { id } => self.cancel(index, *id, now_ms),
            Op::RegisterWorker { worker_id, instance, addr, slots, labels } => {
                self.register_worker(index, now_ms, worker_id, *instance, addr, *slots, labels)
            }
            Op::Heartbeat { worker_id, instance } => self.heartbeat(now_ms, worker_id, *instance),
            Op::ExpireWorker { worker_id, epoch, heartbeat_seq } => {
                self.expire_worker(index, now_ms, worker_id, *epoch, *heartbeat_seq)
            }
            Op::DrainWorker { worker_id } => self.drain_worker(worker_id),
            Op::Assign { items } => self.assign(index, now_ms, items),
            Op::Report { task_id, token, event } => self.report(index, now_ms, *task_id, *token, event),
            Op::ReportFrom { worker_id, instance, task_id, token, event } => {
                match self.check_holder(*task_id, worker_id, *instance) {
                    Ok(()) => self.report(index, now_ms, *task_id, *token, event),
                    Err(rejection) => Response::Rejected(rejection),
                }
            }
            Op::CreateSchedule { name, spec } => self.create_schedule(index, now_ms, name, spec, None),
            Op::CreateScheduleWith { name, spec, concurrency } => {
                let needed = crate::concurrency::SCHEDULE_CONCURRENCY_VERSION;
                if self.cluster_version < needed {
                    let reason = format!("this schedule needs cluster version {needed}, at {}", self.cluster_version);
                    Response::Rejected(Rejection::Invalid { reason })
                } else {
                    self.create_schedule(index, now_ms, name, spec, Some(concurrency))
                }
            }
            Op::DeleteSchedule { name } => self.delete_schedule(name),
            Op::SetSchedulePaused { name, paused } => self.set_schedule_paused(index, now_ms, name, *paused),
            Op::FireSchedule { name, occurrence_ms } => self.fire_schedule(index, now_ms, name, *occurrence_ms),
            Op::ReleaseDue => self.release_due(index, now_ms),
            Op::PurgeFinished { keep } => self.purge_finished(*keep),
            Op::SetClusterVersion { version } => {
                self.cluster_version = self.cluster_version.max(*version);
                Response::ClusterVersionSet { version: self.cluster_version }
            }
        }
    }

    /// Moves task `id` to state `to`, keeping counts and the pending queue in step; a task that
    /// ends lets the tasks waiting on it go on (or skips them: `after.rs`).
    pub(crate) fn transition(&mut self, index: u64, now_ms: u64, id: TaskId, to: TaskState) {
        self.set_state(index, now_ms, id, to);
        if to.is_terminal() && !self.dependents.0.is_empty() {
            self.dependency_ended(index, now_ms, id, to);
        }
    }

    /// The bookkeeping of a state change alone: counts, the pending queue, the scheduled and
    /// finished sets, the dependents index.
    pub(crate) fn set_state(&mut self, index: u64, now_ms: u64, id: TaskId, to: TaskState) {
        let from = self.tasks.get(&id).expect("transition of a known task").state;
        if from == TaskState::Waiting {
            self.unlink_waiting(id);
        }
        let task = self.tasks.get_mut(&id).expect("transition of a known task");
        self.keys_in_use.count(task, from, -1);
        if from == TaskState::Pending {
            self.pending.remove(&queue_key(task));
        }
        if from == TaskState::Scheduled {
            let run_at_ms = task.spec.run_at_ms.expect("a scheduled task has a run-at time");
            self.scheduled.remove(&(run_at_ms, id));
        }
        assert!(!from.is_terminal(), "task {id} left terminal state {from:?}");
        if to == TaskState::Scheduled {
            // Only at creation (`create_task`) or on release from waiting, with its run-at time ahead.
            assert_eq!(from, TaskState::Waiting, "task {id} entered scheduled from {from:?}");
            self.scheduled.insert((task.spec.run_at_ms.expect("a scheduled task has a run-at time"), id));
        }
        if to.is_terminal() {
            self.finished.insert(id);
            self.observed.task_ended(to);
        }
        if to == TaskState::Pending {
            self.pending.insert(queue_key(task));
        }
        self.counts[from as usize] -= 1;
        self.counts[to as usize] += 1;
        self.touched.entry_tasks.insert(id);
        task.state = to;
        task.updated_at_ms = now_ms.max(task.updated_at_ms);
        task.version = index;
        self.keys_in_use.count(task, to, 1);
    }

    /// Ends the current attempt of held task `id` with `outcome`, frees the worker's slot, and moves
    /// the task on: succeeded, retried after a backoff, or failed/cancelled for good.
    pub(crate) fn end_attempt(
        &mut self,
        index: u64,
        now_ms: u64,
        id: TaskId,
        outcome: Outcome,
        result: Option<TaskResult>,
    ) {
        let task = self.tasks.get_mut(&id).expect("end_attempt of a known task");
        let assignment = task.assignment.take().expect("end_attempt of a held task");
        let attempt = task.attempts.last_mut().expect("a held task has an attempt");
        assert_eq!(attempt.token, assignment.token);
        attempt.ended_at_ms = Some(now_ms);
        attempt.outcome = Some(outcome);
        self.observed.attempt_ended(outcome);
        let freed = self.workers.get_mut(&assignment.worker_id).map(|node| node.held.remove(&id)).is_some();
        let n_attempts = task.attempt();
        let retry = matches!(outcome, Outcome::Failed { .. } | Outcome::TimedOut | Outcome::Lost)
            && n_attempts < task.spec.max_attempts;
        let to = match outcome {
            Outcome::Succeeded => TaskState::Succeeded,
            Outcome::Cancelled => TaskState::Cancelled,
            _ if retry => TaskState::Pending,
            _ => TaskState::Failed,
        };
        if retry {
            // A lost attempt (its worker declared down) is not the task's failure, and the expiry
            // already waited heartbeat_timeout_ms: it may run elsewhere at once. Failed and
            // timed-out attempts back off.
            let backoff_ms = if outcome == Outcome::Lost { 0 } else { retry_backoff_ms(n_attempts) };
            task.not_before_ms = now_ms.saturating_add(backoff_ms);
        } else if matches!(to, TaskState::Succeeded | TaskState::Failed) {
            task.result = Some(result.unwrap_or(TaskResult {
                exit_code: -1,
                output_tail: outcome.as_str().to_string(),
                streams: None,
            }));
        }
        self.transition(index, now_ms, id, to);
        if freed {
            self.worker_changed(&assignment.worker_id);
        }
    }

    /// A client's submit. Keys with the occurrence prefix are reserved for schedules' fires.
    fn submit(&mut self, index: u64, now_ms: u64, key: &str, spec: &TaskSpec) -> Response {
        if key.starts_with(OCCURRENCE_KEY_PREFIX) {
            return Response::Rejected(Rejection::Invalid { reason: SpecError::ReservedKey.to_string() });
        }
        self.create_task(index, now_ms, key, spec, None)
    }

    /// The hard bound on pending tasks `apply` enforces: raised at `PENDING_LIMIT_VERSION`, when
    /// every member applies the same one.
    pub fn tasks_pending_max(&self) -> usize {
        if self.cluster_version >= limits::PENDING_LIMIT_VERSION {
            limits::TASKS_PENDING_MAX
        } else {
            limits::TASKS_PENDING_MAX_V3
        }
    }

    /// Creates a task under `key` unless the key already names one (same spec: that task; other
    /// spec: a conflict). A task with a future `run_at_ms` starts `scheduled`, any other pending.
    pub(crate) fn create_task(
        &mut self,
        index: u64,
        now_ms: u64,
        key: &str,
        spec: &TaskSpec,
        origin: Option<Occurrence>,
    ) -> Response {
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
        let scheduled_at = spec.run_at_ms.filter(|&at| at > now_ms);
        if let Err(rejection) = self.room_for_task(now_ms, scheduled_at) {
            return Response::Rejected(rejection);
        }
        let id: TaskId = self.last_task_id + 1;
        assert!(!self.tasks.contains_key(&id), "task id {id} reused");
        self.last_task_id = id;
        let task = Task {
            id,
            key: key.to_string(),
            spec: spec.clone(),
            state: if scheduled_at.is_some() { TaskState::Scheduled } else { TaskState::Pending },
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            attempts: Vec::new(),
            assignment: None,
            result: None,
            not_before_ms: 0,
            version: index,
            origin,
            after: None,
            concurrency: None,
        };
        match scheduled_at {
            Some(at) => self.scheduled.insert((at, id)),
            None => self.pending.insert(queue_key(&task)),
        };
        self.counts[task.state as usize] += 1;
        self.touched.entry_tasks.insert(id);
        self.tasks.insert(id, task);
        self.keys.insert(key.to_string(), id);
        Response::Submitted { id, created: true }
    }

    /// Whether the state's bounds leave room for one more task, scheduled at `scheduled_at` (a
    /// time ahead of `now_ms`) or pending.
    fn room_for_task(&self, now_ms: u64, scheduled_at: Option<u64>) -> Result<(), Rejection> {
        if let Some(at) = scheduled_at {
            if at - now_ms > limits::RUN_AT_AHEAD_MS_MAX {
                let reason = format!(
                    "run-at time is {} ms ahead, over run_at_ahead_ms_max {}",
                    at - now_ms,
                    limits::RUN_AT_AHEAD_MS_MAX
                );
                return Err(Rejection::Invalid { reason });
            }
            if self.scheduled.len() >= limits::TASKS_SCHEDULED_MAX {
                let count = self.scheduled.len();
                return Err(Rejection::TooManyScheduled { count, limit: limits::TASKS_SCHEDULED_MAX });
            }
        }
        let (pending, limit) = (self.count(TaskState::Pending) as usize, self.tasks_pending_max());
        if scheduled_at.is_none() && pending >= limit {
            return Err(Rejection::TooManyPending { count: pending, limit });
        }
        if self.tasks.len() >= limits::TASKS_TOTAL_MAX {
            let count = self.tasks.len();
            return Err(Rejection::TooManyTasks { count, limit: limits::TASKS_TOTAL_MAX });
        }
        Ok(())
    }

    pub(crate) fn cancel(&mut self, index: u64, id: TaskId, now_ms: u64) -> Response {
        let Some(task) = self.tasks.get(&id) else {
            return Response::Rejected(Rejection::NotFound { id });
        };
        match task.state {
            TaskState::Cancelled => Response::Cancelled { id },
            TaskState::Pending | TaskState::Scheduled | TaskState::Waiting => {
                self.transition(index, now_ms, id, TaskState::Cancelled);
                Response::Cancelled { id }
            }
            TaskState::Assigned | TaskState::Running => {
                self.end_attempt(index, now_ms, id, Outcome::Cancelled, None);
                Response::Cancelled { id }
            }
            state => Response::Rejected(Rejection::NotCancellable { id, state }),
        }
    }

    /// Whether finished tasks exceed `keep` by enough for the leader to propose a purge.
    pub fn purge_due(&self, keep: u64) -> bool {
        let slack = (keep / 10).min(limits::PURGE_SLACK_TASKS);
        self.finished.len() as u64 > keep.saturating_add(slack)
    }

    /// Removes the oldest finished tasks beyond `keep` (their keys go with them: a key lives as
    /// long as its task). Deterministic: the order is the task id.
    fn purge_finished(&mut self, keep: u64) -> Response {
        let excess = (self.finished.len() as u64).saturating_sub(keep).min(limits::PURGE_BATCH_LEN_MAX as u64);
        let ids: Vec<TaskId> = self.finished.iter().take(excess as usize).copied().collect();
        for id in &ids {
            self.finished.remove(id);
            let task = self.tasks.remove(id).expect("a finished task exists");
            assert!(task.state.is_terminal(), "purging live task {id}");
            self.keys.remove(&task.key);
            self.counts[task.state as usize] -= 1;
        }
        if !ids.is_empty() {
            for schedule in self.schedules.values_mut() {
                if schedule.last_task.is_some_and(|id| !self.tasks.contains_key(&id)) {
                    schedule.last_task = None;
                }
            }
        }
        Response::Purged { n_purged: ids.len() as u32 }
    }

    /// Whether `worker_id`, registered as `instance`, holds `task_id`'s attempt: checked before the
    /// token, so a report from anyone else is refused the same way whatever token it guessed.
    fn check_holder(&self, task_id: TaskId, worker_id: &str, instance: u64) -> Result<(), Rejection> {
        let Some(task) = self.tasks.get(&task_id) else { return Err(Rejection::NotFound { id: task_id }) };
        let holds = task.assignment.as_ref().is_some_and(|a| {
            a.worker_id == worker_id
                && self.workers.get(worker_id).is_some_and(|n| n.instance == instance && n.epoch == a.epoch)
        });
        if holds {
            Ok(())
        } else {
            Err(Rejection::NotHolder { task_id, worker_id: worker_id.to_string() })
        }
    }

    fn report(&mut self, index: u64, now_ms: u64, task_id: TaskId, token: u64, event: &ReportEvent) -> Response {
        let Some(task) = self.tasks.get_mut(&task_id) else {
            return Response::Rejected(Rejection::NotFound { id: task_id });
        };
        // Fencing: only the attempt that holds the task now may report on it.
        if task.assignment.as_ref().map(|a| a.token) != Some(token) {
            return Response::Rejected(Rejection::StaleToken { task_id, token });
        }
        match event {
            ReportEvent::Started => {
                if task.state == TaskState::Assigned {
                    task.attempts.last_mut().expect("held task has an attempt").started_at_ms = Some(now_ms);
                    self.transition(index, now_ms, task_id, TaskState::Running);
                }
                Response::Reported
            }
            ReportEvent::Ended { exit_code, output_tail, timed_out } => {
                let result = TaskResult {
                    exit_code: *exit_code,
                    output_tail: tail_of(output_tail, limits::OUTPUT_TAIL_BYTES_MAX),
                    streams: None,
                };
                self.finish_attempt(index, now_ms, task_id, *timed_out, result);
                Response::Reported
            }
            ReportEvent::EndedApart { exit_code, timed_out, output } => {
                let result = self.result_apart(*exit_code, output);
                self.finish_attempt(index, now_ms, task_id, *timed_out, result);
                Response::Reported
            }
        }
    }

    /// Ends the held attempt of `task_id` with the worker's result.
    fn finish_attempt(&mut self, index: u64, now_ms: u64, task_id: TaskId, timed_out: bool, result: TaskResult) {
        let task = self.tasks.get_mut(&task_id).expect("reported task exists");
        let attempt = task.attempts.last_mut().expect("held task has an attempt");
        if attempt.started_at_ms.is_none() {
            attempt.started_at_ms = Some(now_ms);
        }
        let outcome = match (timed_out, result.exit_code) {
            (true, _) => Outcome::TimedOut,
            (false, 0) => Outcome::Succeeded,
            (false, code) => Outcome::Failed { exit_code: code },
        };
        self.end_attempt(index, now_ms, task_id, outcome, Some(result));
    }

    /// The result of a report with the streams apart. Before `OUTPUT_APART_VERSION` (a snapshot
    /// of an older format cannot carry the streams) the two tails are joined as older workers do.
    fn result_apart(&self, exit_code: i32, output: &Output) -> TaskResult {
        let max = limits::OUTPUT_TAIL_BYTES_MAX;
        if self.cluster_version < OUTPUT_APART_VERSION {
            let joined = format!("{}{}", output.stdout_tail, output.stderr_tail);
            return TaskResult { exit_code, output_tail: tail_of(&joined, max), streams: None };
        }
        let stdout_tail = tail_of(&output.stdout_tail, max);
        let stderr_tail = tail_of(&output.stderr_tail, max);
        // A stream's length is at least what its tail holds, whatever the report claims.
        let streams = Streams {
            stdout_bytes: output.stdout_bytes.max(stdout_tail.len() as u64),
            stderr_bytes: output.stderr_bytes.max(stderr_tail.len() as u64),
            stderr_tail,
        };
        TaskResult { exit_code, output_tail: stdout_tail, streams: Some(Box::new(streams)) }
    }

    /// Results that keep the streams apart, by task id: what the format layer writes beside the
    /// state from format 5 on.
    pub fn result_streams(&self) -> impl Iterator<Item = (TaskId, &Streams)> {
        self.tasks.iter().filter_map(|(id, t)| Some((*id, t.result.as_ref()?.streams.as_deref()?)))
    }

    /// Restores what a snapshot recorded beside the state for one result (the format layer's
    /// decoder). Refused when the task has no result to attach it to.
    pub fn restore_result_streams(&mut self, id: TaskId, streams: Streams) -> Result<(), String> {
        let result = self.tasks.get_mut(&id).and_then(|t| t.result.as_mut());
        let Some(result) = result else { return Err(format!("output streams for task {id}, which has no result")) };
        result.streams = Some(Box::new(streams));
        Ok(())
    }

    /// Checks every structural invariant; returns the first violation. Used by debug builds after
    /// each apply, by the property tests after every step, and by the store on every snapshot it
    /// builds or loads.
    pub fn check_invariants(&self) -> Result<(), String> {
        if !self.free.matches(self.workers.values()) {
            return Err("the free-slot index does not match the workers".to_string());
        }
        let mut counts = Counts::default();
        for (&id, task) in &self.tasks {
            self.check_task(id, task)?;
            counts[task.state as usize] += 1;
        }
        if counts != self.counts {
            return Err(format!("state counts {:?} but tasks say {:?}", self.counts, counts));
        }
        if self.finished.iter().any(|id| !self.tasks.get(id).is_some_and(|t| t.state.is_terminal())) {
            return Err("finished index holds a task that has not ended".to_string());
        }
        self.check_sizes()?;
        self.check_schedules()?;
        for worker in self.workers.values() {
            self.check_worker(worker)?;
        }
        self.check_after()?;
        self.check_concurrency()?;
        // No check against tasks_pending_max here: the bound applies to new submits only. Retries of
        // failed or lost attempts go back to pending regardless, so a full queue plus requeues may
        // exceed it for a while; that state is legal and must snapshot and restore.
        Ok(())
    }

    /// Checks what the last `apply` changed: each task it created or moved and each worker whose
    /// view changed, with the links between them, and the sizes of the indexes against the
    /// counts. Time linear in what the entry changed (plus a few lookups each), so every build
    /// runs it after every entry (`apply_checked`); the whole state is checked on every snapshot.
    pub fn check_touched(&self) -> Result<(), String> {
        for id in &self.touched.entry_tasks {
            // A task the same entry created and purged (retention) is gone: nothing to check.
            if let Some(task) = self.tasks.get(id) {
                self.check_task(*id, task)?;
            }
        }
        for worker_id in &self.touched.entry_workers {
            if let Some(worker) = self.workers.get(worker_id) {
                self.check_worker(worker)?;
                if !self.free.matches_one(worker) {
                    return Err(format!("the free-slot index is out of step with worker {worker_id}"));
                }
            }
        }
        self.check_sizes()
    }

    /// The indexes' sizes against the state counts, in O(1).
    fn check_sizes(&self) -> Result<(), String> {
        let count = |state: TaskState| self.counts[state as usize];
        if self.pending.len() as u64 != count(TaskState::Pending) {
            return Err("pending queue holds tasks that are not pending".to_string());
        }
        if self.scheduled.len() as u64 != count(TaskState::Scheduled) {
            return Err("scheduled set holds tasks that are not scheduled".to_string());
        }
        let n_finished = TaskState::ALL.iter().filter(|s| s.is_terminal()).map(|s| count(*s)).sum::<u64>();
        if self.finished.len() as u64 != n_finished {
            return Err("finished index out of step with the finished tasks".to_string());
        }
        let n_tasks: u64 = TaskState::ALL.iter().map(|s| count(*s)).sum();
        if self.keys.len() != self.tasks.len() || n_tasks != self.tasks.len() as u64 {
            return Err(format!("{} keys and {n_tasks} counted for {} tasks", self.keys.len(), self.tasks.len()));
        }
        Ok(())
    }

    /// One task's invariants, and its links: its key, its queue entries, the worker holding it.
    fn check_task(&self, id: TaskId, task: &Task) -> Result<(), String> {
        if task.id != id || id == 0 || id > self.last_task_id {
            return Err(format!("task stored under {id} has id {} (last id {})", task.id, self.last_task_id));
        }
        if self.keys.get(&task.key) != Some(&id) {
            return Err(format!("task {id}'s key {:?} does not map back to it", task.key));
        }
        if task.state.is_held() != task.assignment.is_some() {
            return Err(format!("task {id} is {:?} with assignment {:?}", task.state, task.assignment));
        }
        if task.result.is_some() != matches!(task.state, TaskState::Succeeded | TaskState::Failed) {
            return Err(format!("task {id} is {:?} with result {:?}", task.state, task.result));
        }
        if let Some(streams) = task.result.as_ref().and_then(|r| r.streams.as_deref()) {
            check_streams(id, streams, self.cluster_version)?;
        }
        if task.updated_at_ms < task.created_at_ms {
            return Err(format!("task {id} updated before it was created"));
        }
        self.check_attempts(id, task)?;
        if (task.state == TaskState::Pending) != self.pending.contains(&queue_key(task)) {
            return Err(format!("task {id}'s pending-queue entry is out of step"));
        }
        let scheduled_entry = task.spec.run_at_ms.is_some_and(|at| self.scheduled.contains(&(at, id)));
        if (task.state == TaskState::Scheduled) != scheduled_entry {
            return Err(format!("task {id}'s scheduled entry is out of step"));
        }
        if task.state.is_terminal() != self.finished.contains(&id) {
            return Err(format!("task {id}'s finished-index entry is out of step"));
        }
        if let Some(o) = &task.origin {
            if task.key != crate::schedule::occurrence_key(&o.schedule, o.occurrence_ms) {
                return Err(format!("task {id} of an occurrence has key {:?}", task.key));
            }
        }
        Ok(())
    }

    /// A task's attempts: within its max, tokens rising, and its assignment the one open attempt,
    /// held by a live registration of its worker that counts it as held.
    fn check_attempts(&self, id: TaskId, task: &Task) -> Result<(), String> {
        if task.attempt() > task.spec.max_attempts {
            return Err(format!("task {id} has {} attempts, over its max {}", task.attempt(), task.spec.max_attempts));
        }
        if task.attempts.windows(2).any(|w| w[0].token >= w[1].token) {
            return Err(format!("task {id}'s tokens do not strictly increase"));
        }
        let n_open = task.attempts.iter().filter(|a| a.outcome.is_none()).count();
        let Some(a) = &task.assignment else {
            return match n_open {
                0 => Ok(()),
                _ => Err(format!("task {id} has an open attempt but no assignment")),
            };
        };
        let last = task.attempts.last();
        if n_open != 1 || last.map(|l| (l.token, l.outcome.is_none())) != Some((a.token, true)) {
            return Err(format!("task {id}'s assignment is not its one open attempt"));
        }
        let worker = self.workers.get(&a.worker_id).ok_or(format!("task {id} held by unknown worker"))?;
        if worker.epoch != a.epoch || worker.state == WorkerState::Down {
            return Err(format!("task {id} held by a stale or down registration of {}", a.worker_id));
        }
        if !worker.held.contains(&id) {
            return Err(format!("task {id} is assigned to worker {}, whose held set lacks it", a.worker_id));
        }
        Ok(())
    }

    /// One worker's invariants: within its slots, and every task it holds assigned to it.
    fn check_worker(&self, worker: &Worker) -> Result<(), String> {
        if worker.held.len() > worker.slots as usize {
            return Err(format!("worker {} holds {} tasks in {} slots", worker.id, worker.held.len(), worker.slots));
        }
        for id in &worker.held {
            let assigned_to = self.tasks.get(id).and_then(|t| t.assignment.as_ref()).map(|a| a.worker_id.as_str());
            if assigned_to != Some(worker.id.as_str()) {
                return Err(format!("worker {} holds task {id}, which is assigned to {assigned_to:?}", worker.id));
            }
        }
        Ok(())
    }
}

/// A broken invariant found after applying an entry: a bug, reported with where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "BUG: applying entry {index} ({op}) broke an invariant: {why}. This is a bug in raftsched, not disk damage \
     (the entry's checksum was good): keep the data dir and report it"
)]
pub struct InvariantBroken {
    pub index: u64,
    pub op: &'static str,
    pub why: String,
}

/// A result's streams: only from `OUTPUT_APART_VERSION` on, and within the tail limit.
fn check_streams(id: TaskId, streams: &Streams, cluster_version: u32) -> Result<(), String> {
    if cluster_version < OUTPUT_APART_VERSION {
        return Err(format!("task {id} keeps its output streams apart at cluster version {cluster_version}"));
    }
    let tail = streams.stderr_tail.len();
    if tail > limits::OUTPUT_TAIL_BYTES_MAX || streams.stderr_bytes < tail as u64 {
        return Err(format!("task {id}'s stderr tail is {tail} bytes of {}", streams.stderr_bytes));
    }
    Ok(())
}

/// The last `max` bytes of `text`, cut at a character boundary.
pub fn tail_of(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(key: &str, spec: TaskSpec) -> Command {
        Command { now_ms: 1_000, op: Op::Submit { key: key.into(), spec } }
    }

    #[test]
    fn from_cluster_version_3_time_in_the_state_never_goes_backwards() {
        let at = |now_ms, op| Command { now_ms, op };
        let mut sm = StateMachine::new();
        // Before: each entry's own time, as builds before format 3 apply it.
        sm.apply(1, &at(5_000, submit("a", TaskSpec::builtin("echo", "a")).op));
        sm.apply(2, &at(4_000, submit("b", TaskSpec::builtin("echo", "b")).op));
        assert_eq!((sm.get(1).unwrap().created_at_ms, sm.get(2).unwrap().created_at_ms), (5_000, 4_000));
        assert_eq!(sm.clock_ms(), 0);
        sm.apply(3, &at(6_000, Op::SetClusterVersion { version: CLOCK_VERSION }));
        // After: the larger of the entry's time and the last applied.
        sm.apply(4, &at(7_000, submit("c", TaskSpec::builtin("echo", "c")).op));
        sm.apply(5, &at(6_500, submit("d", TaskSpec::builtin("echo", "d")).op));
        assert_eq!((sm.get(3).unwrap().created_at_ms, sm.get(4).unwrap().created_at_ms), (7_000, 7_000));
        sm.apply(6, &at(8_000, Op::Cancel { id: 4 }));
        assert_eq!((sm.get(4).unwrap().updated_at_ms, sm.clock_ms()), (8_000, 8_000));
    }

    /// A result keeps stdout and stderr apart only once every member records them; before, the
    /// two tails are joined as older workers do, so every replica records the same result.
    #[test]
    fn output_streams_stay_apart_from_their_cluster_version() {
        let report_apart = |sm: &mut StateMachine, index: u64, key: &str| {
            sm.apply(index, &submit(key, TaskSpec::builtin("echo", key)));
            let id = sm.last_task_id;
            let reg = Op::RegisterWorker {
                worker_id: "w".into(),
                instance: index,
                addr: String::new(),
                slots: 1,
                labels: BTreeMap::new(),
            };
            sm.apply(index + 1, &Command { now_ms: 1_000, op: reg });
            let items = sm.plan_assignments(1_000, 1);
            sm.apply(index + 2, &Command { now_ms: 1_000, op: Op::Assign { items } });
            let token = sm.get(id).unwrap().assignment.as_ref().unwrap().token;
            let output =
                Output { stdout_tail: "o\n".into(), stderr_tail: "e\n".into(), stdout_bytes: 90, stderr_bytes: 0 };
            let event = ReportEvent::EndedApart { exit_code: 0, timed_out: false, output: Box::new(output) };
            sm.apply(index + 3, &Command { now_ms: 1_000, op: Op::Report { task_id: id, token, event } });
            sm.get(id).unwrap().result.clone().unwrap()
        };
        let mut sm = StateMachine::new();
        let joined = report_apart(&mut sm, 1, "a");
        assert_eq!((joined.output_tail.as_str(), joined.streams), ("o\ne\n", None));
        sm.apply(10, &Command { now_ms: 1_000, op: Op::SetClusterVersion { version: OUTPUT_APART_VERSION } });
        let apart = report_apart(&mut sm, 11, "b");
        let streams = Streams { stderr_tail: "e\n".into(), stdout_bytes: 90, stderr_bytes: 2 };
        assert_eq!((apart.output_tail.as_str(), apart.streams), ("o\n", Some(Box::new(streams))));
        sm.check_invariants().unwrap();
        assert_eq!(sm.result_streams().count(), 1);
    }

    /// `check_touched` looks at what the entry changed (cheap enough for every entry of every
    /// build); what it did not touch waits for the full check, which snapshots run.
    #[test]
    fn a_broken_invariant_is_found_where_the_entry_touched_it_and_reported_as_a_bug() {
        let mut sm = StateMachine::new();
        sm.apply(1, &submit("a", TaskSpec::builtin("echo", "a")));
        sm.apply(2, &submit("b", TaskSpec::builtin("echo", "b")));
        let reg = Op::RegisterWorker {
            worker_id: "w".into(),
            instance: 1,
            addr: String::new(),
            slots: 1,
            labels: BTreeMap::new(),
        };
        sm.apply(3, &Command { now_ms: 1_000, op: reg });
        let items = sm.plan_assignments(1_000, 1);
        let response = sm.apply_checked(4, &Command { now_ms: 1_000, op: Op::Assign { items } });
        assert!(matches!(response, Ok(Response::Assigned { n_assigned: 1, .. })), "{response:?}");
        assert_eq!(sm.touched.entry_tasks.iter().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(sm.touched.entry_workers.iter().map(String::as_str).collect::<Vec<_>>(), vec!["w"]);
        sm.check_touched().unwrap();

        // A worker that forgot the task it holds: found from the task and from the worker.
        sm.workers.get_mut("w").unwrap().held.clear();
        let why = sm.check_touched().unwrap_err();
        assert!(why.contains("task 1 is assigned to worker w, whose held set lacks it"), "{why}");
        sm.touched.entry_tasks.clear();
        assert!(sm.check_touched().unwrap_err().contains("free-slot index is out of step with worker w"));
        sm.workers.get_mut("w").unwrap().held.insert(1);
        sm.check_touched().unwrap();

        // A pending task (2) the entry did not touch, out of its queue: only the full check sees it.
        let key = queue_key(&sm.tasks[&2]);
        sm.pending.remove(&key);
        sm.touched.entry_workers.clear();
        assert!(sm.check_touched().unwrap_err().contains("pending queue"), "the sizes are checked every time");
        sm.counts[TaskState::Pending as usize] -= 1;
        sm.counts[TaskState::Cancelled as usize] += 1;
        sm.finished.insert(2);
        sm.check_touched().unwrap();
        assert!(sm.check_invariants().unwrap_err().contains("task 2"));

        let broken = InvariantBroken { index: 7, op: Op::Cancel { id: 2 }.name(), why: "x".into() };
        assert_eq!(
            broken.to_string(),
            "BUG: applying entry 7 (cancel) broke an invariant: x. This is a bug in raftsched, not disk damage \
             (the entry's checksum was good): keep the data dir and report it"
        );
    }

    /// A mixed cluster refuses the same submits everywhere: the hard bound rises only once every
    /// member applies the higher one.
    #[test]
    fn the_pending_bound_rises_with_the_cluster_version() {
        let mut sm = StateMachine::new();
        assert_eq!(sm.tasks_pending_max(), limits::TASKS_PENDING_MAX_V3);
        sm.apply(1, &Command { now_ms: 1, op: Op::SetClusterVersion { version: limits::PENDING_LIMIT_VERSION - 1 } });
        assert_eq!(sm.tasks_pending_max(), limits::TASKS_PENDING_MAX_V3);
        sm.apply(2, &Command { now_ms: 2, op: Op::SetClusterVersion { version: limits::PENDING_LIMIT_VERSION } });
        assert_eq!(sm.tasks_pending_max(), limits::TASKS_PENDING_MAX);
    }

    #[test]
    fn task_ids_count_from_one_in_submission_order() {
        let mut sm = StateMachine::new();
        let r = sm.apply(7, &submit("a", TaskSpec::builtin("echo", "hi")));
        assert_eq!(r, Response::Submitted { id: 1, created: true });
        let batch = Op::Batch {
            ops: vec![submit("b", TaskSpec::builtin("echo", "b")).op, submit("a", TaskSpec::builtin("echo", "hi")).op],
        };
        let r = sm.apply(8, &Command { now_ms: 1_000, op: batch });
        assert_eq!(
            r,
            Response::Batch(vec![
                Response::Submitted { id: 2, created: true },
                Response::Submitted { id: 1, created: false }
            ])
        );
        let t = sm.get(1).unwrap();
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
        // Newest first, paged backwards; filtered by state; with a bounded scan.
        let ids =
            |(tasks, next): (Vec<&crate::Task>, Option<TaskId>)| (tasks.iter().map(|t| t.id).collect::<Vec<_>>(), next);
        assert_eq!(ids(sm.newest(None, None, 3, 100)), (vec![25, 24, 23], Some(23)));
        assert_eq!(ids(sm.newest(None, Some(23), 3, 100)), (vec![22, 21, 20], Some(20)));
        assert_eq!(ids(sm.newest(None, Some(3), 5, 100)), (vec![2, 1], None));
        assert_eq!(ids(sm.newest(Some(TaskState::Cancelled), None, 5, 100)), (vec![3], None));
        assert_eq!(ids(sm.newest(Some(TaskState::Cancelled), None, 5, 10)), (vec![], Some(16)));
        assert_eq!(ids(sm.newest(Some(TaskState::Cancelled), Some(16), 5, 100)), (vec![3], None));
    }

    #[test]
    fn retention_removes_the_oldest_finished_tasks_and_their_keys() {
        let mut sm = StateMachine::new();
        for i in 1..=10u64 {
            sm.apply(i, &submit(&format!("k{i}"), TaskSpec::builtin("echo", "x")));
        }
        // 1..=8 finish (cancelled); 9 and 10 stay pending.
        for id in 1..=8u64 {
            sm.apply(10 + id, &Command { now_ms: 2_000, op: Op::Cancel { id } });
        }
        assert!(!sm.purge_due(8));
        assert!(sm.purge_due(7));
        assert_eq!(
            sm.apply(30, &Command { now_ms: 3_000, op: Op::PurgeFinished { keep: 3 } }),
            Response::Purged { n_purged: 5 }
        );
        let ids: Vec<TaskId> = sm.list(&ListFilter::default()).tasks.iter().map(|t| t.id).collect();
        assert_eq!(ids, vec![6, 7, 8, 9, 10]);
        assert_eq!(sm.count(TaskState::Cancelled), 3);
        assert_eq!(sm.get_by_key("k1"), None);
        // A purged key is free again: a new task, with a new id.
        assert_eq!(
            sm.apply(31, &submit("k1", TaskSpec::builtin("echo", "x"))),
            Response::Submitted { id: 11, created: true }
        );
        // Live tasks are never purged.
        assert_eq!(
            sm.apply(32, &Command { now_ms: 3_000, op: Op::PurgeFinished { keep: 0 } }),
            Response::Purged { n_purged: 3 }
        );
        assert_eq!(sm.task_count(), 3);
        assert_eq!(sm.check_invariants(), Ok(()));
    }

    use crate::query::ListFilter;
}
