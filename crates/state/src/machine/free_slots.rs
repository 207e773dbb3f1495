//! The free-slot index: ready workers with a free slot, most free slots first (ties: the lower id).
//!
//! Dispatch picks, for each pending task, the ready worker with the right labels and the most free
//! slots. Found by a scan of the registry that was O(workers) per dispatch batch plus O(workers)
//! per task: with 10,000 workers, handing each one task took minutes (docs/benchmarks.md, session
//! 11). The index is derived data, not state: never encoded, equal whatever it holds, built on the
//! first `apply` after the state was made or decoded, and kept up to date by every change of a
//! worker's state or held set (`StateMachine::worker_changed`). The plan it gives is exactly the
//! scan's (`dispatch.rs` keeps the scan for a state whose index is not built yet, and a test
//! compares the two), so replicas and builds agree whichever one they use.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::worker::{Worker, WorkerState};

#[derive(Clone, Default)]
pub(crate) struct FreeSlots {
    built: bool,
    /// (free slots reversed, worker id): iteration order is the dispatch preference.
    order: BTreeSet<(Reverse<u32>, String)>,
    /// Worker id -> its free slots as entered in `order`.
    entered: BTreeMap<String, u32>,
}

fn offered(node: &Worker) -> Option<u32> {
    (node.state == WorkerState::Ready && node.free_slots() > 0).then(|| node.free_slots())
}

impl FreeSlots {
    pub(crate) fn is_built(&self) -> bool {
        self.built
    }

    pub(crate) fn build<'a>(&mut self, nodes: impl Iterator<Item = &'a Worker>) {
        *self = FreeSlots { built: true, ..Default::default() };
        for node in nodes {
            self.update(&node.id, Some(node));
        }
    }

    /// Re-enters `worker_id` as `node` (None: gone) offers now.
    pub(crate) fn update(&mut self, worker_id: &str, node: Option<&Worker>) {
        if !self.built {
            return;
        }
        if let Some(old) = self.entered.remove(worker_id) {
            self.order.remove(&(Reverse(old), worker_id.to_string()));
        }
        if let Some(free) = node.and_then(offered) {
            self.entered.insert(worker_id.to_string(), free);
            self.order.insert((Reverse(free), worker_id.to_string()));
        }
    }

    /// Whether the index holds exactly what `nodes` offer (for `check_invariants`).
    pub(crate) fn matches<'a>(&self, nodes: impl Iterator<Item = &'a Worker>) -> bool {
        let want: BTreeMap<&str, u32> = nodes.filter_map(|n| Some((n.id.as_str(), offered(n)?))).collect();
        let have: BTreeMap<&str, u32> = self.entered.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        !self.built || (want == have && self.order.len() == self.entered.len())
    }

    /// Whether the index holds what `worker` offers now (for `check_touched`).
    pub(crate) fn matches_one(&self, worker: &Worker) -> bool {
        let have = self.entered.get(&worker.id).copied();
        let in_order = have.is_none_or(|free| self.order.contains(&(Reverse(free), worker.id.clone())));
        !self.built || (have == offered(worker) && in_order)
    }

    /// A plan's view: the index with the slots this plan has taken so far subtracted.
    pub(crate) fn planner(&self) -> Planner<'_> {
        Planner { index: self, taken: HashMap::new(), adjusted: BTreeSet::new(), n_offering: self.order.len() }
    }
}

/// The free slots left while one plan is made, without copying the index.
pub(crate) struct Planner<'a> {
    index: &'a FreeSlots,
    /// Slots taken in this plan, per worker.
    taken: HashMap<&'a str, u32>,
    /// Workers with slots taken that still offer some, at their reduced count.
    adjusted: BTreeSet<(Reverse<u32>, &'a str)>,
    /// Workers still offering a slot.
    n_offering: usize,
}

impl<'a> Planner<'a> {
    pub(crate) fn is_exhausted(&self) -> bool {
        self.n_offering == 0
    }

    /// The first worker in preference order that `accepts`, with a slot taken from it.
    pub(crate) fn take(&mut self, mut accepts: impl FnMut(&str) -> bool) -> Option<&'a str> {
        let untouched = self
            .index
            .order
            .iter()
            .filter(|(_, id)| !self.taken.contains_key(id.as_str()))
            .map(|(free, id)| (*free, id.as_str()));
        let mut untouched = untouched.peekable();
        let mut adjusted = self.adjusted.iter().copied().peekable();
        // Merge the two orders (a worker is in exactly one of them) until one accepts.
        let chosen = loop {
            let next = match (untouched.peek(), adjusted.peek()) {
                (Some(a), Some(b)) if a <= b => untouched.next(),
                (Some(_), Some(_)) | (None, Some(_)) => adjusted.next(),
                (Some(_), None) => untouched.next(),
                (None, None) => None,
            };
            match next {
                Some(entry) if accepts(entry.1) => break Some(entry),
                Some(_) => continue,
                None => break None,
            }
        };
        let (Reverse(free), id) = chosen?;
        self.adjusted.remove(&(Reverse(free), id));
        *self.taken.entry(id).or_default() += 1;
        if free > 1 {
            self.adjusted.insert((Reverse(free - 1), id));
        } else {
            self.n_offering -= 1;
        }
        Some(id)
    }
}
