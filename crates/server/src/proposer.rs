//! Batching of client writes on the leader.
//!
//! openraft 0.9 appends and fsyncs each proposed entry on its own before the next, so one entry per
//! client write caps the leader at one write per fsync. The proposer takes every client op queued
//! while earlier batches are in flight and proposes them as one `Op::BatchDispatch` entry: one
//! append, one fsync, one replication round for all of them, and the assignments they make
//! possible. Nothing waits on a timer: a lone write goes out at
//! once, and batches grow only with load.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use raftsched_state::{Command, Op, Response};
use raftsched_store::{NodeId, Raft};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tonic::Status;

use crate::clock::Clocks;
use crate::limits;

/// Client ops waiting for a batch; over it, callers wait (the in-flight budget bounds them).
const PROPOSALS_QUEUED_MAX: usize = 8192;
/// Batches proposed and not yet answered. More than one, so the next batch forms and is appended
/// while the previous one replicates.
const BATCHES_IN_FLIGHT_MAX: usize = 4;
/// Longest the proposer holds the next batch back waiting for the previous one's log flush (a
/// flush takes 0.3-3 ms here); a bound, so a stuck disk or a lost wake-up cannot stall writes.
const PACE_WAIT_MS_MAX: u64 = 10;

type Reply = Result<Response, Option<Status>>;

struct Pending {
    op: Op,
    reply: oneshot::Sender<Reply>,
}

#[derive(Clone)]
pub(crate) struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    /// `log_flushes` counts this replica's completed log flushes (the store's flush thread).
    pub(crate) fn start(raft: Raft, id: NodeId, clocks: Arc<Clocks>, log_flushes: watch::Receiver<u64>) -> Proposer {
        let (tx, rx) = mpsc::channel(PROPOSALS_QUEUED_MAX);
        tokio::spawn(run(raft, id, clocks, rx, log_flushes));
        Proposer { tx }
    }

    pub(crate) async fn propose(&self, op: Op) -> Reply {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Pending { op, reply }).await.is_err() {
            return Err(Some(Status::unavailable("the proposer has stopped")));
        }
        rx.await.unwrap_or_else(|_| Err(Some(Status::unavailable("the proposer has stopped"))))
    }
}

async fn run(
    raft: Raft,
    id: NodeId,
    clocks: Arc<Clocks>,
    mut rx: mpsc::Receiver<Pending>,
    mut log_flushes: watch::Receiver<u64>,
) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
    let batch_len_max = raftsched_state::limits::BATCH_LEN_MAX.min(256);
    loop {
        // Wait for a free slot first, so everything queued meanwhile joins the next batch.
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let Some(first) = rx.recv().await else { return };
        let mut batch = vec![first];
        while batch.len() < batch_len_max {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let flushes_before = *log_flushes.borrow_and_update();
        let (raft, clocks) = (raft.clone(), clocks.clone());
        let mut proposed = tokio::spawn(async move {
            propose_batch(&raft, id, &clocks, batch).await;
            drop(permit);
        });
        // Pacing: openraft 0.9 appends one entry at a time and waits for its flush. A batch
        // proposed while the previous one is still being flushed becomes an entry of its own with
        // a flush of its own; waiting for that flush (or the batch's answer, or at most
        // PACE_WAIT_MS_MAX) lets everything arriving meanwhile share the next entry instead.
        tokio::select! {
            _ = log_flushes.wait_for(|n| *n > flushes_before) => {}
            _ = &mut proposed => {}
            _ = tokio::time::sleep(Duration::from_millis(PACE_WAIT_MS_MAX)) => {}
        }
    }
}

/// Proposes the batch as one `BatchDispatch` entry (even a lone op): apply runs the ops, then
/// assigns pending tasks to free slots in the same entry, so a submit or a report that frees a
/// slot needs no separate `Assign` round.
async fn propose_batch(raft: &Raft, id: NodeId, clocks: &Clocks, batch: Vec<Pending>) {
    let (ops, replies): (Vec<Op>, Vec<oneshot::Sender<Reply>>) = batch.into_iter().map(|p| (p.op, p.reply)).unzip();
    let n_ops = ops.len();
    match write(raft, id, clocks, Op::BatchDispatch { ops }).await {
        Ok(Response::Batch(responses)) if responses.len() == n_ops => {
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok(response));
            }
        }
        Ok(other) => {
            let status = Status::internal(format!("unexpected answer to a batch: {other:?}"));
            for reply in replies {
                let _ = reply.send(Err(Some(status.clone())));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Proposes `op` as one entry and waits for its answer, at most `REQUEST_TIMEOUT`: an isolated
/// leader (openraft 0.9 does not step down on its own) would keep the write pending forever. Every
/// op is safe to retry, so giving up is only ambiguous. The entry's time is the cluster's
/// (`Clocks::cluster_now_ms`), not this leader's own clock, which may be wrong.
pub(crate) async fn write(raft: &Raft, id: NodeId, clocks: &Clocks, op: Op) -> Reply {
    let cmd = Command { now_ms: clocks.cluster_now_ms(), op };
    let Ok(written) = tokio::time::timeout(limits::REQUEST_TIMEOUT, raft.client_write(cmd)).await else {
        return Err(Some(Status::unavailable(format!(
            "replica {id} could not commit within request_timeout_ms {}",
            limits::REQUEST_TIMEOUT.as_millis()
        ))));
    };
    match written {
        Ok(reply) => Ok(reply.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(None),
        Err(RaftError::APIError(e)) => Err(Some(Status::internal(format!("write failed: {e}")))),
        Err(RaftError::Fatal(e)) => Err(Some(Status::unavailable(format!("replica {id} is stopping: {e}")))),
    }
}
