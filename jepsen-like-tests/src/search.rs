//! The linearization search on one partition, resumable so that [`crate::check`] can share one
//! time budget fairly between partitions.
//!
//! The search is Lowe's just-in-time variant of Wing & Gong's algorithm. Invoke and completion
//! events of one partition sit in a doubly-linked list in time order. Walking the list, at an
//! invoke we try to linearize that operation now (model step legal, and the resulting
//! (set of linearized operations, state) never seen before); if so it is lifted out of the list
//! and pushed on a stack, and the walk restarts at the head. Reaching a completion means that
//! operation should already have been linearized: pop the last choice, put it back, and try the
//! next invoke after it. An empty stack at that point means no linearization exists.
//!
//! Why it is fast: the memo is an open-addressing table over an arena (no allocation per entry
//! beyond amortised growth), keyed by a Zobrist hash of the linearized set that is updated in
//! O(1) per step, combined with a cheap hash of the model state; dancing-links lift/unlift is
//! O(1); the search stops as soon as every determinate operation is placed; and identical
//! indeterminate operations (Jepsen's many timed-out `write 3`s) are linearized only in invoke
//! order, which removes their permutations from the search space without losing any
//! linearization (an exchange argument: the earlier copy can always stand in for a later one).
//!
//! Why it follows the reads: a model that knows how a read's value constrains what comes
//! before it ([`Model::LOOKS_AHEAD`]; kv does) is asked, at every step, about the next few
//! determinate reads in completion order. Each must be placed before anything invoked after its
//! completion, so only operations already invoked can come before it: a step after which one
//! of them can no longer become legal is pruned ([`Model::may_reach`]), and at a new node the
//! candidate a read needs next is tried first ([`Model::leads_to`]). Fifteen concurrent appends
//! followed by a get then cost fifteen steps, not up to fifteen factorial orders.
//!
//! Why it is resumable: a violation in one partition is often cheap to find while another
//! partition of the same history is expensive to clear (Porcupine's 50-client kv history has
//! both). [`Search::run`] takes an iteration budget and can be called again, so the caller can
//! give every partition slices of growing size and stop at the first violation, instead of
//! spending the whole budget on the first hard partition.

use std::hash::{Hash, Hasher};
use std::time::Instant;

use crate::hash::{FxHashMap, FxHasher};
use crate::model::{Model, PartOp};

/// Outcome of the search on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchOutcome {
    Linearizable,
    /// Not linearizable; `prefix` is the longest sequence of operations (indices into the
    /// partition) the search managed to linearize, in order.
    Violation {
        prefix: Vec<u32>,
    },
    GaveUp(String),
}

/// Why a search gave up on memory; [`crate::check`] adds the budget it shares out.
pub const MEMO_FULL: &str = "memo over its byte budget";

/// How often (in loop iterations) the search looks at the clock.
const CLOCK_CHECK_ITERATIONS: u64 = 4096;

/// How many of the next reads the model is asked about at each step ([`Model::may_reach`],
/// [`Model::leads_to`]): enough to see past the reads that complete together in a burst, few
/// enough that a step stays cheap.
const READS_AHEAD: usize = 3;

const HEAD: u32 = 0;
const NO_TWIN: u32 = u32::MAX;
const CALL_FLAG: u32 = 1 << 31;

/// Runs the search on `ops` to the end, or until `deadline`.
pub fn search<M: Model>(model: &M, ops: &[PartOp<M::Op>], deadline: Instant, cache_bytes_max: usize) -> SearchOutcome {
    match Search::new(model, ops, cache_bytes_max, false) {
        Err(done) => done,
        Ok(mut s) => s.run(u64::MAX, deadline).unwrap_or_else(|| SearchOutcome::GaveUp("timed out".into())),
    }
}

/// The event list of a partition: entries 1..=2n in time order, 0 is the head, 2n+1 the tail.
struct Events {
    /// `tag[e]` is the operation index, with [`CALL_FLAG`] set on invoke entries.
    tag: Vec<u32>,
    /// Operation → its completion entry.
    ret_entry: Vec<u32>,
    next: Vec<u32>,
    prev: Vec<u32>,
    tail: u32,
}

