//! The record types: the shapes that are written and sent, separate from the state crate's types,
//! which convert to and from them here and nowhere else.
//!
//! Why records of their own: the state crate's `Op` and `Response` hold lists of themselves
//! (`Op::Batch`, `Response::Batch`), so decoding them straight from bytes recursed as deep as the
//! input said (a 120 KB message aborted a replica with a stack overflow). Here a batch holds
//! `Leaf` items, whose own batch variants hold `Never`, which no byte sequence decodes to: depth is
//! at most two by construction, for any input.
//!
//! Layout invariant: each record has the field and variant order of the type it decodes into
//! (bincode: fields in order, variants by index), as format 0 wrote it, so format 0 payloads decode
//! as these records and format 1 payloads are the same bytes inside an envelope. The encoder
//! writes the state crate's and openraft's types directly, with no copy on the write path, after
//! `depth` checked that they fit the records; `tests/roundtrip.rs` proves, for every variant, that
//! what the encoder writes the records read back equal. New variants go last and are sent
//! only once the cluster version allows them (`SetClusterVersion`, `ClusterVersionSet`). Leaf
//! types that cannot nest (`TaskSpec`, `ScheduleSpec`, `StateMachine`'s contents, openraft's ids
//! and membership) are encoded by their own serde derives; the golden fixtures in `testdata/` pin
//! every one of those bytes, so a change there fails CI until it gets a new format version.

use std::collections::BTreeMap;

use openraft::{BasicNode, LogId, Membership, Vote};
use raftsched_state::{
    AfterSpec, AssignItem, Command, Concurrency, FlowSpec, Op, Rejection, ReportEvent, Response, ScheduleSpec,
    SubmitOptions, TaskId, TaskSpec,
};
use serde::{Deserialize, Serialize};

use crate::{FormatError, NodeId};

/// What a batch holds: converts into the item type `T`.
pub(crate) trait Nest<T>: Sized {
    fn unwrap(self) -> T;
}

/// The innermost level: no bytes decode to it, so a batch inside a batch holds nothing.
#[derive(Debug)]
pub(crate) enum Never {}

impl<'de> Deserialize<'de> for Never {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Never, D::Error> {
        Err(serde::de::Error::custom("a batch may not hold a non-empty batch"))
    }
}

impl<T> Nest<T> for Never {
    fn unwrap(self) -> T {
        match self {}
    }
}

/// `Op`'s layout with its batches' items of type `B`.
#[derive(Debug, Deserialize)]
pub(crate) enum OpRecord<B> {
    Submit { key: String, spec: TaskSpec },
    Cancel { id: TaskId },
    RegisterWorker { worker_id: String, instance: u64, addr: String, slots: u32, labels: BTreeMap<String, String> },
    Heartbeat { worker_id: String, instance: u64 },
    ExpireWorker { worker_id: String, epoch: u64, heartbeat_seq: u64 },
    DrainWorker { worker_id: String },
    Assign { items: Vec<AssignItem> },
    Report { task_id: TaskId, token: u64, event: ReportEvent },
    Batch { ops: Vec<B> },
    CreateSchedule { name: String, spec: Box<ScheduleSpec> },
    DeleteSchedule { name: String },
    SetSchedulePaused { name: String, paused: bool },
    FireSchedule { name: String, occurrence_ms: u64 },
    ReleaseDue,
    PurgeFinished { keep: u64 },
    BatchDispatch { ops: Vec<B> },
    SetClusterVersion { version: u32 },
    ReportFrom { worker_id: String, instance: u64, task_id: TaskId, token: u64, event: ReportEvent },
    SubmitAfter { key: String, spec: TaskSpec, after: Box<AfterSpec> },
    SubmitWith { key: String, spec: TaskSpec, options: Box<SubmitOptions> },
    SubmitFlow { key: String, flow: Box<FlowSpec> },
    CreateScheduleWith { name: String, spec: Box<ScheduleSpec>, concurrency: Concurrency },
}

/// An op inside a batch.
#[derive(Debug, Deserialize)]
pub(crate) struct LeafOp(OpRecord<Never>);

impl Nest<Op> for LeafOp {
    fn unwrap(self) -> Op {
        self.0.into_op()
    }
}

