//! Worker life cycle through `apply`: registration, dispatch, fenced reports, expiry, retries.

use std::collections::BTreeMap;

use raftsched_state::{Op, Outcome, Rejection, ReportEvent, Response, TaskSpec, TaskState, WorkerState};

mod common;

use common::Log;

impl Log {
    fn register(&mut self, now_ms: u64, id: &str, instance: u64, slots: u32, labels: &[(&str, &str)]) -> Response {
        let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.apply(
            now_ms,
            Op::RegisterWorker { worker_id: id.into(), instance, addr: "127.0.0.1:1".into(), slots, labels },
        )
    }
    fn dispatch(&mut self, now_ms: u64) -> Response {
        let items = self.sm.plan_assignments(now_ms, 100);
        self.apply(now_ms, Op::Assign { items })
    }
    fn submit(&mut self, key: &str, spec: TaskSpec) -> u64 {
        match self.apply(0, Op::Submit { key: key.into(), spec }) {
            Response::Submitted { id, .. } => id,
            r => panic!("{r:?}"),
        }
    }
    fn finish(&mut self, now_ms: u64, task_id: u64, token: u64, exit_code: i32) -> Response {
        let event = ReportEvent::Ended { exit_code, output_tail: format!("exit {exit_code}"), timed_out: false };
        self.apply(now_ms, Op::Report { task_id, token, event })
    }
}

#[test]
fn task_runs_and_its_result_is_recorded_once_under_its_token() {
    let mut log = Log::new();
    assert_eq!(log.register(10, "w1", 7, 2, &[]), Response::Registered { epoch: 1 });
    let id = log.submit("k", TaskSpec::builtin("echo", "hi"));
    let Response::Assigned { token, n_assigned: 1, .. } = log.dispatch(20) else { panic!() };
    assert_eq!(log.sm.get(id).unwrap().state, TaskState::Assigned);
    assert_eq!(log.apply(30, Op::Report { task_id: id, token, event: ReportEvent::Started }), Response::Reported);
    assert_eq!(log.sm.get(id).unwrap().state, TaskState::Running);
    assert_eq!(
        log.apply(35, Op::Report { task_id: id, token: token - 1, event: ReportEvent::Started }),
        Response::Rejected(Rejection::StaleToken { task_id: id, token: token - 1 })
    );
    assert_eq!(log.finish(40, id, token, 0), Response::Reported);
    let task = log.sm.get(id).unwrap().clone();
    assert_eq!(task.state, TaskState::Succeeded);
    assert_eq!(task.result.as_ref().unwrap().output_tail, "exit 0");
    // The same report again (a worker retrying after a lost ack) records nothing new.
    assert!(matches!(log.finish(50, id, token, 1), Response::Rejected(Rejection::StaleToken { .. })));
    assert_eq!(log.sm.get(id).unwrap(), &task);
    assert_eq!(log.sm.worker("w1").unwrap().free_slots(), 2);
}

#[test]
fn an_expired_worker_loses_its_tasks_to_another_and_its_reports_are_fenced() {
    let mut log = Log::new();
    log.register(0, "w1", 1, 1, &[]);
    let id = log.submit("k", TaskSpec::builtin("sleep", "10"));
    let Response::Assigned { token: old_token, .. } = log.dispatch(0) else { panic!() };
    log.register(0, "w2", 2, 1, &[]);
    // A stale expiry (a heartbeat was applied after the decision) is refused.
    let seq = log.sm.worker("w1").unwrap().heartbeat_seq;
    log.apply(100, Op::Heartbeat { worker_id: "w1".into(), instance: 1 });
    assert_eq!(
        log.apply(200, Op::ExpireWorker { worker_id: "w1".into(), epoch: 1, heartbeat_seq: seq }),
        Response::Rejected(Rejection::StaleDecision)
    );
    let seq = log.sm.worker("w1").unwrap().heartbeat_seq;
    assert_eq!(
        log.apply(5_000, Op::ExpireWorker { worker_id: "w1".into(), epoch: 1, heartbeat_seq: seq }),
        Response::Expired { n_requeued: 1 }
    );
    let task = log.sm.get(id).unwrap();
    assert_eq!(task.state, TaskState::Pending);
    assert_eq!(task.attempts[0].outcome, Some(Outcome::Lost));
    // A lost attempt is not the task's failure: no backoff, it may run elsewhere at once.
    assert_eq!(task.not_before_ms, 5_000);
    let Response::Assigned { token: new_token, n_assigned: 1, .. } = log.dispatch(5_000) else { panic!() };
    assert!(new_token > old_token);
    assert_eq!(log.sm.get(id).unwrap().assignment.as_ref().unwrap().worker_id, "w2");
    // The dead worker's late report is refused and changes nothing.
    let before = log.sm.clone();
    assert!(matches!(log.finish(16_000, id, old_token, 0), Response::Rejected(Rejection::StaleToken { .. })));
    let mut expected = before;
    expected.advance(log.index);
    assert_eq!(log.sm, expected);
    // Heartbeats from the down registration are refused: it must register again.
    assert!(matches!(
        log.apply(17_000, Op::Heartbeat { worker_id: "w1".into(), instance: 1 }),
        Response::Rejected(Rejection::WorkerNotCurrent { .. })
    ));
    assert_eq!(log.register(17_000, "w1", 1, 1, &[]), Response::Registered { epoch: 2 });
}