impl Events {
    fn new<O>(ops: &[PartOp<O>]) -> Events {
        let n = ops.len();
        let mut order: Vec<(u32, u32, u32)> = Vec::with_capacity(2 * n);
        for (i, o) in ops.iter().enumerate() {
            order.push((o.call, i as u32, i as u32 | CALL_FLAG));
            order.push((o.ret, i as u32, i as u32));
        }
        // At equal positions invokes come first, so that an operation invoked "at" another's
        // completion counts as concurrent with it (positions are distinct in parsed histories).
        order.sort_unstable_by_key(|&(t, i, tag)| (t, tag & CALL_FLAG == 0, i));
        let len = 2 * n + 2;
        let mut tag = vec![0u32; len];
        let mut ret_entry = vec![0u32; n];
        for (k, &(_, i, t)) in order.iter().enumerate() {
            tag[k + 1] = t;
            if t & CALL_FLAG == 0 {
                ret_entry[i as usize] = (k + 1) as u32;
            }
        }
        Events {
            tag,
            ret_entry,
            next: (1..=len as u32).collect(),
            prev: (0..len as u32).map(|e| e.wrapping_sub(1)).collect(),
            tail: (len - 1) as u32,
        }
    }

    /// Takes operation `i` (invoke entry `call`) out of the list.
    #[inline]
    fn lift(&mut self, call: u32, i: usize) {
        for x in [call, self.ret_entry[i]] {
            let (p, q) = (self.prev[x as usize], self.next[x as usize]);
            self.next[p as usize] = q;
            self.prev[q as usize] = p;
        }
    }

    /// Puts operation `i` back, in the reverse order of [`Events::lift`].
    #[inline]
    fn unlift(&mut self, call: u32, i: usize) {
        for x in [self.ret_entry[i], call] {
            let (p, q) = (self.prev[x as usize], self.next[x as usize]);
            self.next[p as usize] = x;
            self.prev[q as usize] = x;
        }
    }
}

/// How far back among identical earlier operations [`twins`] looks for one that ends no later.
const TWIN_LOOKBACK: usize = 8;

/// Identical operations whose intervals are ordered (A invoked no later than B and completed no
/// later than B; every indeterminate operation completes "at infinity") are linearized in that
/// order: `twin[i]` is such an earlier copy, which must already be linearized before `i` may be.
/// This loses no linearization (swapping two identical operations changes no result, and both
/// intervals still hold after the swap; an earliest-deadline-first assignment of the copies to
/// their places satisfies every such order at once), and it removes the copies' permutations
/// from the search: Jepsen's many timed-out `write 3`s, and the repeated writes of a register
/// with few values.
fn twins<M: Model>(ops: &[PartOp<M::Op>], events: &Events) -> Vec<u32> {
    let mut twin = vec![NO_TWIN; ops.len()];
    // Open and determinate copies chain separately: an open copy's best twin is the previous
    // open copy (always ordered), never a determinate one that would break that chain.
    let mut copies: [FxHashMap<&M::Op, Vec<u32>>; 2] = Default::default();
    for &t in &events.tag[1..events.tail as usize] {
        if t & CALL_FLAG == 0 {
            continue;
        }
        let i = (t & !CALL_FLAG) as usize;
        let earlier = copies[usize::from(ops[i].is_open())].entry(&ops[i].op).or_default();
        let found = earlier.iter().rev().take(TWIN_LOOKBACK).find(|&&k| ops[k as usize].ret <= ops[i].ret);
        if let Some(&k) = found {
            twin[i] = k;
        }
        earlier.push(i as u32);
    }
    twin
}

/// The set of linearized operations, kept in the forms the search and the memo need: a bitset
/// over all operations; the determinate ones as a bitset whose every word below `lo` is complete
/// (all linearized), so that the memo stores only the words from `lo` to the last nonzero one
/// (the operations around the frontier: a few words however long the history); the
/// indeterminate ones as a bitset of their own; and a Zobrist hash of the determinate ones.
struct Linearized {
    bits: Vec<u64>,
    det: Vec<u64>,
    /// The indeterminate operations' positions in `det`'s words (never set there).
    open_mask: Vec<u64>,
    /// Operation → its rank among the indeterminate ones (only read for those).
    open_rank: Vec<u32>,
    open_bits: Vec<u64>,
    /// First word of `det` with an unlinearized determinate operation.
    lo: usize,
    /// One past the last nonzero word of `det`.
    hi_end: usize,
    zobrist: Vec<u64>,
    zob: u64,
}

