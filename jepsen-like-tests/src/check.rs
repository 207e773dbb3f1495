//! The linearization search, and [`check_history`], which runs it on every partition.
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

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use crate::history::{History, HistoryError};
use crate::model::{Model, ModelKind, PartOp, Partition, Prepared};
use crate::models::{kv::Kv, register::Register, scheduler::Scheduler};
use crate::report::{self, Violation};

/// Default per-file time budget for `check`, in milliseconds.
pub const TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Default memory budget of the memo, in bytes: past it the search gives up (`unknown`) rather
/// than letting the machine swap.
pub const CACHE_BYTES_MAX_DEFAULT: usize = 2 << 30;

/// How often (in loop iterations) the search looks at the clock.
const CLOCK_CHECK_ITERATIONS: u64 = 4096;

/// Limits for one file.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    pub timeout_ms: u64,
    pub cache_bytes_max: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { timeout_ms: TIMEOUT_MS_DEFAULT, cache_bytes_max: CACHE_BYTES_MAX_DEFAULT }
    }
}

/// The verdict on one history.
#[derive(Debug, Clone)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(Box<Violation>),
    /// The search gave up (time or memory budget); the text says why.
    Unknown(String),
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

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

/// Types and partitions `history` for `kind`, then checks every partition.
pub fn check_history(kind: ModelKind, history: &History, opts: &CheckOptions) -> Result<Verdict, HistoryError> {
    match kind {
        ModelKind::Register => check_with(&Register, history, opts),
        ModelKind::Kv => check_with(&Kv, history, opts),
        ModelKind::Scheduler => check_with(&Scheduler, history, opts),
    }
}

/// [`check_history`] for a given model.
pub fn check_with<M: Model>(model: &M, history: &History, opts: &CheckOptions) -> Result<Verdict, HistoryError> {
    let prepared = model.prepare(history)?;
    Ok(check_prepared(model, history, &prepared, opts))
}

/// Checks an already prepared history (the part `bench` times together with `prepare`).
pub fn check_prepared<M: Model>(
    model: &M,
    history: &History,
    prepared: &Prepared<M::Op>,
    opts: &CheckOptions,
) -> Verdict {
    if let Some(sv) = &prepared.static_violation {
        return Verdict::NotLinearizable(Box::new(report::static_violation(history, sv)));
    }
    let deadline = Instant::now() + Duration::from_millis(opts.timeout_ms);
    let mut gave_up: Option<String> = None;
    for part in &prepared.partitions {
        match search(model, &part.ops, deadline, opts.cache_bytes_max) {
            SearchOutcome::Linearizable => {}
            SearchOutcome::Violation { prefix } => {
                return Verdict::NotLinearizable(Box::new(report::violation(model, history, part, &prefix)));
            }
            SearchOutcome::GaveUp(why) => {
                // Keep going: another partition may still show a definite violation.
                gave_up.get_or_insert(format!("{why} in {}", part.name));
            }
        }
    }
    match gave_up {
        None => Verdict::Linearizable,
        Some(why) => Verdict::Unknown(why),
    }
}

/// Checks one partition.
pub fn check_partition<M: Model>(model: &M, part: &Partition<M::Op>, timeout_ms: u64) -> SearchOutcome {
    search(model, &part.ops, Instant::now() + Duration::from_millis(timeout_ms), CACHE_BYTES_MAX_DEFAULT)
}

const HEAD: u32 = 0;
const NO_TWIN: u32 = u32::MAX;
const CALL_FLAG: u32 = 1 << 31;

