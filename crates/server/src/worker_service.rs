//! The gRPC service worker processes call: register, heartbeat, assignments, reports.
//! Served by every replica: writes go through `Replica::write` (forwarded to the leader), the
//! assignment long poll reads this replica's applied state.

use std::sync::Arc;

use raftsched_api as api;
use raftsched_api::worker_server::Worker;
use raftsched_state::{
    limits as sm_limits, Op, Outcome, Output, ReportEvent, Response as SmResponse, WorkerState, OUTPUT_APART_VERSION,
};
use tonic::{Request, Response, Status};

use crate::convert::{rejection_to_status, spec_to_api, unexpected};
use crate::limits;
use crate::replica::Replica;

pub struct WorkerService {
    pub replica: Arc<Replica>,
}

/// Whether an assignments poll must be answered now: the worker holds something it does not
/// know of (`known` and `held` are sorted (task, token) pairs), or something it knows was taken
/// from it (cancelled, reassigned, lost), which it must kill. An attempt that ended by the worker's
/// own report is not news to it: answering for each of those cost one poll round trip per task.
fn worth_answering(sm: &raftsched_state::StateMachine, known: &[(u64, u64)], held: &[(u64, u64)]) -> bool {
    let ended_by_its_report = |&(task_id, token): &(u64, u64)| {
        sm.get(task_id).is_none_or(|t| {
            t.attempts.iter().any(|a| {
                a.token == token
                    && matches!(a.outcome, Some(Outcome::Succeeded | Outcome::Failed { .. } | Outcome::TimedOut))
            })
        })
    };
    held.iter().any(|h| known.binary_search(h).is_err())
        || known.iter().any(|k| held.binary_search(k).is_err() && !ended_by_its_report(k))
}

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn register_worker(
        &self,
        req: Request<api::RegisterWorkerRequest>,
    ) -> Result<Response<api::RegisterWorkerResponse>, Status> {
        let _permit = self.replica.admit()?;
        crate::auth::check_worker(&req, &req.get_ref().id)?;
        let r = req.into_inner();
        let op = Op::RegisterWorker {
            worker_id: r.id,
            instance: r.instance,
            addr: r.addr,
            slots: r.slots,
            labels: r.labels.into_iter().collect(),
        };
        // A follower tells the unscaled timeout: a lease within it is within any leader's.
        let (heartbeat_interval_ms, heartbeat_timeout_ms) =
            self.replica.heartbeat_terms().unwrap_or((0, self.replica.worker_heartbeats.timeout_ms));
        match self.replica.write(op).await? {
            SmResponse::Registered { epoch } => Ok(self.replica.hinted(api::RegisterWorkerResponse {
                epoch,
                heartbeat_timeout_ms,
                heartbeat_interval_ms,
            })),
            SmResponse::Rejected(r) => Err(rejection_to_status(r)),
            other => Err(unexpected(other)),
        }
    }

    async fn heartbeat(&self, req: Request<api::HeartbeatRequest>) -> Result<Response<api::HeartbeatResponse>, Status> {
        let _permit = self.replica.admit_heartbeat()?;
        crate::auth::check_worker(&req, &req.get_ref().id)?;
        let r = req.into_inner();
        // Read before the beat is answered; a follower tells none (0): the worker keeps its terms.
        let (heartbeat_interval_ms, heartbeat_timeout_ms) = self.replica.heartbeat_terms().unwrap_or((0, 0));
        match self.replica.write(Op::Heartbeat { worker_id: r.id, instance: r.instance }).await? {
            SmResponse::HeartbeatOk { epoch } => {
                Ok(self.replica.hinted(api::HeartbeatResponse { epoch, heartbeat_interval_ms, heartbeat_timeout_ms }))
            }
            SmResponse::Rejected(r) => Err(rejection_to_status(r)),
            other => Err(unexpected(other)),
        }
    }

    async fn assignments(
        &self,
        req: Request<api::AssignmentsRequest>,
    ) -> Result<Response<api::AssignmentsResponse>, Status> {
        // A waiting poll holds a long-poll slot (every worker keeps one open), not an ordinary one.
        let _permit = if req.get_ref().wait_ms > 0 { self.replica.admit_long_poll()? } else { self.replica.admit()? };
        crate::auth::check_worker(&req, &req.get_ref().id)?;
        let r = req.into_inner();
        let mut known: Vec<(u64, u64)> = r.known.iter().map(|h| (h.task_id, h.token)).collect();
        known.sort_unstable();
        let (wait, capped) = limits::long_poll_wait(r.wait_ms);
        // The held set of this worker's registration, or None when the registration is gone.
        let current = |sm: &raftsched_state::StateMachine| -> Option<Vec<api::WorkAssignment>> {
            let node = sm.worker(&r.id).filter(|n| n.epoch == r.epoch && n.state != WorkerState::Down)?;
            let held = node
                .held
                .iter()
                .filter_map(|id| sm.get(*id))
                .filter_map(|t| {
                    let a = t.assignment.as_ref()?;
                    Some(api::WorkAssignment {
                        task_id: t.id,
                        token: a.token,
                        attempt: t.attempt(),
                        spec: Some(spec_to_api(&t.spec)),
                    })
                })
                .collect();
            Some(held)
        };
        // Checked whenever this worker's view changes: ids only; the assignments (with their
        // specs) are built once there is something to say.
        let changed = |sm: &raftsched_state::StateMachine| -> Option<Option<Vec<api::WorkAssignment>>> {
            let Some(node) = sm.worker(&r.id).filter(|n| n.epoch == r.epoch && n.state != WorkerState::Down) else {
                return Some(None);
            };
            let mut held: Vec<(u64, u64)> = node
                .held
                .iter()
                .filter_map(|id| sm.get(*id))
                .filter_map(|t| Some((t.id, t.assignment.as_ref()?.token)))
                .collect();
            held.sort_unstable();
            worth_answering(sm, &known, &held).then(|| current(sm))
        };
        // Subscribed before the first look, so a change between the look and the wait still wakes.
        let mut wake = self.replica.sm.watch_worker(&r.id);
        let deadline = tokio::time::Instant::now() + wait;
        let result = loop {
            if let Some(found) = self.replica.sm.read(changed) {
                break found;
            }
            tokio::select! {
                woke = wake.changed() => if woke.is_err() { break self.replica.sm.read(current) },
                _ = tokio::time::sleep_until(deadline) => break self.replica.sm.read(current),
            }
        };
        known.clear();
        let response = match result {
            Some(assignments) => api::AssignmentsResponse { assignments, registered: true },
            None => api::AssignmentsResponse { assignments: Vec::new(), registered: false },
        };
        Ok(limits::note_wait_capped(self.replica.hinted(response), capped))
    }

    async fn report(&self, req: Request<api::ReportRequest>) -> Result<Response<api::ReportResponse>, Status> {
        let _permit = self.replica.admit()?;
        crate::auth::check_worker(&req, &req.get_ref().worker_id)?;
        self.apply_report(req.into_inner()).await?;
        Ok(self.replica.hinted(api::ReportResponse {}))
    }

    async fn report_many(
        &self,
        req: Request<api::ReportManyRequest>,
    ) -> Result<Response<api::ReportManyResponse>, Status> {
        let _permit = self.replica.admit()?;
        for r in &req.get_ref().reports {
            crate::auth::check_worker(&req, &r.worker_id)?;
        }
        let reports = req.into_inner().reports;
        limits::check_batch_len("reports", reports.len(), limits::REPORT_BATCH_LEN_MAX, "report_batch_len_max")?;
        // As one group: one Raft entry (through the forwarder from a follower), answered each.
        let ops: Vec<Result<Op, Status>> = reports.into_iter().map(|r| self.report_op(r)).collect();
        let valid: Vec<Op> = ops.iter().filter_map(|op| op.as_ref().ok().cloned()).collect();
        let mut written = self.replica.write_many(valid).await.into_iter();
        let outcomes = ops
            .into_iter()
            .map(|op| op.and_then(|_| written.next().expect("one answer per op").and_then(reported)))
            .map(|answer| match answer {
                Ok(()) => api::ReportOutcome { code: tonic::Code::Ok as i32, message: String::new() },
                Err(status) => api::ReportOutcome { code: status.code() as i32, message: status.message().to_string() },
            })
            .collect();
        Ok(self.replica.hinted(api::ReportManyResponse { outcomes }))
    }
}