impl Linearized {
    fn new<O>(ops: &[PartOp<O>]) -> Linearized {
        let n = ops.len();
        let words = n.div_ceil(64);
        let mut open_mask = vec![0u64; words];
        let mut open_rank = vec![0u32; n];
        let mut opens = 0u32;
        for (i, o) in ops.iter().enumerate() {
            if o.is_open() {
                open_mask[i / 64] |= 1 << (i % 64);
                open_rank[i] = opens;
                opens += 1;
            }
        }
        let mut set = Linearized {
            bits: vec![0u64; words],
            det: vec![0u64; words],
            open_mask,
            open_rank,
            open_bits: vec![0u64; (opens as usize).div_ceil(64)],
            lo: 0,
            hi_end: 0,
            // Indeterminate operations stay out of the memo's hash, so that every node with the
            // same determinate set and state is found in one probe run (see `Memo`).
            zobrist: (0..n)
                .map(|i| if ops[i].is_open() { 0 } else { splitmix64((i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15)) })
                .collect(),
            zob: 0,
        };
        set.advance_lo();
        set
    }

    #[inline]
    fn contains(&self, i: usize) -> bool {
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn flip(&mut self, i: usize) {
        let (w, m) = (i / 64, 1u64 << (i % 64));
        self.bits[w] ^= m;
        self.zob ^= self.zobrist[i];
        if self.open_mask[w] & m != 0 {
            let r = self.open_rank[i] as usize;
            self.open_bits[r / 64] ^= 1 << (r % 64);
            return;
        }
        self.det[w] ^= m;
        if self.det[w] & m != 0 {
            self.hi_end = self.hi_end.max(w + 1);
            self.advance_lo();
        } else {
            self.lo = self.lo.min(w);
            while self.hi_end > 0 && self.det[self.hi_end - 1] == 0 {
                self.hi_end -= 1;
            }
        }
    }

    fn advance_lo(&mut self) {
        while self.lo < self.det.len() && self.det[self.lo] | self.open_mask[self.lo] == u64::MAX {
            self.lo += 1;
        }
    }

    /// The determinate set as the memo stores it: `lo` and the words from it to the last nonzero
    /// one. Two sets are equal exactly when these are (every word below `lo` is complete).
    fn determinate_key(&self) -> (u32, &[u64]) {
        (self.lo as u32, &self.det[self.lo..self.hi_end.max(self.lo)])
    }
}

/// A search in progress on one partition.
pub struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [PartOp<M::Op>],
    events: Events,
    twin: Vec<u32>,
    /// The linearized set.
    set: Linearized,
    memo: Memo<M::State>,
    cache_bytes_max: usize,
    state: M::State,
    /// Linearized operations: (invoke entry, state before it, how it was placed).
    stack: Vec<(u32, M::State, Placement)>,
    /// Look for a legal read-only candidate before walking (set at every new node).
    scan_reads: bool,
    /// Try indeterminate candidates only after the determinate ones (see [`Search::new`]).
    open_last: bool,
    /// With `open_last`: the walk's second pass over a node's candidates, which tries the
    /// indeterminate ones (the first pass tries the determinate ones).
    open_pass: bool,
    required_total: usize,
    required_done: usize,
    /// The longest linearized prefix seen, for the report.
    best: Vec<u32>,
    /// Length of the common prefix of `best` and the stack.
    best_agree: usize,
    /// Where the walk resumes.
    cursor: u32,
    iterations: u64,
}

impl<'a, M: Model> Search<'a, M> {
    /// Prepares a search, or answers at once when there is nothing to search.
    ///
    /// `open_last` picks the order candidates are tried in at each node. In invoke order (false,
    /// as Porcupine does) a timed-out operation that did take effect is placed as soon as it can
    /// be, which finds linearizations quickly. Indeterminate candidates last (true) explores the
    /// nodes that use the fewest of them first, so that the memo's subsumption collapses the
    /// subsets of time-outs a violating history otherwise makes the search enumerate. Both are
    /// complete; [`crate::check`] runs the two side by side and takes the first answer.
    pub fn new(
        model: &'a M,
        ops: &'a [PartOp<M::Op>],
        cache_bytes_max: usize,
        open_last: bool,
    ) -> Result<Self, SearchOutcome> {
        let n = ops.len();
        if n >= (CALL_FLAG as usize) / 2 {
            return Err(SearchOutcome::GaveUp(format!("partition of {n} operations is too large")));
        }
        let required_total = ops.iter().filter(|o| !o.is_open()).count();
        if required_total == 0 {
            return Err(SearchOutcome::Linearizable);
        }
        let events = Events::new(ops);
        let twin = twins::<M>(ops, &events);
        let cursor = events.next[HEAD as usize];
        Ok(Search {
            model,
            ops,
            events,
            twin,
            set: Linearized::new(ops),
            memo: Memo::new(ops.iter().filter(|o| o.is_open()).count().div_ceil(64), n),
            cache_bytes_max,
            state: model.init(),
            stack: Vec::with_capacity(n),
            scan_reads: true,
            open_last,
            open_pass: false,
            required_total,
            required_done: 0,
            best: Vec::new(),
            best_agree: 0,
            cursor,
            iterations: 0,
        })
    }

