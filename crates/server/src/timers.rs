//! The leader's calendar: fires due schedule occurrences and releases `scheduled` tasks whose
//! time has come. Called from the leader loop, so it acts only while this replica leads.
//!
//! Time here is the cluster's as this leader knows it (`Clocks::cluster_now_ms`), proposed as a
//! value: `apply` decides with it and never reads a clock itself. The leader loop calls this only
//! while the leader's clock is within `clock_skew_ms_max` of the cluster's (`leader_loop.rs`). A fire names the occurrence it was decided for, so a fire
//! decided by a deposed leader, or proposed twice, is refused by `apply` (`StaleDecision`).

use std::time::Duration;

use raftsched_state::{Op, Response};

use crate::limits;
use crate::replica::Replica;

/// Proposes every fire and release that is due now. `Err` when this replica stopped leading.
pub async fn fire_due(replica: &Replica) -> Result<(), ()> {
    let now = replica.clocks.cluster_now_ms();
    let (fires, release) = replica.sm.read(|sm| (sm.plan_fires(now), sm.has_scheduled_due(now)));
    for (name, occurrence_ms) in fires.into_iter().take(limits::FIRES_PER_TICK_MAX) {
        match replica.propose_alone(Op::FireSchedule { name: name.clone(), occurrence_ms }).await {
            Ok(Response::Fired { n_run, n_missed, next_due_ms }) => {
                tracing::info!(schedule = %name, occurrence_ms, n_run, n_missed, ?next_due_ms, "schedule fired");
            }
            Ok(other) => tracing::debug!(schedule = %name, ?other, "fire not applied"),
            Err(_) => return Err(()),
        }
    }
    if release {
        match replica.propose_alone(Op::ReleaseDue).await {
            Ok(Response::Released { n_released }) => tracing::debug!(n_released, "scheduled tasks released"),
            Ok(other) => tracing::debug!(?other, "release not applied"),
            Err(_) => return Err(()),
        }
    }
    Ok(())
}

/// How long the leader loop may sleep before the next timer falls due (at most one tick).
pub fn sleep_for(replica: &Replica) -> Duration {
    let tick = Duration::from_millis(limits::LEADER_TICK_MS);
    match replica.sm.read(|sm| sm.next_timer_ms()) {
        Some(due) => Duration::from_millis(due.saturating_sub(replica.clocks.cluster_now_ms())).min(tick),
        None => tick,
    }
}
