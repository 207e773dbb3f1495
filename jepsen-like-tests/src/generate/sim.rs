//! The simulation every generated history comes from: clients against one correct sequential
//! store, in virtual time.
//!
//! Each operation is invoked, takes effect at one instant (when the store applies it) and
//! completes later, so that operations of different processes overlap as in a real run. A share
//! of operations time out (`info`); about half of those still take effect before their time-out
//! is recorded. A process whose operation ended `info` never issues another one (Jepsen's rule):
//! its client goes on under a fresh process id. Because every result comes from a sequential
//! execution at instants inside the operations' intervals, the history is linearizable by
//! construction, except for what the scene (see [`super`]) injects on purpose.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde_json::Value;

use super::Anomaly;
use crate::history::{Event, EventType, Format, History};
use crate::search::splitmix64;

/// A seeded generator (splitmix64): a history follows from its seed alone.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(splitmix64(seed ^ 0x5eed))
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(1);
        splitmix64(self.0) % n.max(1)
    }

    /// True `per_mille` times in a thousand.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// An operation as a client issues it.
#[derive(Debug, Clone)]
pub struct Call {
    pub f: &'static str,
    pub key: Option<String>,
    pub input: Value,
}

impl Call {
    pub fn new(f: &'static str, key: Option<String>, input: Value) -> Call {
        Call { f, key, input }
    }
}

/// A completion as the store answers it.
pub type Answer = (EventType, Value);

/// One operation of a scene: `actor` names its process among the scene's own (0, 1, ...).
pub struct SceneOp {
    pub actor: u64,
    pub call: Call,
    pub answer: Answer,
}

/// A correct sequential store and the clients' choice of operations against it.
pub trait Store {
    /// The next operation of a process (`worker`: one of the scheduler's worker processes).
    fn choose(&mut self, rng: &mut Rng, worker: bool) -> Call;
    /// Applies `call` at its instant and answers it.
    fn apply(&mut self, call: &Call, rng: &mut Rng) -> Answer;
    /// Sees an answer delivered to a client (what clients learn, e.g. task ids).
    fn delivered(&mut self, _call: &Call, _answer: &Answer) {}
    /// Runs the scene at one instant, applying its effects: a few sequential operations of the
    /// scene's own processes, with `anomaly` injected so that it is observable.
    fn scene(&mut self, anomaly: Anomaly, rng: &mut Rng) -> Vec<SceneOp>;
}

/// Shape of one simulation.
pub struct SimConfig {
    pub operations: usize,
    pub clients: usize,
    /// Extra processes for which `choose` gets `worker = true`.
    pub workers: usize,
    pub info_per_mille: u64,
    /// Run the scene when this many operations have been invoked (`None`: no scene).
    pub scene_at: Option<usize>,
    pub anomaly: Anomaly,
    pub seed: u64,
}

struct InFlight {
    process: u64,
    call: Call,
    answer: Option<Answer>,
    times_out: bool,
}

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Phase {
    Apply,
    Complete,
    Invoke,
}

/// The events written so far.
struct Out {
    events: Vec<Event>,
}

impl Out {
    fn emit(&mut self, t: u64, process: u64, kind: EventType, call: &Call, value: Value) {
        self.events.push(Event {
            line: self.events.len() + 1,
            process,
            kind,
            f: call.f.to_string(),
            key: call.key.clone(),
            value,
            time_ns: Some(t * 1_000),
        });
    }
}

/// First process id of the scene's processes: above every client's.
const SCENE_PROCESS_BASE: u64 = 1 << 40;

/// Runs the simulation and returns its history.
pub fn simulate<S: Store>(store: &mut S, cfg: &SimConfig) -> History {
    let mut rng = Rng::new(cfg.seed);
    let slots = cfg.clients + cfg.workers;
    let mut process: Vec<u64> = (0..slots as u64).collect();
    let mut in_flight: Vec<Option<InFlight>> = (0..slots).map(|_| None).collect();
    let mut out = Out { events: Vec::with_capacity(cfg.operations * 2 + 16) };
    let mut queue: BinaryHeap<Reverse<(u64, Phase, usize)>> = BinaryHeap::new();
    for s in 0..slots {
        queue.push(Reverse((rng.below(10), Phase::Invoke, s)));
    }
    let mut invoked = 0usize;
    let mut scene_at = cfg.scene_at;
    while let Some(Reverse((t, phase, s))) = queue.pop() {
        match phase {
            Phase::Invoke => {
                if scene_at == Some(invoked) {
                    scene_at = None;
                    run_scene(store, cfg.anomaly, &mut rng, &mut out, t);
                }
                if invoked >= cfg.operations {
                    continue;
                }
                invoked += 1;
                let call = store.choose(&mut rng, s >= cfg.clients);
                out.emit(t, process[s], EventType::Invoke, &call, call.input.clone());
                let times_out = rng.chance(cfg.info_per_mille);
                let apply_at = t + 1 + rng.below(20);
                if !times_out || rng.below(2) == 0 {
                    queue.push(Reverse((apply_at, Phase::Apply, s)));
                }
                queue.push(Reverse((apply_at + 1 + rng.below(20), Phase::Complete, s)));
                in_flight[s] = Some(InFlight { process: process[s], call, answer: None, times_out });
            }
            Phase::Apply => {
                if let Some(op) = in_flight[s].as_mut() {
                    op.answer = Some(store.apply(&op.call, &mut rng));
                }
            }
            Phase::Complete => {
                let Some(op) = in_flight[s].take() else { continue };
                let answer = match (op.times_out, op.answer) {
                    (false, Some(a)) => a,
                    _ => (EventType::Info, Value::Null),
                };
                store.delivered(&op.call, &answer);
                out.emit(t, op.process, answer.0, &op.call, answer.1);
                if answer.0 == EventType::Info {
                    process[s] += slots as u64;
                }
                queue.push(Reverse((t + rng.below(5), Phase::Invoke, s)));
            }
        }
    }
    // Every invoke got a completion, in virtual-time order, so pairing cannot fail.
    History::from_events(Format::InMemory, &out.events).unwrap_or(History {
        format: Format::InMemory,
        ops: Vec::new(),
        events: 0,
    })
}

/// Writes the scene's operations one after the other, all at instant `t`: every operation in
/// flight elsewhere is concurrent with the whole scene.
fn run_scene<S: Store>(store: &mut S, anomaly: Anomaly, rng: &mut Rng, out: &mut Out, t: u64) {
    for op in store.scene(anomaly, rng) {
        let p = SCENE_PROCESS_BASE + op.actor;
        out.emit(t, p, EventType::Invoke, &op.call, op.call.input.clone());
        out.emit(t, p, op.answer.0, &op.call, op.answer.1);
    }
}