    /// Loop iterations so far (the work done).
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    /// Sets the memo's byte budget (the caller shares one budget between searches).
    pub fn set_cache_bytes_max(&mut self, bytes: usize) {
        self.cache_bytes_max = bytes;
    }

    /// Bytes held by the memo.
    pub fn memo_bytes(&self) -> usize {
        self.memo.bytes()
    }

    /// Runs at most `iterations_max` more iterations, or until `deadline`: `None` when the search
    /// is not over yet (call again to go on), else its outcome.
    pub fn run(&mut self, iterations_max: u64, deadline: Instant) -> Option<SearchOutcome> {
        let stop = self.iterations.saturating_add(iterations_max);
        while self.iterations < stop {
            self.iterations += 1;
            if self.iterations.is_multiple_of(CLOCK_CHECK_ITERATIONS) {
                if self.memo.bytes() > self.cache_bytes_max {
                    return Some(SearchOutcome::GaveUp(MEMO_FULL.into()));
                }
                if Instant::now() >= deadline {
                    return None;
                }
            }
            if std::mem::take(&mut self.scan_reads) {
                match self.place_read() {
                    Placed::Nothing => match self.place_guided() {
                        Some(None) => continue,
                        Some(done) => return done,
                        None => {}
                    },
                    Placed::Pushed(done) if done.is_none() => continue,
                    Placed::Pushed(done) => return done,
                    Placed::NodeFails => match self.backtrack() {
                        None => continue,
                        done => return done,
                    },
                }
            }
            let e = self.cursor;
            if e == self.events.tail {
                // Cannot happen (the list always ends with a completion), but never loop on it.
                return Some(SearchOutcome::Linearizable);
            }
            let t = self.events.tag[e as usize];
            let done = if t & CALL_FLAG != 0 {
                let i = (t & !CALL_FLAG) as usize;
                if !self.open_last || self.ops[i].is_open() == self.open_pass {
                    self.at_invoke(e, i)
                } else {
                    self.cursor = self.events.next[e as usize];
                    None
                }
            } else if self.open_last && !self.open_pass {
                // End of the candidates: now the indeterminate ones.
                self.open_pass = true;
                self.cursor = self.events.next[HEAD as usize];
                None
            } else {
                self.backtrack()
            };
            if done.is_some() {
                return done;
            }
        }
        None
    }

    fn is_linearized(&self, i: usize) -> bool {
        self.set.contains(i)
    }

    fn flip(&mut self, i: usize) {
        self.set.flip(i);
    }

    /// Looks the node (the linearized set, `state`) up in the memo; records it if new.
    fn remember(&mut self, state: &M::State) -> Inserted {
        let h = mix(self.set.zob ^ hash_state(state));
        let (lo, det) = self.set.determinate_key();
        self.memo.insert(h, state, lo, det, &self.set.open_bits)
    }

    /// Tries to linearize operation `i` (invoke entry `e`) now; moves the cursor.
    fn at_invoke(&mut self, e: u32, i: usize) -> Option<SearchOutcome> {
        if let Some(done) = self.try_place(e, i, Placement::Walked) {
            return done;
        }
        self.cursor = self.events.next[e as usize];
        None
    }

    /// Linearizes operation `i` (invoke entry `e`) if its twin is placed, it is legal, the next
    /// read stays reachable, and the node it leads to is new: `Some` of what [`Search::push`]
    /// returned, or `None` if it was not placed.
    fn try_place(&mut self, e: u32, i: usize, how: Placement) -> Option<Option<SearchOutcome>> {
        let tw = self.twin[i];
        if tw != NO_TWIN && !self.is_linearized(tw as usize) {
            return None;
        }
        let new_state = self.model.step(&self.state, &self.ops[i].op)?;
        if !self.may_reach_next(&new_state, Some(i)) {
            // Legal, and a dead end: still a longer prefix for the report.
            self.note_prefix(Some(i));
            return None;
        }
        self.flip(i);
        match self.remember(&new_state) {
            Inserted::New => Some(self.push(e, i, new_state, how)),
            Inserted::Seen => {
                self.flip(i);
                None
            }
        }
    }

