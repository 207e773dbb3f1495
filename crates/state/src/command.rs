//! Commands the leader proposes through Raft, and what `apply` answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::after::AfterSpec;
use crate::concurrency::Concurrency;
use crate::flow::FlowSpec;
use crate::schedule::ScheduleSpec;
use crate::spec::TaskSpec;
use crate::task::{TaskId, TaskState};

/// One replicated command. `now_ms` is the proposing leader's wall clock when it proposed: the only
/// way time enters the state machine, so every replica computes the same timestamps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub now_ms: u64,
    pub op: Op,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create a task unless `key` already names one. Same key + same spec: the existing id.
    /// Same key + different spec: `Rejection::KeyConflict`.
    Submit {
        key: String,
        spec: TaskSpec,
    },
    /// Cancel a task that has not ended (a running one is killed by its worker when it sees the
    /// assignment gone). Cancelling a cancelled task succeeds again (idempotent).
    Cancel {
        id: TaskId,
    },
    /// A worker process announces itself. A new `instance` for an id whose node is not down is
    /// refused: that is a second live process claiming the id.
    RegisterWorker {
        worker_id: String,
        instance: u64,
        addr: String,
        slots: u32,
        labels: BTreeMap<String, String>,
    },
    /// Renews the worker's liveness (and, once acknowledged, its lease).
    Heartbeat {
        worker_id: String,
        instance: u64,
    },
    /// Declares a worker down. Decided by the leader from `heartbeat_seq`; if a heartbeat was
    /// applied since, the decision is stale and refused.
    ExpireWorker {
        worker_id: String,
        epoch: u64,
        heartbeat_seq: u64,
    },
    /// Stop assigning to the worker; what it runs finishes.
    DrainWorker {
        worker_id: String,
    },
    /// Leader-decided assignments, each conditional on the state it was decided from.
    Assign {
        items: Vec<AssignItem>,
    },
    /// A worker's report about the attempt it holds under `token`.
    Report {
        task_id: TaskId,
        token: u64,
        event: ReportEvent,
    },
    /// Several client ops in one entry, applied in order (the leader batches concurrent writes so
    /// that one log append and one fsync carry many of them).
    Batch {
        ops: Vec<Op>,
    },
    /// Create a schedule (an equal spec under an existing name is a retry).
    CreateSchedule {
        name: String,
        spec: Box<ScheduleSpec>,
    },
    DeleteSchedule {
        name: String,
    },
    SetSchedulePaused {
        name: String,
        paused: bool,
    },
    /// Leader-decided: fire schedule `name` from `occurrence_ms`, which must still be its next due
    /// occurrence, up to the command's `now_ms`.
    FireSchedule {
        name: String,
        occurrence_ms: u64,
    },
    /// Leader-decided: move `scheduled` tasks whose time is at or before `now_ms` to pending.
    ReleaseDue,
    /// Retention: remove the oldest (lowest id) finished tasks, and their keys, until at most
    /// `keep` finished tasks remain; at most `PURGE_BATCH_LEN_MAX` per command.
    PurgeFinished {
        keep: u64,
    },
    /// Client ops applied in order exactly as `Batch` applies them, then dispatch: pending tasks
    /// go to free worker slots as [`StateMachine::plan_assignments`] would plan them at `now_ms`
    /// (at most `ASSIGN_BATCH_LEN_MAX`, looking at most `DISPATCH_SCAN_LEN_MAX` pending tasks),
    /// with this entry's index as their token. The leader proposes client writes this way, so a
    /// submitted task is assigned, and a slot a report freed is refilled, in the entry that made
    /// it possible rather than by an `Assign` one commit later. Kept last: the log stores ops by
    /// variant index, so earlier entries (`Batch`) still decode and replay as they did.
    ///
    /// [`StateMachine::plan_assignments`]: crate::StateMachine::plan_assignments
    BatchDispatch {
        ops: Vec<Op>,
    },
    /// Raises the cluster version (the record format every member reads) to `version`; never
    /// lowers it. Proposed by the leader only once every member has said it supports `version`
    /// (`raftsched_format` gates what is written and sent on it). Kept last, like `BatchDispatch`.
    SetClusterVersion {
        version: u32,
    },
    /// A worker's report about the attempt it holds under `token`, naming itself: applied only if
    /// `worker_id`, registered as `instance`, holds the attempt (whatever the token), so a worker
    /// cannot report on another's task by guessing tokens. Replaces `Report` from cluster version
    /// 2 on (format 2); kept last, like `SetClusterVersion`.
    ReportFrom {
        worker_id: String,
        instance: u64,
        task_id: TaskId,
        token: u64,
        event: ReportEvent,
    },
    /// Create a task that runs after others (`after.rs`). Format 6: proposed only from cluster
    /// version `AFTER_VERSION`, which every member then decodes.
    SubmitAfter {
        key: String,
        spec: TaskSpec,
        after: Box<AfterSpec>,
    },
    /// Create a task with options: dependencies and a concurrency key (`concurrency.rs`). Format 7:
    /// proposed only from cluster version `CONCURRENCY_VERSION`.
    SubmitWith {
        key: String,
        spec: TaskSpec,
        options: Box<SubmitOptions>,
    },
    /// Create a flow: every task of a graph, or none (`flow.rs`). Format 8: proposed only from
    /// cluster version `FLOW_VERSION`.
    SubmitFlow {
        key: String,
        flow: Box<FlowSpec>,
    },
    /// Create a schedule whose tasks get a concurrency key. Format 9: proposed only from cluster
    /// version `SCHEDULE_CONCURRENCY_VERSION`.
    CreateScheduleWith {
        name: String,
        spec: Box<ScheduleSpec>,
        concurrency: Concurrency,
    },
}

