//! Goal: `apply` is a pure function of the command sequence, and the invariants hold after every
//! step. Method: proptest generates command sequences over a small key/id space (so retries,
//! conflicts and cancels of existing tasks are common), applies each sequence to two fresh
//! machines, and compares them step by step and through the snapshot encoding.

use proptest::prelude::*;
use raftsched_state::{Command, Op, Output, ReportEvent, Response, StateMachine, TaskSpec, TaskState};

fn arb_spec() -> impl Strategy<Value = TaskSpec> {
    prop_oneof![
        (0u64..50).prop_map(|ms| TaskSpec::builtin("sleep", &ms.to_string())),
        "[a-c]{0,3}".prop_map(|t| TaskSpec::builtin("echo", &t)),
        (1u8..4).prop_map(|c| TaskSpec::builtin("fail", &c.to_string())),
        Just(TaskSpec::builtin("bogus", "1")),
        prop::collection::vec("[a-z]{1,4}", 0..3).prop_map(TaskSpec::command),
    ]
}

/// A step of a generated history. Worker steps are turned into ops against the current state
/// (`concrete`), so that reports carry real tokens most of the time and stale ones sometimes.
#[derive(Clone, Debug)]
enum Step {
    Op(Op),
    Register { worker: usize, instance: u64, slots: u32, gpu: bool },
    Heartbeat { worker: usize, instance: u64 },
    Expire { worker: usize, stale: bool },
    Drain { worker: usize },
    Dispatch { max: usize },
    Report { pick: usize, stale: bool, finished: bool, exit_code: i32, timed_out: bool },
}

const WORKERS: [&str; 3] = ["w1", "w2", "w3"];

/// A client write as batches carry them.
fn arb_client_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        ("[a-e]{0,1}", arb_spec()).prop_map(|(key, spec)| Op::Submit { key, spec }),
        (0u64..40).prop_map(|id| Op::Cancel { id }),
    ]
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => ("[a-e]{0,1}", arb_spec(), -1i32..2, 1u32..4, prop::bool::weighted(0.2)).prop_map(|(key, mut spec, priority, max_attempts, gpu)| {
            spec.priority = priority;
            spec.max_attempts = max_attempts;
            if gpu { spec.constraints.insert("gpu".into(), "yes".into()); }
            Step::Op(Op::Submit { key, spec })
        }),
        1 => (0u64..40).prop_map(|id| Step::Op(Op::Cancel { id })),
        1 => (0u64..4).prop_map(|keep| Step::Op(Op::PurgeFinished { keep })),
        1 => prop::collection::vec(arb_client_op(), 1..4).prop_map(|ops| Step::Op(Op::Batch { ops })),
        // How the leader proposes client writes: the batch, then dispatch in the same entry.
        1 => prop::collection::vec(arb_client_op(), 0..4).prop_map(|ops| Step::Op(Op::BatchDispatch { ops })),
        1 => (0usize..3, 0u64..2, 1u32..3, any::<bool>()).prop_map(|(worker, instance, slots, gpu)| Step::Register { worker, instance, slots, gpu }),
        1 => (0usize..3, 0u64..2).prop_map(|(worker, instance)| Step::Heartbeat { worker, instance }),
        1 => (0usize..3, prop::bool::weighted(0.3)).prop_map(|(worker, stale)| Step::Expire { worker, stale }),
        1 => (0usize..3).prop_map(|worker| Step::Drain { worker }),
        2 => (1usize..4).prop_map(|max| Step::Dispatch { max }),
        3 => (0usize..8, prop::bool::weighted(0.2), any::<bool>(), 0i32..2, prop::bool::weighted(0.2)).prop_map(|(pick, stale, finished, exit_code, timed_out)| Step::Report { pick, stale, finished, exit_code, timed_out }),
    ]
}