    /// The completion entries of the first [`READS_AHEAD`] determinate read-only operations
    /// (in completion order) among those not linearized, ignoring operation `placed` (about to
    /// be linearized).
    fn next_reads(&self, placed: Option<usize>) -> impl Iterator<Item = u32> + '_ {
        let ev = &self.events;
        std::iter::successors(Some(ev.next[HEAD as usize]), |&e| Some(ev.next[e as usize]))
            .take_while(|&e| e != ev.tail)
            .filter(|&e| ev.tag[e as usize] & CALL_FLAG == 0)
            .map(|e| (e, &self.ops[ev.tag[e as usize] as usize]))
            .take_while(|(_, o)| !o.is_open())
            .filter(move |&(e, o)| Some(ev.tag[e as usize] as usize) != placed && self.model.is_read_only(&o.op))
            .map(|(e, _)| e)
            .take(READS_AHEAD)
    }

    /// The operations invoked before entry `stop` and not linearized, except `placed`: (invoke
    /// entry, operation index).
    fn invoked_before(&self, stop: u32, placed: Option<usize>) -> impl Iterator<Item = (u32, usize)> + '_ {
        let ev = &self.events;
        std::iter::successors(Some(ev.next[HEAD as usize]), |&e| Some(ev.next[e as usize]))
            .take_while(move |&e| e != stop)
            .filter(|&e| ev.tag[e as usize] & CALL_FLAG != 0)
            .map(|e| (e, (ev.tag[e as usize] & !CALL_FLAG) as usize))
            .filter(move |&(_, i)| Some(i) != placed)
    }

    /// Asks the model whether, with operation `placed` linearized into `state`, each of the
    /// next reads can still be placed (see [`Model::may_reach`]).
    fn may_reach_next(&self, state: &M::State, placed: Option<usize>) -> bool {
        if !M::LOOKS_AHEAD {
            return true;
        }
        self.next_reads(placed).all(|stop| {
            let next = &self.ops[self.events.tag[stop as usize] as usize].op;
            self.model.may_reach(state, next, self.invoked_before(stop, placed).map(|(_, i)| &self.ops[i].op))
        })
    }

    /// At a new node: linearizes first a candidate the model says one of the next reads needs
    /// (see [`Model::leads_to`]), if there is one. `None` if it placed nothing.
    fn place_guided(&mut self) -> Option<Option<SearchOutcome>> {
        if !M::LOOKS_AHEAD {
            return None;
        }
        let reads: Vec<u32> = self.next_reads(None).collect();
        // The candidates: what was invoked before the first completion (real-time order).
        let ev = &self.events;
        let mut first = ev.next[HEAD as usize];
        while first != ev.tail && ev.tag[first as usize] & CALL_FLAG != 0 {
            first = ev.next[first as usize];
        }
        for read in reads {
            let next = &self.ops[self.events.tag[read as usize] as usize].op;
            let lead = self
                .invoked_before(first, None)
                .find(|&(_, i)| self.model.leads_to(&self.state, next, &self.ops[i].op));
            if let Some(done) = lead.and_then(|(e, i)| self.try_place(e, i, Placement::Guided)) {
                return Some(done);
            }
        }
        None
    }

    /// Operation `i` is linearized: lift it, record progress, restart the walk at the head.
    fn push(&mut self, e: u32, i: usize, new_state: M::State, how: Placement) -> Option<SearchOutcome> {
        let old = std::mem::replace(&mut self.state, new_state);
        self.stack.push((e, old, how));
        self.scan_reads = true;
        self.open_pass = false;
        self.events.lift(e, i);
        if !self.ops[i].is_open() {
            self.required_done += 1;
            if self.required_done == self.required_total {
                return Some(SearchOutcome::Linearizable);
            }
        }
        let depth = self.stack.len();
        if self.best_agree == depth - 1 && self.best.len() >= depth && self.best[depth - 1] == i as u32 {
            self.best_agree = depth;
        } else {
            self.note_prefix(None);
        }
        self.cursor = self.events.next[HEAD as usize];
        None
    }

    /// Keeps the stack, then `extra` (a legal operation not pushed), as the longest linearized
    /// prefix if it is longer than the one kept.
    fn note_prefix(&mut self, extra: Option<usize>) {
        let depth = self.stack.len();
        if depth + usize::from(extra.is_some()) <= self.best.len() {
            return;
        }
        self.best.truncate(self.best_agree);
        let tag = &self.events.tag;
        self.best.extend(self.stack[self.best_agree..].iter().map(|&(ce, _, _)| tag[ce as usize] & !CALL_FLAG));
        self.best.extend(extra.map(|i| i as u32));
        self.best_agree = depth;
    }

    /// At a new node: places the first legal read-only candidate, if any (candidates are the
    /// invokes before the first completion in the list).
    fn place_read(&mut self) -> Placed {
        let mut e = self.events.next[HEAD as usize];
        loop {
            let t = self.events.tag[e as usize];
            if e == self.events.tail || t & CALL_FLAG == 0 {
                return Placed::Nothing;
            }
            let i = (t & !CALL_FLAG) as usize;
            let tw = self.twin[i];
            let free = tw == NO_TWIN || self.is_linearized(tw as usize);
            // Only determinate ones: a node with an indeterminate read-only operation added has
            // the same determinate set and state as the node itself, so the memo finds it
            // subsumed by this very node, which is still being explored, not failed.
            if free && !self.ops[i].is_open() && self.model.is_read_only_from(&self.state, &self.ops[i].op) {
                if let Some(same) = self.model.step(&self.state, &self.ops[i].op) {
                    self.flip(i);
                    if let Inserted::Seen = self.remember(&same) {
                        // Explored before, without success (its determinate set is larger than
                        // any node's on the current path, so it is not one of them): so is this
                        // node.
                        self.flip(i);
                        return Placed::NodeFails;
                    }
                    return Placed::Pushed(self.push(e, i, same, Placement::Forced));
                }
            }
            e = self.events.next[e as usize];
        }
    }

    /// A completion: its operation had to be linearized by now. Take back the last choice (and,
    /// while that was a forced read, the one before it too) and try the next candidate.
    fn backtrack(&mut self) -> Option<SearchOutcome> {
        loop {
            let Some((ce, old, how)) = self.stack.pop() else {
                return Some(SearchOutcome::Violation { prefix: std::mem::take(&mut self.best) });
            };
            self.state = old;
            let i = (self.events.tag[ce as usize] & !CALL_FLAG) as usize;
            self.flip(i);
            if !self.ops[i].is_open() {
                self.required_done -= 1;
            }
            self.best_agree = self.best_agree.min(self.stack.len());
            self.events.unlift(ce, i);
            match how {
                Placement::Walked => {
                    self.cursor = self.events.next[ce as usize];
                    self.open_pass = self.ops[i].is_open();
                    return None;
                }
                Placement::Guided => {
                    // Tried out of walk order: walk the node from the start (the memo now
                    // turns this operation down at once).
                    self.cursor = self.events.next[HEAD as usize];
                    self.open_pass = false;
                    return None;
                }
                Placement::Forced => {}
            }
        }
    }
}