/// What a submit asks for beyond its spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitOptions {
    pub after: Option<AfterSpec>,
    pub concurrency: Option<Concurrency>,
}

/// Assign `task_id` to `worker_id` if the task is still pending with `attempts` attempts made and
/// the worker is still ready at `epoch` with a free slot and the right labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignItem {
    pub task_id: TaskId,
    pub attempts: u32,
    pub worker_id: String,
    pub epoch: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportEvent {
    Started,
    /// Output as one tail of both streams (workers and clusters before format 5).
    Ended {
        exit_code: i32,
        output_tail: String,
        timed_out: bool,
    },
    /// Stdout and stderr apart, with each stream's length. Proposed only from cluster version
    /// `OUTPUT_APART_VERSION` on: an older replica cannot decode it.
    EndedApart {
        exit_code: i32,
        timed_out: bool,
        output: Box<Output>,
    },
}

/// An attempt's output as a worker that keeps the streams apart reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The last bytes of stdout, at most `limits::OUTPUT_TAIL_BYTES_MAX`.
    pub stdout_tail: String,
    /// The last bytes of stderr, at most `limits::OUTPUT_TAIL_BYTES_MAX`.
    pub stderr_tail: String,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}

impl Op {
    /// Whether this op only makes sense once per intent; used by the edge for logging.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Submit { .. } => "submit",
            Op::Cancel { .. } => "cancel",
            Op::RegisterWorker { .. } => "register_worker",
            Op::Heartbeat { .. } => "heartbeat",
            Op::ExpireWorker { .. } => "expire_worker",
            Op::DrainWorker { .. } => "drain_worker",
            Op::Assign { .. } => "assign",
            Op::Report { .. } => "report",
            Op::ReportFrom { .. } => "report_from",
            Op::SubmitAfter { .. } => "submit_after",
            Op::SubmitWith { .. } => "submit_with",
            Op::SubmitFlow { .. } => "submit_flow",
            Op::CreateScheduleWith { .. } => "create_schedule_with",
            Op::Batch { .. } => "batch",
            Op::CreateSchedule { .. } => "create_schedule",
            Op::DeleteSchedule { .. } => "delete_schedule",
            Op::SetSchedulePaused { .. } => "set_schedule_paused",
            Op::FireSchedule { .. } => "fire_schedule",
            Op::ReleaseDue => "release_due",
            Op::PurgeFinished { .. } => "purge_finished",
            Op::BatchDispatch { .. } => "batch_dispatch",
            Op::SetClusterVersion { .. } => "set_cluster_version",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// `created` is false when the key already named this task (a retry).
    Submitted {
        id: TaskId,
        created: bool,
    },
    Cancelled {
        id: TaskId,
    },
    Registered {
        epoch: u64,
    },
    HeartbeatOk {
        epoch: u64,
    },
    Expired {
        n_requeued: u32,
    },
    Drained,
    /// How many items of an `Assign` applied; the token of each is the entry's log index.
    Assigned {
        token: u64,
        n_assigned: u32,
        n_stale: u32,
    },
    Reported,
    ScheduleCreated {
        created: bool,
        next_due_ms: Option<u64>,
    },
    ScheduleUpdated {
        next_due_ms: Option<u64>,
    },
    Fired {
        n_run: u32,
        n_missed: u64,
        next_due_ms: Option<u64>,
    },
    Released {
        n_released: u32,
    },
    Purged {
        n_purged: u32,
    },
    /// One answer per op of a `Batch`, in order.
    Batch(Vec<Response>),
    /// The answer for Raft's own entries (blank, membership), which carry no command.
    Noop,
    Rejected(Rejection),
    /// The cluster version after a `SetClusterVersion` (kept last: older builds never see it).
    ClusterVersionSet {
        version: u32,
    },
}

