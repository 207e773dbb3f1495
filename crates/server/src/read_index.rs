//! Coalescing of read-index rounds.
//!
//! A read index costs a round of heartbeats to a quorum (on the leader) or an RPC to the leader (on
//! a follower). Any round that *starts* after a read arrived gives an index valid for that read,
//! so concurrent reads share rounds: one runs at a time, and every read that arrived while it ran
//! takes the next one. Under load one round serves many reads; alone, a read pays for one round.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tonic::Status;

#[derive(Default)]
pub(crate) struct ReadIndexRounds {
    /// Least time between the starts of two rounds (0: none). Worker heartbeats use a gap: their
    /// answer may wait a few ms, and then one round serves all that arrived meanwhile, so the
    /// rounds per second stay bounded however large the fleet.
    gap: std::time::Duration,
    /// When the last round started.
    last_start: Mutex<Option<tokio::time::Instant>>,
    /// Serialises rounds.
    running: tokio::sync::Mutex<()>,
    /// Rounds started so far; a round's number is this counter after it started.
    n_started: AtomicU64,
    /// The number and outcome of the last finished round.
    last: Mutex<Option<(u64, Result<u64, Status>)>>,
}

impl ReadIndexRounds {
    /// Rounds that start at least `gap` apart.
    pub(crate) fn with_gap(gap: std::time::Duration) -> Self {
        ReadIndexRounds { gap, ..Default::default() }
    }

    /// A read index valid for a read that arrives now: from a round that started after this call.
    pub(crate) async fn get<F, Fut>(&self, round: F) -> Result<u64, Status>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<u64, Status>>,
    {
        let arrived_after = self.n_started.load(Ordering::SeqCst);
        let _running = self.running.lock().await;
        if let Some((n, outcome)) = self.last.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if *n > arrived_after {
                return outcome.clone();
            }
        }
        let last_start = *self.last_start.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = last_start.map(|at| at + self.gap).filter(|at| *at > tokio::time::Instant::now()) {
            // Callers arriving meanwhile count this round as started after them: it starts below.
            tokio::time::sleep_until(at).await;
        }
        *self.last_start.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now());
        let n = self.n_started.fetch_add(1, Ordering::SeqCst) + 1;
        let outcome = round().await;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((n, outcome.clone()));
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
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
        let gap = std::time::Duration::from_millis(30);
        let rounds = ReadIndexRounds::with_gap(gap);
        let started = tokio::time::Instant::now();
        rounds.get(|| async { Ok(1) }).await.unwrap();
        rounds.get(|| async { Ok(2) }).await.unwrap();
        assert!(started.elapsed() >= gap, "two rounds {:?} apart", started.elapsed());
    }
}