/// How an operation on the stack was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// By the walk, in list order: taking it back resumes the walk after it.
    Walked,
    /// Out of walk order, as the model's guess for what the next read needs
    /// ([`Model::leads_to`]): taking it back walks its node from the start.
    Guided,
    /// A read-only operation placed as soon as it was legal: when it has to be taken back, the
    /// node it was placed at has no linearization either (see [`Model::is_read_only`]).
    Forced,
}

/// What [`Search::place_read`] did.
enum Placed {
    Nothing,
    /// Placed a read; the search's outcome if that finished it.
    Pushed(Option<SearchOutcome>),
    /// A read was legal but its node was explored before: this node has no linearization.
    NodeFails,
}

enum Inserted {
    New,
    Seen,
}

const EMPTY: u32 = u32::MAX;

/// The set of (linearized set, state) pairs already explored: open addressing (linear probing)
/// over parallel arrays, with each entry's bitset stored inline in one flat arena.
///
/// A recorded node *subsumes* a new one with the same state, the same determinate operations
/// linearized, and a subset of its indeterminate ones: the recorded node had every option the
/// new one has (an indeterminate operation is never required), so if it failed, so does the new
/// one; and if it is an ancestor still being explored, that exploration covers the new node's
/// continuations. With the walk trying indeterminate candidates last, the nodes that use fewest
/// of them are explored first, and the many subsets of time-outs a violating history would
/// otherwise enumerate collapse.
struct Memo<S> {
    /// Words of each entry's indeterminate set.
    open_words: usize,
    slots: Vec<u32>,
    hashes: Vec<u64>,
    states: Vec<S>,
    /// Per entry: offset in `arena`, `lo`, and the number of determinate words (see
    /// [`Linearized::determinate_key`]); the indeterminate words follow them in the arena.
    spans: Vec<(u32, u32, u32)>,
    arena: Vec<u64>,
}

