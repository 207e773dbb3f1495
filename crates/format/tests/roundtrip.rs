//! The encoder writes the state crate's and openraft's own types; the decoder reads them through
//! the record types. For every variant of `Op` and `Response` (random values, batches one level
//! deep), in every format, what is written reads back equal.

mod samples;

use openraft::{Entry, EntryPayload};
use proptest::prelude::*;
use raftsched_format::*;
use raftsched_state::{
    AfterPolicy, AfterSpec, AssignItem, Command, Concurrency, FlowSpec, FlowTask, Op, Output, Rejection, ReportEvent,
    Response, ScheduleSpec, SubmitOptions, TaskSpec, TaskState,
};

fn arb_string() -> impl Strategy<Value = String> {
    "[a-z0-9:/ ]{0,12}"
}

fn arb_spec() -> impl Strategy<Value = TaskSpec> {
    (
        prop::collection::vec(arb_string(), 1..3),
        any::<i32>(),
        prop::collection::btree_map(arb_string(), arb_string(), 0..3),
    )
        .prop_map(|(argv, priority, env)| {
            let mut spec = TaskSpec::command(argv);
            spec.priority = priority;
            spec.env = env;
            spec
        })
}

fn arb_leaf_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (arb_string(), arb_spec()).prop_map(|(key, spec)| Op::Submit { key, spec }),
        (
            arb_string(),
            arb_spec(),
            prop::collection::vec(any::<u64>(), 0..4),
            prop::collection::vec(arb_string(), 0..3),
            any::<bool>()
        )
            .prop_map(|(key, spec, ids, keys, success)| {
                let policy = if success { AfterPolicy::Success } else { AfterPolicy::Finished };
                Op::SubmitAfter { key, spec, after: Box::new(AfterSpec { ids, keys, policy }) }
            }),
        (arb_string(), arb_spec(), arb_string(), any::<u32>(), any::<bool>()).prop_map(
            |(key, spec, ckey, limit, after)| {
                let after = after.then(|| AfterSpec {
                    ids: vec![limit.into()],
                    keys: Vec::new(),
                    policy: AfterPolicy::Success,
                });
                let options = SubmitOptions { after, concurrency: Some(Concurrency { key: ckey, limit }) };
                Op::SubmitWith { key, spec, options: Box::new(options) }
            }
        ),
        (arb_string(), arb_spec(), arb_string(), prop::collection::vec(arb_string(), 0..3)).prop_map(
            |(key, spec, name, after)| {
                let task = FlowTask { name, spec, after, policy: AfterPolicy::Finished, concurrency: None };
                Op::SubmitFlow { key, flow: Box::new(FlowSpec { tasks: vec![task] }) }
            }
        ),
        (arb_string(), arb_spec(), arb_string(), any::<u32>()).prop_map(|(name, task, key, limit)| {
            let spec = Box::new(ScheduleSpec::new("@every 1s", task));
            Op::CreateScheduleWith { name, spec, concurrency: Concurrency { key, limit } }
        }),
        any::<u64>().prop_map(|id| Op::Cancel { id }),
        (
            arb_string(),
            any::<u64>(),
            arb_string(),
            any::<u32>(),
            prop::collection::btree_map(arb_string(), arb_string(), 0..3)
        )
            .prop_map(|(worker_id, instance, addr, slots, labels)| Op::RegisterWorker {
                worker_id,
                instance,
                addr,
                slots,
                labels
            }),
        (arb_string(), any::<u64>()).prop_map(|(worker_id, instance)| Op::Heartbeat { worker_id, instance }),
        (arb_string(), any::<u64>(), any::<u64>()).prop_map(|(worker_id, epoch, heartbeat_seq)| Op::ExpireWorker {
            worker_id,
            epoch,
            heartbeat_seq
        }),
        arb_string().prop_map(|worker_id| Op::DrainWorker { worker_id }),
        prop::collection::vec((any::<u64>(), any::<u32>(), arb_string(), any::<u64>()), 0..3).prop_map(|items| {
            Op::Assign {
                items: items
                    .into_iter()
                    .map(|(task_id, attempts, worker_id, epoch)| AssignItem { task_id, attempts, worker_id, epoch })
                    .collect(),
            }
        }),
        (any::<u64>(), any::<u64>(), 0..3u8, any::<i32>(), arb_string(), arb_string(), any::<u64>()).prop_map(
            |(task_id, token, kind, exit_code, stdout_tail, stderr_tail, bytes)| {
                let event = match kind {
                    0 => ReportEvent::Started,
                    1 => ReportEvent::Ended { exit_code, output_tail: stdout_tail, timed_out: true },
                    _ => {
                        let output = Output { stdout_tail, stderr_tail, stdout_bytes: bytes, stderr_bytes: bytes / 2 };
                        ReportEvent::EndedApart { exit_code, timed_out: false, output: Box::new(output) }
                    }
                };
                Op::Report { task_id, token, event }
            }
        ),
        (arb_string(), arb_spec())
            .prop_map(|(name, task)| Op::CreateSchedule { name, spec: Box::new(ScheduleSpec::new("@every 1s", task)) }),
        arb_string().prop_map(|name| Op::DeleteSchedule { name }),
        (arb_string(), any::<bool>()).prop_map(|(name, paused)| Op::SetSchedulePaused { name, paused }),
        (arb_string(), any::<u64>()).prop_map(|(name, occurrence_ms)| Op::FireSchedule { name, occurrence_ms }),
        Just(Op::ReleaseDue),
        any::<u64>().prop_map(|keep| Op::PurgeFinished { keep }),
        any::<u32>().prop_map(|version| Op::SetClusterVersion { version }),
        Just(Op::Batch { ops: vec![] }),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => arb_leaf_op(),
        1 => prop::collection::vec(arb_leaf_op(), 0..4).prop_map(|ops| Op::Batch { ops }),
        1 => prop::collection::vec(arb_leaf_op(), 0..4).prop_map(|ops| Op::BatchDispatch { ops }),
    ]
}

