//! Dependencies through `apply` (`after.rs`): waiting, release, skips and their cascade, the
//! policies, cancel, idempotency, the limits; the invariants are checked after every step.

use std::collections::BTreeMap;

use raftsched_state::{
    limits, AfterPolicy, AfterSpec, Op, Rejection, ReportEvent, Response, TaskSpec, TaskState, AFTER_VERSION,
};

mod common;

use common::Log;

impl Log {
    fn cluster(mut self) -> Log {
        self.apply(0, Op::SetClusterVersion { version: AFTER_VERSION });
        let labels = BTreeMap::new();
        self.apply(0, Op::RegisterWorker { worker_id: "w".into(), instance: 1, addr: String::new(), slots: 8, labels });
        self
    }

    fn after(&mut self, key: &str, ids: &[u64], keys: &[&str], policy: AfterPolicy) -> Response {
        let after = AfterSpec { ids: ids.to_vec(), keys: keys.iter().map(|k| k.to_string()).collect(), policy };
        self.apply(1_000, Op::SubmitAfter { key: key.into(), spec: echo(key), after: Box::new(after) })
    }

    fn task(&mut self, key: &str, ids: &[u64], policy: AfterPolicy) -> u64 {
        match self.after(key, ids, &[], policy) {
            Response::Submitted { id, created: true } => id,
            other => panic!("{key}: {other:?}"),
        }
    }

    fn plain(&mut self, key: &str) -> u64 {
        match self.apply(1_000, Op::Submit { key: key.into(), spec: echo(key) }) {
            Response::Submitted { id, .. } => id,
            other => panic!("{other:?}"),
        }
    }

    fn state(&self, id: u64) -> TaskState {
        self.sm.get(id).unwrap().state
    }

    /// Assigns what is pending and ends task `id`'s attempt with `exit_code`.
    fn run(&mut self, id: u64, exit_code: i32) {
        let items = self.sm.plan_assignments(2_000, 100);
        self.apply(2_000, Op::Assign { items });
        let token = self.sm.get(id).unwrap().assignment.as_ref().expect("assigned").token;
        let event = ReportEvent::Finished { exit_code, output_tail: String::new(), timed_out: false };
        assert_eq!(self.apply(3_000, Op::Report { task_id: id, token, event }), Response::Reported);
    }
}

fn echo(arg: &str) -> TaskSpec {
    let mut spec = TaskSpec::builtin("echo", arg);
    spec.max_attempts = 1;
    spec
}

#[test]
fn a_diamond_runs_in_order() {
    let mut log = Log::new().cluster();
    let a = log.plain("a");
    let b = log.task("b", &[a], AfterPolicy::Success);
    let c = log.task("c", &[a], AfterPolicy::Success);
    let d = log.task("d", &[b, c], AfterPolicy::Success);
    assert_eq!([b, c, d].map(|id| log.state(id)), [TaskState::Waiting; 3]);
    assert_eq!(log.sm.plan_assignments(2_000, 100).len(), 1, "only a can run");
    log.run(a, 0);
    assert_eq!([b, c, d].map(|id| log.state(id)), [TaskState::Pending, TaskState::Pending, TaskState::Waiting]);
    log.run(b, 0);
    assert_eq!(log.state(d), TaskState::Waiting, "d still waits for c");
    log.run(c, 0);
    assert_eq!(log.state(d), TaskState::Pending);
    log.run(d, 0);
    assert_eq!(log.sm.count(TaskState::Succeeded), 4);
}

#[test]
fn a_failure_skips_its_dependents_and_theirs_but_not_a_finished_policy() {
    let mut log = Log::new().cluster();
    let a = log.plain("a");
    let b = log.task("b", &[a], AfterPolicy::Success);
    let c = log.task("c", &[b], AfterPolicy::Success);
    let cleanup = log.task("cleanup", &[a], AfterPolicy::Finished);
    let late = log.task("late", &[c], AfterPolicy::Finished);
    log.run(a, 3);
    assert_eq!(log.state(a), TaskState::Failed);
    assert_eq!([b, c].map(|id| log.state(id)), [TaskState::Skipped; 2]);
    let skipped_by = |log: &Log, id| log.sm.get(id).unwrap().after.as_ref().unwrap().skipped_by;
    assert_eq!((skipped_by(&log, b), skipped_by(&log, c)), (Some(a), Some(b)));
    // Under `finished`, an end of any kind lets it go on: a skip included.
    assert_eq!([cleanup, late].map(|id| log.state(id)), [TaskState::Pending; 2]);
    // A new task after a failed (or skipped) one is skipped at once.
    let after_failed = log.task("after-failed", &[a], AfterPolicy::Success);
    assert_eq!(log.state(after_failed), TaskState::Skipped);
    assert_eq!(log.sm.count(TaskState::Waiting), 0);
}

