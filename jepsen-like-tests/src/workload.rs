//! An in-process generator of linearizable scheduler histories, for `bench` and tests.
//!
//! It simulates a correct server and clients against it in virtual time: each operation is
//! invoked, takes effect at one instant (when the simulated server applies it), and completes
//! later, so that operations of different processes overlap as they do in a real run. A few
//! operations time out (`info`): about half of those still take effect. Because every result
//! comes from a sequential execution at instants inside the operations' intervals, every history
//! generated is linearizable by construction.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde_json::{json, Value};

use crate::check::splitmix64;
use crate::history::{Event, EventType, Format, History};

/// Shape of a generated workload.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Operations to invoke in total.
    pub operations: usize,
    /// Client processes (submit / get / cancel).
    pub clients: usize,
    /// Worker processes (complete).
    pub workers: usize,
    /// Operations that time out, per thousand.
    pub info_per_mille: u64,
    pub seed: u64,
}

impl WorkloadConfig {
    /// A realistic default: 8 clients, 2 workers, 1 % time-outs.
    pub fn new(operations: usize, seed: u64) -> WorkloadConfig {
        WorkloadConfig { operations, clients: 8, workers: 2, info_per_mille: 10, seed }
    }
}

/// Recent tasks a client picks from, so that keys see concurrent operations.
const RECENT_TASKS: usize = 32;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(1);
        splitmix64(self.0) % n.max(1)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Live,
    Ended(&'static str, Option<i64>),
}

struct Task {
    spec: String,
    status: Status,
}

/// The correct sequential server.
#[derive(Default)]
struct Server {
    tasks: Vec<Task>,
    by_key: HashMap<String, u64>,
    live: Vec<u64>,
}

impl Server {
    fn apply(&mut self, f: &str, key: Option<&str>, input: &Value, rng: &mut Rng) -> (EventType, Value) {
        let id = input.get("id").and_then(Value::as_u64).unwrap_or(0);
        match f {
            "submit" => {
                let key = key.unwrap_or_default();
                let spec = input["spec"].as_str().unwrap_or_default();
                if let Some(&id) = self.by_key.get(key) {
                    if self.tasks[id as usize - 1].spec == spec {
                        return (EventType::Ok, json!({ "id": id }));
                    }
                    return (EventType::Fail, json!({"error": "already_exists"}));
                }
                self.tasks.push(Task { spec: spec.to_string(), status: Status::Live });
                let id = self.tasks.len() as u64;
                self.by_key.insert(key.to_string(), id);
                self.live.push(id);
                (EventType::Ok, json!({ "id": id }))
            }
            "get" => match self.tasks.get((id as usize).wrapping_sub(1)) {
                None => (EventType::Fail, json!({"error": "not_found"})),
                Some(t) => match t.status {
                    Status::Live => {
                        let s = ["pending", "assigned", "running"][rng.below(3) as usize];
                        (EventType::Ok, json!({"state": s, "result_exit_code": null}))
                    }
                    Status::Ended(s, code) => (EventType::Ok, json!({"state": s, "result_exit_code": code})),
                },
            },
            _ => {
                let ended = if f == "cancel" {
                    Status::Ended("cancelled", None)
                } else {
                    let code = input["exit_code"].as_i64().unwrap_or(0);
                    Status::Ended(if code == 0 { "succeeded" } else { "failed" }, Some(code))
                };
                match self.tasks.get_mut((id as usize).wrapping_sub(1)) {
                    None => (EventType::Fail, json!({"error": "not_found"})),
                    Some(t) if t.status != Status::Live => (EventType::Fail, json!({"error": "failed_precondition"})),
                    Some(t) => {
                        t.status = ended;
                        self.live.retain(|&x| x != id);
                        (EventType::Ok, Value::Null)
                    }
                }
            }
        }
    }
}

struct InFlight {
    f: &'static str,
    key: Option<String>,
    input: Value,
    result: Option<(EventType, Value)>,
    times_out: bool,
}

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Phase {
    Apply,
    Complete,
    Invoke,
}

