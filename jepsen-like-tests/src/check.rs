//! [`check_history`]: runs the linearization search ([`crate::search`]) on every partition of a
//! history within one time budget, sharing it fairly.
//!
//! Partitions are searched in rounds of growing slices (a first slice each, then twice as many
//! iterations for every partition still undecided, and so on), and the first violation ends the
//! check. A violation is often cheap to find in one partition while another is expensive to
//! clear; searching partitions one after the other would spend the whole budget on the first
//! hard one and answer `unknown` where a definite `not linearizable` was a few milliseconds away
//! (Porcupine gets the same effect by searching all partitions concurrently). The rounds cost at
//! most about twice the work of the single hardest partition that has to finish.

use std::time::{Duration, Instant};

use crate::history::{History, HistoryError};
use crate::model::{Model, ModelKind, Partition, Prepared};
use crate::models::{kv::Kv, register::Register, scheduler::Scheduler};
use crate::report::{self, Violation};
use crate::search::MEMO_FULL;
pub use crate::search::{search, splitmix64, Search, SearchOutcome};

/// Default per-file time budget for `check`, in milliseconds.
pub const TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Default memory budget of the memos, in bytes, for all partitions of a file together: past it
/// the search gives up (`unknown`) rather than letting the machine swap.
pub const CACHE_BYTES_MAX_DEFAULT: usize = 2 << 30;

/// Iterations of each partition's first slice; later rounds double it up to
/// [`SLICE_ITERATIONS_MAX`]. Most partitions of a real history finish in the first slice.
const SLICE_ITERATIONS_FIRST: u64 = 1 << 12;
/// Largest slice: a few milliseconds, so an undecided partition never waits long for its turn.
const SLICE_ITERATIONS_MAX: u64 = 1 << 20;

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
    match search_partitions(model, &prepared.partitions, deadline, opts.cache_bytes_max) {
        Decided::Linearizable => Verdict::Linearizable,
        Decided::Violation(part, prefix) => {
            Verdict::NotLinearizable(Box::new(report::violation(model, history, part, &prefix)))
        }
        Decided::Unknown(why) => Verdict::Unknown(why),
    }
}

/// What [`search_partitions`] found.
enum Decided<'p, O> {
    Linearizable,
    Violation(&'p Partition<O>, Vec<u32>),
    Unknown(String),
}

/// Searches every partition in rounds of growing slices; see the module documentation. A
/// partition not decided in its first slice gets a second search with the other candidate order
/// ([`Search::new`]'s `open_last`); the first of the two to answer decides it.
fn search_partitions<'p, M: Model>(
    model: &'p M,
    parts: &'p [Partition<M::Op>],
    deadline: Instant,
    cache_bytes_max: usize,
) -> Decided<'p, M::Op> {
    let mut gave_up: Option<String> = None;
    let mut live: Vec<(usize, Search<'p, M>)> = Vec::new();
    for (k, part) in parts.iter().enumerate() {
        let mut s = match Search::new(model, &part.ops, cache_bytes_max, false) {
            Ok(s) => s,
            Err(SearchOutcome::Violation { prefix }) => return Decided::Violation(part, prefix),
            Err(SearchOutcome::GaveUp(why)) => {
                gave_up.get_or_insert(format!("{why} in {}", part.name));
                continue;
            }
            Err(SearchOutcome::Linearizable) => continue,
        };
        // Run each search's first slice before preparing the next, so that a history of many
        // small partitions never holds them all in memory at once.
        match s.run(SLICE_ITERATIONS_FIRST, deadline) {
            None => {
                live.push((k, s));
                if let Ok(other) = Search::new(model, &part.ops, cache_bytes_max, true) {
                    live.push((k, other));
                }
            }
            Some(SearchOutcome::Violation { prefix }) => return Decided::Violation(part, prefix),
            Some(SearchOutcome::GaveUp(why)) => drop(gave_up.get_or_insert(format!("{why} in {}", part.name))),
            Some(SearchOutcome::Linearizable) => {}
        }
    }
    let mut slice = SLICE_ITERATIONS_FIRST;
    while !live.is_empty() {
        if Instant::now() >= deadline {
            gave_up.get_or_insert(format!("timed out in {}", parts[live[0].0].name));
            break;
        }
        slice = (slice * 2).min(SLICE_ITERATIONS_MAX);
        // Every live memo counts against the one budget: each search may use what the others
        // leave.
        let held: usize = live.iter().map(|(_, s)| s.memo_bytes()).sum();
        let mut j = 0;
        while j < live.len() {
            let (k, s) = &mut live[j];
            let (k, own) = (*k, s.memo_bytes());
            s.set_cache_bytes_max(cache_bytes_max.saturating_sub(held - own));
            match s.run(slice, deadline) {
                None => j += 1,
                Some(SearchOutcome::Violation { prefix }) => return Decided::Violation(&parts[k], prefix),
                Some(SearchOutcome::GaveUp(why)) => {
                    // The sibling search may still answer; name the partition only if none does.
                    live.remove(j);
                    if !live.iter().any(|(other, _)| *other == k) {
                        let why = if why == MEMO_FULL {
                            format!("memos exceeded {cache_bytes_max} bytes (all partitions together)")
                        } else {
                            why
                        };
                        gave_up.get_or_insert(format!("{why} in {}", parts[k].name));
                    }
                }
                Some(SearchOutcome::Linearizable) => {
                    // The sibling search (before or after this one) is not needed any more.
                    let removed_before = live[..j].iter().filter(|(other, _)| *other == k).count();
                    live.retain(|(other, _)| *other != k);
                    j -= removed_before;
                }
            }
        }
    }
    match gave_up {
        None => Decided::Linearizable,
        Some(why) => Decided::Unknown(why),
    }
}