#[test]
fn cancel_a_waiting_task_and_its_dependents_are_skipped() {
    let mut log = Log::new().cluster();
    let a = log.plain("a");
    let b = log.task("b", &[a], AfterPolicy::Success);
    let c = log.task("c", &[b], AfterPolicy::Success);
    assert_eq!(log.apply(1_500, Op::Cancel { id: b }), Response::Cancelled { id: b });
    assert_eq!([b, c].map(|id| log.state(id)), [TaskState::Cancelled, TaskState::Skipped]);
    // a ending later touches nothing that is over.
    log.run(a, 0);
    assert_eq!(log.state(c), TaskState::Skipped);
}

#[test]
fn a_dependency_that_already_succeeded_counts_at_once() {
    let mut log = Log::new().cluster();
    let a = log.plain("a");
    log.run(a, 0);
    let b = log.task("b", &[a], AfterPolicy::Success);
    assert_eq!(log.state(b), TaskState::Pending);
    // Keys name dependencies too; repeats count once.
    let Response::Submitted { id: c, .. } = log.after("c", &[a], &["a", "b"], AfterPolicy::Success) else { panic!() };
    assert_eq!(log.sm.get(c).unwrap().after.as_ref().unwrap().ids, vec![a, b]);
    assert_eq!(log.state(c), TaskState::Waiting);
}

#[test]
fn the_same_key_is_the_same_task_only_with_the_same_dependencies() {
    let mut log = Log::new().cluster();
    let a = log.plain("a");
    let other = log.plain("other");
    let b = log.task("b", &[a], AfterPolicy::Success);
    assert_eq!(log.after("b", &[a], &[], AfterPolicy::Success), Response::Submitted { id: b, created: false });
    for (ids, policy) in [(&[other][..], AfterPolicy::Success), (&[a][..], AfterPolicy::Finished)] {
        assert_eq!(
            log.after("b", ids, &[], policy),
            Response::Rejected(Rejection::KeyConflict { key: "b".into(), existing_id: b })
        );
    }
}

#[test]
fn unknown_or_too_many_dependencies_are_refused_and_create_nothing() {
    let mut log = Log::new().cluster();
    let a = log.plain("a");
    assert_eq!(log.after("x", &[99], &[], AfterPolicy::Success), Response::Rejected(Rejection::NotFound { id: 99 }));
    let Response::Rejected(Rejection::Invalid { reason }) = log.after("x", &[], &["nope"], AfterPolicy::Success) else {
        panic!()
    };
    assert!(reason.contains("\"nope\""), "{reason}");
    let many = vec![a; limits::DEPENDENCIES_PER_TASK_MAX + 1];
    let Response::Rejected(Rejection::Invalid { reason }) = log.after("x", &many, &[], AfterPolicy::Success) else {
        panic!()
    };
    assert!(reason.contains("dependencies_per_task_max"), "{reason}");
    assert!(log.sm.get(a + 1).is_none());
}

#[test]
fn a_released_task_with_its_run_at_time_ahead_is_scheduled() {
    let mut log = Log::new().cluster();
    let a = log.plain("a");
    let mut spec = echo("later");
    spec.run_at_ms = Some(60_000);
    let after = AfterSpec { ids: vec![a], keys: Vec::new(), policy: AfterPolicy::Success };
    let Response::Submitted { id, .. } =
        log.apply(1_000, Op::SubmitAfter { key: "later".into(), spec, after: Box::new(after) })
    else {
        panic!()
    };
    assert_eq!(log.state(id), TaskState::Waiting);
    log.run(a, 0);
    assert_eq!(log.state(id), TaskState::Scheduled);
    log.apply(61_000, Op::ReleaseDue);
    assert_eq!(log.state(id), TaskState::Pending);
}