fn concrete(sm: &StateMachine, step: &Step, now_ms: u64) -> Op {
    match step {
        Step::Op(op) => op.clone(),
        Step::Register { worker, instance, slots, gpu } => {
            let mut labels = std::collections::BTreeMap::new();
            if *gpu {
                labels.insert("gpu".to_string(), "yes".to_string());
            }
            Op::RegisterWorker {
                worker_id: WORKERS[*worker].into(),
                instance: *instance,
                addr: "a:1".into(),
                slots: *slots,
                labels,
            }
        }
        Step::Heartbeat { worker, instance } => {
            Op::Heartbeat { worker_id: WORKERS[*worker].into(), instance: *instance }
        }
        Step::Expire { worker, stale } => {
            let (epoch, seq) = sm.worker(WORKERS[*worker]).map_or((0, 0), |n| (n.epoch, n.heartbeat_seq));
            Op::ExpireWorker {
                worker_id: WORKERS[*worker].into(),
                epoch,
                heartbeat_seq: if *stale { seq.wrapping_sub(1) } else { seq },
            }
        }
        Step::Drain { worker } => Op::DrainWorker { worker_id: WORKERS[*worker].into() },
        Step::Dispatch { max } => Op::Assign { items: sm.plan_assignments(now_ms, *max) },
        Step::Report { pick, stale, finished, exit_code, timed_out } => {
            let held: Vec<_> =
                sm.list(&Default::default()).tasks.into_iter().filter(|t| t.assignment.is_some()).collect();
            let (task_id, token) = match held.get(pick % held.len().max(1)) {
                Some(t) => (t.id, t.assignment.as_ref().unwrap().token - u64::from(*stale)),
                None => (*pick as u64 + 1, 1),
            };
            let event = match (*finished, exit_code % 2) {
                (false, _) => ReportEvent::Started,
                (true, 0) => {
                    ReportEvent::Ended { exit_code: *exit_code, output_tail: "out".into(), timed_out: *timed_out }
                }
                (true, _) => {
                    let output = Output {
                        stdout_tail: "out".into(),
                        stderr_tail: "err".into(),
                        stdout_bytes: 9,
                        stderr_bytes: 1,
                    };
                    ReportEvent::EndedApart { exit_code: *exit_code, timed_out: *timed_out, output: Box::new(output) }
                }
            };
            Op::Report { task_id, token, event }
        }
    }
}

