//! Dispatch: the leader's plan (a pure function of the state and its clock) and the conditional
//! `Assign` command that carries it through Raft.

use crate::command::{AssignItem, Rejection, Response};
use crate::limits;
use crate::machine::StateMachine;
use crate::worker::WorkerState;
use std::collections::BTreeMap;

use crate::task::{Assignment, Attempt, Task, TaskId, TaskState};

/// Assignments a plan has made so far per concurrency key, on top of the tasks already held.
#[derive(Default)]
struct PlannedKeys<'a>(BTreeMap<&'a str, u32>);

impl<'a> PlannedKeys<'a> {
    fn has_room(&self, sm: &StateMachine, task: &Task) -> bool {
        task.concurrency
            .as_deref()
            .is_none_or(|c| sm.keys_in_use.has_room(c, self.0.get(c.key.as_str()).copied().unwrap_or(0)))
    }

    fn add(&mut self, task: &'a Task) {
        if let Some(c) = task.concurrency.as_deref() {
            *self.0.entry(c.key.as_str()).or_default() += 1;
        }
    }
}

impl StateMachine {
    /// Assignments the leader should propose now: pending tasks whose backoff has passed, higher
    /// priority first and FIFO within a priority, each to the ready worker with the right labels and
    /// the most free slots (ties: the lower id), at most `max_items`.
    pub fn plan_assignments(&self, now_ms: u64, max_items: usize) -> Vec<AssignItem> {
        self.plan(now_ms, max_items, usize::MAX)
    }

    /// The dispatch step of a `BatchDispatch` entry: the plan at `now_ms` (looking at most
    /// `DISPATCH_SCAN_LEN_MAX` pending tasks), applied at once with `index` as every token.
    pub(crate) fn dispatch(&mut self, index: u64, now_ms: u64) {
        let items = self.plan(now_ms, limits::ASSIGN_BATCH_LEN_MAX, limits::DISPATCH_SCAN_LEN_MAX);
        for item in &items {
            // No op of a batch assigns (`Assign` is refused in one), so every attempt made so far
            // has a token below `index`: a task assigned here never shares a token with an
            // earlier attempt of its own.
            debug_assert!(self.tasks[&item.task_id].attempts.last().is_none_or(|a| a.token < index));
            let assigned = self.assign_one(index, now_ms, item);
            // The plan was made from this very state, one item per task within free slots.
            debug_assert!(assigned, "a fresh plan applies in full: {item:?}");
        }
    }

    /// Pending tasks whose backoff has passed, in queue order, each to the best ready worker, at
    /// most `max_items`, looking at most `scan_len_max` pending tasks. From the free-slot index
    /// once it is built; the same plan by a scan of the registry before.
    fn plan(&self, now_ms: u64, max_items: usize, scan_len_max: usize) -> Vec<AssignItem> {
        let max_items = max_items.min(limits::ASSIGN_BATCH_LEN_MAX);
        if !self.free.is_built() {
            return self.plan_by_scan(now_ms, max_items, scan_len_max);
        }
        let mut planner = self.free.planner();
        let mut items = Vec::new();
        let mut planned = PlannedKeys::default();
        for &(_, id) in self.pending.iter().take(scan_len_max) {
            if items.len() >= max_items || planner.is_exhausted() {
                break;
            }
            let task = &self.tasks[&id];
            if task.not_before_ms > now_ms || !planned.has_room(self, task) {
                continue;
            }
            if let Some(worker_id) = planner.take(|w| self.workers[w].satisfies(&task.spec.constraints)) {
                planned.add(task);
                items.push(self.item(id, worker_id));
            }
        }
        items
    }

    fn item(&self, task_id: TaskId, worker_id: &str) -> AssignItem {
        let node = &self.workers[worker_id];
        AssignItem { task_id, attempts: self.tasks[&task_id].attempt(), worker_id: node.id.clone(), epoch: node.epoch }
    }

