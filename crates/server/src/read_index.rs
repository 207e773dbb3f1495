//! Coalescing of read-index rounds.
//!
//! A read index costs a round of heartbeats to a quorum (on the leader) or an RPC to the leader (on
//! a follower). Any round that *starts* after a read arrived gives an index valid for that read,
//! so concurrent reads share rounds: one runs at a time, and every read that arrived while it ran
//! takes the next one. Under load one round serves many reads; alone, a read pays for one round.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::watch;
use tokio::time::{Duration, Instant};
use tonic::Status;

pub(crate) struct ReadIndexRounds {
    /// Least time between the starts of two rounds (0: none). Worker heartbeats use a gap: their
    /// answer may wait a few ms, and then one round serves all that arrived meanwhile, so the
    /// rounds per second stay bounded however large the fleet.
    gap: Duration,
    state: Mutex<State>,
    /// Bumped whenever a round ends (or its driver is dropped): every waiter looks again at once.
    /// (A lock handed from waiter to waiter woke them one by one: at 20,000 heartbeats a second
    /// that chain alone made them wait hundreds of ms.)
    ended: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// A caller is driving a round now.
    running: bool,
    /// Rounds started so far; a round's number is this counter after it started.
    n_started: u64,
    /// When the last round started.
    last_start: Option<Instant>,
    /// The number and outcome of the last finished round.
    last: Option<(u64, Result<u64, Status>)>,
}

impl Default for ReadIndexRounds {
    fn default() -> Self {
        ReadIndexRounds { gap: Duration::ZERO, state: Mutex::default(), ended: watch::channel(0).0 }
    }
}

/// Clears `running` and wakes the waiters when the driving caller finishes or is dropped midway
/// (its request cancelled): another waiter then drives the next round.
struct Driving<'a>(&'a ReadIndexRounds);

impl Drop for Driving<'_> {
    fn drop(&mut self) {
        self.0.lock().running = false;
        self.0.ended.send_modify(|n| *n += 1);
    }
}

impl ReadIndexRounds {
    /// Rounds that start at least `gap` apart.
    pub(crate) fn with_gap(gap: Duration) -> Self {
        ReadIndexRounds { gap, ..Default::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A read index valid for a read that arrives now: from a round that started after this call.
    pub(crate) async fn get<F, Fut>(&self, round: F) -> Result<u64, Status>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<u64, Status>>,
    {
        let arrived_after = self.lock().n_started;
        loop {
            let waiting = {
                let mut state = self.lock();
                if let Some((n, outcome)) = &state.last {
                    if *n > arrived_after {
                        return outcome.clone();
                    }
                }
                if state.running {
                    Some(self.ended.subscribe())
                } else {
                    state.running = true;
                    None
                }
            };
            match waiting {
                // The sender lives as long as `self`: `changed` only returns once a round ended.
                Some(mut ended) => {
                    let _ = ended.changed().await;
                }
                None => return self.drive(round).await,
            }
        }
    }

    /// Runs one round, at least `gap` after the last one started.
    async fn drive<F, Fut>(&self, round: F) -> Result<u64, Status>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<u64, Status>>,
    {
        let _driving = Driving(self);
        let not_before = self.lock().last_start.map(|at| at + self.gap);
        if let Some(at) = not_before.filter(|at| *at > Instant::now()) {
            // Callers arriving meanwhile count this round as started after them: it starts below.
            tokio::time::sleep_until(at).await;
        }
        let n = {
            let mut state = self.lock();
            state.last_start = Some(Instant::now());
            state.n_started += 1;
            state.n_started
        };
        let outcome = round().await;
        self.lock().last = Some((n, outcome.clone()));
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_reads_share_rounds_and_never_reuse_an_older_one() {
        let rounds = Arc::new(ReadIndexRounds::default());
        let n_rounds = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (rounds, n_rounds) = (rounds.clone(), n_rounds.clone());
            tasks.push(tokio::spawn(async move {
                rounds
                    .get(|| async {
                        let n = n_rounds.fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::task::yield_now().await;
                        Ok(u64::from(n))
                    })
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let n = n_rounds.load(Ordering::SeqCst);
        assert!((1..50).contains(&n), "{n} rounds for 50 concurrent reads");
        // A read that arrives after everything finished gets a fresh round.
        let fresh = rounds.get(|| async { Ok(999) }).await.unwrap();
        assert_eq!(fresh, 999);
    }

    #[tokio::test]
    async fn rounds_with_a_gap_start_that_far_apart() {
        let gap = Duration::from_millis(30);
        let rounds = ReadIndexRounds::with_gap(gap);
        let started = Instant::now();
        rounds.get(|| async { Ok(1) }).await.unwrap();
        rounds.get(|| async { Ok(2) }).await.unwrap();
        assert!(started.elapsed() >= gap, "two rounds {:?} apart", started.elapsed());
    }

    #[tokio::test]
    async fn a_dropped_driver_leaves_the_next_caller_to_drive() {
        let rounds = Arc::new(ReadIndexRounds::default());
        let stuck = {
            let rounds = rounds.clone();
            tokio::spawn(async move { rounds.get(std::future::pending::<Result<u64, Status>>).await })
        };
        tokio::task::yield_now().await;
        let waiter = {
            let rounds = rounds.clone();
            tokio::spawn(async move { rounds.get(|| async { Ok(7) }).await })
        };
        tokio::task::yield_now().await;
        stuck.abort();
        assert_eq!(waiter.await.unwrap().unwrap(), 7);
    }
}