/// Checks one partition.
pub fn check_partition<M: Model>(model: &M, part: &Partition<M::Op>, timeout_ms: u64) -> SearchOutcome {
    search(model, &part.ops, Instant::now() + Duration::from_millis(timeout_ms), CACHE_BYTES_MAX_DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PartOp, OPEN};
    use crate::models::register::RegisterOp;

    fn op(o: RegisterOp, call: u32, ret: u32) -> PartOp<RegisterOp> {
        PartOp { op: o, history_index: None, call, ret }
    }

    /// 60 concurrent indeterminate writes and a read of a value never written: exponential work
    /// before the search can say no.
    fn hard_violation() -> Vec<PartOp<RegisterOp>> {
        let mut ops: Vec<_> = (0..60).map(|i| op(RegisterOp::Write(i), 0, OPEN)).collect();
        ops.push(op(RegisterOp::Read(Some(1000)), 1, 2));
        ops
    }

    #[test]
    fn a_cheap_violation_is_found_behind_a_hard_partition() {
        let easy = vec![op(RegisterOp::Write(1), 0, 1), op(RegisterOp::Read(None), 2, 3)];
        let parts = vec![
            Partition { name: "hard".into(), ops: hard_violation() },
            Partition { name: "easy".into(), ops: easy },
        ];
        let deadline = Instant::now() + Duration::from_secs(60);
        match search_partitions(&Register, &parts, deadline, CACHE_BYTES_MAX_DEFAULT) {
            Decided::Violation(part, prefix) => {
                assert_eq!(part.name, "easy");
                assert_eq!(prefix, vec![0]);
            }
            Decided::Linearizable => panic!("linearizable"),
            Decided::Unknown(why) => panic!("unknown: {why}"),
        }
    }

    #[test]
    fn a_hard_partition_alone_gives_up_at_the_deadline_naming_it() {
        let parts = vec![
            Partition { name: "fine".into(), ops: vec![op(RegisterOp::Write(1), 0, 1)] },
            Partition { name: "hard".into(), ops: hard_violation() },
        ];
        let deadline = Instant::now() + Duration::from_millis(50);
        match search_partitions(&Register, &parts, deadline, CACHE_BYTES_MAX_DEFAULT) {
            Decided::Unknown(why) => assert_eq!(why, "timed out in hard"),
            Decided::Linearizable => panic!("linearizable"),
            Decided::Violation(part, _) => panic!("violation in {}", part.name),
        }
    }
}
