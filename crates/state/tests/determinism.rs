//! Goal: `apply` is a pure function of the command sequence, and the invariants hold after every
//! step. Method: proptest generates command sequences over a small key/id space (so retries,
//! conflicts and cancels of existing tasks are common), applies each sequence to two fresh
//! machines, and compares them step by step and through the snapshot encoding.

use proptest::prelude::*;
use raftsched_state::{Command, Op, Response, StateMachine, TaskSpec, TaskState};

fn arb_spec() -> impl Strategy<Value = TaskSpec> {
    prop_oneof![
        (0u64..50).prop_map(|ms| TaskSpec::builtin("sleep", &ms.to_string())),
        "[a-c]{0,3}".prop_map(|t| TaskSpec::builtin("echo", &t)),
        (1u8..4).prop_map(|c| TaskSpec::builtin("fail", &c.to_string())),
        Just(TaskSpec::builtin("bogus", "1")),
        prop::collection::vec("[a-z]{1,4}", 0..3).prop_map(TaskSpec::command),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => ("[a-e]{0,1}", arb_spec()).prop_map(|(key, spec)| Op::Submit { key, spec }),
        1 => (0u64..40).prop_map(|id| Op::Cancel { id }),
    ]
}

fn arb_commands() -> impl Strategy<Value = Vec<(u64, Command)>> {
    // Index gaps stand for Raft's blank and membership entries between commands.
    prop::collection::vec((1u64..3, 0u64..10_000, arb_op()), 0..60).prop_map(|steps| {
        let mut index = 0;
        steps
            .into_iter()
            .map(|(gap, now_ms, op)| {
                index += gap;
                (index, Command { now_ms, op })
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
                    if *created { prop_assert_eq!(*id, *index); }
                }
                (Op::Cancel { id }, Response::Cancelled { id: got }) => {
                    prop_assert_eq!(id, got);
                    prop_assert_eq!(sm.get(*id).unwrap().state, TaskState::Cancelled);
                }
                (op, r) => prop_assert!(false, "{op:?} answered {r:?}"),
            }
        }
    }
}