impl<S: Eq + Clone> Memo<S> {
    /// `ops` sizes the first table: small partitions (most of a scheduler history's) stay small.
    fn new(open_words: usize, ops: usize) -> Memo<S> {
        Memo {
            open_words,
            slots: vec![EMPTY; (4 * ops).clamp(16, 1 << 16).next_power_of_two()],
            hashes: Vec::new(),
            states: Vec::new(),
            spans: Vec::new(),
            arena: Vec::new(),
        }
    }

    /// Bytes held (capacity, not length: what the allocator gave).
    fn bytes(&self) -> usize {
        self.slots.capacity() * 4
            + self.hashes.capacity() * 8
            + self.states.capacity() * std::mem::size_of::<S>()
            + self.spans.capacity() * 12
            + self.arena.capacity() * 8
    }

    /// Looks for a node that subsumes (`lo`/`det`, `open`, `state`): the same state and
    /// determinate set, and a subset of `open`. Records the node if there is none.
    #[inline]
    fn insert(&mut self, h: u64, state: &S, lo: u32, det: &[u64], open: &[u64]) -> Inserted {
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                break;
            }
            let s = s as usize;
            let (off, s_lo, s_len) = self.spans[s];
            if self.hashes[s] == h && s_lo == lo && s_len as usize == det.len() && self.states[s] == *state {
                let off = off as usize;
                let (d, o) = self.arena[off..off + det.len() + self.open_words].split_at(det.len());
                if d == det && o.iter().zip(open).all(|(&r, &n)| r & !n == 0) {
                    return Inserted::Seen;
                }
            }
            i = (i + 1) & mask;
        }
        let id = self.hashes.len();
        assert!(id < EMPTY as usize, "memo entries fit u32 (the byte budget stops the search long before)");
        assert!(self.arena.len() < u32::MAX as usize, "memo arena offsets fit u32 (the byte budget stops it before)");
        self.slots[i] = id as u32;
        self.hashes.push(h);
        self.states.push(state.clone());
        self.spans.push((self.arena.len() as u32, lo, det.len() as u32));
        self.arena.extend_from_slice(det);
        self.arena.extend_from_slice(open);
        if (id + 1) * 2 > self.slots.len() {
            self.grow();
        }
        Inserted::New
    }

    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        let mask = size - 1;
        let mut slots = vec![EMPTY; size];
        for (id, &h) in self.hashes.iter().enumerate() {
            let mut i = h as usize & mask;
            while slots[i] != EMPTY {
                i = (i + 1) & mask;
            }
            slots[i] = id as u32;
        }
        self.slots = slots;
    }
}