/// The search itself; see the module documentation.
pub fn search<M: Model>(model: &M, ops: &[PartOp<M::Op>], deadline: Instant, cache_bytes_max: usize) -> SearchOutcome {
    let n = ops.len();
    if n >= (CALL_FLAG as usize) / 2 {
        return SearchOutcome::GaveUp(format!("partition of {n} operations is too large"));
    }
    let required_total = ops.iter().filter(|o| !o.is_open()).count();
    if required_total == 0 {
        return SearchOutcome::Linearizable;
    }

    // Entries 1..=2n in time order; 0 is the head, 2n+1 the tail. `tag[e]` is the operation index,
    // with CALL_FLAG set on invoke entries.
    let mut order: Vec<(u32, u32, u32)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        order.push((o.call, i as u32, i as u32 | CALL_FLAG));
        order.push((o.ret, i as u32, i as u32));
    }
    order.sort_unstable_by_key(|&(t, i, tag)| (t, tag & CALL_FLAG == 0, i));
    let len = 2 * n + 2;
    let mut tag = vec![0u32; len];
    let mut ret_entry = vec![0u32; n]; // operation → its completion entry
    for (k, &(_, i, t)) in order.iter().enumerate() {
        let e = k + 1;
        tag[e] = t;
        if t & CALL_FLAG == 0 {
            ret_entry[i as usize] = e as u32;
        }
    }
    // Identical indeterminate operations are interchangeable (same effect, and the one invoked
    // first is available whenever a later one is), so copies are only linearized in invoke
    // order: `twin[i]` is the previous copy, which must already be linearized before `i` may be.
    let mut twin = vec![NO_TWIN; n];
    if ops.iter().filter(|o| o.is_open()).nth(1).is_some() {
        let mut last_copy: FxHashMap<&M::Op, u32> = FxHashMap::default();
        for &(_, i, t) in &order {
            let i = i as usize;
            if t & CALL_FLAG != 0 && ops[i].is_open() {
                if let Some(prev) = last_copy.insert(&ops[i].op, i as u32) {
                    twin[i] = prev;
                }
            }
        }
    }
    let mut next: Vec<u32> = (1..=len as u32).collect();
    let mut prev: Vec<u32> = (0..len as u32).map(|e| e.wrapping_sub(1)).collect();
    let tail = (len - 1) as u32;

    let words = n.div_ceil(64);
    let mut bits = vec![0u64; words];
    let zobrist: Vec<u64> = (0..n as u64).map(|i| splitmix64(i.wrapping_add(0x9e37_79b9_7f4a_7c15))).collect();
    let mut zob = 0u64;
    let entry_bytes = words * 8 + 8 + std::mem::size_of::<M::State>() + 8;
    let mut memo: Memo<M::State> = Memo::new(words, n, (cache_bytes_max / entry_bytes).max(1024));

    let mut state = model.init();
    let mut stack: Vec<(u32, M::State)> = Vec::with_capacity(n);
    let mut required_done = 0usize;
    let mut best: Vec<u32> = Vec::new();
    let mut best_agree = 0usize; // length of the common prefix of `best` and the stack
    let mut iterations: u64 = 0;

    let mut e = next[HEAD as usize];
    loop {
        iterations += 1;
        if iterations.is_multiple_of(CLOCK_CHECK_ITERATIONS) && Instant::now() >= deadline {
            return SearchOutcome::GaveUp("timed out".into());
        }
        if e == tail {
            // Cannot happen (the list always ends with a completion), but never loop on it.
            return SearchOutcome::Linearizable;
        }
        let t = tag[e as usize];
        if t & CALL_FLAG != 0 {
            let i = (t & !CALL_FLAG) as usize;
            let tw = twin[i] as usize;
            let twin_pending = tw != NO_TWIN as usize && bits[tw / 64] & (1 << (tw % 64)) == 0;
            if twin_pending {
                e = next[e as usize];
                continue;
            }
            if let Some(new_state) = model.step(&state, &ops[i].op) {
                bits[i / 64] |= 1 << (i % 64);
                zob ^= zobrist[i];
                let h = mix(zob ^ hash_state(&new_state));
                match memo.insert(h, &bits, &new_state) {
                    Inserted::New => {
                        stack.push((e, std::mem::replace(&mut state, new_state)));
                        // lift the invoke and its completion out of the list
                        let r = ret_entry[i];
                        for x in [e, r] {
                            let (p, q) = (prev[x as usize], next[x as usize]);
                            next[p as usize] = q;
                            prev[q as usize] = p;
                        }
                        if !ops[i].is_open() {
                            required_done += 1;
                            if required_done == required_total {
                                return SearchOutcome::Linearizable;
                            }
                        }
                        let depth = stack.len();
                        if best_agree == depth - 1 && best.len() >= depth && best[depth - 1] == i as u32 {
                            best_agree = depth;
                        } else if depth > best.len() {
                            best.truncate(best_agree);
                            best.extend(stack[best_agree..].iter().map(|&(ce, _)| tag[ce as usize] & !CALL_FLAG));
                            best_agree = depth;
                        }
                        e = next[HEAD as usize];
                        continue;
                    }
                    Inserted::Seen => {}
                    Inserted::Full => return SearchOutcome::GaveUp(format!("memo exceeded {cache_bytes_max} bytes")),
                }
                bits[i / 64] &= !(1 << (i % 64));
                zob ^= zobrist[i];
            }
            e = next[e as usize];
        } else {
            // A completion: its operation had to be linearized by now. Backtrack.
            let Some((ce, old)) = stack.pop() else {
                return SearchOutcome::Violation { prefix: best };
            };
            state = old;
            let i = (tag[ce as usize] & !CALL_FLAG) as usize;
            bits[i / 64] &= !(1 << (i % 64));
            zob ^= zobrist[i];
            if !ops[i].is_open() {
                required_done -= 1;
            }
            best_agree = best_agree.min(stack.len());
            // unlift in reverse order of lifting
            let r = ret_entry[i];
            for x in [r, ce] {
                let (p, q) = (prev[x as usize], next[x as usize]);
                next[p as usize] = x;
                prev[q as usize] = x;
            }
            e = next[ce as usize];
        }
    }
}