    /// `plan` by a scan of the registry: O(workers) per plan and per task.
    pub(crate) fn plan_by_scan(&self, now_ms: u64, max_items: usize, scan_len_max: usize) -> Vec<AssignItem> {
        let mut free: Vec<(&str, u32)> = self
            .workers
            .values()
            .filter(|n| n.state == WorkerState::Ready && n.free_slots() > 0)
            .map(|n| (n.id.as_str(), n.free_slots()))
            .collect();
        let mut items = Vec::new();
        let mut planned = PlannedKeys::default();
        for &(_, id) in self.pending.iter().take(scan_len_max) {
            if items.len() >= max_items || free.iter().all(|(_, f)| *f == 0) {
                break;
            }
            let task = &self.tasks[&id];
            if task.not_before_ms > now_ms || !planned.has_room(self, task) {
                continue;
            }
            let best = free
                .iter_mut()
                .filter(|(w, f)| *f > 0 && self.workers[*w].satisfies(&task.spec.constraints))
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)));
            if let Some((worker_id, slots)) = best {
                *slots -= 1;
                planned.add(task);
                items.push(self.item(id, worker_id));
            }
        }
        items
    }

    pub(crate) fn assign(&mut self, index: u64, now_ms: u64, items: &[AssignItem]) -> Response {
        if items.len() > limits::ASSIGN_BATCH_LEN_MAX {
            let reason =
                format!("{} assignments, over assign_batch_len_max {}", items.len(), limits::ASSIGN_BATCH_LEN_MAX);
            return Response::Rejected(Rejection::Invalid { reason });
        }
        let (mut n_assigned, mut n_stale) = (0, 0);
        for item in items {
            if self.assign_one(index, now_ms, item) {
                n_assigned += 1;
            } else {
                n_stale += 1;
            }
        }
        Response::Assigned { token: index, n_assigned, n_stale }
    }

    /// Applies one assignment if the state it was decided from still holds. The token is the log
    /// index, larger than any earlier token of the task.
    fn assign_one(&mut self, index: u64, now_ms: u64, item: &AssignItem) -> bool {
        let Some(task) = self.tasks.get(&item.task_id) else { return false };
        let Some(node) = self.workers.get(&item.worker_id) else { return false };
        let still_valid = task.state == TaskState::Pending
            && task.attempt() == item.attempts
            && task.attempt() < task.spec.max_attempts
            && node.state == WorkerState::Ready
            && node.epoch == item.epoch
            && node.free_slots() > 0
            && node.satisfies(&task.spec.constraints)
            && task.concurrency.as_deref().is_none_or(|c| self.keys_in_use.has_room(c, 0));
        if !still_valid {
            return false;
        }
        let ready_at_ms = [
            task.created_at_ms,
            task.spec.run_at_ms.unwrap_or(0),
            task.not_before_ms,
            task.attempts.last().and_then(|a| a.ended_at_ms).unwrap_or(0),
        ];
        self.observed.assigned_after(now_ms.saturating_sub(ready_at_ms.into_iter().max().unwrap_or(0)));
        let task = self.tasks.get_mut(&item.task_id).expect("checked above");
        debug_assert!(task.attempts.last().is_none_or(|a| a.token < index));
        task.attempts.push(Attempt {
            worker_id: item.worker_id.clone(),
            epoch: item.epoch,
            token: index,
            assigned_at_ms: now_ms,
            started_at_ms: None,
            ended_at_ms: None,
            outcome: None,
        });
        task.assignment = Some(Assignment {
            worker_id: item.worker_id.clone(),
            epoch: item.epoch,
            token: index,
            assigned_at_ms: now_ms,
        });
        self.workers.get_mut(&item.worker_id).expect("checked above").held.insert(item.task_id);
        self.worker_changed(&item.worker_id);
        self.transition(index, now_ms, item.task_id, TaskState::Assigned);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::command::{Command, Op, ReportEvent};
    use crate::machine::StateMachine;
    use crate::spec::TaskSpec;

    /// A small deterministic generator (no dependency): xorshift64.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// The index gives exactly the scan's plan, through registrations, drains, expiries,
    /// assignments and reports, with labels, on many random states.
    #[test]
    fn the_indexed_plan_is_the_scans_plan() {
        for seed in 1..=200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut sm = StateMachine::default();
            let mut index = 0;
            let mut apply = |sm: &mut StateMachine, op: Op| {
                index += 1;
                sm.apply(index, &Command { now_ms: 1_000 + index, op })
            };
            for step in 0..60 {
                let worker = format!("w{}", rng.below(12));
                let held: Vec<(u64, u64)> = sm
                    .workers()
                    .flat_map(|n| {
                        n.held.iter().map(|id| (*id, sm.get(*id).unwrap().assignment.as_ref().unwrap().token))
                    })
                    .collect();
                let op = match rng.below(7) {
                    6 if !held.is_empty() => {
                        let (task_id, token) = held[rng.below(held.len() as u64) as usize];
                        let event = ReportEvent::Ended { exit_code: 0, output_tail: String::new(), timed_out: false };
                        Op::Report { task_id, token, event }
                    }
                    0 | 1 => {
                        let labels: BTreeMap<String, String> = (rng.below(2) == 0)
                            .then(|| ("zone".to_string(), format!("z{}", rng.below(2))))
                            .into_iter()
                            .collect();
                        let slots = 1 + rng.below(3) as u32;
                        Op::RegisterWorker { worker_id: worker, instance: step, addr: String::new(), slots, labels }
                    }
                    2 => Op::DrainWorker { worker_id: worker },
                    3 => {
                        let seq = sm.worker(&worker).map_or((0, 0), |n| (n.epoch, n.heartbeat_seq));
                        Op::ExpireWorker { worker_id: worker, epoch: seq.0, heartbeat_seq: seq.1 }
                    }
                    _ => {
                        let mut spec = TaskSpec::builtin("echo", "x");
                        if rng.below(3) == 0 {
                            spec.constraints.insert("zone".into(), format!("z{}", rng.below(3)));
                        }
                        Op::Submit { key: format!("k{seed}-{step}"), spec }
                    }
                };
                apply(&mut sm, op);
                let now = 1_000_000;
                let by_scan = sm.plan_by_scan(now, 5, usize::MAX);
                assert_eq!(sm.plan(now, 5, usize::MAX), by_scan, "seed {seed} step {step}");
                if rng.below(2) == 0 && !by_scan.is_empty() {
                    apply(&mut sm, Op::Assign { items: by_scan });
                }
                assert_eq!(sm.check_invariants(), Ok(()));
            }
        }
    }
}
