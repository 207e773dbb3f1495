//! The `register` and `kv` stores, and the scene they share.
//!
//! Clean traffic uses few values (registers hold 0..[`REGISTER_VALUES`], as in Jepsen's etcd
//! test, so that many orders explain the same reads: the hard case for a checker); the scene
//! writes values no other operation ever writes, which is what makes each anomaly certain to be
//! observable (see [`cell_scene`]).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::sim::{Answer, Call, Rng, SceneOp, Store};
use super::Anomaly;
use crate::history::EventType;

/// Registers hold values in `0..REGISTER_VALUES` outside the scene.
pub const REGISTER_VALUES: u64 = 5;

/// Scene values of registers start here, above every value of the clean traffic.
const REGISTER_SCENE_BASE: i64 = 1_000_000;

/// What the scene needs from a store of independent cells (registers or strings by key).
trait Cells {
    /// A write of a value no other operation writes.
    fn fresh_write(&mut self, key: &str) -> Call;
    /// A read of `key`.
    fn read(&self, key: &str) -> Call;
    /// What a read of `key` returns now (also what `restore` puts back).
    fn observe(&self, key: &str) -> Value;
    /// A read result no write can ever produce.
    fn phantom(&mut self, key: &str) -> Value;
    fn restore(&mut self, key: &str, v: Value);
    fn apply_call(&mut self, call: &Call) -> Answer;
}

/// The scene on cells: a fresh write A, then (on every path but phantom) a fresh write B that
/// completes before a read begins, so the read must see B or something later:
///
/// | anomaly | what the store does | what a read shows | why no order explains it |
/// | --- | --- | --- | --- |
/// | none | A, B, read | B | (linearizable) |
/// | stale read | A, B, read | A | only A's write writes A, and it precedes B |
/// | lost write | A, B acknowledged but not applied, read | A | as above |
/// | duplicate apply | A, B, A again, read | A (kv: ...A B A) | as above (kv: A appended twice) |
/// | phantom read | A, read | a value never written | nothing writes it |
/// | vanish | A, B, read (B), roll back to A, read | B then A | the second read follows the first |
/// | reorder | A, B on x; then C on key y; another process reads y (C), then x | A on x | x's read begins after B ended |
fn cell_scene<C: Cells>(c: &mut C, anomaly: Anomaly, key: &str) -> Vec<SceneOp> {
    let mut ops = Vec::new();
    let run = |c: &mut C, actor: u64, call: Call, ops: &mut Vec<SceneOp>| {
        let answer = c.apply_call(&call);
        ops.push(SceneOp { actor, call, answer });
    };
    let a = c.fresh_write(key);
    run(c, 0, a.clone(), &mut ops);
    let after_a = c.observe(key);
    let read = c.read(key);
    if anomaly == Anomaly::PhantomRead {
        let phantom = c.phantom(key);
        ops.push(SceneOp { actor: 1, call: read, answer: (EventType::Ok, phantom) });
        return ops;
    }
    let b = c.fresh_write(key);
    if anomaly == Anomaly::LostWrite {
        ops.push(SceneOp { actor: 0, call: b, answer: (EventType::Ok, Value::Null) });
    } else {
        run(c, 0, b, &mut ops);
    }
    match anomaly {
        Anomaly::None | Anomaly::LostWrite => run(c, 1, read, &mut ops),
        Anomaly::StaleRead => ops.push(SceneOp { actor: 1, call: read, answer: (EventType::Ok, after_a) }),
        Anomaly::DuplicateApply => {
            c.apply_call(&a);
            run(c, 1, read, &mut ops);
        }
        Anomaly::Vanish => {
            run(c, 1, read.clone(), &mut ops);
            c.restore(key, after_a);
            run(c, 1, read, &mut ops);
        }
        Anomaly::Reorder => {
            let y = format!("{key}-y");
            let cw = c.fresh_write(&y);
            run(c, 0, cw, &mut ops);
            let ry = c.read(&y);
            run(c, 1, ry, &mut ops);
            ops.push(SceneOp { actor: 1, call: read, answer: (EventType::Ok, after_a) });
        }
        Anomaly::PhantomRead => unreachable!("handled above"),
    }
    ops
}

fn pick_key(rng: &mut Rng, keys: usize) -> String {
    rng.below(keys as u64).to_string()
}

/// Registers by key, with read / write / cas.
pub struct Registers {
    pub keys: usize,
    values: HashMap<String, Option<i64>>,
    fresh: i64,
}

impl Registers {
    pub fn new(keys: usize) -> Registers {
        Registers { keys, values: HashMap::new(), fresh: REGISTER_SCENE_BASE }
    }