fn unwrap_all<T, B: Nest<T>>(items: Vec<B>) -> Vec<T> {
    items.into_iter().map(B::unwrap).collect()
}

impl<B: Nest<Op>> OpRecord<B> {
    pub(crate) fn into_op(self) -> Op {
        match self {
            OpRecord::Submit { key, spec } => Op::Submit { key, spec },
            OpRecord::Cancel { id } => Op::Cancel { id },
            OpRecord::RegisterWorker { worker_id, instance, addr, slots, labels } => {
                Op::RegisterWorker { worker_id, instance, addr, slots, labels }
            }
            OpRecord::Heartbeat { worker_id, instance } => Op::Heartbeat { worker_id, instance },
            OpRecord::ExpireWorker { worker_id, epoch, heartbeat_seq } => {
                Op::ExpireWorker { worker_id, epoch, heartbeat_seq }
            }
            OpRecord::DrainWorker { worker_id } => Op::DrainWorker { worker_id },
            OpRecord::Assign { items } => Op::Assign { items },
            OpRecord::Report { task_id, token, event } => Op::Report { task_id, token, event },
            OpRecord::Batch { ops } => Op::Batch { ops: unwrap_all(ops) },
            OpRecord::CreateSchedule { name, spec } => Op::CreateSchedule { name, spec },
            OpRecord::DeleteSchedule { name } => Op::DeleteSchedule { name },
            OpRecord::SetSchedulePaused { name, paused } => Op::SetSchedulePaused { name, paused },
            OpRecord::FireSchedule { name, occurrence_ms } => Op::FireSchedule { name, occurrence_ms },
            OpRecord::ReleaseDue => Op::ReleaseDue,
            OpRecord::PurgeFinished { keep } => Op::PurgeFinished { keep },
            OpRecord::BatchDispatch { ops } => Op::BatchDispatch { ops: unwrap_all(ops) },
            OpRecord::SetClusterVersion { version } => Op::SetClusterVersion { version },
            OpRecord::ReportFrom { worker_id, instance, task_id, token, event } => {
                Op::ReportFrom { worker_id, instance, task_id, token, event }
            }
            OpRecord::SubmitAfter { key, spec, after } => Op::SubmitAfter { key, spec, after },
            OpRecord::SubmitWith { key, spec, options } => Op::SubmitWith { key, spec, options },
            OpRecord::SubmitFlow { key, flow } => Op::SubmitFlow { key, flow },
            OpRecord::CreateScheduleWith { name, spec, concurrency } => {
                Op::CreateScheduleWith { name, spec, concurrency }
            }
        }
    }
}

/// A top-level op: its batches hold leaf ops.
pub(crate) type TopOp = OpRecord<LeafOp>;

/// `Command`'s layout.
#[derive(Debug, Deserialize)]
pub(crate) struct CommandRecord {
    pub now_ms: u64,
    pub op: TopOp,
}

impl CommandRecord {
    pub(crate) fn into_command(self) -> Command {
        Command { now_ms: self.now_ms, op: self.op.into_op() }
    }
}

/// `Response`'s layout with its batch's items of type `B`.
#[derive(Debug, Deserialize)]
pub(crate) enum ResponseRecord<B> {
    Submitted { id: TaskId, created: bool },
    Cancelled { id: TaskId },
    Registered { epoch: u64 },
    HeartbeatOk { epoch: u64 },
    Expired { n_requeued: u32 },
    Drained,
    Assigned { token: u64, n_assigned: u32, n_stale: u32 },
    Reported,
    ScheduleCreated { created: bool, next_due_ms: Option<u64> },
    ScheduleUpdated { next_due_ms: Option<u64> },
    Fired { n_run: u32, n_missed: u64, next_due_ms: Option<u64> },
    Released { n_released: u32 },
    Purged { n_purged: u32 },
    Batch(Vec<B>),
    Noop,
    Rejected(Rejection),
    ClusterVersionSet { version: u32 },
}

/// A response inside a batch response.
#[derive(Debug, Deserialize)]
pub(crate) struct LeafResponse(ResponseRecord<Never>);

