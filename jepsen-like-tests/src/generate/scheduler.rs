//! The `scheduler` store: raftsched's client API (submit / get / cancel) and workers' completions,
//! as one correct sequential server.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::sim::{Answer, Call, Rng, SceneOp, Store};
use super::Anomaly;
use crate::history::EventType;

/// Recent tasks a client picks from, so that tasks see concurrent operations.
const RECENT_TASKS: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Live,
    Ended(&'static str, Option<i64>),
}

struct Task {
    spec: String,
    status: Status,
}

/// The correct sequential server, and what its clients know.
#[derive(Default)]
pub struct Tasks {
    tasks: Vec<Task>,
    by_key: HashMap<String, u64>,
    live: Vec<u64>,
    /// Ids returned to clients, with their key and spec.
    known: Vec<(u64, String, String)>,
    next_key: u64,
}

impl Tasks {
    fn recent(&self, rng: &mut Rng) -> (u64, String, String) {
        let n = self.known.len().min(RECENT_TASKS) as u64;
        self.known[self.known.len() - 1 - rng.below(n) as usize].clone()
    }

    fn fresh_key(&mut self) -> (String, String) {
        self.next_key += 1;
        (format!("k{}", self.next_key), format!("run job {}", self.next_key))
    }

    /// A worker completes a task it holds (usually live; sometimes already ended).
    fn choose_completion(&mut self, rng: &mut Rng) -> Call {
        if self.live.is_empty() || rng.below(10) == 0 {
            if self.known.is_empty() {
                return Call::new("get", None, json!({"id": 1}));
            }
            let (id, _, _) = self.recent(rng);
            return Call::new("complete", None, json!({"id": id, "exit_code": rng.below(3)}));
        }
        let n = self.live.len().min(RECENT_TASKS) as u64;
        let id = self.live[self.live.len() - 1 - rng.below(n) as usize];
        let code = if rng.below(5) == 0 { 1 + rng.below(2) } else { 0 };
        Call::new("complete", None, json!({"id": id, "exit_code": code}))
    }

    fn submit(&mut self, key: &str, spec: &str) -> Answer {
        if let Some(&id) = self.by_key.get(key) {
            if self.tasks[id as usize - 1].spec == spec {
                return (EventType::Ok, json!({ "id": id }));
            }
            return (EventType::Fail, json!({"error": "already_exists"}));
        }
        let id = self.create(spec);
        self.by_key.insert(key.to_string(), id);
        (EventType::Ok, json!({ "id": self.tasks.len() }))
    }

    /// A new task, whatever the key says (a duplicate apply uses this directly).
    fn create(&mut self, spec: &str) -> u64 {
        self.tasks.push(Task { spec: spec.to_string(), status: Status::Live });
        let id = self.tasks.len() as u64;
        self.live.push(id);
        id
    }

    fn get(&self, id: u64, rng: &mut Rng) -> Answer {
        match self.tasks.get((id as usize).wrapping_sub(1)) {
            None => (EventType::Fail, json!({"error": "not_found"})),
            Some(t) => match t.status {
                Status::Live => {
                    let s = ["pending", "assigned", "running"][rng.below(3) as usize];
                    (EventType::Ok, json!({"state": s, "result_exit_code": null}))
                }
                Status::Ended(s, code) => (EventType::Ok, json!({"state": s, "result_exit_code": code})),
            },
        }
    }

    fn end(&mut self, id: u64, ended: Status) -> Answer {
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

    /// Sets a task's status behind the API's back (the vanish anomaly's roll-back).
    fn set_status(&mut self, id: u64, status: Status) {
        if let Some(t) = self.tasks.get_mut((id as usize).wrapping_sub(1)) {
            t.status = status;
            if status == Status::Live {
                self.live.push(id);
            }
        }
    }
}

impl Store for Tasks {
    fn choose(&mut self, rng: &mut Rng, worker: bool) -> Call {
        if worker {
            return self.choose_completion(rng);
        }
        let r = rng.below(100);
        if self.known.is_empty() || r < 35 {
            let (key, spec) = self.fresh_key();
            return Call::new("submit", Some(key), json!({ "spec": spec }));
        }
        let (id, key, spec) = self.recent(rng);
        match r {
            35..=44 => Call::new("submit", Some(key), json!({ "spec": spec })),
            45..=49 => Call::new("submit", Some(key), json!({"spec": "a different job"})),
            50..=87 => Call::new("get", None, json!({ "id": id })),
            _ => Call::new("cancel", None, json!({ "id": id })),
        }
    }