fn arb_leaf_response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (any::<u64>(), any::<bool>()).prop_map(|(id, created)| Response::Submitted { id, created }),
        any::<u64>().prop_map(|id| Response::Cancelled { id }),
        any::<u64>().prop_map(|epoch| Response::Registered { epoch }),
        any::<u64>().prop_map(|epoch| Response::HeartbeatOk { epoch }),
        any::<u32>().prop_map(|n_requeued| Response::Expired { n_requeued }),
        Just(Response::Drained),
        (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(token, n_assigned, n_stale)| Response::Assigned {
            token,
            n_assigned,
            n_stale
        }),
        Just(Response::Reported),
        (any::<bool>(), any::<Option<u64>>())
            .prop_map(|(created, next_due_ms)| Response::ScheduleCreated { created, next_due_ms }),
        any::<Option<u64>>().prop_map(|next_due_ms| Response::ScheduleUpdated { next_due_ms }),
        (any::<u32>(), any::<u64>(), any::<Option<u64>>()).prop_map(|(n_run, n_missed, next_due_ms)| Response::Fired {
            n_run,
            n_missed,
            next_due_ms
        }),
        any::<u32>().prop_map(|n_released| Response::Released { n_released }),
        any::<u32>().prop_map(|n_purged| Response::Purged { n_purged }),
        Just(Response::Noop),
        (arb_string(), any::<u64>())
            .prop_map(|(key, existing_id)| Response::Rejected(Rejection::KeyConflict { key, existing_id })),
        any::<u64>().prop_map(|id| Response::Rejected(Rejection::NotCancellable { id, state: TaskState::Succeeded })),
        arb_string().prop_map(|reason| Response::Rejected(Rejection::Invalid { reason })),
        any::<u32>().prop_map(|version| Response::ClusterVersionSet { version }),
    ]
}

fn arb_response() -> impl Strategy<Value = Response> {
    prop_oneof![
        3 => arb_leaf_response(),
        1 => prop::collection::vec(arb_leaf_response(), 0..4).prop_map(Response::Batch),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn every_op_reads_back_as_written(op in arb_op(), now_ms in any::<u64>(), version in 0u32..=FORMAT_VERSION_MAX) {
        let entry: Entry<TypeConfig> = Entry { log_id: samples::log_id(2, 1, 9), payload: EntryPayload::Normal(Command { now_ms, op: op.clone() }) };
        let bytes = encode_entry(&entry, version).unwrap();
        prop_assert_eq!(format!("{:?}", decode_entry(&bytes).unwrap()), format!("{:?}", entry));
        let forward = encode_forward(std::slice::from_ref(&op), version).unwrap();
        prop_assert_eq!(decode_forward(&forward).unwrap(), (version, vec![op]));
    }

    #[test]
    fn every_response_reads_back_as_written(r in arb_response(), code in any::<i32>(), msg in arb_string(), version in 0u32..=FORMAT_VERSION_MAX) {
        let outcomes = vec![ForwardOutcome::Applied(r), ForwardOutcome::Refused { code, message: msg }, ForwardOutcome::NotLeader];
        let bytes = encode_forward_reply(&outcomes, version).unwrap();
        prop_assert_eq!(decode_forward_reply(&bytes).unwrap(), outcomes);
    }
}

#[test]
fn a_batch_in_a_batch_is_not_written() {
    let nested = Op::Batch { ops: vec![Op::Batch { ops: vec![Op::ReleaseDue] }] };
    assert!(encode_forward(&[nested], 1).is_err());
    let nested = Response::Batch(vec![Response::Batch(vec![Response::Noop])]);
    assert!(encode_forward_reply(&[ForwardOutcome::Applied(nested)], 1).is_err());
}