#[test]
fn a_second_live_process_cannot_take_a_worker_id() {
    let mut log = Log::new();
    log.register(0, "w1", 1, 1, &[]);
    assert_eq!(log.register(10, "w1", 1, 1, &[]), Response::Registered { epoch: 1 }, "a retry of the same process");
    assert!(matches!(log.register(20, "w1", 2, 1, &[]), Response::Rejected(Rejection::WorkerIdInUse { .. })));
    let seq = log.sm.worker("w1").unwrap().heartbeat_seq;
    log.apply(9_000, Op::ExpireWorker { worker_id: "w1".into(), epoch: 1, heartbeat_seq: seq });
    assert_eq!(log.register(9_100, "w1", 2, 1, &[]), Response::Registered { epoch: 2 }, "a restart after expiry");
}

#[test]
fn failures_retry_up_to_max_attempts_then_fail_with_the_last_result() {
    let mut log = Log::new();
    log.register(0, "w1", 1, 1, &[]);
    let mut spec = TaskSpec::builtin("fail", "3");
    spec.max_attempts = 2;
    let id = log.submit("k", spec);
    let mut now = 0;
    for attempt in 1..=2 {
        now += 60_000;
        let Response::Assigned { token, n_assigned: 1, .. } = log.dispatch(now) else { panic!("attempt {attempt}") };
        log.finish(now, id, token, 3);
    }
    let task = log.sm.get(id).unwrap();
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(task.attempts.len(), 2);
    assert_eq!(task.result.as_ref().unwrap().exit_code, 3);
    assert!(log.sm.plan_assignments(now + 60_000, 10).is_empty());
}

#[test]
fn dispatch_honours_priority_labels_drain_and_slots() {
    let mut log = Log::new();
    log.register(0, "cpu", 1, 1, &[]);
    log.register(0, "gpu", 2, 1, &[("gpu", "yes")]);
    let low = log.submit("low", TaskSpec::builtin("echo", "low"));
    let mut high = TaskSpec::builtin("echo", "high");
    high.priority = 5;
    let high = log.submit("high", high);
    let mut needs_gpu = TaskSpec::builtin("echo", "gpu");
    needs_gpu.constraints.insert("gpu".into(), "yes".into());
    needs_gpu.priority = 1;
    let gpu_task = log.submit("gpu", needs_gpu);
    let plan = log.sm.plan_assignments(0, 10);
    let got: Vec<(u64, &str)> = plan.iter().map(|i| (i.task_id, i.worker_id.as_str())).collect();
    // high goes first (to the worker with most free slots, ties by id: "cpu"); the GPU task can
    // only go to "gpu"; "low" finds no free slot.
    assert_eq!(got, vec![(high, "cpu"), (gpu_task, "gpu")]);
    assert!(!got.iter().any(|(t, _)| *t == low));
    log.apply(0, Op::DrainWorker { worker_id: "cpu".into() });
    assert_eq!(log.sm.worker("cpu").unwrap().state, WorkerState::Draining);
    let plan = log.sm.plan_assignments(0, 10);
    assert!(plan.iter().all(|i| i.worker_id != "cpu"), "{plan:?}");
}