/// Generates a linearizable scheduler history.
pub fn scheduler_history(cfg: &WorkloadConfig) -> History {
    let mut rng = Rng(cfg.seed);
    let mut server = Server::default();
    let processes = cfg.clients + cfg.workers;
    let mut in_flight: Vec<Option<InFlight>> = (0..processes).map(|_| None).collect();
    // ids returned to clients, with their key and spec
    let mut known: Vec<(u64, String, String)> = Vec::new();
    let mut next_key = 0u64;
    let mut invoked = 0usize;
    let mut events: Vec<Event> = Vec::with_capacity(cfg.operations * 2);
    let mut queue: BinaryHeap<Reverse<(u64, Phase, usize)>> = BinaryHeap::new();
    for p in 0..processes {
        queue.push(Reverse((rng.below(10), Phase::Invoke, p)));
    }
    let emit = |events: &mut Vec<Event>, t: u64, p: usize, kind, f: &str, key: &Option<String>, value: Value| {
        events.push(Event {
            line: events.len() + 1,
            process: p as u64,
            kind,
            f: f.to_string(),
            key: key.clone(),
            value,
            time_ns: Some(t * 1_000),
        });
    };
    while let Some(Reverse((t, phase, p))) = queue.pop() {
        match phase {
            Phase::Invoke => {
                if invoked >= cfg.operations {
                    continue;
                }
                invoked += 1;
                let recent = |rng: &mut Rng, known: &Vec<(u64, String, String)>| {
                    let n = known.len().min(RECENT_TASKS) as u64;
                    known[known.len() - 1 - rng.below(n) as usize].clone()
                };
                let (f, key, input) = if p >= cfg.clients {
                    // a worker completes a task it holds (usually live; sometimes already ended)
                    if server.live.is_empty() || rng.below(10) == 0 {
                        if known.is_empty() {
                            ("get", None, json!({"id": 1}))
                        } else {
                            let (id, _, _) = recent(&mut rng, &known);
                            ("complete", None, json!({"id": id, "exit_code": rng.below(3)}))
                        }
                    } else {
                        let n = server.live.len().min(RECENT_TASKS) as u64;
                        let id = server.live[server.live.len() - 1 - rng.below(n) as usize];
                        let code = if rng.below(5) == 0 { 1 + rng.below(2) } else { 0 };
                        ("complete", None, json!({"id": id, "exit_code": code}))
                    }
                } else {
                    let r = rng.below(100);
                    if known.is_empty() || r < 35 {
                        next_key += 1;
                        ("submit", Some(format!("k{next_key}")), json!({"spec": format!("run job {next_key}")}))
                    } else if r < 45 {
                        let (_, key, spec) = recent(&mut rng, &known);
                        ("submit", Some(key), json!({ "spec": spec }))
                    } else if r < 50 {
                        let (_, key, _) = recent(&mut rng, &known);
                        ("submit", Some(key), json!({"spec": "a different job"}))
                    } else if r < 88 {
                        let (id, _, _) = recent(&mut rng, &known);
                        ("get", None, json!({ "id": id }))
                    } else {
                        let (id, _, _) = recent(&mut rng, &known);
                        ("cancel", None, json!({ "id": id }))
                    }
                };
                emit(&mut events, t, p, EventType::Invoke, f, &key, input.clone());
                let times_out = rng.below(1000) < cfg.info_per_mille;
                let apply_at = t + 1 + rng.below(20);
                if !times_out || rng.below(2) == 0 {
                    queue.push(Reverse((apply_at, Phase::Apply, p)));
                }
                queue.push(Reverse((apply_at + 1 + rng.below(20), Phase::Complete, p)));
                in_flight[p] = Some(InFlight { f, key, input, result: None, times_out });
            }
            Phase::Apply => {
                if let Some(op) = in_flight[p].as_mut() {
                    op.result = Some(server.apply(op.f, op.key.as_deref(), &op.input, &mut rng));
                }
            }
            Phase::Complete => {
                let Some(op) = in_flight[p].take() else { continue };
                let (kind, value) = match (op.times_out, op.result) {
                    (false, Some(r)) => r,
                    _ => (EventType::Info, Value::Null),
                };
                if op.f == "submit" && kind == EventType::Ok {
                    if let Some(id) = value["id"].as_u64() {
                        let spec = op.input["spec"].as_str().unwrap_or_default().to_string();
                        if known.last().map(|k| k.0) != Some(id) {
                            known.push((id, op.key.clone().unwrap_or_default(), spec));
                        }
                    }
                }
                emit(&mut events, t, p, kind, op.f, &op.key, value);
                queue.push(Reverse((t + rng.below(5), Phase::Invoke, p)));
            }
        }
    }
    // Events are emitted in virtual-time order; every invoke got a completion.
    History::from_events(Format::InMemory, &events).unwrap_or(History {
        format: Format::InMemory,
        ops: Vec::new(),
        events: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{check_history, CheckOptions};
    use crate::model::ModelKind;

    #[test]
    fn generated_histories_are_linearizable_and_round_trip_through_jsonl() {
        for seed in 0..5 {
            let h = scheduler_history(&WorkloadConfig::new(2_000, seed));
            assert_eq!(h.ops.len(), 2_000);
            let v = check_history(ModelKind::Scheduler, &h, &CheckOptions::default()).unwrap();
            assert!(v.is_linearizable(), "seed {seed}: {v:?}");
            let again = crate::parse::parse_str(&h.to_jsonl()).unwrap();
            assert_eq!(again.ops.len(), h.ops.len());
        }
    }

    #[test]
    fn a_corrupted_generated_history_is_caught() {
        let mut h = scheduler_history(&WorkloadConfig::new(2_000, 42));
        // make an acknowledged get report a task as cancelled that the server never cancelled
        let i = h
            .ops
            .iter()
            .position(|o| o.f == "get" && o.output.get("state").and_then(Value::as_str) == Some("pending"))
            .unwrap();
        h.ops[i].output = json!({"state": "succeeded", "result_exit_code": 99});
        let v = check_history(ModelKind::Scheduler, &h, &CheckOptions::default()).unwrap();
        assert!(!v.is_linearizable());
    }
}