    fn apply(&mut self, call: &Call, rng: &mut Rng) -> Answer {
        let id = call.input.get("id").and_then(Value::as_u64).unwrap_or(0);
        match call.f {
            "submit" => {
                let spec = call.input["spec"].as_str().unwrap_or_default().to_string();
                self.submit(call.key.as_deref().unwrap_or_default(), &spec)
            }
            "get" => self.get(id, rng),
            "cancel" => self.end(id, Status::Ended("cancelled", None)),
            _ => {
                let code = call.input["exit_code"].as_i64().unwrap_or(0);
                self.end(id, Status::Ended(if code == 0 { "succeeded" } else { "failed" }, Some(code)))
            }
        }
    }

    fn delivered(&mut self, call: &Call, answer: &Answer) {
        if call.f != "submit" || answer.0 != EventType::Ok {
            return;
        }
        if let Some(id) = answer.1["id"].as_u64() {
            if self.known.last().map(|k| k.0) != Some(id) {
                let spec = call.input["spec"].as_str().unwrap_or_default().to_string();
                self.known.push((id, call.key.clone().unwrap_or_default(), spec));
            }
        }
    }

    fn scene(&mut self, anomaly: Anomaly, rng: &mut Rng) -> Vec<SceneOp> {
        task_scene(self, anomaly, rng)
    }
}

/// The scene on a fresh task T (and, for reorder, a second fresh task U):
///
/// | anomaly | what the store does | what a get of T then shows | why no order explains it |
/// | --- | --- | --- | --- |
/// | none | submit T, complete T | succeeded | (linearizable) |
/// | stale read | submit T, complete T | live | T's completion ended before the get began |
/// | lost write | submit T, cancel T acknowledged but not applied | live | as above, for the cancel |
/// | duplicate apply | submit T, the same submit applied again | (the retry returns a second id) | one key, two ids |
/// | phantom read | submit T | succeeded with an exit code nobody reported | nothing completes T |
/// | vanish | submit T, complete T, get (succeeded), roll back to live | live | an ended task never lives again |
/// | reorder | submit T, cancel T; submit U; another process gets U (live), then T | live | T's cancel ended before |
fn task_scene(s: &mut Tasks, anomaly: Anomaly, rng: &mut Rng) -> Vec<SceneOp> {
    let mut ops = Vec::new();
    let run = |s: &mut Tasks, rng: &mut Rng, actor: u64, call: Call, ops: &mut Vec<SceneOp>| {
        let answer = s.apply(&call, rng);
        ops.push(SceneOp { actor, call, answer });
    };
    let (key, spec) = s.fresh_key();
    let submit = Call::new("submit", Some(key), json!({ "spec": spec }));
    run(s, rng, 0, submit.clone(), &mut ops);
    let id = s.tasks.len() as u64;
    let get = Call::new("get", None, json!({ "id": id }));
    let live = (EventType::Ok, json!({"state": "pending", "result_exit_code": null}));
    let complete = Call::new("complete", None, json!({"id": id, "exit_code": 0}));
    let cancel = Call::new("cancel", None, json!({ "id": id }));
    match anomaly {
        Anomaly::None => {
            run(s, rng, 2, complete, &mut ops);
            run(s, rng, 1, get, &mut ops);
        }
        Anomaly::StaleRead => {
            run(s, rng, 2, complete, &mut ops);
            ops.push(SceneOp { actor: 1, call: get, answer: live });
        }
        Anomaly::LostWrite => {
            ops.push(SceneOp { actor: 0, call: cancel, answer: (EventType::Ok, Value::Null) });
            run(s, rng, 1, get, &mut ops);
        }
        Anomaly::DuplicateApply => {
            let again = s.create(&spec);
            ops.push(SceneOp { actor: 0, call: submit, answer: (EventType::Ok, json!({ "id": again })) });
        }
        Anomaly::PhantomRead => {
            let phantom = json!({"state": "succeeded", "result_exit_code": 0});
            ops.push(SceneOp { actor: 1, call: get, answer: (EventType::Ok, phantom) });
        }
        Anomaly::Vanish => {
            run(s, rng, 2, complete, &mut ops);
            run(s, rng, 1, get.clone(), &mut ops);
            s.set_status(id, Status::Live);
            run(s, rng, 1, get, &mut ops);
        }
        Anomaly::Reorder => {
            run(s, rng, 0, cancel, &mut ops);
            let (key_u, spec_u) = s.fresh_key();
            run(s, rng, 0, Call::new("submit", Some(key_u), json!({ "spec": spec_u })), &mut ops);
            let u = s.tasks.len() as u64;
            run(s, rng, 1, Call::new("get", None, json!({ "id": u })), &mut ops);
            ops.push(SceneOp { actor: 1, call: get, answer: live });
        }
    }
    ops
}