/// Why `apply` refused a command. Refusals change nothing in the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("idempotency key {key:?} already names task {existing_id} with a different spec")]
    KeyConflict { key: String, existing_id: TaskId },
    #[error("no task with id {id}")]
    NotFound { id: TaskId },
    #[error("task {id} is {} and cannot be cancelled (it has already ended)", state.as_str())]
    NotCancellable { id: TaskId, state: TaskState },
    #[error("{count} tasks pending, at tasks_pending_max {limit}")]
    TooManyPending { count: usize, limit: usize },
    #[error("{count} tasks held, at tasks_total_max {limit}")]
    TooManyTasks { count: usize, limit: usize },
    #[error("worker {worker_id:?} is held by another live process; it must stop (or be declared down) first")]
    WorkerIdInUse { worker_id: String },
    #[error("no worker {worker_id:?} is registered")]
    UnknownWorker { worker_id: String },
    #[error("worker {worker_id:?} must register again (it was declared down or another process took its id)")]
    WorkerNotCurrent { worker_id: String },
    #[error("report for task {task_id} carries stale token {token} (the task is no longer held under it)")]
    StaleToken { task_id: TaskId, token: u64 },
    #[error("{count} workers registered, at workers_max {limit}")]
    TooManyWorkers { count: usize, limit: usize },
    #[error("a schedule named {name:?} already exists with a different spec")]
    ScheduleExists { name: String },
    #[error("no schedule named {name:?}")]
    NoSchedule { name: String },
    #[error("{count} schedules held, at schedules_max {limit}")]
    TooManySchedules { count: usize, limit: usize },
    #[error("{count} tasks scheduled for later, at tasks_scheduled_max {limit}")]
    TooManyScheduled { count: usize, limit: usize },
    #[error("the decision is stale: the state it was made from has changed")]
    StaleDecision,
    #[error("invalid request: {reason}")]
    Invalid { reason: String },
    /// A `ReportFrom` by a worker (or a registration of it) that does not hold the task's attempt.
    /// Kept last: rejections travel inside responses, which are stored by variant index.
    #[error("worker {worker_id:?} (this registration) does not hold task {task_id}")]
    NotHolder { task_id: TaskId, worker_id: String },
}
