//! One report call for many attempts.
//!
//! A worker running many short tasks finishes several at about the same time; one `Worker.Report`
//! call per attempt made the replicas handle one RPC per report. The reporter keeps up to
//! `REPORT_CALLS_IN_FLIGHT_MAX` calls out; every report queued while they are all out goes in the
//! next `Worker.ReportMany` (no timer: a lone report goes out at once). Each report is still
//! answered on its own: acknowledged, refused (a stale token: final), or tried again. Reports of one
//! attempt never race: an attempt sends its final report only after its "started" one is answered.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use raftsched_batch::{Batcher, InFlight};
use raftsched_client::{api, Client, ClientError};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tonic::Code;

/// Reports waiting for a call; over it, attempts wait to report (each holds a slot anyway).
const REPORTS_QUEUED_MAX: usize = 4096;
/// `ReportMany` calls out at once. One call at a time made a report that arrived just after a call
/// left wait a whole commit for it (about a third of a no-op task's submit-to-finished time at
/// concurrency 16); a few in flight still batch under load, as reports gather while all are out.
const REPORT_CALLS_IN_FLIGHT_MAX: usize = 4;
/// Reports in one call: the server's `report_batch_len_max`.
const REPORT_BATCH_LEN_MAX: usize = 256;
/// Encoded bytes of the reports in one call: half the server's 1 MiB message limit, so a batch of
/// reports with full tails (up to 12 KiB each) is never refused for its size.
const REPORT_BATCH_BYTES_MAX: usize = 512 * 1024;
/// Tries of one report before the worker gives up on it (the lease decides the rest).
const REPORT_TRIES_MAX: u32 = 50;
/// Pause before another try of reports that could not be applied, so a cluster without a leader
/// is not asked in a tight loop.
const RETRY_PAUSE_MS: u64 = 100;

struct Queued {
    req: api::ReportRequest,
    n_tries: u32,
    ack: oneshot::Sender<bool>,
}

#[derive(Clone)]
pub(crate) struct Reporter {
    tx: mpsc::Sender<Queued>,
    /// Who reports: every report names this worker and its registration.
    worker_id: Arc<str>,
    instance: u64,
    stats: Arc<crate::Stats>,
}

impl Reporter {
    pub(crate) fn start(client: Arc<Client>, worker_id: &str, instance: u64, stats: Arc<crate::Stats>) -> Reporter {
        let (tx, batcher) = raftsched_batch::channel(REPORTS_QUEUED_MAX, REPORT_BATCH_LEN_MAX);
        let batcher = batcher.weighing(REPORT_BATCH_BYTES_MAX, |q: &Queued| q.req.encoded_len());
        tokio::spawn(run(client, batcher));
        Reporter { tx, worker_id: worker_id.into(), instance, stats }
    }

    /// Sends a report until it is acknowledged or refused. Returns whether it was acknowledged.
    pub(crate) async fn report(&self, mut req: api::ReportRequest) -> bool {
        req.worker_id = self.worker_id.to_string();
        req.instance = self.instance;
        let (ack, acked) = oneshot::channel();
        if self.tx.send(Queued { req, n_tries: 0, ack }).await.is_err() {
            return false;
        }
        let acknowledged = acked.await.unwrap_or(false);
        let counter =
            if acknowledged { &self.stats.reports_acknowledged_total } else { &self.stats.reports_refused_total };
        crate::Stats::add(counter, 1);
        acknowledged
    }
}

/// The client's own retry rule, plus overload: a report is worth sending again after the pause.
fn worth_retrying(code: Code) -> bool {
    raftsched_client::retryable_code(code) || code == Code::ResourceExhausted
}

async fn run(client: Arc<Client>, mut batcher: Batcher<Queued>) {
    let calls = InFlight::new(REPORT_CALLS_IN_FLIGHT_MAX);
    loop {
        // A free call slot first: while every slot is busy, reports gather in the queue and go
        // out together in the next call.
        let permit = calls.slot().await;
        let Some(batch) = batcher.next_batch().await else { return };
        tokio::spawn(send(client.clone(), batch, permit));
    }
}

/// Sends one batch until each report in it is acknowledged, refused or out of tries; holds its call
/// slot meanwhile, so a cluster out of reach is asked by at most `REPORT_CALLS_IN_FLIGHT_MAX`
/// calls at a time.
async fn send(client: Arc<Client>, mut batch: Vec<Queued>, _slot: OwnedSemaphorePermit) {
    loop {
        let mut again: Vec<Queued> = Vec::new();
        let reqs: Vec<api::ReportRequest> = batch.iter().map(|q| q.req.clone()).collect();
        let retry = |mut q: Queued, again: &mut Vec<Queued>| {
            q.n_tries += 1;
            if q.n_tries >= REPORT_TRIES_MAX {
                let tries = q.n_tries;
                not_recorded(q, tracing::Level::WARN, &format!("given up after {tries} tries"));
            } else {
                again.push(q);
            }
        };
        match client.report_many(reqs).await {
            Ok(reply) if reply.outcomes.len() == batch.len() => {
                for (q, outcome) in batch.into_iter().zip(reply.outcomes) {
                    let code = Code::from(outcome.code);
                    if code == Code::Ok {
                        let _ = q.ack.send(true);
                    } else if worth_retrying(code) {
                        retry(q, &mut again);
                    } else {
                        not_recorded(q, tracing::Level::INFO, &format!("refused: {}", outcome.message));
                    }
                }
            }
            Ok(reply) => {
                tracing::warn!("{} outcomes for {} reports; trying again", reply.outcomes.len(), batch.len());
                batch.into_iter().for_each(|q| retry(q, &mut again));
            }
            Err(ClientError::Refused(status)) => {
                // The whole call refused (a bound, a bad token): trying again cannot help.
                tracing::warn!("reports refused: {}", status.message());
                for q in batch {
                    let _ = q.ack.send(false);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reports failed; trying again");
                batch.into_iter().for_each(|q| retry(q, &mut again));
            }
        }
        if again.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
        batch = again;
    }
}

/// Settles a report that will not be recorded: its sender hears `false`, the log says why (at
/// `level`: a refusal is routine, e.g. a stale token; giving up is not).
fn not_recorded(q: Queued, level: tracing::Level, why: &str) {
    let (task_id, token) = (q.req.task_id, q.req.token);
    if level == tracing::Level::WARN {
        tracing::warn!(task_id, token, "report {why}");
    } else {
        tracing::info!(task_id, token, "report {why}");
    }
    let _ = q.ack.send(false);
}
