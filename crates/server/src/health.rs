//! Health that tells the truth: whether this replica can serve a linearizable request now.
//!
//! Every `HEALTH_PROBE_MS` the watcher asks the questions a client's request would: is a leader
//! known with a quorum (`quorum.rs`), does a read index complete within `HEALTH_READ_INDEX_MS`,
//! and has this replica applied close to the commit index (`READY_APPLY_LAG_ENTRIES_MAX`). The
//! answer sets gRPC health for `raftsched.v1.Scheduler` and `raftsched.v1.Worker` (NOT_SERVING
//! with the reason logged) and HTTP `/readyz`. The server as a whole (`""` in gRPC health,
//! `/healthz`) is SERVING while the process runs: liveness, for orchestrators that restart a
//! process only when it is wedged, not when its peers are down.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::replica::Replica;

/// How often readiness is probed.
pub const HEALTH_PROBE_MS: u64 = 500;
/// A read index that takes longer than this makes the replica not ready.
pub const HEALTH_READ_INDEX_MS: u64 = 1_000;
/// A replica this many entries behind the commit index is not ready (it would answer reads late).
pub const READY_APPLY_LAG_ENTRIES_MAX: u64 = 1_000;

/// The last probe's answer: `Ok` or why not.
pub use crate::replica::Readiness;

/// Probes once: what a linearizable read would meet now.
pub async fn probe(replica: &Replica) -> Readiness {
    if let Some(status) = replica.no_quorum() {
        return Err(status.message().to_string());
    }
    let read = tokio::time::timeout(Duration::from_millis(HEALTH_READ_INDEX_MS), replica.read_barrier()).await;
    match read {
        Err(_) => return Err(format!("no read index within {HEALTH_READ_INDEX_MS} ms: no leader or no quorum")),
        Ok(Err(status)) => return Err(status.message().to_string()),
        Ok(Ok(())) => {}
    }
    let committed = replica.committed_index.load(std::sync::atomic::Ordering::Relaxed);
    let applied = replica.sm.read(|sm| sm.applied_index()).unwrap_or(0);
    let lag = committed.saturating_sub(applied);
    if lag > READY_APPLY_LAG_ENTRIES_MAX {
        return Err(format!(
            "applied index {applied} is {lag} entries behind the commit index (ready_apply_lag_entries_max {READY_APPLY_LAG_ENTRIES_MAX})"
        ));
    }
    Ok(())
}

/// Keeps gRPC health and `replica.readiness` up to date until `stop`.
pub async fn watch(
    replica: Arc<Replica>,
    reporter: tonic_health::server::HealthReporter,
    mut stop: watch::Receiver<bool>,
) {
    use raftsched_api::scheduler_server::SchedulerServer;
    use raftsched_api::worker_server::WorkerServer;
    type Scheduler = SchedulerServer<crate::scheduler_service::SchedulerService>;
    type Worker = WorkerServer<crate::worker_service::WorkerService>;
    let mut last: Option<bool> = None;
    loop {
        let readiness = probe(&replica).await;
        let ready = readiness.is_ok();
        if last != Some(ready) {
            match &readiness {
                Ok(()) => {
                    tracing::info!(id = replica.id, "ready: serving");
                    reporter.set_serving::<Scheduler>().await;
                    reporter.set_serving::<Worker>().await;
                }
                Err(why) => {
                    tracing::warn!(id = replica.id, why, "not ready: health NOT_SERVING");
                    reporter.set_not_serving::<Scheduler>().await;
                    reporter.set_not_serving::<Worker>().await;
                }
            }
            last = Some(ready);
        }
        let _previous = replica.readiness.send_replace(readiness);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(HEALTH_PROBE_MS)) => {}
            _ = stop.changed() => return,
        }
    }
}
