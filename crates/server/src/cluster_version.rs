//! The cluster version: raised through the log once every member reads the newer format.
//!
//! Like etcd's cluster version and TiKV's feature gate: each replica advertises the formats its
//! build reads (`MemberStatus.format_min..=format_max`); the leader checks every member every
//! `CLUSTER_VERSION_CHECK_MS` and, once all of them answer and all read format V above the current
//! cluster version, proposes `SetClusterVersion { version: V }`. Until that entry applies, every
//! replica writes and sends format 0, which a replica of the previous build reads; after it, the
//! cluster version never goes back down (no downgrade once finalized). A member that does not
//! answer, or an older build's (which reports format_max 0), holds the raise back.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use raftsched_state::{Op, Response};
use tokio::sync::watch;

use crate::replica::Replica;

/// How often the leader looks for a cluster version to raise.
pub const CLUSTER_VERSION_CHECK_MS: u64 = 2_000;

/// The version every member reads, if every member answered: the lowest `format_max`.
pub(crate) fn common_version(members: &[raftsched_api::MemberStatus]) -> Option<u32> {
    if members.is_empty() || members.iter().any(|m| !m.reachable) {
        return None;
    }
    members.iter().map(|m| m.format_max).min()
}

pub async fn run(replica: Arc<Replica>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(CLUSTER_VERSION_CHECK_MS);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        if replica.raft.metrics().borrow().state != ServerState::Leader {
            continue;
        }
        let current = replica.sm.read(|sm| sm.cluster_version());
        if current >= raftsched_format::FORMAT_VERSION_MAX {
            continue;
        }
        let members = replica.cluster_status().await;
        let Some(version) = common_version(&members).filter(|v| *v > current) else { continue };
        let version = version.min(raftsched_format::FORMAT_VERSION_MAX);
        match replica.propose_alone(Op::SetClusterVersion { version }).await {
            Ok(Response::ClusterVersionSet { version }) => {
                tracing::info!(version, "cluster version raised: every member reads format {version}")
            }
            Ok(other) => tracing::warn!(?other, "cluster version not raised"),
            Err(e) => tracing::debug!(?e, "cluster version not proposed (no longer leading?)"),
        }
    }
}