/// The event a report carries, its tails checked against `output_tail_bytes_max`: the streams
/// apart once every member records them (`OUTPUT_APART_VERSION`), else both joined as the worker
/// sent them for older replicas.
fn report_event(r: &mut api::ReportRequest, cluster_version: u32) -> Result<ReportEvent, Status> {
    for (name, tail) in [("output", &r.output_tail), ("stdout", &r.stdout_tail), ("stderr", &r.stderr_tail)] {
        if tail.len() > sm_limits::OUTPUT_TAIL_BYTES_MAX {
            return Err(Status::invalid_argument(format!(
                "{name} tail is {} bytes, over output_tail_bytes_max {}",
                tail.len(),
                sm_limits::OUTPUT_TAIL_BYTES_MAX
            )));
        }
    }
    let (exit_code, timed_out) = (r.exit_code, r.timed_out);
    Ok(match (r.finished, r.streams_apart && cluster_version >= OUTPUT_APART_VERSION) {
        (false, _) => ReportEvent::Started,
        (true, false) => ReportEvent::Ended { exit_code, output_tail: std::mem::take(&mut r.output_tail), timed_out },
        (true, true) => {
            let output = Output {
                stdout_tail: std::mem::take(&mut r.stdout_tail),
                stderr_tail: std::mem::take(&mut r.stderr_tail),
                stdout_bytes: r.stdout_bytes,
                stderr_bytes: r.stderr_bytes,
            };
            ReportEvent::EndedApart { exit_code, timed_out, output: Box::new(output) }
        }
    })
}

