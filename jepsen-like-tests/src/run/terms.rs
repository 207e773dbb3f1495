//! The term sampler: every [`SAMPLE_EVERY_MS`], each replica is asked (`cluster status`, its own
//! entry) for its current term, role and the leader it knows; each answer is a
//! [`TermSample`], written to `terms.jsonl` and used by [`super::availability`].
//!
//! One task per replica, so a replica that is down, paused or cut off delays only its own
//! samples. Each call has a [`SAMPLE_TIMEOUT_MS`] time-out; a call that fails or times out is
//! skipped. The time-out is above the server's own 1 s wait for unresponsive peers
//! (`STATUS_TIMEOUT`, which `cluster status` spends before answering while a peer is paused or
//! partitioned): a shorter one would lose every sample exactly during those faults.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftsched_client::Client;
use serde::Serialize;

use super::clients::Shared;

/// One answer of a replica about itself; a line of `terms.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TermSample {
    /// When it was asked, since the run's start.
    pub time_ns: u64,
    /// The replica's id (1-based, as `n1`, `n2`, ...).
    pub replica: u64,
    pub term: u64,
    /// The leader it knows, 0 when none.
    pub leader: u64,
    pub role: String,
}

/// Period of the samples, per replica.
pub const SAMPLE_EVERY_MS: u64 = 200;
/// Longest wait for one answer.
pub const SAMPLE_TIMEOUT_MS: u64 = 1_500;

/// The samples so far, shared by the sampler tasks.
pub type Samples = Arc<Mutex<Vec<TermSample>>>;

/// Starts one sampler task per replica address; they stop when `stop`
/// is set (within one period or one time-out).
pub fn spawn(
    addrs: &[String],
    shared: Arc<Shared>,
    samples: Samples,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut handles = Vec::new();
    for addr in addrs {
        let client = Client::new(vec![addr.clone()], Duration::from_millis(SAMPLE_TIMEOUT_MS))?.single_attempt();
        let (shared, samples, stop) = (shared.clone(), samples.clone(), stop.clone());
        handles.push(tokio::spawn(sample_one(client, shared, samples, stop)));
    }
    Ok(handles)
}

async fn sample_one(client: Client, shared: Arc<Shared>, samples: Samples, stop: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(SAMPLE_EVERY_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let time_ns = shared.recorder.now_ns();
        let answer = tokio::time::timeout(Duration::from_millis(SAMPLE_TIMEOUT_MS), client.cluster_status()).await;
        let Ok(Ok(status)) = answer else { continue };
        // The answering replica's own entry (another replica behind this address after a
        // membership change still reports itself).
        let Some(me) = status.members.iter().find(|m| m.id == status.answered_by) else { continue };
        let sample = TermSample {
            time_ns,
            replica: status.answered_by,
            term: me.term,
            leader: me.current_leader,
            role: me.role.clone(),
        };
        samples.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
    }
}