#[test]
fn cancel_of_a_running_task_ends_its_attempt_and_frees_the_slot() {
    let mut log = Log::new();
    log.register(0, "w1", 1, 1, &[]);
    let id = log.submit("k", TaskSpec::builtin("sleep", "100000"));
    let Response::Assigned { token, .. } = log.dispatch(0) else { panic!() };
    log.apply(1, Op::Report { task_id: id, token, event: ReportEvent::Started });
    assert_eq!(log.apply(2, Op::Cancel { id }), Response::Cancelled { id });
    let task = log.sm.get(id).unwrap();
    assert_eq!((task.state, task.attempts[0].outcome), (TaskState::Cancelled, Some(Outcome::Cancelled)));
    assert_eq!(log.sm.worker("w1").unwrap().free_slots(), 1);
    assert!(matches!(log.finish(3, id, token, 0), Response::Rejected(Rejection::StaleToken { .. })));
}

/// Goal: a `BatchDispatch` entry (how the leader proposes client writes) assigns what its ops made
/// assignable, under its own index as the token, in the same entry: a submit finds a free slot at
/// once, and a report that frees a slot refills it with the next pending task.
#[test]
fn batch_dispatch_assigns_in_the_entry_that_made_it_possible() {
    let mut log = Log::new();
    log.register(0, "w1", 1, 1, &[]);
    let submit = |key: &str| Op::Submit { key: key.into(), spec: TaskSpec::builtin("echo", key) };
    let r = log.apply(10, Op::BatchDispatch { ops: vec![submit("a"), submit("b")] });
    let Response::Batch(responses) = r else { panic!("{r:?}") };
    let ids: Vec<u64> = responses
        .iter()
        .map(|r| match r {
            Response::Submitted { id, created: true } => *id,
            r => panic!("{r:?}"),
        })
        .collect();
    let submit_index = log.index;
    // One slot: the first task in queue order runs, under the entry's index; the second waits.
    let a = log.sm.get(ids[0]).unwrap();
    assert_eq!((a.state, a.assignment.as_ref().map(|x| x.token)), (TaskState::Assigned, Some(submit_index)));
    assert_eq!(a.attempts[0].assigned_at_ms, 10);
    assert_eq!(log.sm.get(ids[1]).unwrap().state, TaskState::Pending);

    // The report that ends `a` frees the slot, and the same entry hands it `b`.
    let event = ReportEvent::Ended { exit_code: 0, output_tail: String::new(), timed_out: false };
    let r = log.apply(20, Op::BatchDispatch { ops: vec![Op::Report { task_id: ids[0], token: submit_index, event }] });
    assert_eq!(r, Response::Batch(vec![Response::Reported]));
    assert_eq!(log.sm.get(ids[0]).unwrap().state, TaskState::Succeeded);
    let b = log.sm.get(ids[1]).unwrap();
    assert_eq!((b.state, b.assignment.as_ref().map(|x| x.token)), (TaskState::Assigned, Some(log.index)));
    // Nothing left for the leader's own plan.
    assert!(log.sm.plan_assignments(20, 100).is_empty());
}

/// Goal: a failed attempt retried at once is reassigned by a later entry, never under the token
/// of the entry that ended it (a token names one attempt), and a rejected batch assigns nothing.
#[test]
fn batch_dispatch_never_reuses_a_token_and_a_rejected_batch_assigns_nothing() {
    let mut log = Log::new();
    let id = log.submit("k", TaskSpec::builtin("echo", "fails"));
    // Nested batches are refused whole: no dispatch either.
    log.register(0, "w1", 1, 1, &[]);
    let nested = Op::BatchDispatch { ops: vec![Op::Batch { ops: vec![] }] };
    assert!(matches!(log.apply(5, nested), Response::Rejected(Rejection::Invalid { .. })));
    assert_eq!(log.sm.get(id).unwrap().state, TaskState::Pending);
    // An empty batch dispatches what is pending.
    assert_eq!(log.apply(10, Op::BatchDispatch { ops: vec![] }), Response::Batch(vec![]));
    let token = log.sm.get(id).unwrap().assignment.as_ref().unwrap().token;
    assert_eq!(token, log.index);
    // Failure: back to pending with a backoff, so the entry that ended it does not reassign it.
    let event = ReportEvent::Ended { exit_code: 1, output_tail: String::new(), timed_out: false };
    log.apply(20, Op::BatchDispatch { ops: vec![Op::Report { task_id: id, token, event }] });
    let task = log.sm.get(id).unwrap();
    assert_eq!(task.state, TaskState::Pending);
    let not_before_ms = task.not_before_ms;
    assert!(not_before_ms > 20);
    // Once the backoff has passed, any client write dispatches it under a new, larger token.
    log.apply(not_before_ms, Op::BatchDispatch { ops: vec![Op::Heartbeat { worker_id: "w1".into(), instance: 1 }] });
    let task = log.sm.get(id).unwrap();
    assert_eq!(task.state, TaskState::Assigned);
    assert_eq!(task.attempts.len(), 2);
    assert!(task.attempts[1].token > task.attempts[0].token);
}

