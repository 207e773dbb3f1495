//! Concurrency keys through `apply` (`concurrency.rs`): the plan and `apply` both hold a key to its
//! limit, a freed slot lets the next task go, lost attempts free theirs only when their worker is
//! declared down, and the keys-in-use counts follow (the invariants are checked after every step).

use std::collections::BTreeMap;

use raftsched_state::{
    Concurrency, Op, Rejection, ReportEvent, Response, ScheduleSpec, SubmitOptions, TaskSpec, TaskState,
    CONCURRENCY_VERSION, SCHEDULE_CONCURRENCY_VERSION,
};

mod common;

use common::Log;

impl Log {
    fn with_workers(mut self, slots: u32) -> Log {
        self.apply(0, Op::SetClusterVersion { version: CONCURRENCY_VERSION });
        for w in ["w1", "w2"] {
            let labels = BTreeMap::new();
            self.apply(0, Op::RegisterWorker { worker_id: w.into(), instance: 1, addr: String::new(), slots, labels });
        }
        self
    }

    fn limited(&mut self, key: &str, ckey: &str, limit: u32) -> Response {
        let concurrency = Some(Concurrency { key: ckey.into(), limit });
        let options = Box::new(SubmitOptions { after: None, concurrency });
        self.apply(1_000, Op::SubmitWith { key: key.into(), spec: TaskSpec::builtin("sleep", "10"), options })
    }

    fn held(&self) -> Vec<u64> {
        self.sm.list(&Default::default()).tasks.into_iter().filter(|t| t.state.is_held()).map(|t| t.id).collect()
    }
}

#[test]
fn a_key_never_has_more_than_its_limit_held() {
    let mut log = Log::new().with_workers(8);
    let ids: Vec<u64> = (0..5)
        .map(|i| match log.limited(&format!("t{i}"), "db", 2) {
            Response::Submitted { id, .. } => id,
            other => panic!("{other:?}"),
        })
        .collect();
    let free = log.apply(1_000, Op::Submit { key: "free".into(), spec: TaskSpec::builtin("sleep", "10") });
    let Response::Submitted { id: free, .. } = free else { panic!() };
    // The plan takes two of the key (and the task without one); a hand-made third is refused.
    let plan = log.sm.plan_assignments(2_000, 100);
    assert_eq!(plan.iter().map(|i| i.task_id).collect::<Vec<_>>(), vec![ids[0], ids[1], free]);
    let mut third = log.sm.plan_assignments(2_000, 100);
    third.retain(|i| i.task_id == ids[0]);
    third[0].task_id = ids[2];
    assert!(matches!(log.apply(2_000, Op::Assign { items: plan }), Response::Assigned { n_assigned: 3, .. }));
    assert!(matches!(
        log.apply(2_000, Op::Assign { items: third }),
        Response::Assigned { n_assigned: 0, n_stale: 1, .. }
    ));
    let (key, usage) = log.sm.keys_in_use().next().unwrap();
    assert_eq!((key, usage.held, usage.queued, usage.limit), ("db", 2, 3, 2));
    // One ends: the next one of the key may go.
    let token = log.sm.get(ids[0]).unwrap().assignment.as_ref().unwrap().token;
    let event = ReportEvent::Ended { exit_code: 0, output_tail: String::new(), timed_out: false };
    log.apply(3_000, Op::Report { task_id: ids[0], token, event });
    let plan = log.sm.plan_assignments(4_000, 100);
    assert_eq!(plan.iter().map(|i| i.task_id).collect::<Vec<_>>(), vec![ids[2]]);
    log.apply(4_000, Op::Assign { items: plan });
    assert_eq!(log.held().len(), 3, "two of the key and the free one");
}

#[test]
fn a_lost_attempt_counts_until_its_worker_is_declared_down() {
    let mut log = Log::new().with_workers(1);
    for i in 0..3 {
        log.limited(&format!("t{i}"), "k", 1);
    }
    let plan = log.sm.plan_assignments(2_000, 100);
    assert_eq!(plan.len(), 1);
    let worker = plan[0].worker_id.clone();
    log.apply(2_000, Op::Assign { items: plan });
    // The worker goes silent: nothing else of the key runs until it is declared down.
    assert!(log.sm.plan_assignments(3_000, 100).is_empty());
    let node = log.sm.worker(&worker).unwrap();
    let expire = Op::ExpireWorker { worker_id: worker.clone(), epoch: node.epoch, heartbeat_seq: node.heartbeat_seq };
    assert!(matches!(log.apply(9_000, expire), Response::Expired { n_requeued: 1 }));
    assert_eq!(log.sm.plan_assignments(9_000, 100).len(), 1);
}

#[test]
fn bad_keys_and_limits_are_refused_and_the_same_key_needs_the_same_options() {
    let mut log = Log::new().with_workers(1);
    for (ckey, limit) in [("", 1), ("k", 0), (&"x".repeat(200)[..], 1)] {
        assert!(
            matches!(log.limited("bad", ckey, limit), Response::Rejected(Rejection::Invalid { .. })),
            "{ckey:?} {limit}"
        );
    }
    let Response::Submitted { id, .. } = log.limited("a", "k", 2) else { panic!() };
    assert_eq!(log.limited("a", "k", 2), Response::Submitted { id, created: false });
    assert_eq!(
        log.limited("a", "k", 3),
        Response::Rejected(Rejection::KeyConflict { key: "a".into(), existing_id: id })
    );
    assert_eq!(log.apply(5_000, Op::Cancel { id }), Response::Cancelled { id });
    assert_eq!(log.sm.get(id).unwrap().state, TaskState::Cancelled);
    assert!(log.sm.keys_in_use().next().is_none(), "an ended task frees its key");
}

#[test]
fn a_keyed_schedule_gives_every_task_it_creates_its_key() {
    let mut log = Log::new().with_workers(4);
    let below = Op::CreateScheduleWith {
        name: "early".into(),
        spec: Box::new(ScheduleSpec::new("@every 1s", TaskSpec::builtin("sleep", "10"))),
        concurrency: Concurrency { key: "nightly".into(), limit: 1 },
    };
    // Refused below its cluster version, alike on every replica.
    let mut old = Log::new();
    assert!(matches!(old.apply(0, below.clone()), Response::Rejected(Rejection::Invalid { .. })));
    log.apply(0, Op::SetClusterVersion { version: SCHEDULE_CONCURRENCY_VERSION });
    assert!(matches!(log.apply(1_000, below), Response::ScheduleCreated { created: true, .. }));
    for at in [2_000, 3_000, 4_000] {
        for (name, occurrence_ms) in log.sm.plan_fires(at) {
            log.apply(at, Op::FireSchedule { name, occurrence_ms });
        }
        let items = log.sm.plan_assignments(at, 100);
        log.apply(at, Op::Assign { items });
    }
    let tasks = log.sm.list(&Default::default()).tasks;
    assert!(tasks.len() >= 2, "{} tasks", tasks.len());
    assert!(tasks.iter().all(|t| t.concurrency.as_ref().is_some_and(|c| c.key == "nightly")));
    assert_eq!(log.held().len(), 1, "limit 1: one runs, the others wait");
}
