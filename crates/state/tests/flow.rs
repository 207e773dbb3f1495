//! Flows through `apply` (`flow.rs`): one command creates the whole graph or nothing; the same
//! flow again is the same tasks; cycles, unknown names, bad names and over-limit flows are refused
//! with the reason; the graph then runs as dependencies do (the invariants hold after every step).

use std::collections::BTreeMap;

use raftsched_state::{
    AfterPolicy, FlowSpec, FlowTask, Op, Rejection, ReportEvent, Response, TaskSpec, TaskState, FLOW_VERSION,
};

mod common;

use common::Log;

fn task(name: &str, after: &[&str]) -> FlowTask {
    let mut spec = TaskSpec::builtin("echo", name);
    spec.max_attempts = 1;
    FlowTask {
        name: name.into(),
        spec,
        after: after.iter().map(|a| a.to_string()).collect(),
        policy: AfterPolicy::Success,
        concurrency: None,
    }
}

fn diamond() -> FlowSpec {
    // Given out of order: the flow is created in an order that respects its edges.
    FlowSpec { tasks: vec![task("d", &["b", "c"]), task("b", &["a"]), task("c", &["a"]), task("a", &[])] }
}

impl Log {
    fn ready() -> Log {
        let mut log = Log::new();
        log.apply(0, Op::SetClusterVersion { version: FLOW_VERSION });
        let labels = BTreeMap::new();
        log.apply(0, Op::RegisterWorker { worker_id: "w".into(), instance: 1, addr: String::new(), slots: 8, labels });
        log
    }

    fn flow(&mut self, key: &str, flow: FlowSpec) -> Response {
        self.apply(1_000, Op::SubmitFlow { key: key.into(), flow: Box::new(flow) })
    }

    fn ids(answer: &Response) -> Vec<u64> {
        let Response::Batch(items) = answer else { panic!("{answer:?}") };
        items
            .iter()
            .map(|r| match r {
                Response::Submitted { id, .. } => *id,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn run_all(&mut self, exit_code: i32) {
        let items = self.sm.plan_assignments(2_000, 100);
        self.apply(2_000, Op::Assign { items });
        let held: Vec<(u64, u64)> = self
            .sm
            .list(&Default::default())
            .tasks
            .into_iter()
            .filter_map(|t| Some((t.id, t.assignment.as_ref()?.token)))
            .collect();
        for (task_id, token) in held {
            let event = ReportEvent::Ended { exit_code, output_tail: String::new(), timed_out: false };
            self.apply(3_000, Op::Report { task_id, token, event });
        }
    }
}

#[test]
fn a_flow_is_created_whole_and_runs_in_order() {
    let mut log = Log::ready();
    let answer = log.flow("nightly", diamond());
    let [d, b, c, a] = Log::ids(&answer)[..] else { panic!() };
    assert!(a < b && b < c && c < d, "created in an order that respects the edges");
    assert_eq!(log.sm.get(d).unwrap().key, "nightly/d");
    assert_eq!(log.sm.get(d).unwrap().after.as_ref().unwrap().ids, vec![b, c]);
    assert_eq!(log.sm.flow_tasks("nightly", 100).len(), 4);
    // Again: the same tasks, nothing new.
    let again = log.flow("nightly", diamond());
    assert_eq!(Log::ids(&again), vec![d, b, c, a]);
    assert!(
        matches!(&again, Response::Batch(items) if items.iter().all(|r| matches!(r, Response::Submitted { created: false, .. })))
    );
    for _ in 0..3 {
        log.run_all(0);
    }
    assert_eq!(log.sm.count(TaskState::Succeeded), 4);
}

#[test]
fn a_failure_in_a_flow_skips_what_comes_after() {
    let mut log = Log::ready();
    let mut flow = diamond();
    flow.tasks[3].spec = TaskSpec::builtin("fail", "1");
    flow.tasks[3].spec.max_attempts = 1;
    let [d, b, c, _] = Log::ids(&log.flow("f", flow))[..] else { panic!() };
    log.run_all(1);
    assert_eq!([b, c, d].map(|id| log.sm.get(id).unwrap().state), [TaskState::Skipped; 3]);
}

#[test]
fn bad_flows_are_refused_whole_with_the_reason() {
    let mut log = Log::ready();
    let cycle = FlowSpec { tasks: vec![task("a", &["c"]), task("b", &["a"]), task("c", &["b"]), task("x", &[])] };
    let unknown = FlowSpec { tasks: vec![task("a", &["nope"])] };
    let twice = FlowSpec { tasks: vec![task("a", &[]), task("a", &[])] };
    let slash = FlowSpec { tasks: vec![task("a/b", &[])] };
    let empty = FlowSpec { tasks: vec![] };
    let too_big = FlowSpec { tasks: (0..1_001).map(|i| task(&format!("t{i}"), &[])).collect() };
    for (flow, expected) in [
        (cycle, "cycle through [\"a\", \"b\", \"c\"]"),
        (unknown, "\"nope\", which is not a task of the flow"),
        (twice, "two tasks are named \"a\""),
        (slash, "no '/'"),
        (empty, "tasks_per_flow_max"),
        (too_big, "tasks_per_flow_max"),
    ] {
        let Response::Rejected(Rejection::Invalid { reason }) = log.flow("bad", flow) else { panic!("{expected}") };
        assert!(reason.contains(expected), "{reason}");
    }
    assert!(log.sm.list(&Default::default()).tasks.is_empty(), "a refused flow creates nothing");
    // Another flow under a key in use: a conflict naming the task that differs.
    log.flow("k", diamond());
    let mut other = diamond();
    other.tasks[1].spec = TaskSpec::builtin("echo", "changed");
    let Response::Rejected(Rejection::KeyConflict { key, .. }) = log.flow("k", other) else { panic!() };
    assert_eq!(key, "k/b");
}

#[test]
fn flows_wait_for_their_cluster_version() {
    let mut log = Log::new();
    let Response::Rejected(Rejection::Invalid { reason }) = log.flow("early", diamond()) else { panic!() };
    assert!(reason.contains("cluster version"), "{reason}");
}
