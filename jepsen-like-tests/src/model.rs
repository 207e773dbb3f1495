//! What a sequential specification (a model) must provide to the search, and how a history is
//! split into independently checkable partitions.

use std::fmt::Debug;
use std::hash::Hash;

use crate::history::{History, HistoryError, Operation};

/// Event position used as the return of an indeterminate operation: after every real event.
pub const OPEN: u32 = u32::MAX;

/// A sequential specification.
///
/// `step` must be deterministic given the operation's observed result, and an operation whose
/// result is unknown (an `info` completion) must be legal in every state: the search relies on
/// this to stop as soon as every determinate operation is placed (the indeterminate rest can then
/// go last, in any order).
pub trait Model {
    /// Model state. Cloned on every step and hashed into the search's memo, so keep it small.
    type State: Clone + Eq + Hash + Debug;
    /// A typed operation, with its observed result. `Eq + Hash` let the search treat identical
    /// indeterminate operations as interchangeable.
    type Op: Debug + Eq + Hash;

    fn init(&self) -> Self::State;

    /// The state after `op`, or `None` if `op` (with its observed result) is illegal in `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    /// True if `op` leaves every state it is legal in unchanged (a read, a failed compare-and-set).
    /// The search places such an operation as soon as it is legal and tries nothing else at that
    /// point: moving a read-only operation earlier, to an instant its interval allows and where it
    /// is legal, changes no other operation's result, so if any linearization exists, one with
    /// the read placed first exists too. Saying `false` is always safe (only slower).
    fn is_read_only(&self, _op: &Self::Op) -> bool {
        false
    }

    /// [`Model::is_read_only`] knowing the state the search is in: true if, where `op` is legal in
    /// `state`, placing it now is as good as placing it at any later point: every linearization
    /// from here that places it later can be changed into one that places it now. So it is when
    /// `op` leaves unchanged every state reachable from `state` in which it is legal (a scheduler
    /// get, once the task's id is known), and for kv's write no get saw, in a state no get reads.
    fn is_read_only_from(&self, _state: &Self::State, op: &Self::Op) -> bool {
        self.is_read_only(op)
    }

    /// Whether the search asks [`Model::may_reach`] and [`Model::leads_to`] (each step then
    /// looks ahead at the next reads, which costs time a model without them would waste).
    const LOOKS_AHEAD: bool = false;

    /// Whether `next` can still become legal from `state`. `next` is the determinate operation
    /// that completes first among those not yet linearized: every linearization from here places
    /// it before any operation invoked after its completion, so only some of `between` (the
    /// others invoked before it) can come first. `false` prunes the node; `true` is always safe.
    ///
    /// This is what lets the search follow a read's value instead of trying every order of
    /// the writes concurrent with it: kv's strings of unique tokens say their own order.
    fn may_reach<'o>(
        &self,
        _state: &Self::State,
        _next: &Self::Op,
        _between: impl Iterator<Item = &'o Self::Op>,
    ) -> bool
    where
        Self::Op: 'o,
    {
        true
    }

    /// Whether `candidate` is the operation to try first from `state` for `next` (the
    /// determinate read-only operation that completes first among those not yet linearized)
    /// to become legal: e.g. the append whose string follows `state` in the string a get read.
    /// Only an order of trial: any answer is safe.
    fn leads_to(&self, _state: &Self::State, _next: &Self::Op, _candidate: &Self::Op) -> bool {
        false
    }

    /// Types the history's operations and splits them into independent partitions.
    fn prepare(&self, history: &History) -> Result<Prepared<Self::Op>, HistoryError>;
}

/// A typed operation with its interval.
#[derive(Debug, Clone)]
pub struct PartOp<O> {
    pub op: O,
    /// Index in [`History::ops`], or `None` for an operation the model added (see
    /// [`crate::models::scheduler`]).
    pub history_index: Option<usize>,
    pub call: u32,
    /// Completion position, or [`OPEN`] for an indeterminate operation.
    pub ret: u32,
}

impl<O> PartOp<O> {
    /// Builds a partition operation from a history operation.
    pub fn from_history(op: O, index: usize, h: &Operation) -> PartOp<O> {
        PartOp { op, history_index: Some(index), call: h.call, ret: h.ret.unwrap_or(OPEN) }
    }

    pub fn is_open(&self) -> bool {
        self.ret == OPEN
    }
}

/// An independently checkable sub-history (one key, one task, ...).
#[derive(Debug, Clone)]
pub struct Partition<O> {
    /// Human name, e.g. `key "3"`.
    pub name: String,
    pub ops: Vec<PartOp<O>>,
}

/// A violation found while preparing, before any search (e.g. one task id returned for two
/// idempotency keys, which no per-key check can see).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticViolation {
    pub message: String,
    /// Indices in [`History::ops`] of the operations involved.
    pub ops: Vec<usize>,
}

/// A prepared history.
#[derive(Debug, Clone)]
pub struct Prepared<O> {
    pub partitions: Vec<Partition<O>>,
    pub static_violation: Option<StaticViolation>,
}

/// The models `check --model` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// etcd-style register: read / write / cas, initially nil (partitioned by `key` if present).
    Register,
    /// Key-value map: get / put / append, every key initially "" (partitioned by key).
    Kv,
    /// raftsched's client API (submit / get / cancel / complete), partitioned by task.
    Scheduler,
}

impl ModelKind {
    pub fn parse(name: &str) -> Option<ModelKind> {
        match name {
            "register" => Some(ModelKind::Register),
            "kv" => Some(ModelKind::Kv),
            "scheduler" => Some(ModelKind::Scheduler),
            _ => None,
        }
    }
}

/// Groups operations by a partition key, keeping the first-seen order of keys (so reports are
/// stable) and invoke order within each partition; `name` names a partition once.
pub fn group<K: Hash + Eq, O>(
    items: impl IntoIterator<Item = (K, PartOp<O>)>,
    name: impl Fn(&K) -> String,
) -> Vec<Partition<O>> {
    let mut index: crate::hash::FxHashMap<K, usize> = crate::hash::FxHashMap::default();
    let mut parts: Vec<Partition<O>> = Vec::new();
    for (key, op) in items {
        let i = match index.get(&key) {
            Some(&i) => i,
            None => {
                parts.push(Partition { name: name(&key), ops: Vec::new() });
                index.insert(key, parts.len() - 1);
                parts.len() - 1
            }
        };
        parts[i].ops.push(op);
    }
    parts
}

/// An error about an operation, reported on its invoke line.
pub fn op_error(h: &Operation, message: impl Into<String>) -> HistoryError {
    HistoryError::new(h.call_line, format!("{}: {}", h.f, message.into()))
}

/// An error about an operation's result, reported on its completion line.
pub fn result_error(h: &Operation, message: impl Into<String>) -> HistoryError {
    HistoryError::new(h.ret_line.unwrap_or(h.call_line), format!("{}: {}", h.f, message.into()))
}