impl Nest<Response> for LeafResponse {
    fn unwrap(self) -> Response {
        self.0.into_response()
    }
}

impl<B: Nest<Response>> ResponseRecord<B> {
    pub(crate) fn into_response(self) -> Response {
        match self {
            ResponseRecord::Submitted { id, created } => Response::Submitted { id, created },
            ResponseRecord::Cancelled { id } => Response::Cancelled { id },
            ResponseRecord::Registered { epoch } => Response::Registered { epoch },
            ResponseRecord::HeartbeatOk { epoch } => Response::HeartbeatOk { epoch },
            ResponseRecord::Expired { n_requeued } => Response::Expired { n_requeued },
            ResponseRecord::Drained => Response::Drained,
            ResponseRecord::Assigned { token, n_assigned, n_stale } => {
                Response::Assigned { token, n_assigned, n_stale }
            }
            ResponseRecord::Reported => Response::Reported,
            ResponseRecord::ScheduleCreated { created, next_due_ms } => {
                Response::ScheduleCreated { created, next_due_ms }
            }
            ResponseRecord::ScheduleUpdated { next_due_ms } => Response::ScheduleUpdated { next_due_ms },
            ResponseRecord::Fired { n_run, n_missed, next_due_ms } => Response::Fired { n_run, n_missed, next_due_ms },
            ResponseRecord::Released { n_released } => Response::Released { n_released },
            ResponseRecord::Purged { n_purged } => Response::Purged { n_purged },
            ResponseRecord::Batch(items) => Response::Batch(unwrap_all(items)),
            ResponseRecord::Noop => Response::Noop,
            ResponseRecord::Rejected(why) => Response::Rejected(why),
            ResponseRecord::ClusterVersionSet { version } => Response::ClusterVersionSet { version },
        }
    }
}

pub(crate) type TopResponse = ResponseRecord<LeafResponse>;

/// openraft's `EntryPayload` layout.
#[derive(Debug, Deserialize)]
pub(crate) enum EntryPayloadRecord {
    Blank,
    Normal(CommandRecord),
    Membership(Membership<NodeId, BasicNode>),
}

/// openraft's `Entry` layout.
#[derive(Debug, Deserialize)]
pub(crate) struct EntryRecord {
    pub log_id: LogId<NodeId>,
    pub payload: EntryPayloadRecord,
}

/// openraft's `AppendEntriesRequest` layout.
#[derive(Debug, Deserialize)]
pub(crate) struct AppendEntriesRecord {
    pub vote: Vote<NodeId>,
    pub prev_log_id: Option<LogId<NodeId>>,
    pub entries: Vec<EntryRecord>,
    pub leader_commit: Option<LogId<NodeId>>,
}

/// `ForwardOutcome`'s layout.
#[derive(Debug, Deserialize)]
pub(crate) enum ForwardOutcomeRecord {
    Applied(TopResponse),
    Refused { code: i32, message: String },
    NotLeader,
}

/// A Raft error as format 1 sends it: openraft's error type nests without bound (`AnyError`'s
/// source chain), so only its text crosses the wire.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RaftErrorRecord<E> {
    Fatal { reason: String },
    Api(E),
}

/// Refuses what the records cannot carry: a batch inside a batch (other than an empty one, which
/// `Never` decodes).
pub(crate) mod depth {
    use super::*;

    fn nested_ops(ops: &[Op]) -> bool {
        ops.iter().any(|op| matches!(op, Op::Batch { ops } | Op::BatchDispatch { ops } if !ops.is_empty()))
    }

    pub(crate) fn check_op(op: &Op) -> Result<(), FormatError> {
        match op {
            Op::Batch { ops } | Op::BatchDispatch { ops } if nested_ops(ops) => {
                Err(FormatError::NotRepresentable { what: "a non-empty batch inside a batch".into() })
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn check_response(r: &Response) -> Result<(), FormatError> {
        match r {
            Response::Batch(items) if items.iter().any(|i| matches!(i, Response::Batch(v) if !v.is_empty())) => {
                Err(FormatError::NotRepresentable { what: "a non-empty batch response inside a batch".into() })
            }
            _ => Ok(()),
        }
    }
}