#[inline]
fn hash_state<S: Hash>(s: &S) -> u64 {
    let mut h = FxHasher::default();
    s.hash(&mut h);
    h.finish().wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// MurmurHash3's 64-bit finaliser: spreads the combined hash over all bits (slot = low bits).
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// SplitMix64: well-spread 64-bit values for the Zobrist table (and the generators).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// For the randomized tests: `n` intervals over the distinct positions `0..2n`, shuffled by `rnd`
/// (which returns a number below its argument).
#[cfg(test)]
pub(crate) fn random_intervals(n: usize, rnd: &mut impl FnMut(u64) -> u64) -> Vec<(u32, u32)> {
    let mut pos: Vec<u32> = (0..2 * n as u32).collect();
    for k in (1..pos.len()).rev() {
        pos.swap(k, rnd(k as u64 + 1) as usize);
    }
    pos.chunks(2).map(|p| (p[0].min(p[1]), p[0].max(p[1]))).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::check::CACHE_BYTES_MAX_DEFAULT;
    use crate::model::OPEN;
    use crate::models::register::{CasOutcome, Register, RegisterOp};

    fn op(o: RegisterOp, call: u32, ret: u32) -> PartOp<RegisterOp> {
        PartOp { op: o, history_index: None, call, ret }
    }

    fn run(ops: &[PartOp<RegisterOp>]) -> SearchOutcome {
        search(&Register, ops, Instant::now() + Duration::from_secs(10), CACHE_BYTES_MAX_DEFAULT)
    }

    #[test]
    fn concurrent_ops_may_be_reordered_but_sequential_ones_may_not() {
        use RegisterOp::*;
        // write 1 || read 1, then read nil: the read of nil after a completed write is illegal
        let ok = [op(Write(1), 0, 3), op(Read(Some(1)), 1, 2)];
        assert_eq!(run(&ok), SearchOutcome::Linearizable);
        let bad = [op(Write(1), 0, 1), op(Read(None), 2, 3)];
        assert_eq!(run(&bad), SearchOutcome::Violation { prefix: vec![0] });
        // concurrent: read nil can go first
        let ok2 = [op(Write(1), 0, 2), op(Read(None), 1, 3)];
        assert_eq!(run(&ok2), SearchOutcome::Linearizable);
    }

    #[test]
    fn open_operations_may_take_effect_late_or_never() {
        use RegisterOp::*;
        // an indeterminate write of 5 read after a later read of nil
        let ops = [op(Write(5), 0, OPEN), op(Read(None), 1, 2), op(Read(Some(5)), 3, 4)];
        assert_eq!(run(&ops), SearchOutcome::Linearizable);
        // an indeterminate cas that must have succeeded
        let ops = [
            op(Write(1), 0, 1),
            op(Cas { from: 1, to: 2, outcome: CasOutcome::Unknown }, 2, OPEN),
            op(Read(Some(2)), 3, 4),
            op(Read(Some(1)), 5, 6),
        ];
        assert!(matches!(run(&ops), SearchOutcome::Violation { .. }));
    }

    /// Exhaustive reference: try every operation that may come next (invoked before the earliest
    /// completion among the rest), with no memo and no pruning.
    fn brute_force(ops: &[PartOp<RegisterOp>], done: &mut Vec<bool>, state: Option<i64>) -> bool {
        let rest: Vec<usize> = (0..ops.len()).filter(|&i| !done[i]).collect();
        if rest.iter().all(|&i| ops[i].is_open()) {
            return true;
        }
        let first_ret = rest.iter().map(|&i| ops[i].ret).min().unwrap_or(OPEN);
        for &i in &rest {
            if ops[i].call < first_ret {
                if let Some(s) = Register.step(&state, &ops[i].op) {
                    done[i] = true;
                    let ok = brute_force(ops, done, s);
                    done[i] = false;
                    if ok {
                        return true;
                    }
                }
            }
        }
        false
    }

    #[test]
    fn agrees_with_brute_force_on_random_small_histories() {
        let mut seed = 7u64;
        let mut rnd = |n: u64| {
            seed += 1;
            splitmix64(seed) % n
        };
        let (mut yes, mut no) = (0, 0);
        for _ in 0..4000 {
            let n = 2 + rnd(7) as usize;
            // distinct event positions: shuffle 0..2n and give each op two of them
            let spans = crate::search::random_intervals(n, &mut rnd);
            let ops: Vec<PartOp<RegisterOp>> = (0..n)
                .map(|k| {
                    let (a, b) = spans[k];
                    let open = rnd(4) == 0;
                    let v = rnd(3) as i64;
                    let o = match rnd(if open { 2 } else { 3 }) {
                        0 => RegisterOp::Write(v),
                        1 => {
                            let outcome = if open {
                                CasOutcome::Unknown
                            } else if rnd(2) == 0 {
                                CasOutcome::Ok
                            } else {
                                CasOutcome::Fail
                            };
                            RegisterOp::Cas { from: rnd(3) as i64, to: v, outcome }
                        }
                        _ => RegisterOp::Read(if rnd(4) == 0 { None } else { Some(v) }),
                    };
                    op(o, a, if open { OPEN } else { b })
                })
                .collect();
            let expected = brute_force(&ops, &mut vec![false; n], None);
            let got = run(&ops);
            assert_eq!(got == SearchOutcome::Linearizable, expected, "{ops:?}");
            if expected {
                yes += 1;
            } else {
                no += 1;
            }
        }
        assert!(yes > 500 && no > 500, "{yes} linearizable, {no} not");
    }

    #[test]
    fn gives_up_when_out_of_time() {
        use RegisterOp::*;
        // many concurrent writes and a final impossible read: exponential without the memo's help
        let mut ops: Vec<_> = (0..60).map(|i| op(Write(i), 0, OPEN)).collect();
        ops.push(op(Read(Some(1000)), 1, 2));
        let out = search(&Register, &ops, Instant::now(), CACHE_BYTES_MAX_DEFAULT);
        assert!(matches!(out, SearchOutcome::GaveUp(_) | SearchOutcome::Violation { .. }));
    }
}