fn arb_commands() -> impl Strategy<Value = Vec<(u64, Command)>> {
    // Index gaps stand for Raft's blank and membership entries between commands. Worker steps
    // become ops against the state they are applied to, built on a scratch machine here.
    prop::collection::vec((1u64..3, 0u64..10_000, arb_step()), 0..80).prop_map(|steps| {
        let mut index = 0;
        let mut now_ms = 0;
        let mut scratch = StateMachine::new();
        steps
            .into_iter()
            .map(|(gap, dt, step)| {
                index += gap;
                now_ms += dt;
                let cmd = Command { now_ms, op: concrete(&scratch, &step, now_ms) };
                scratch.apply(index, &cmd);
                (index, cmd)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn same_commands_same_state(cmds in arb_commands()) {
        let mut a = StateMachine::new();
        let mut b = StateMachine::new();
        for (index, cmd) in &cmds {
            let ra = a.apply(*index, cmd);
            let rb = b.apply(*index, cmd);
            prop_assert_eq!(&ra, &rb);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.check_invariants(), Ok(()));
        }
        // The snapshot encoding is canonical too, and round-trips.
        let bytes_a = bincode::serialize(&a).unwrap();
        let bytes_b = bincode::serialize(&b).unwrap();
        prop_assert_eq!(&bytes_a, &bytes_b);
        let restored: StateMachine = bincode::deserialize(&bytes_a).unwrap();
        prop_assert_eq!(&restored, &a);
        prop_assert_eq!(restored.check_invariants(), Ok(()));
    }

    #[test]
    fn plans_respect_priority_fifo_and_capacity(cmds in arb_commands()) {
        let mut sm = StateMachine::new();
        for (index, cmd) in &cmds {
            sm.apply(*index, cmd);
            let plan = sm.plan_assignments(cmd.now_ms, 64);
            // Applying the plan right away assigns every item: plans are consistent with state.
            let mut copy = sm.clone();
            let r = copy.apply(index + 1, &Command { now_ms: cmd.now_ms, op: Op::Assign { items: plan.clone() } });
            if let Response::Assigned { n_stale, .. } = r { prop_assert_eq!(n_stale, 0); } else { prop_assert!(false, "{r:?}"); }
            prop_assert_eq!(copy.check_invariants(), Ok(()));
            // Priority order: a planned task never has lower priority than an unplanned eligible
            // one that could have gone to the same worker.
            let planned: std::collections::BTreeSet<u64> = plan.iter().map(|i| i.task_id).collect();
            for item in &plan {
                let t = sm.get(item.task_id).unwrap();
                let node = sm.worker(&item.worker_id).unwrap();
                for other in sm.list(&raftsched_state::ListFilter { state: Some(TaskState::Pending), limit: 1000, ..Default::default() }).tasks {
                    if planned.contains(&other.id) || other.not_before_ms > cmd.now_ms || !node.satisfies(&other.spec.constraints) { continue; }
                    prop_assert!(
                        (other.spec.priority, std::cmp::Reverse(other.id)) < (t.spec.priority, std::cmp::Reverse(t.id)) ||
                        copy.worker(&item.worker_id).unwrap().free_slots() > 0,
                        "task {} (prio {}) skipped for {} (prio {})", other.id, other.spec.priority, t.id, t.spec.priority
                    );
                }
            }
        }
    }

    #[test]
    fn one_task_per_key_and_rejections_change_nothing(cmds in arb_commands()) {
        let mut sm = StateMachine::new();
        for (index, cmd) in &cmds {
            let before = sm.clone();
            let response = sm.apply(*index, cmd);
            match (&cmd.op, &response) {
                (_, Response::Rejected(_)) => {
                    let mut expected = before.clone();
                    expected.advance(*index);
                    prop_assert_eq!(&sm, &expected);
                }
                (Op::Submit { key, spec }, Response::Submitted { id, created }) => {
                    let task = sm.get(*id).unwrap();
                    prop_assert_eq!(&task.key, key);
                    prop_assert_eq!(&task.spec, spec);
                    prop_assert_eq!(*created, before.get_by_key(key).is_none());
                    if *created { prop_assert!(before.get(*id).is_none() && before.list(&Default::default()).tasks.iter().all(|t| t.id < *id)); }
                }
                (Op::Cancel { id }, Response::Cancelled { id: got }) => {
                    prop_assert_eq!(id, got);
                    prop_assert_eq!(sm.get(*id).unwrap().state, TaskState::Cancelled);
                }
                (Op::Assign { items }, Response::Assigned { token, n_assigned, n_stale }) => {
                    prop_assert_eq!(*token, *index);
                    prop_assert_eq!((*n_assigned + *n_stale) as usize, items.len());
                    for item in items {
                        let t = sm.get(item.task_id).unwrap();
                        if t.assignment.as_ref().is_some_and(|a| a.token == *index) {
                            let node = sm.worker(&item.worker_id).unwrap();
                            prop_assert!(node.satisfies(&t.spec.constraints));
                        }
                    }
                }
                (Op::Report { task_id, token, event }, Response::Reported) => {
                    let before_task = before.get(*task_id).unwrap();
                    prop_assert_eq!(before_task.assignment.as_ref().map(|a| a.token), Some(*token));
                    let t = sm.get(*task_id).unwrap();
                    if matches!(event, ReportEvent::Ended { .. } | ReportEvent::EndedApart { .. }) {
                        // Exactly one result, recorded by the attempt that held the task.
                        prop_assert!(t.assignment.is_none());
                        prop_assert!(before_task.result.is_none());
                    }
                }
                (Op::Batch { ops } | Op::BatchDispatch { ops }, Response::Batch(responses)) => {
                    prop_assert_eq!(ops.len(), responses.len())
                }
                (Op::PurgeFinished { keep }, Response::Purged { n_purged }) => {
                    // Only finished tasks go, oldest first, down to `keep`.
                    let finished = |m: &StateMachine| [TaskState::Succeeded, TaskState::Failed, TaskState::Cancelled].iter().map(|s| m.count(*s)).sum::<u64>();
                    prop_assert_eq!(finished(&sm), finished(&before).min(*keep).max(finished(&before) - *n_purged as u64));
                    prop_assert_eq!(sm.task_count() + *n_purged as usize, before.task_count());
                    for t in before.list(&raftsched_state::ListFilter { limit: 1000, ..Default::default() }).tasks {
                        if !t.state.is_terminal() { prop_assert!(sm.get(t.id).is_some()); }
                    }
                }
                (_, Response::Registered { .. } | Response::HeartbeatOk { .. } | Response::Expired { .. } | Response::Drained) => {}
                (op, r) => prop_assert!(false, "{op:?} answered {r:?}"),
            }
        }
    }
}
