//! The worker registry: register, heartbeat, expire, drain.

use std::collections::{BTreeMap, BTreeSet};

use crate::command::{Rejection, Response};
use crate::limits;
use crate::machine::StateMachine;
use crate::task::Outcome;
use crate::worker::{validate_worker_id, Worker, WorkerState};

impl StateMachine {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn register_worker(
        &mut self,
        index: u64,
        now_ms: u64,
        worker_id: &str,
        instance: u64,
        addr: &str,
        slots: u32,
        labels: &BTreeMap<String, String>,
    ) -> Response {
        if let Err(reason) = validate_worker_id(worker_id) {
            return Response::Rejected(Rejection::Invalid { reason });
        }
        if slots == 0 || slots > limits::WORKER_SLOTS_MAX {
            let reason = format!("slots must be 1..={} (worker_slots_max)", limits::WORKER_SLOTS_MAX);
            return Response::Rejected(Rejection::Invalid { reason });
        }
        if labels.len() > limits::WORKER_LABEL_COUNT_MAX || addr.len() > 256 {
            let reason = format!(
                "at most {} labels (worker_label_count_max) and a 256-byte address",
                limits::WORKER_LABEL_COUNT_MAX
            );
            return Response::Rejected(Rejection::Invalid { reason });
        }
        if let Some(node) = self.workers.get(worker_id) {
            if node.instance == instance && node.state != WorkerState::Down {
                // A retried registration of the live process: same answer, nothing changes.
                return Response::Registered { epoch: node.epoch };
            }
            if node.state != WorkerState::Down {
                // Another process holds the id and has not been declared down. Its lease may still
                // be valid, so taking its tasks now could run them twice.
                return Response::Rejected(Rejection::WorkerIdInUse { worker_id: worker_id.to_string() });
            }
        } else if self.workers.len() >= limits::WORKERS_MAX {
            return Response::Rejected(Rejection::TooManyWorkers {
                count: self.workers.len(),
                limit: limits::WORKERS_MAX,
            });
        }
        let epoch = self.workers.get(worker_id).map_or(1, |n| n.epoch + 1);
        debug_assert!(self.workers.get(worker_id).is_none_or(|n| n.held.is_empty()), "a down node holds nothing");
        let node = Worker {
            id: worker_id.to_string(),
            addr: addr.to_string(),
            slots,
            labels: labels.clone(),
            state: WorkerState::Ready,
            epoch,
            instance,
            last_heartbeat_ms: now_ms,
            heartbeat_seq: index,
            held: BTreeSet::new(),
        };
        self.workers.insert(worker_id.to_string(), node);
        self.worker_changed(worker_id);
        Response::Registered { epoch }
    }

    /// What a heartbeat from `worker_id`'s process `instance` is answered now: `HeartbeatOk` with
    /// the registration's epoch, or why not. `apply` answers `Op::Heartbeat` with it, and a leader
    /// that keeps liveness in memory asks it after its read index, so both paths answer alike.
    pub fn heartbeat_answer(&self, worker_id: &str, instance: u64) -> Response {
        let Some(node) = self.workers.get(worker_id) else {
            return Response::Rejected(Rejection::UnknownWorker { worker_id: worker_id.to_string() });
        };
        if node.instance != instance || node.state == WorkerState::Down {
            return Response::Rejected(Rejection::WorkerNotCurrent { worker_id: worker_id.to_string() });
        }
        Response::HeartbeatOk { epoch: node.epoch }
    }

    pub(crate) fn heartbeat(&mut self, now_ms: u64, worker_id: &str, instance: u64) -> Response {
        let answer = self.heartbeat_answer(worker_id, instance);
        if let (Response::HeartbeatOk { .. }, Some(node)) = (&answer, self.workers.get_mut(worker_id)) {
            node.last_heartbeat_ms = now_ms.max(node.last_heartbeat_ms);
            node.heartbeat_seq += 1;
        }
        answer
    }

    pub(crate) fn expire_worker(
        &mut self,
        index: u64,
        now_ms: u64,
        worker_id: &str,
        epoch: u64,
        heartbeat_seq: u64,
    ) -> Response {
        let Some(node) = self.workers.get_mut(worker_id) else {
            return Response::Rejected(Rejection::UnknownWorker { worker_id: worker_id.to_string() });
        };
        if node.state == WorkerState::Down || node.epoch != epoch || node.heartbeat_seq != heartbeat_seq {
            return Response::Rejected(Rejection::StaleDecision);
        }
        node.state = WorkerState::Down;
        let held: Vec<_> = node.held.iter().copied().collect();
        self.worker_changed(worker_id);
        for id in &held {
            self.end_attempt(index, now_ms, *id, Outcome::Lost, None);
        }
        Response::Expired { n_requeued: held.len() as u32 }
    }

    pub(crate) fn drain_worker(&mut self, worker_id: &str) -> Response {
        let Some(node) = self.workers.get_mut(worker_id) else {
            return Response::Rejected(Rejection::UnknownWorker { worker_id: worker_id.to_string() });
        };
        if node.state == WorkerState::Ready {
            node.state = WorkerState::Draining;
            self.worker_changed(worker_id);
        }
        Response::Drained
    }
}
