//! The scheduling rules of dependencies, concurrency keys and flows, as properties: random
//! workloads (submits with dependencies and keys, flows, some with a cycle or an unknown name,
//! dispatch passes, successes, failures and cancels) applied through `apply`, with every rule
//! checked after every step (and the machine's own invariants, by `Log::apply`):
//! - an attempt starts only when every dependency has succeeded (`success`) or ended (`finished`);
//! - a waiting task is never one that should have gone on or been skipped, and a skipped task names
//!   a dependency that did not succeed;
//! - a key never has more tasks held than its limit;
//! - a flow exists whole or not at all;
//! - and the machine agrees with a reference model (`Model`): given the events that involve a
//!   choice (what was created, what dispatch picked, how attempts ended, what was cancelled), the
//!   simplest statement of the rules, recomputed from scratch, gives every task the state the
//!   machine gave it, and every assignment was one the rules allow.

use std::collections::BTreeMap;

use proptest::prelude::*;
use raftsched_state::{
    AfterPolicy, AfterSpec, Concurrency, FlowSpec, FlowTask, Op, ReportEvent, SubmitOptions, Task, TaskSpec, TaskState,
    CONCURRENCY_VERSION, FLOW_VERSION,
};

mod common;

use common::Log;

/// The keys of the workloads, each with its one limit.
const KEYS: [(&str, u32); 3] = [("k1", 1), ("k2", 2), ("k3", 3)];

#[derive(Clone, Debug)]
enum Step {
    /// A task after some earlier ones (picked by position), with a key or none.
    Submit {
        deps: Vec<usize>,
        finished: bool,
        key: Option<usize>,
    },
    /// A flow of `n` tasks; edge (i, j) makes i come after j; a back edge may close a cycle.
    Flow {
        n: usize,
        edges: Vec<(usize, usize)>,
        unknown: bool,
    },
    Dispatch,
    /// Ends the held task at this position: success or failure.
    End {
        pick: usize,
        success: bool,
    },
    Cancel {
        pick: usize,
    },
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (prop::collection::vec(0usize..64, 0..4), any::<bool>(), prop::option::of(0usize..3))
            .prop_map(|(deps, finished, key)| Step::Submit { deps, finished, key }),
        1 => (1usize..6, prop::collection::vec((0usize..6, 0usize..6), 0..6), prop::bool::weighted(0.1))
            .prop_map(|(n, edges, unknown)| Step::Flow { n, edges, unknown }),
        3 => Just(Step::Dispatch),
        4 => (0usize..16, prop::bool::weighted(0.7)).prop_map(|(pick, success)| Step::End { pick, success }),
        1 => (0usize..64).prop_map(|pick| Step::Cancel { pick }),
    ]
}

fn ready() -> Log {
    let mut log = Log::new();
    log.apply(0, Op::SetClusterVersion { version: FLOW_VERSION.max(CONCURRENCY_VERSION) });
    for w in ["w1", "w2"] {
        let labels = BTreeMap::new();
        log.apply(0, Op::RegisterWorker { worker_id: w.into(), instance: 1, addr: String::new(), slots: 3, labels });
    }
    log
}

fn spec() -> TaskSpec {
    let mut spec = TaskSpec::builtin("sleep", "1");
    spec.max_attempts = 1;
    spec
}

fn concurrency(key: Option<usize>) -> Option<Concurrency> {
    key.map(|k| Concurrency { key: KEYS[k].0.into(), limit: KEYS[k].1 })
}

fn tasks(log: &Log) -> Vec<Task> {
    log.sm.list(&Default::default()).tasks
}

/// Applies one step; `n` numbers the keys and flows made so far.
fn apply(log: &mut Log, step: &Step, n: usize) {
    let ids: Vec<u64> = tasks(log).iter().map(|t| t.id).collect();
    let held: Vec<(u64, u64)> = tasks(log).iter().filter_map(|t| Some((t.id, t.assignment.as_ref()?.token))).collect();
    match step {
        Step::Submit { deps, finished, key } => {
            let after_ids: Vec<u64> = deps.iter().filter_map(|d| ids.get(*d).copied()).collect();
            let policy = if *finished { AfterPolicy::Finished } else { AfterPolicy::Success };
            let after = (!after_ids.is_empty()).then(|| AfterSpec { ids: after_ids, keys: Vec::new(), policy });
            let options = Box::new(SubmitOptions { after, concurrency: concurrency(*key) });
            log.apply(1_000, Op::SubmitWith { key: format!("t{n}"), spec: spec(), options });
        }
        Step::Flow { n: size, edges, unknown } => {
            let mut flow: Vec<FlowTask> = (0..*size)
                .map(|i| FlowTask {
                    name: format!("n{i}"),
                    spec: spec(),
                    after: Vec::new(),
                    policy: AfterPolicy::Success,
                    concurrency: concurrency(Some(i % 3)).filter(|_| i % 2 == 0),
                })
                .collect();
            for (i, j) in edges {
                if i < size && j < size && i != j {
                    flow[*i].after.push(format!("n{j}"));
                }
            }
            if *unknown {
                flow[0].after.push("nobody".into());
            }
            let key = format!("f{n}");
            log.apply(1_000, Op::SubmitFlow { key: key.clone(), flow: Box::new(FlowSpec { tasks: flow }) });
            let made = tasks(log).iter().filter(|t| t.key.starts_with(&format!("{key}/"))).count();
            assert!(made == 0 || made == *size, "flow {key}: {made} of {size} tasks exist");
        }
        Step::Dispatch => {
            let items = log.sm.plan_assignments(2_000, 100);
            log.apply(2_000, Op::Assign { items });
        }
        Step::End { pick, success } => {
            if let Some((task_id, token)) = held.get(pick % held.len().max(1)).copied() {
                let exit_code = if *success { 0 } else { 1 };
                let event = ReportEvent::Ended { exit_code, output_tail: String::new(), timed_out: false };
                log.apply(3_000, Op::Report { task_id, token, event });
            }
        }
        Step::Cancel { pick } => {
            if let Some(id) = ids.get(*pick) {
                log.apply(3_000, Op::Cancel { id: *id });
            }
        }
    }
}