#[test]
fn a_report_from_a_worker_that_does_not_hold_the_attempt_is_refused_whatever_its_token() {
    let mut log = Log::new();
    log.register(0, "w1", 7, 1, &[]);
    log.register(0, "w2", 8, 1, &[]);
    let id = log.submit("k", TaskSpec::builtin("sleep", "10"));
    let Response::Assigned { token, .. } = log.dispatch(10) else { panic!() };
    let holder = log.sm.get(id).unwrap().assignment.as_ref().unwrap().worker_id.clone();
    let (other, other_instance) = if holder == "w1" { ("w2", 8) } else { ("w1", 7) };
    let holder_instance = if holder == "w1" { 7 } else { 8 };
    let finished = ReportEvent::Ended { exit_code: 0, output_tail: "forged".into(), timed_out: false };
    let from = |worker_id: &str, instance: u64, token: u64| Op::ReportFrom {
        worker_id: worker_id.into(),
        instance,
        task_id: id,
        token,
        event: finished.clone(),
    };
    // Another worker, guessing tokens around the right one, and with the right one.
    for guess in token.saturating_sub(3)..=token + 3 {
        let refused = Rejection::NotHolder { task_id: id, worker_id: other.into() };
        assert_eq!(log.apply(20, from(other, other_instance, guess)), Response::Rejected(refused));
    }
    // The holder's id with another registration's instance (a second process claiming the id).
    let refused = Rejection::NotHolder { task_id: id, worker_id: holder.clone() };
    assert_eq!(log.apply(20, from(&holder, holder_instance + 1, token)), Response::Rejected(refused));
    assert_eq!(log.sm.get(id).unwrap().state, TaskState::Assigned, "a refused report changed the task");
    // The holder, under the current token: recorded once.
    assert_eq!(log.apply(30, from(&holder, holder_instance, token)), Response::Reported);
    assert_eq!(log.sm.get(id).unwrap().state, TaskState::Succeeded);
    assert!(matches!(log.apply(40, from(&holder, holder_instance, token)), Response::Rejected(_)));
}

#[test]
fn apply_notes_the_workers_whose_view_changed_and_heartbeat_answers_as_apply_does() {
    let mut log = Log::new();
    log.register(10, "w1", 7, 1, &[]);
    log.register(10, "w2", 8, 1, &[]);
    let touched = |log: &mut Log| log.sm.take_touched_workers().into_iter().collect::<Vec<_>>();
    assert_eq!(touched(&mut log), ["w1", "w2"]);
    assert!(touched(&mut log).is_empty(), "taken once");
    // A heartbeat changes nothing a poll waits for; an assignment and its report do.
    assert_eq!(log.sm.heartbeat_answer("w1", 7), Response::HeartbeatOk { epoch: 1 });
    assert_eq!(
        log.apply(15, Op::Heartbeat { worker_id: "w1".into(), instance: 7 }),
        Response::HeartbeatOk { epoch: 1 }
    );
    assert!(touched(&mut log).is_empty());
    let id = log.submit("k", TaskSpec::builtin("echo", "hi"));
    let Response::Assigned { token, .. } = log.dispatch(20) else { panic!() };
    assert_eq!(touched(&mut log), ["w1"]);
    log.finish(30, id, token, 0);
    assert_eq!(touched(&mut log), ["w1"]);
    // Refusals are the same for the query and for apply.
    for (id, instance) in [("w1", 99), ("nobody", 7)] {
        let op = Op::Heartbeat { worker_id: id.into(), instance };
        assert_eq!(log.sm.heartbeat_answer(id, instance), log.apply(40, op));
    }
}
