//! One fixed value of every record kind, shared by the fixture and hostile-input tests.
//! Never change a sample: its bytes are committed under `testdata/` (add a new one instead).

#![allow(dead_code)]
// The samples return openraft's reply type as it is.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote,
};
use raftsched_format::*;
use raftsched_state::{
    AfterPolicy, AfterSpec, Command, Concurrency, FlowSpec, FlowTask, Op, Output, ReportEvent, Response, ScheduleSpec,
    StateMachine, SubmitOptions, TaskSpec, TaskState,
};

pub fn log_id(term: u64, node: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn spec() -> TaskSpec {
    let mut spec = TaskSpec::command(vec!["/bin/echo".into(), "hello".into()]);
    spec.priority = 5;
    spec.constraints = BTreeMap::from([("zone".to_string(), "a".to_string())]);
    spec.env = BTreeMap::from([("K".to_string(), "V".to_string())]);
    spec.cwd = Some("/tmp".into());
    spec.timeout_ms = 60_000;
    spec
}

pub fn ops() -> Vec<Op> {
    vec![
        Op::Submit { key: "k-1".into(), spec: spec() },
        Op::Cancel { id: 7 },
        Op::Report {
            task_id: 3,
            token: 12,
            event: ReportEvent::Ended { exit_code: 0, output_tail: "ok\n".into(), timed_out: false },
        },
        Op::Heartbeat { worker_id: "w1".into(), instance: 99 },
    ]
}

pub fn membership() -> Membership<NodeId, BasicNode> {
    let nodes: BTreeMap<NodeId, BasicNode> =
        (1..=3).map(|i| (i, BasicNode { addr: format!("10.0.0.{i}:7001") })).collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

pub fn entry_normal() -> Entry<TypeConfig> {
    let cmd = Command { now_ms: 1_764_000_000_000, op: Op::BatchDispatch { ops: ops() } };
    Entry { log_id: log_id(3, 2, 41), payload: EntryPayload::Normal(cmd) }
}

pub fn entry_membership() -> Entry<TypeConfig> {
    Entry { log_id: log_id(1, 1, 0), payload: EntryPayload::Membership(membership()) }
}

pub fn entry_blank() -> Entry<TypeConfig> {
    Entry { log_id: log_id(4, 3, 57), payload: EntryPayload::Blank }
}

pub fn entry_schedule() -> Entry<TypeConfig> {
    let spec = ScheduleSpec::new("0 3 * * *", TaskSpec::builtin("echo", "nightly"));
    let cmd =
        Command { now_ms: 1_764_000_000_500, op: Op::CreateSchedule { name: "nightly".into(), spec: Box::new(spec) } };
    Entry { log_id: log_id(3, 2, 42), payload: EntryPayload::Normal(cmd) }
}

pub fn entry_set_cluster_version() -> Entry<TypeConfig> {
    let cmd = Command { now_ms: 1_764_000_001_000, op: Op::SetClusterVersion { version: 1 } };
    Entry { log_id: log_id(5, 1, 90), payload: EntryPayload::Normal(cmd) }
}

pub fn entry_report_from() -> Entry<TypeConfig> {
    let event = ReportEvent::Ended { exit_code: 3, output_tail: "tail".into(), timed_out: false };
    let op = Op::ReportFrom { worker_id: "w1".into(), instance: 0xfeed, task_id: 12, token: 88, event };
    let ops = vec![op, Op::Cancel { id: 4 }];
    Entry {
        log_id: log_id(6, 2, 120),
        payload: EntryPayload::Normal(Command { now_ms: 1_764_000_002_000, op: Op::BatchDispatch { ops } }),
    }
}

/// A report with stdout and stderr apart (format 5).
pub fn report_apart() -> ReportEvent {
    let output = Output {
        stdout_tail: "line 2\nline 3\n".into(),
        stderr_tail: "warning: late\n".into(),
        stdout_bytes: 21,
        stderr_bytes: 14,
    };
    ReportEvent::EndedApart { exit_code: 0, timed_out: false, output: Box::new(output) }
}

pub fn entry_report_apart() -> Entry<TypeConfig> {
    let op = Op::ReportFrom { worker_id: "w1".into(), instance: 0xfeed, task_id: 13, token: 89, event: report_apart() };
    Entry {
        log_id: log_id(7, 2, 130),
        payload: EntryPayload::Normal(Command { now_ms: 1_764_000_003_000, op: Op::BatchDispatch { ops: vec![op] } }),
    }
}

pub fn vote() -> Vote<NodeId> {
    Vote::new_committed(7, 2)
}

pub fn snapshot_meta() -> Meta {
    SnapshotMeta {
        last_log_id: Some(log_id(3, 2, 41)),
        last_membership: StoredMembership::new(Some(log_id(1, 1, 0)), membership()),
        snapshot_id: "3-2-41-1".into(),
    }
}

/// A small state: tasks submitted, a worker, an assignment, a report, a schedule.
pub fn state(cluster_version: u32) -> StateMachine {
    let mut sm = StateMachine::new();
    let t0 = 1_764_000_000_000;
    let mut index = 0;
    let mut apply = |sm: &mut StateMachine, op: Op| {
        index += 1;
        sm.apply(index, &Command { now_ms: t0 + index * 10, op })
    };
    sm.advance(0);
    for i in 0..3 {
        apply(&mut sm, Op::Submit { key: format!("k-{i}"), spec: spec() });
    }
    let labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
    let register =
        Op::RegisterWorker { worker_id: "w1".into(), instance: 1, addr: "10.0.0.9:0".into(), slots: 2, labels };
    apply(&mut sm, register);
    apply(&mut sm, Op::BatchDispatch { ops: vec![Op::Cancel { id: 3 }] });
    let spec = ScheduleSpec::new("0 3 * * *", TaskSpec::builtin("echo", "nightly"));
    apply(&mut sm, Op::CreateSchedule { name: "nightly".into(), spec: Box::new(spec) });
    if cluster_version > 0 {
        apply(&mut sm, Op::SetClusterVersion { version: cluster_version });
    }
    if cluster_version >= 5 {
        // A result with its output streams apart, which format 5 carries beside the state.
        let token = sm.get(1).and_then(|t| t.assignment.as_ref()).map(|a| a.token).expect("task 1 is assigned");
        apply(&mut sm, Op::Report { task_id: 1, token, event: report_apart() });
        assert!(sm.result_streams().next().is_some(), "the sample keeps streams apart");
    }
    if cluster_version >= 3 {
        // The state's time runs from here on: an entry stamped earlier does not move it back.
        apply(&mut sm, Op::Cancel { id: 1 });
        index += 10;
        sm.apply(index, &Command { now_ms: t0, op: Op::Cancel { id: 2 } });
    }
    if cluster_version >= 6 {
        // Dependencies, which format 6 carries beside the state: one task waiting, one skipped.
        let mut next = |sm: &mut StateMachine, op: Op| {
            index += 1;
            sm.apply(index, &Command { now_ms: t0 + 1_000 + index, op })
        };
        next(&mut sm, Op::Submit { key: "k-root".into(), spec: TaskSpec::builtin("echo", "root") });
        next(&mut sm, submit_after("k-wait", vec![4], &["k-root"]));
        next(&mut sm, submit_after("k-skip", vec![4], &["k-2"]));
        assert_eq!((sm.count(TaskState::Waiting), sm.count(TaskState::Skipped)), (1, 1), "the sample waits and skips");
    }
    if cluster_version >= 7 {
        // A concurrency key, which format 7 carries beside the state.
        index += 10;
        sm.apply(index, &Command { now_ms: t0 + 2_000, op: submit_with("k-limited") });
        assert_eq!(sm.concurrency_entries().count(), 1, "the sample has a concurrency key");
    }
    if cluster_version >= 9 {
        // A schedule whose tasks get a concurrency key, which format 9 carries beside the state.
        index += 10;
        sm.apply(index, &Command { now_ms: t0 + 3_000, op: create_schedule_with() });
        assert_eq!(sm.schedule_concurrency_entries().count(), 1, "the sample has a keyed schedule");
    }
    sm
}

/// A submit that runs after `ids` and `keys` succeed (format 6).
pub fn submit_after(key: &str, ids: Vec<u64>, keys: &[&str]) -> Op {
    let keys = keys.iter().map(|k| k.to_string()).collect();
    let after = AfterSpec { ids, keys, policy: AfterPolicy::Success };
    Op::SubmitAfter { key: key.into(), spec: spec(), after: Box::new(after) }
}

/// A submit with options: after task 4, under concurrency key "db" with limit 2 (format 7).
pub fn submit_with(key: &str) -> Op {
    let after = AfterSpec { ids: vec![4], keys: Vec::new(), policy: AfterPolicy::Finished };
    let concurrency = Concurrency { key: "db".into(), limit: 2 };
    let options = SubmitOptions { after: Some(after), concurrency: Some(concurrency) };
    Op::SubmitWith { key: key.into(), spec: spec(), options: Box::new(options) }
}

pub fn entry_submit_with() -> Entry<TypeConfig> {
    let cmd = Command { now_ms: 1_764_000_005_000, op: Op::BatchDispatch { ops: vec![submit_with("k-10")] } };
    Entry { log_id: log_id(9, 1, 150), payload: EntryPayload::Normal(cmd) }
}

/// A flow of two tasks, one after the other (format 8).
pub fn entry_submit_flow() -> Entry<TypeConfig> {
    let first =
        FlowTask { name: "a".into(), spec: spec(), after: Vec::new(), policy: AfterPolicy::Success, concurrency: None };
    let concurrency = Some(Concurrency { key: "db".into(), limit: 1 });
    let second = FlowTask {
        name: "b".into(),
        spec: spec(),
        after: vec!["a".into()],
        policy: AfterPolicy::Finished,
        concurrency,
    };
    let op = Op::SubmitFlow { key: "flow-1".into(), flow: Box::new(FlowSpec { tasks: vec![first, second] }) };
    let cmd = Command { now_ms: 1_764_000_006_000, op: Op::BatchDispatch { ops: vec![op] } };
    Entry { log_id: log_id(10, 2, 160), payload: EntryPayload::Normal(cmd) }
}

/// A schedule whose tasks get concurrency key "nightly-db" (format 9).
pub fn create_schedule_with() -> Op {
    let spec = ScheduleSpec::new("0 4 * * *", TaskSpec::builtin("echo", "keyed"));
    let concurrency = Concurrency { key: "nightly-db".into(), limit: 1 };
    Op::CreateScheduleWith { name: "keyed".into(), spec: Box::new(spec), concurrency }
}

pub fn entry_create_schedule_with() -> Entry<TypeConfig> {
    let cmd = Command { now_ms: 1_764_000_007_000, op: create_schedule_with() };
    Entry { log_id: log_id(11, 3, 170), payload: EntryPayload::Normal(cmd) }
}

pub fn entry_submit_after() -> Entry<TypeConfig> {
    let cmd = Command {
        now_ms: 1_764_000_004_000,
        op: Op::BatchDispatch { ops: vec![submit_after("k-9", vec![7, 8], &["k-0"])] },
    };
    Entry { log_id: log_id(8, 3, 140), payload: EntryPayload::Normal(cmd) }
}

pub fn append_entries() -> AppendEntries {
    AppendEntriesRequest {
        vote: vote(),
        prev_log_id: Some(log_id(3, 2, 40)),
        entries: vec![entry_normal(), entry_schedule()],
        leader_commit: Some(log_id(3, 2, 39)),
    }
}

pub fn append_entries_reply() -> RaftReply<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
    Ok(AppendEntriesResponse::HigherVote(Vote::new(9, 3)))
}

pub fn vote_request() -> VoteRequest<NodeId> {
    VoteRequest { vote: Vote::new(8, 1), last_log_id: Some(log_id(7, 2, 100)) }
}

pub fn vote_reply() -> RaftReply<VoteResponse<NodeId>, openraft::error::Infallible> {
    Ok(VoteResponse { vote: Vote::new(8, 1), vote_granted: true, last_log_id: Some(log_id(7, 2, 99)) })
}

pub fn install_snapshot() -> InstallSnapshot {
    InstallSnapshotRequest {
        vote: vote(),
        meta: snapshot_meta(),
        offset: 0,
        data: b"snapshot bytes".to_vec(),
        done: false,
    }
}

pub fn install_snapshot_reply() -> RaftReply<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
    let mismatch = SnapshotMismatch {
        expect: openraft::SnapshotSegmentId { id: "a".into(), offset: 0 },
        got: openraft::SnapshotSegmentId { id: "a".into(), offset: 5 },
    };
    Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch)))
}

pub fn forward_outcomes() -> Vec<ForwardOutcome> {
    vec![
        ForwardOutcome::Applied(Response::Submitted { id: 4, created: true }),
        ForwardOutcome::Applied(Response::Batch(vec![Response::Reported, Response::Noop])),
        ForwardOutcome::Refused { code: 8, message: "busy".into() },
        ForwardOutcome::NotLeader,
    ]
}

/// Outcomes only format 2 has: a report refused for not coming from the holder.
pub fn forward_outcomes_v2() -> Vec<ForwardOutcome> {
    let rejection = raftsched_state::Rejection::NotHolder { task_id: 12, worker_id: "w2".into() };
    vec![ForwardOutcome::Applied(Response::Rejected(rejection)), ForwardOutcome::Applied(Response::Reported)]
}

pub fn watermark() -> Watermark {
    Watermark { seq: 12, log_end_durable: 4242, vote_term: 7 }
}

pub fn snapshot_file() -> SnapshotFile {
    SnapshotFile { name: "00000000000000004242-000003.snapshot".to_string(), len: 228_000_000, crc32: 0xdead_beef }
}