fn ended(state: TaskState) -> bool {
    matches!(state, TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::Skipped)
}

/// Every rule of the module documentation, on the state after a step; `started` collects the
/// tasks that have ever held an attempt (checked when first seen so).
fn check(log: &Log, started: &mut BTreeMap<u64, ()>) {
    let all = tasks(log);
    let by_id: BTreeMap<u64, &Task> = all.iter().map(|t| (t.id, t)).collect();
    let mut held_per_key: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for t in &all {
        let deps: Vec<(TaskState, bool)> = t
            .after
            .as_ref()
            .map_or(Vec::new(), |a| a.ids.iter().map(|d| (by_id[d].state, a.policy == AfterPolicy::Success)).collect());
        let gone_wrong = deps.iter().any(|(s, success)| *success && ended(*s) && *s != TaskState::Succeeded);
        let all_done = deps.iter().all(|(s, success)| if *success { *s == TaskState::Succeeded } else { ended(*s) });
        if !t.attempts.is_empty() && started.insert(t.id, ()).is_none() {
            assert!(all_done, "task {} started before its dependencies were done: {deps:?}", t.id);
        }
        if t.state == TaskState::Waiting {
            assert!(!gone_wrong, "task {} waits on a dependency that did not succeed: {deps:?}", t.id);
            assert!(!all_done, "task {} waits though every dependency is done: {deps:?}", t.id);
        }
        if t.state == TaskState::Skipped {
            let by = t.after.as_ref().and_then(|a| a.skipped_by).expect("a skipped task names why");
            assert!(
                ended(by_id[&by].state) && by_id[&by].state != TaskState::Succeeded,
                "task {} skipped by {by}",
                t.id
            );
        }
        if let Some(c) = &t.concurrency {
            let entry = held_per_key.entry(c.key.clone()).or_insert((0, c.limit));
            entry.0 += u32::from(t.state.is_held());
        }
    }
    for (key, (held, limit)) in held_per_key {
        assert!(held <= limit, "key {key}: {held} held, limit {limit}");
    }
}

/// The reference model: each task's dependencies, key and state, with the rules recomputed from
/// scratch after every event (no indexes, no incremental cascade).
#[derive(Default)]
struct Model {
    tasks: BTreeMap<u64, ModelTask>,
}

struct ModelTask {
    deps: Vec<u64>,
    success_needed: bool,
    key: Option<(String, u32)>,
    state: TaskState,
}

impl Model {
    /// Takes the events from the machine's state, checks each assignment against the rules,
    /// settles what the rules decide, and compares every task's state.
    fn follow(&mut self, log: &Log) {
        for t in tasks(log) {
            let known = self.tasks.contains_key(&t.id);
            if !known {
                let (deps, success_needed) =
                    t.after.as_ref().map_or((Vec::new(), false), |a| (a.ids.clone(), a.policy == AfterPolicy::Success));
                let key = t.concurrency.as_ref().map(|c| (c.key.clone(), c.limit));
                self.tasks.insert(t.id, ModelTask { deps, success_needed, key, state: TaskState::Waiting });
                self.settle();
            }
            let model_state = self.tasks[&t.id].state;
            if t.state.is_held() && model_state == TaskState::Pending {
                self.check_room(t.id);
                self.tasks.get_mut(&t.id).unwrap().state = t.state;
            } else if (ended(t.state) && t.state != TaskState::Skipped && !ended(model_state))
                || (t.state.is_held() && model_state.is_held())
            {
                // An attempt's end or cancel (external events), or assigned -> running.
                self.tasks.get_mut(&t.id).unwrap().state = t.state;
            }
        }
        self.settle();
        for t in tasks(log) {
            assert_eq!(self.tasks[&t.id].state, t.state, "task {} (model vs machine)", t.id);
        }
    }

    /// An assignment the rules allow: its key (if any) had a free slot.
    fn check_room(&self, id: u64) {
        let Some((key, limit)) = &self.tasks[&id].key else { return };
        let held = self.tasks.values().filter(|t| t.state.is_held() && t.key.as_ref().is_some_and(|(k, _)| k == key));
        assert!((held.count() as u32) < *limit, "task {id} assigned with key {key} full");
    }

    /// Waiting tasks go on, or are skipped, by their dependencies' states, until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            let ids: Vec<u64> = self.tasks.keys().copied().collect();
            for id in ids {
                if self.tasks[&id].state != TaskState::Waiting {
                    continue;
                }
                let t = &self.tasks[&id];
                let states: Vec<TaskState> = t.deps.iter().map(|d| self.tasks[d].state).collect();
                let to = if t.success_needed && states.iter().any(|s| ended(*s) && *s != TaskState::Succeeded) {
                    TaskState::Skipped
                } else if states.iter().all(|s| if t.success_needed { *s == TaskState::Succeeded } else { ended(*s) }) {
                    TaskState::Pending
                } else {
                    continue;
                };
                self.tasks.get_mut(&id).unwrap().state = to;
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn dependencies_keys_and_flows_keep_their_rules(steps in prop::collection::vec(arb_step(), 1..80)) {
        let mut log = ready();
        let mut started = BTreeMap::new();
        let mut model = Model::default();
        for (n, step) in steps.iter().enumerate() {
            apply(&mut log, step, n);
            check(&log, &mut started);
            model.follow(&log);
        }
    }
}
