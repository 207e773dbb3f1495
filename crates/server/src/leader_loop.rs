//! The leader's scheduling loop: worker expiry, schedule timers (`timers.rs`) and dispatch.
//!
//! It runs on every replica but acts only while that replica leads, and stops acting the moment
//! it does not (each proposal goes through `Replica::propose_alone`, which refuses on a non-leader).
//! Every command it proposes is conditional on the state it was decided from (`ExpireWorker`
//! names the heartbeat it saw, `Assign` the attempt count and worker epoch), so a decision made by
//! a leader that was already deposed is refused by `apply` rather than applied twice.
//!
//! Liveness timers use this replica's monotonic clock only, started afresh when it becomes leader:
//! a worker is expired after `heartbeat_timeout` of silence *observed by this leader*, so a new
//! leader never expires everyone at once and never compares another replica's wall clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use raftsched_state::{NodeState, Op, Response};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::limits;
use crate::replica::{now_ms, Replica};

pub async fn run(replica: Arc<Replica>, mut stop: watch::Receiver<bool>) {
    let heartbeat_timeout = Duration::from_millis(replica.worker_heartbeat_timeout_ms);
    let mut metrics = replica.raft.metrics();
    loop {
        // Wait to lead.
        let term = loop {
            let (state, term) = {
                let m = metrics.borrow_and_update();
                (m.state, m.current_term)
            };
            if state == ServerState::Leader {
                break term;
            }
            tokio::select! {
                r = metrics.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
        };
        tracing::info!(id = replica.id, term, "leading: scheduling loop starts");
        lead(&replica, term, heartbeat_timeout, &mut stop).await;
        if *stop.borrow() {
            return;
        }
        tracing::info!(id = replica.id, term, "no longer leading: scheduling loop stops");
    }
}

fn still_leading(replica: &Replica, term: u64) -> bool {
    let metrics = replica.raft.metrics();
    let m = metrics.borrow();
    m.state == ServerState::Leader && m.current_term == term
}

async fn lead(replica: &Replica, term: u64, heartbeat_timeout: Duration, stop: &mut watch::Receiver<bool>) {
    // worker id -> ((epoch, heartbeat_seq) last seen, when this leader saw it change)
    let mut seen: HashMap<String, ((u64, u64), Instant)> = HashMap::new();
    let mut applied = replica.sm.subscribe();
    while still_leading(replica, term) {
        applied.borrow_and_update();
        let now = Instant::now();
        let live: Vec<(String, (u64, u64))> = replica.sm.read(|sm| {
            sm.nodes()
                .filter(|n| n.state != NodeState::Down)
                .map(|n| (n.id.clone(), (n.epoch, n.heartbeat_seq)))
                .collect()
        });
        seen.retain(|id, _| live.iter().any(|(l, _)| l == id));
        for (worker_id, seq) in live {
            let entry = seen.entry(worker_id.clone()).or_insert((seq, now));
            if entry.0 != seq {
                *entry = (seq, now);
            }
            if now.duration_since(entry.1) >= heartbeat_timeout {
                tracing::warn!(%worker_id, "no heartbeat for {} ms: declaring the worker down", heartbeat_timeout.as_millis());
                let (epoch, heartbeat_seq) = seq;
                match replica.propose_alone(Op::ExpireWorker { worker_id, epoch, heartbeat_seq }).await {
                    Ok(response) => tracing::info!(?response, "expiry applied"),
                    Err(_) => return,
                }
            }
        }
        if crate::timers::fire_due(replica).await.is_err() {
            return;
        }
        let keep = replica.retain_finished;
        if keep > 0 && replica.sm.read(|sm| sm.purge_due(keep)) {
            match replica.propose_alone(Op::PurgeFinished { keep }).await {
                Ok(Response::Purged { n_purged }) => tracing::debug!(n_purged, "finished tasks purged"),
                Ok(response) => tracing::warn!(?response, "purge not applied"),
                Err(_) => return,
            }
        }
        let plan = replica.sm.read(|sm| sm.plan_assignments(now_ms(), limits::DISPATCH_BATCH_LEN_MAX));
        if !plan.is_empty() {
            match replica.propose_alone(Op::Assign { items: plan }).await {
                Ok(Response::Assigned { n_assigned, .. }) if n_assigned > 0 => continue,
                Ok(response) => tracing::debug!(?response, "no assignment applied"),
                Err(_) => return,
            }
        }
        // Sleep until something changes, a timer falls due, or the first worker would expire: an
        // expiry is then decided at its deadline rather than up to a tick later.
        let next_expiry =
            seen.values().map(|(_, at)| (*at + heartbeat_timeout).saturating_duration_since(Instant::now())).min();
        // (At least 5 ms: an expiry the state machine refused must not turn this into a busy loop.)
        let timers = crate::timers::sleep_for(replica);
        let nap = next_expiry.map_or(timers, |e| e.min(timers)).max(Duration::from_millis(5));
        tokio::select! {
            r = applied.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(nap) => {}
            _ = stop.changed() => return,
        }
    }
}
