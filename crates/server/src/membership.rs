//! Membership changes: add a replica (learner first, voter once caught up) and remove one.
//! Both run on the leader; a follower forwards the request to the leader's client API. Both are
//! idempotent so an operator (or a script) can simply repeat them.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use raftsched_api as api;
use raftsched_api::scheduler_client::SchedulerClient;
use tonic::Status;

use crate::limits;
use crate::replica::Replica;

/// How long a membership change may take, catch-up of a new learner included.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(120);

fn voters(replica: &Replica) -> BTreeSet<u64> {
    replica.raft.metrics().borrow().membership_config.membership().voter_ids().collect()
}

pub(crate) fn member_addr(replica: &Replica, id: u64) -> Option<String> {
    replica.raft.metrics().borrow().membership_config.membership().get_node(&id).map(|n| n.addr.clone())
}

fn map_err(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => Status::unavailable("leadership changed; retry"),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => Status::failed_precondition(e.to_string()),
        RaftError::Fatal(e) => Status::unavailable(format!("replica stopping: {e}")),
    }
}

fn reply(replica: &Replica, changed: bool) -> api::MembershipResponse {
    api::MembershipResponse { voters: voters(replica).into_iter().collect(), changed }
}

impl Replica {
    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The leader's client API, for forwarding an admin request.
    async fn leader_client(&self) -> Result<SchedulerClient<raftsched_api::security::AuthChannel>, Status> {
        let started = std::time::Instant::now();
        loop {
            let leader = {
                let m = self.raft.metrics().borrow().clone();
                m.current_leader
                    .filter(|l| *l != self.id)
                    .and_then(|l| m.membership_config.membership().get_node(&l).cloned())
            };
            if let Some(node) = leader {
                return self.peers.scheduler(&node.addr);
            }
            if started.elapsed() > limits::REQUEST_TIMEOUT {
                return Err(Status::unavailable("no leader known"));
            }
            tokio::time::sleep(Duration::from_millis(limits::LEADER_WAIT_BACKOFF_MS_MAX)).await;
        }
    }

    pub async fn add_member(&self, id: u64, addr: String) -> Result<api::MembershipResponse, Status> {
        if id == 0 || !raftsched_api::is_host_port(&addr) {
            return Err(Status::invalid_argument("add needs an id > 0 and an address HOST:PORT"));
        }
        if !self.is_leader() {
            let mut leader = self.leader_client().await?;
            let mut req = tonic::Request::new(api::AddMemberRequest { id, addr });
            req.set_timeout(MEMBERSHIP_TIMEOUT);
            return Ok(leader.add_member(req).await?.into_inner());
        }
        match member_addr(self, id) {
            Some(existing) if existing != addr => {
                return Err(Status::failed_precondition(format!(
                    "replica {id} is already a member at {existing}; remove it first to move it"
                )))
            }
            Some(_) if voters(self).contains(&id) => return Ok(reply(self, false)),
            _ => {}
        }
        // A build that cannot read the cluster's format would take the entries it is sent for
        // damage: refuse it before it becomes a member.
        let cluster_version = self.sm.read(|sm| sm.cluster_version());
        if cluster_version > 0 {
            let status = self.member_status(id, &addr).await;
            if status.reachable && status.format_max < cluster_version {
                return Err(Status::failed_precondition(format!(
                    "replica {id} at {addr} runs a build that reads formats up to {}, but the cluster version is \
                     {cluster_version}: upgrade it first",
                    status.format_max
                )));
            }
        }
        tracing::info!(id, %addr, "adding replica as a learner");
        let add = self.raft.add_learner(id, BasicNode { addr }, true);
        tokio::time::timeout(MEMBERSHIP_TIMEOUT, add)
            .await
            .map_err(|_| Status::deadline_exceeded("the new replica did not catch up in time"))?
            .map_err(map_err)?;
        tracing::info!(id, "learner caught up; promoting to voter");
        let promote = self.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false);
        tokio::time::timeout(MEMBERSHIP_TIMEOUT, promote)
            .await
            .map_err(|_| Status::deadline_exceeded("membership change did not commit in time"))?
            .map_err(map_err)?;
        Ok(reply(self, true))
    }

    /// Leadership transfer (openraft 0.9 has no transfer API): the target waits until it has
    /// applied everything the leader had committed when asked, then starts an election, which its
    /// up-to-date log lets it win. Requests reaching another replica are forwarded to the target.
    pub async fn transfer_leader(&self, to: u64) -> Result<api::TransferLeaderResponse, Status> {
        if !voters(self).contains(&to) {
            return Err(Status::failed_precondition(format!("replica {to} is not a voter")));
        }
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader == Some(to) && (to != self.id || m.state == ServerState::Leader) {
            return Ok(api::TransferLeaderResponse { leader: to, term: m.current_term });
        }
        if to != self.id {
            let addr = member_addr(self, to)
                .ok_or_else(|| Status::failed_precondition(format!("replica {to} has no address")))?;
            let mut req = tonic::Request::new(api::TransferLeaderRequest { to });
            req.set_timeout(limits::REQUEST_TIMEOUT * 2);
            return Ok(self.peers.scheduler(&addr)?.transfer_leader(req).await?.into_inner());
        }
        // This replica is the target: catch up to a read index (what the leader has committed).
        self.read_barrier().await?;
        self.raft.trigger().elect().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let led = self
            .raft
            .wait(Some(limits::REQUEST_TIMEOUT))
            .metrics(|m| m.state == ServerState::Leader && m.current_leader == Some(self.id), "transfer")
            .await
            .map_err(|e| Status::unavailable(format!("replica {to} did not win the election: {e}")))?;
        Ok(api::TransferLeaderResponse { leader: to, term: led.current_term })
    }

    pub async fn remove_member(&self, id: u64) -> Result<api::MembershipResponse, Status> {
        if !self.is_leader() {
            let mut leader = self.leader_client().await?;
            let mut req = tonic::Request::new(api::RemoveMemberRequest { id });
            req.set_timeout(MEMBERSHIP_TIMEOUT);
            return Ok(leader.remove_member(req).await?.into_inner());
        }
        if member_addr(self, id).is_none() {
            return Ok(reply(self, false));
        }
        let current = voters(self);
        if current.contains(&id) && current.len() == 1 {
            return Err(Status::failed_precondition(format!("replica {id} is the last voter")));
        }
        tracing::info!(id, "removing replica");
        let change = if current.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        tokio::time::timeout(MEMBERSHIP_TIMEOUT, self.raft.change_membership(change, false))
            .await
            .map_err(|_| Status::deadline_exceeded("membership change did not commit in time"))?
            .map_err(map_err)?;
        Ok(reply(self, true))
    }
}
