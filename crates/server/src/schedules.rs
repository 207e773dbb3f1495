//! The schedule calls of the client API. Writes go through Raft like every other write (a follower
//! forwards them); the decisions (name taken, spec valid, limits) are made in `apply`.

use raftsched_api as api;
use raftsched_state::schedule::validate_schedule_name;
use raftsched_state::{Op, Response as SmResponse};
use tonic::{Response, Status};

use crate::convert::{rejection_to_status, schedule_spec_from_api, schedule_to_api, unexpected};
use crate::scheduler_service::SchedulerService;

fn check_name(name: &str) -> Result<(), Status> {
    validate_schedule_name(name).map_err(Status::invalid_argument)
}

fn answer(response: SmResponse) -> Result<Response<api::ScheduleResponse>, Status> {
    let (created, next_due_ms) = match response {
        SmResponse::ScheduleCreated { created, next_due_ms } => (created, next_due_ms),
        SmResponse::ScheduleUpdated { next_due_ms } => (false, next_due_ms),
        SmResponse::Rejected(r) => return Err(rejection_to_status(r)),
        other => return Err(unexpected(other)),
    };
    Ok(Response::new(api::ScheduleResponse {
        created,
        has_next_due: next_due_ms.is_some(),
        next_due_ms: next_due_ms.unwrap_or(0),
    }))
}

impl SchedulerService {
    pub(crate) async fn create_schedule_call(
        &self,
        req: api::CreateScheduleRequest,
    ) -> Result<Response<api::ScheduleResponse>, Status> {
        check_name(&req.name)?;
        let spec = schedule_spec_from_api(req.spec)?;
        // Checked here to answer early; `apply` checks again and its answer counts.
        spec.validate().map_err(Status::invalid_argument)?;
        let op = match crate::convert::concurrency_from_api(req.concurrency_key, req.concurrency_limit)? {
            None => Op::CreateSchedule { name: req.name, spec: Box::new(spec) },
            Some(concurrency) => {
                let version = raftsched_state::SCHEDULE_CONCURRENCY_VERSION;
                self.require_cluster_version(version, "schedules with a concurrency key").await?;
                Op::CreateScheduleWith { name: req.name, spec: Box::new(spec), concurrency }
            }
        };
        answer(self.replica.write(op).await?)
    }

    pub(crate) async fn get_schedule_call(
        &self,
        req: api::GetScheduleRequest,
    ) -> Result<Response<api::Schedule>, Status> {
        check_name(&req.name)?;
        let found = self.replica.read(req.stale, |sm| sm.schedule(&req.name).map(schedule_to_api)).await?;
        found.map(Response::new).ok_or_else(|| Status::not_found(format!("no schedule named {:?}", req.name)))
    }

    pub(crate) async fn list_schedules_call(
        &self,
        req: api::ListSchedulesRequest,
    ) -> Result<Response<api::ListSchedulesResponse>, Status> {
        // Bounded by schedules_max (1,000) records of at most schedule_history_len_max entries.
        let schedules = self.replica.read(req.stale, |sm| sm.schedules().map(schedule_to_api).collect()).await?;
        Ok(Response::new(api::ListSchedulesResponse { schedules }))
    }

    pub(crate) async fn pause_schedule_call(
        &self,
        req: api::PauseScheduleRequest,
    ) -> Result<Response<api::ScheduleResponse>, Status> {
        check_name(&req.name)?;
        answer(self.replica.write(Op::SetSchedulePaused { name: req.name, paused: req.paused }).await?)
    }

    pub(crate) async fn delete_schedule_call(
        &self,
        req: api::DeleteScheduleRequest,
    ) -> Result<Response<api::ScheduleResponse>, Status> {
        check_name(&req.name)?;
        answer(self.replica.write(Op::DeleteSchedule { name: req.name }).await?)
    }
}
