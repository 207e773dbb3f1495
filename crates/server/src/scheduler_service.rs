//! The client API, served by every replica.

use std::sync::Arc;

use raftsched_api as api;
use raftsched_api::scheduler_server::Scheduler;
use raftsched_state::spec::validate_key;
use raftsched_state::{
    limits, AfterSpec, FlowSpec, FlowTask, ListFilter, Op, Response as SmResponse, SubmitOptions, TaskState,
    AFTER_VERSION, CONCURRENCY_VERSION, FLOW_VERSION,
};
use tonic::{Request, Response, Status};

use crate::convert::{
    after_policy_from_api, concurrency_from_api, node_to_api, rejection_to_status, spec_from_api, task_to_api,
    unexpected,
};
use crate::limits as edge_limits;
use crate::replica::{now_ms, Replica};

pub struct SchedulerService {
    pub replica: Arc<Replica>,
}

impl SchedulerService {
    /// The op of a submit: `Op::Submit`; `Op::SubmitAfter` when it names dependencies (cluster
    /// version `AFTER_VERSION`); `Op::SubmitWith` when it has a concurrency key
    /// (`CONCURRENCY_VERSION`). Every member must decode the op first.
    async fn submit_op(
        &self,
        key: String,
        spec: raftsched_state::TaskSpec,
        req: SubmitOptionsIn,
    ) -> Result<Op, Status> {
        let after = after_spec(req.after, req.after_keys, &req.after_policy)?;
        let concurrency = concurrency_from_api(req.concurrency_key, req.concurrency_limit)?;
        let needed = match (&after, &concurrency) {
            (None, None) => return Ok(Op::Submit { key, spec }),
            (_, Some(_)) => (CONCURRENCY_VERSION, "concurrency keys"),
            (Some(_), None) => (AFTER_VERSION, "dependencies (after)"),
        };
        self.require_cluster_version(needed.0, needed.1).await?;
        Ok(match (after, concurrency) {
            (Some(after), None) => Op::SubmitAfter { key, spec, after: Box::new(after) },
            (after, concurrency) => {
                Op::SubmitWith { key, spec, options: Box::new(SubmitOptions { after, concurrency }) }
            }
        })
    }

    /// Refuses with FAILED_PRECONDITION while the cluster version is below `version`: an older
    /// member could not decode what `what` needs.
    pub(crate) async fn require_cluster_version(&self, version: u32, what: &str) -> Result<(), Status> {
        let mut current = self.replica.sm.read(|sm| sm.cluster_version());
        if current < version {
            // This replica may not have applied the raise yet: look again at the leader's commit.
            self.replica.read_barrier().await?;
            current = self.replica.sm.read(|sm| sm.cluster_version());
        }
        if current < version {
            return Err(Status::failed_precondition(format!(
                "{what} need every replica on a build of format {version}: the cluster must finish upgrading \
                 (cluster version {current})"
            )));
        }
        Ok(())
    }
}

impl SchedulerService {
    /// A flow as the state takes it, checked as `apply` will check it (to answer early).
    async fn flow_op(&self, req: api::SubmitFlowRequest) -> Result<Op, Status> {
        validate_key(&req.key).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut tasks = Vec::with_capacity(req.tasks.len());
        for t in req.tasks {
            let spec = spec_from_api(t.spec)?;
            let in_task = |e: Status| Status::invalid_argument(format!("task {:?}: {}", t.name, e.message()));
            let policy = after_policy_from_api(&t.after_policy).map_err(in_task)?;
            let concurrency = concurrency_from_api(t.concurrency_key, t.concurrency_limit).map_err(in_task)?;
            tasks.push(FlowTask { name: t.name, spec, after: t.after, policy, concurrency });
        }
        let flow = FlowSpec { tasks };
        raftsched_state::flow::check_flow(&req.key, &flow).map_err(Status::invalid_argument)?;
        self.require_cluster_version(FLOW_VERSION, "flows").await?;
        Ok(Op::SubmitFlow { key: req.key, flow: Box::new(flow) })
    }
}

/// A submit's options as they arrive.
struct SubmitOptionsIn {
    after: Vec<u64>,
    after_keys: Vec<String>,
    after_policy: String,
    concurrency_key: String,
    concurrency_limit: u32,
}