/// The first cluster version whose members all apply `Op::ReportFrom`.
const REPORT_FROM_VERSION: u32 = 2;

impl WorkerService {
    /// Applies one worker report: checked here, then in `apply` fenced by its token and, from
    /// cluster version 2 on, refused unless the worker it names holds the attempt.
    async fn apply_report(&self, r: api::ReportRequest) -> Result<(), Status> {
        let op = self.report_op(r)?;
        reported(self.replica.write(op).await?)
    }

    /// The op a report asks for, fenced by the worker it names (from `REPORT_FROM_VERSION`).
    fn report_op(&self, mut r: api::ReportRequest) -> Result<Op, Status> {
        let event = report_event(&mut r, self.replica.sm.read(|sm| sm.cluster_version()))?;
        let mut token = r.token;
        if crate::fault::unfenced_reports() {
            // The bug: trust the report and apply it under whatever assignment is current.
            if let Some(current) =
                self.replica.sm.read(|sm| sm.get(r.task_id).and_then(|t| t.assignment.as_ref().map(|a| a.token)))
            {
                token = current;
            }
        }
        let op = if self.replica.active.get() >= REPORT_FROM_VERSION && !crate::fault::unfenced_reports() {
            if r.worker_id.is_empty() {
                return Err(Status::failed_precondition(
                    "the report does not name its worker (worker_id, instance): the worker's build is older than \
                     the cluster's (format 2); upgrade the worker",
                ));
            }
            Op::ReportFrom { worker_id: r.worker_id, instance: r.instance, task_id: r.task_id, token, event }
        } else {
            Op::Report { task_id: r.task_id, token, event }
        };
        Ok(op)
    }
}

/// A report's answer from the state machine, as the worker hears it.
fn reported(answer: SmResponse) -> Result<(), Status> {
    match answer {
        SmResponse::Reported => Ok(()),
        SmResponse::Rejected(r) => Err(rejection_to_status(r)),
        other => Err(unexpected(other)),
    }
}