    fn get(&self, key: &str) -> Option<i64> {
        self.values.get(key).copied().flatten()
    }
}

impl Store for Registers {
    fn choose(&mut self, rng: &mut Rng, _worker: bool) -> Call {
        let key = Some(pick_key(rng, self.keys));
        let v = |rng: &mut Rng| rng.below(REGISTER_VALUES) as i64;
        match rng.below(3) {
            0 => Call::new("read", key, Value::Null),
            1 => Call::new("write", key, json!(v(rng))),
            _ => Call::new("cas", key, json!([v(rng), v(rng)])),
        }
    }

    fn apply(&mut self, call: &Call, _rng: &mut Rng) -> Answer {
        self.apply_call(call)
    }

    fn scene(&mut self, anomaly: Anomaly, _rng: &mut Rng) -> Vec<SceneOp> {
        cell_scene(self, anomaly, "0")
    }
}

impl Cells for Registers {
    fn fresh_write(&mut self, key: &str) -> Call {
        self.fresh += 1;
        Call::new("write", Some(key.to_string()), json!(self.fresh))
    }

    fn read(&self, key: &str) -> Call {
        Call::new("read", Some(key.to_string()), Value::Null)
    }

    fn observe(&self, key: &str) -> Value {
        json!(self.get(key))
    }

    fn phantom(&mut self, _key: &str) -> Value {
        self.fresh += 1;
        json!(self.fresh)
    }

    fn restore(&mut self, key: &str, v: Value) {
        self.values.insert(key.to_string(), v.as_i64());
    }

    fn apply_call(&mut self, call: &Call) -> Answer {
        let key = call.key.clone().unwrap_or_default();
        match call.f {
            "read" => (EventType::Ok, self.observe(&key)),
            "write" => {
                self.values.insert(key, call.input.as_i64());
                (EventType::Ok, call.input.clone())
            }
            _ => {
                let (from, to) = (call.input[0].as_i64(), call.input[1].as_i64());
                if self.get(&key) == from {
                    self.values.insert(key, to);
                    (EventType::Ok, call.input.clone())
                } else {
                    (EventType::Fail, call.input.clone())
                }
            }
        }
    }
}

/// Strings by key, with get / put / append (Porcupine's kv test); every written token is unique
/// and delimited (`x P N y`), so a string says which writes it contains, in order.
pub struct Strings {
    pub keys: usize,
    values: HashMap<String, String>,
    fresh: u64,
}

impl Strings {
    pub fn new(keys: usize) -> Strings {
        Strings { keys, values: HashMap::new(), fresh: 0 }
    }

    fn token(&mut self, prefix: &str) -> String {
        self.fresh += 1;
        format!("{prefix} {} y", self.fresh)
    }
}

impl Store for Strings {
    fn choose(&mut self, rng: &mut Rng, _worker: bool) -> Call {
        let key = Some(pick_key(rng, self.keys));
        match rng.below(10) {
            0..=4 => Call::new("get", key, Value::Null),
            5..=8 => Call::new("append", key, json!(self.token("x"))),
            _ => Call::new("put", key, json!(self.token("p"))),
        }
    }

    fn apply(&mut self, call: &Call, _rng: &mut Rng) -> Answer {
        self.apply_call(call)
    }

    fn scene(&mut self, anomaly: Anomaly, _rng: &mut Rng) -> Vec<SceneOp> {
        cell_scene(self, anomaly, "0")
    }
}

impl Cells for Strings {
    fn fresh_write(&mut self, key: &str) -> Call {
        Call::new("append", Some(key.to_string()), json!(self.token("s")))
    }

    fn read(&self, key: &str) -> Call {
        Call::new("get", Some(key.to_string()), Value::Null)
    }

    fn observe(&self, key: &str) -> Value {
        json!(self.values.get(key).map(String::as_str).unwrap_or(""))
    }

    fn phantom(&mut self, key: &str) -> Value {
        let never = self.token("n");
        json!(format!("{}{never}", self.values.get(key).map(String::as_str).unwrap_or("")))
    }

    fn restore(&mut self, key: &str, v: Value) {
        self.values.insert(key.to_string(), v.as_str().unwrap_or_default().to_string());
    }

    fn apply_call(&mut self, call: &Call) -> Answer {
        let key = call.key.clone().unwrap_or_default();
        let arg = call.input.as_str().unwrap_or_default();
        match call.f {
            "get" => (EventType::Ok, self.observe(&key)),
            "put" => {
                self.values.insert(key, arg.to_string());
                (EventType::Ok, call.input.clone())
            }
            _ => {
                self.values.entry(key).or_default().push_str(arg);
                (EventType::Ok, call.input.clone())
            }
        }
    }
}