/// A submit's dependencies, checked: none when it names none.
fn after_spec(ids: Vec<u64>, keys: Vec<String>, policy: &str) -> Result<Option<AfterSpec>, Status> {
    if ids.is_empty() && keys.is_empty() {
        return Ok(None);
    }
    let policy = after_policy_from_api(policy)?;
    let named = ids.len() + keys.len();
    if named > limits::DEPENDENCIES_PER_TASK_MAX {
        return Err(Status::invalid_argument(format!(
            "{named} dependencies, over dependencies_per_task_max {}",
            limits::DEPENDENCIES_PER_TASK_MAX
        )));
    }
    for k in &keys {
        validate_key(k).map_err(|e| Status::invalid_argument(format!("after key: {e}")))?;
    }
    Ok(Some(AfterSpec { ids, keys, policy }))
}

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    async fn submit(&self, req: Request<api::SubmitRequest>) -> Result<Response<api::SubmitResponse>, Status> {
        let _permit = self.replica.admit()?;
        let req = req.into_inner();
        // A waiting submit holds a long-poll slot too; taken first, so overload refuses it before
        // anything is written.
        let _long_poll = if req.wait_ms > 0 { Some(self.replica.admit_long_poll()?) } else { None };
        let spec = spec_from_api(req.spec)?;
        // Checked here to answer early and cheaply; `apply` checks again and its answer counts.
        validate_key(&req.key).map_err(|e| Status::invalid_argument(e.to_string()))?;
        spec.validate().map_err(|e| Status::invalid_argument(e.to_string()))?;
        let options = SubmitOptionsIn {
            after: req.after,
            after_keys: req.after_keys,
            after_policy: req.after_policy,
            concurrency_key: req.concurrency_key,
            concurrency_limit: req.concurrency_limit,
        };
        let op = self.submit_op(req.key, spec, options).await?;
        let (id, created) = match self.replica.write(op).await? {
            SmResponse::Submitted { id, created } => (id, created),
            SmResponse::Rejected(r) => return Err(rejection_to_status(r)),
            other => return Err(unexpected(other)),
        };
        if req.wait_ms == 0 {
            return Ok(self.replica.hinted(api::SubmitResponse { id, created, task: None }));
        }
        // No read barrier: the wait is for a state in which the task has ended, which comes after
        // the submit wherever it is read. (A follower may not have applied the submit yet: absent
        // means "not yet" here.)
        let (wait, capped) = edge_limits::long_poll_wait(req.wait_ms);
        let ended = |sm: &raftsched_state::StateMachine| sm.get(id).filter(|t| t.state.is_terminal()).map(task_to_api);
        let task = match self.replica.wait_for(wait, ended).await {
            Some(task) => Some(task),
            None => self.replica.sm.read(|sm| sm.get(id).map(task_to_api)),
        };
        Ok(edge_limits::note_wait_capped(self.replica.hinted(api::SubmitResponse { id, created, task }), capped))
    }

    async fn get_task(&self, req: Request<api::GetTaskRequest>) -> Result<Response<api::Task>, Status> {
        let _permit = self.replica.admit()?;
        let req = req.into_inner();
        if req.id == 0 {
            return Err(Status::invalid_argument("task id 0 does not exist; ids start at 1"));
        }
        let task = self.replica.read(req.stale, |sm| sm.get(req.id).map(task_to_api)).await?;
        task.map(Response::new).ok_or_else(|| Status::not_found(format!("no task with id {}", req.id)))
    }

    async fn list_tasks(
        &self,
        req: Request<api::ListTasksRequest>,
    ) -> Result<Response<api::ListTasksResponse>, Status> {
        let _permit = self.replica.admit()?;
        let req = req.into_inner();
        let state = match req.state.as_str() {
            "" => None,
            s => Some(TaskState::parse(s).ok_or_else(|| {
                let known: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
                Status::invalid_argument(format!("unknown state {s:?} (one of {})", known.join(", ")))
            })?),
        };
        if req.limit as usize > limits::LIST_PAGE_SIZE_MAX {
            return Err(Status::invalid_argument(format!(
                "limit {} is over list_page_size_max {}",
                req.limit,
                limits::LIST_PAGE_SIZE_MAX
            )));
        }
        let filter =
            ListFilter { state, after_id: (req.after_id > 0).then_some(req.after_id), limit: req.limit as usize };
        let page = self.replica.read(req.stale, |sm| sm.list(&filter)).await?;
        Ok(Response::new(api::ListTasksResponse {
            tasks: page.tasks.iter().map(task_to_api).collect(),
            next_after: page.next_after.unwrap_or(0),
        }))
    }

    async fn cancel(&self, req: Request<api::CancelRequest>) -> Result<Response<api::CancelResponse>, Status> {
        let _permit = self.replica.admit()?;
        let id = req.into_inner().id;
        if id == 0 {
            return Err(Status::invalid_argument("task id 0 does not exist; ids start at 1"));
        }
        match self.replica.write(Op::Cancel { id }).await? {
            SmResponse::Cancelled { id } => Ok(self.replica.hinted(api::CancelResponse { id })),
            SmResponse::Rejected(r) => Err(rejection_to_status(r)),
            other => Err(unexpected(other)),
        }
    }

    async fn wait_task(&self, req: Request<api::WaitTaskRequest>) -> Result<Response<api::Task>, Status> {
        let _permit = self.replica.admit_long_poll()?;
        let req = req.into_inner();
        let (wait, capped) = edge_limits::long_poll_wait(req.wait_ms);
        // Linearizable start: the wait sees at least every change acknowledged before it began.
        self.replica.read_barrier().await?;
        let id = req.id;
        let until_ended = req.until_ended;
        let newer = |sm: &raftsched_state::StateMachine| match sm.get(id) {
            None => Some(None),
            Some(t) if until_ended && !t.state.is_terminal() => None,
            Some(t) if t.version > req.after_version || until_ended => Some(Some(task_to_api(t))),
            Some(_) => None,
        };
        let found = match self.replica.wait_for(wait, newer).await {
            Some(found) => found,
            None => self.replica.sm.read(|sm| sm.get(id).map(task_to_api)),
        };
        let found = found.ok_or_else(|| Status::not_found(format!("no task with id {id}")))?;
        Ok(edge_limits::note_wait_capped(Response::new(found), capped))
    }

    async fn list_workers(
        &self,
        req: Request<api::ListWorkersRequest>,
    ) -> Result<Response<api::ListWorkersResponse>, Status> {
        let _permit = self.replica.admit()?;
        let stale = req.into_inner().stale;
        let beats = self.replica.beat_times().await;
        let now = now_ms();
        let workers =
            self.replica.read(stale, |sm| sm.workers().map(|n| node_to_api(n, now, &beats)).collect()).await?;
        Ok(Response::new(api::ListWorkersResponse { workers }))
    }

    async fn drain_worker(
        &self,
        req: Request<api::DrainWorkerRequest>,
    ) -> Result<Response<api::DrainWorkerResponse>, Status> {
        crate::auth::require_admin(&req)?;
        let _permit = self.replica.admit()?;
        match self.replica.write(Op::DrainWorker { worker_id: req.into_inner().id }).await? {
            SmResponse::Drained => Ok(Response::new(api::DrainWorkerResponse {})),
            SmResponse::Rejected(r) => Err(rejection_to_status(r)),
            other => Err(unexpected(other)),
        }
    }

    async fn add_member(
        &self,
        req: Request<api::AddMemberRequest>,
    ) -> Result<Response<api::MembershipResponse>, Status> {
        crate::auth::require_admin(&req)?;
        let _permit = self.replica.admit()?;
        let req = req.into_inner();
        Ok(Response::new(self.replica.add_member(req.id, req.addr).await?))
    }

    async fn remove_member(
        &self,
        req: Request<api::RemoveMemberRequest>,
    ) -> Result<Response<api::MembershipResponse>, Status> {
        crate::auth::require_admin(&req)?;
        let _permit = self.replica.admit()?;
        Ok(Response::new(self.replica.remove_member(req.into_inner().id).await?))
    }

    async fn transfer_leader(
        &self,
        req: Request<api::TransferLeaderRequest>,
    ) -> Result<Response<api::TransferLeaderResponse>, Status> {
        crate::auth::require_admin(&req)?;
        let _permit = self.replica.admit()?;
        Ok(Response::new(self.replica.transfer_leader(req.into_inner().to).await?))
    }

    async fn create_schedule(
        &self,
        req: Request<api::CreateScheduleRequest>,
    ) -> Result<Response<api::ScheduleResponse>, Status> {
        let _permit = self.replica.admit()?;
        self.create_schedule_call(req.into_inner()).await
    }

    async fn get_schedule(&self, req: Request<api::GetScheduleRequest>) -> Result<Response<api::Schedule>, Status> {
        let _permit = self.replica.admit()?;
        self.get_schedule_call(req.into_inner()).await
    }

    async fn list_schedules(
        &self,
        req: Request<api::ListSchedulesRequest>,
    ) -> Result<Response<api::ListSchedulesResponse>, Status> {
        let _permit = self.replica.admit()?;
        self.list_schedules_call(req.into_inner()).await
    }

    async fn pause_schedule(
        &self,
        req: Request<api::PauseScheduleRequest>,
    ) -> Result<Response<api::ScheduleResponse>, Status> {
        let _permit = self.replica.admit()?;
        self.pause_schedule_call(req.into_inner()).await
    }

    async fn delete_schedule(
        &self,
        req: Request<api::DeleteScheduleRequest>,
    ) -> Result<Response<api::ScheduleResponse>, Status> {
        let _permit = self.replica.admit()?;
        self.delete_schedule_call(req.into_inner()).await
    }

    async fn submit_flow(
        &self,
        req: Request<api::SubmitFlowRequest>,
    ) -> Result<Response<api::SubmitFlowResponse>, Status> {
        let _permit = self.replica.admit()?;
        let op = self.flow_op(req.into_inner()).await?;
        let items = match self.replica.write(op).await? {
            SmResponse::Batch(items) => items,
            SmResponse::Rejected(r) => return Err(rejection_to_status(r)),
            other => return Err(unexpected(other)),
        };
        let (mut ids, mut created) = (Vec::with_capacity(items.len()), false);
        for item in items {
            match item {
                SmResponse::Submitted { id, created: c } => {
                    ids.push(id);
                    created |= c;
                }
                other => return Err(unexpected(other)),
            }
        }
        Ok(self.replica.hinted(api::SubmitFlowResponse { ids, created }))
    }

    type ReadOutputStream = crate::output_relay::OutputStream;

    async fn read_output(
        &self,
        req: Request<api::ReadOutputRequest>,
    ) -> Result<Response<Self::ReadOutputStream>, Status> {
        let _permit = self.replica.admit()?;
        Ok(Response::new(crate::output_relay::relay_output(&self.replica, req.into_inner()).await?))
    }

    async fn get_flow(&self, req: Request<api::GetFlowRequest>) -> Result<Response<api::GetFlowResponse>, Status> {
        let _permit = self.replica.admit()?;
        let req = req.into_inner();
        let max = limits::TASKS_PER_FLOW_MAX;
        let tasks: Vec<api::Task> = self
            .replica
            .read(req.stale, |sm| sm.flow_tasks(&req.key, max).into_iter().map(task_to_api).collect())
            .await?;
        if tasks.is_empty() {
            return Err(Status::not_found(format!("no flow with key {:?}", req.key)));
        }
        Ok(Response::new(api::GetFlowResponse { tasks }))
    }

    async fn list_concurrency_keys(
        &self,
        req: Request<api::ListConcurrencyKeysRequest>,
    ) -> Result<Response<api::ListConcurrencyKeysResponse>, Status> {
        let _permit = self.replica.admit()?;
        let keys = self
            .replica
            .read(req.into_inner().stale, |sm| {
                sm.keys_in_use()
                    .map(|(key, u)| api::ConcurrencyKeyInfo {
                        key: key.to_string(),
                        limit: u.limit,
                        held: u.held,
                        queued: u.queued,
                    })
                    .collect()
            })
            .await?;
        Ok(Response::new(api::ListConcurrencyKeysResponse { keys }))
    }

    async fn cluster_status(
        &self,
        _req: Request<api::ClusterStatusRequest>,
    ) -> Result<Response<api::ClusterStatusResponse>, Status> {
        let _permit = self.replica.admit()?;
        let members = self.replica.cluster_status().await;
        // The leader is the reachable member that says it leads in the highest term; a stale
        // ex-leader in a minority partition loses to the newer term, and a leader that lost its
        // quorum (check-quorum) is none.
        let leader = members
            .iter()
            .filter(|m| m.reachable && m.role == "leader")
            .max_by_key(|m| m.term)
            .filter(|m| !m.no_quorum)
            .map(|m| m.id);
        Ok(Response::new(api::ClusterStatusResponse {
            leader: leader.unwrap_or(0),
            has_leader: leader.is_some(),
            members,
            answered_by: self.replica.id,
            cluster_version: self.replica.sm.read(|sm| sm.cluster_version()),
        }))
    }
}