enum Inserted {
    New,
    Seen,
    Full,
}

const EMPTY: u32 = u32::MAX;

/// The set of (linearized set, state) pairs already explored: open addressing (linear probing)
/// over parallel arrays, with each entry's bitset stored inline in one flat arena.
struct Memo<S> {
    words: usize,
    entries_max: usize,
    slots: Vec<u32>,
    hashes: Vec<u64>,
    states: Vec<S>,
    bits: Vec<u64>,
}

impl<S: Eq + Clone> Memo<S> {
    /// `ops` sizes the first table: small partitions (most of a scheduler history's) stay small.
    fn new(words: usize, ops: usize, entries_max: usize) -> Memo<S> {
        Memo {
            words,
            entries_max: entries_max.min(EMPTY as usize - 1),
            slots: vec![EMPTY; (4 * ops).clamp(16, 1 << 16).next_power_of_two()],
            hashes: Vec::new(),
            states: Vec::new(),
            bits: Vec::new(),
        }
    }

    #[inline]
    fn insert(&mut self, h: u64, bits: &[u64], state: &S) -> Inserted {
        let mask = self.slots.len() - 1;
        let w = self.words;
        let mut i = h as usize & mask;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                break;
            }
            let s = s as usize;
            if self.hashes[s] == h && self.states[s] == *state && self.bits[s * w..(s + 1) * w] == *bits {
                return Inserted::Seen;
            }
            i = (i + 1) & mask;
        }
        let id = self.hashes.len();
        if id >= self.entries_max {
            return Inserted::Full;
        }
        self.slots[i] = id as u32;
        self.hashes.push(h);
        self.states.push(state.clone());
        self.bits.extend_from_slice(bits);
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

/// A fast non-cryptographic hasher for model states and the partitioning maps (FxHash's scheme):
/// SipHash's resistance to flooding is not needed for a history file we check.
#[derive(Default)]
pub struct FxHasher(u64);

/// `HashMap` with [`FxHasher`].
pub type FxHashMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

const FX_K: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.write_u64(u64::from_le_bytes(last) ^ rest.len() as u64);
    }
    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.write_u64(n as u64)
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64)
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64)
    }
    #[inline]
    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64)
    }
    #[inline]
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64)
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(FX_K);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[inline]
fn hash_state<S: Hash>(s: &S) -> u64 {
    let mut h = FxHasher(0);
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

/// SplitMix64: well-spread 64-bit values for the Zobrist table (and the workload generator).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OPEN;
    use crate::models::register::{CasOutcome, RegisterOp};

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
            let mut pos: Vec<u32> = (0..2 * n as u32).collect();
            for k in (1..pos.len()).rev() {
                pos.swap(k, rnd(k as u64 + 1) as usize);
            }
            let ops: Vec<PartOp<RegisterOp>> = (0..n)
                .map(|k| {
                    let (a, b) = (pos[2 * k].min(pos[2 * k + 1]), pos[2 * k].max(pos[2 * k + 1]));
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
