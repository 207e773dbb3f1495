//! The one batching mechanism of raftsched: "take one, then whatever else is waiting, up to a
//! bound". The leader's proposer (client writes into one Raft entry), a follower's forwarder
//! (writes into one `Raft.Forward` call) and a worker's reporter (reports into one `ReportMany`
//! call) all gather work this way: no timer, so a lone item goes out at once and batches grow
//! only with load; each keeps some calls in flight ([`InFlight`]) so the next batch forms while
//! the last one is out.
//!
//! Bounds: the queue (`queued_max` items, senders wait beyond it), the batch (`len_max` items and
//! `weight_max` units of what each item weighs: ops, bytes), and the calls in flight.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// What an item counts for against `weight_max` (ops in a group, encoded bytes).
pub type Weigh<T> = fn(&T) -> usize;

/// The receiving end: hands out batches.
pub struct Batcher<T> {
    rx: mpsc::Receiver<T>,
    /// An item taken from the queue that did not fit the last batch: the next one starts with it.
    carried: Option<T>,
    len_max: usize,
    weight_max: usize,
    weigh: Weigh<T>,
}

/// A queue of `queued_max` items and its batcher, whose batches hold at most `len_max` items
/// (each weighing 1 until [`Batcher::weighing`] says otherwise).
pub fn channel<T>(queued_max: usize, len_max: usize) -> (mpsc::Sender<T>, Batcher<T>) {
    assert!(queued_max > 0 && len_max > 0, "a batcher needs room for one item");
    let (tx, rx) = mpsc::channel(queued_max);
    (tx, Batcher { rx, carried: None, len_max, weight_max: usize::MAX, weigh: |_| 1 })
}

impl<T> Batcher<T> {
    /// Bounds each batch to `weight_max` as `weigh` counts. An item heavier than that on its own
    /// still goes out, alone: the bound is what a batch adds up to, never a reason to drop.
    pub fn weighing(mut self, weight_max: usize, weigh: Weigh<T>) -> Batcher<T> {
        self.weight_max = weight_max;
        self.weigh = weigh;
        self
    }

    /// Waits for one item, then takes every item already queued, up to the bounds. `None` once
    /// every sender is gone and the queue is empty.
    pub async fn next_batch(&mut self) -> Option<Vec<T>> {
        let first = match self.carried.take() {
            Some(item) => item,
            None => self.rx.recv().await?,
        };
        let mut weight = (self.weigh)(&first);
        let mut batch = vec![first];
        while batch.len() < self.len_max {
            let Ok(item) = self.rx.try_recv() else { break };
            weight = weight.saturating_add((self.weigh)(&item));
            if weight > self.weight_max {
                self.carried = Some(item);
                break;
            }
            batch.push(item);
        }
        debug_assert!(batch.len() <= self.len_max);
        Some(batch)
    }
}

/// Calls (or entries) out at once: a batch is taken only with a slot in hand, so while every slot
/// is busy, items gather in the queue and go out together.
#[derive(Clone)]
pub struct InFlight(Arc<Semaphore>);

impl InFlight {
    pub fn new(max: usize) -> InFlight {
        InFlight(Arc::new(Semaphore::new(max)))
    }

    /// Waits for a free slot; held until the returned permit is dropped.
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        self.0.clone().acquire_owned().await.expect("never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lone_item_goes_at_once_and_batches_grow_with_what_waits() {
        let (tx, mut batcher) = channel(16, 3);
        tx.send(1).await.unwrap();
        assert_eq!(batcher.next_batch().await, Some(vec![1]));
        for i in 2..=6 {
            tx.send(i).await.unwrap();
        }
        assert_eq!(batcher.next_batch().await, Some(vec![2, 3, 4]), "at most len_max");
        assert_eq!(batcher.next_batch().await, Some(vec![5, 6]));
        drop(tx);
        assert_eq!(batcher.next_batch().await, None);
    }

    #[tokio::test]
    async fn the_weight_bound_carries_the_item_that_does_not_fit_to_the_next_batch() {
        let (tx, batcher) = channel::<Vec<u8>>(16, 100);
        let mut batcher = batcher.weighing(10, Vec::len);
        for n in [4, 4, 4, 30, 1] {
            tx.send(vec![0; n]).await.unwrap();
        }
        let lens = |b: Option<Vec<Vec<u8>>>| b.unwrap().iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(lens(batcher.next_batch().await), vec![4, 4]);
        assert_eq!(lens(batcher.next_batch().await), vec![4]);
        assert_eq!(lens(batcher.next_batch().await), vec![30], "too heavy alone still goes, alone");
        assert_eq!(lens(batcher.next_batch().await), vec![1]);
    }

    #[tokio::test]
    async fn a_slot_is_given_back_when_its_permit_drops() {
        let in_flight = InFlight::new(1);
        let slot = in_flight.slot().await;
        let waiting = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { drop(in_flight.slot().await) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(slot);
        waiting.await.unwrap();
    }
}
