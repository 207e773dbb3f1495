//! Wire types <-> state types, and state rejections -> gRPC status codes. The only module that
//! knows both sides.

use raftsched_api as api;
use raftsched_state::{CatchUp, Exec, Overlap, Rejection, Schedule, ScheduleSpec, Task, TaskSpec, Worker};
use tonic::Status;

pub fn spec_from_api(spec: Option<api::TaskSpec>) -> Result<TaskSpec, Status> {
    let spec = spec.ok_or_else(|| Status::invalid_argument("submit needs a spec"))?;
    let exec = match spec.exec {
        Some(api::task_spec::Exec::Builtin(b)) => Exec::Builtin { name: b.name, arg: b.arg },
        Some(api::task_spec::Exec::Command(c)) => Exec::Command { argv: c.argv },
        None => return Err(Status::invalid_argument("spec needs a builtin or a command")),
    };
    Ok(TaskSpec {
        exec,
        priority: spec.priority,
        constraints: spec.constraints.into_iter().collect(),
        env: spec.env.into_iter().collect(),
        cwd: (!spec.cwd.is_empty()).then_some(spec.cwd),
        timeout_ms: spec.timeout_ms,
        max_attempts: if spec.max_attempts == 0 {
            raftsched_state::limits::ATTEMPTS_DEFAULT
        } else {
            spec.max_attempts
        },
        run_at_ms: (spec.run_at_ms > 0).then_some(spec.run_at_ms),
    })
}

pub fn spec_to_api(spec: &TaskSpec) -> api::TaskSpec {
    let exec = match &spec.exec {
        Exec::Builtin { name, arg } => {
            api::task_spec::Exec::Builtin(api::Builtin { name: name.clone(), arg: arg.clone() })
        }
        Exec::Command { argv } => api::task_spec::Exec::Command(api::CommandLine { argv: argv.clone() }),
    };
    api::TaskSpec {
        exec: Some(exec),
        priority: spec.priority,
        constraints: spec.constraints.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        env: spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        cwd: spec.cwd.clone().unwrap_or_default(),
        timeout_ms: spec.timeout_ms,
        max_attempts: spec.max_attempts,
        run_at_ms: spec.run_at_ms.unwrap_or(0),
    }
}

pub fn task_to_api(task: &Task) -> api::Task {
    let (worker_id, token) = match &task.assignment {
        Some(a) => (a.worker_id.clone(), a.token),
        None => (String::new(), 0),
    };
    let (has_result, exit_code, output_tail) = match &task.result {
        Some(r) => (true, r.exit_code, r.output_tail.clone()),
        None => (false, 0, String::new()),
    };
    let streams = task.result.as_ref().and_then(|r| r.streams.as_deref());
    api::Task {
        id: task.id,
        key: task.key.clone(),
        state: task.state.as_str().to_string(),
        state_enum: api::task_state_enum(task.state.as_str()),
        spec: Some(spec_to_api(&task.spec)),
        created_at_ms: task.created_at_ms,
        updated_at_ms: task.updated_at_ms,
        attempt: task.attempt(),
        worker_id,
        token,
        has_result,
        exit_code,
        output_tail,
        after: task.after.as_ref().map(|a| a.ids.clone()).unwrap_or_default(),
        after_policy: task.after.as_ref().map(|a| a.policy.as_str().to_string()).unwrap_or_default(),
        skipped_by: task.after.as_ref().and_then(|a| a.skipped_by).unwrap_or(0),
        concurrency_key: task.concurrency.as_ref().map(|c| c.key.clone()).unwrap_or_default(),
        concurrency_limit: task.concurrency.as_ref().map_or(0, |c| c.limit),
        streams_apart: streams.is_some(),
        stderr_tail: streams.map(|s| s.stderr_tail.clone()).unwrap_or_default(),
        stdout_bytes: streams.map_or(0, |s| s.stdout_bytes),
        stderr_bytes: streams.map_or(0, |s| s.stderr_bytes),
        attempts: task
            .attempts
            .iter()
            .map(|a| api::Attempt {
                worker_id: a.worker_id.clone(),
                epoch: a.epoch,
                token: a.token,
                assigned_at_ms: a.assigned_at_ms,
                started_at_ms: a.started_at_ms.unwrap_or(0),
                ended_at_ms: a.ended_at_ms.unwrap_or(0),
                outcome: a.outcome.map_or("", |o| o.as_str()).to_string(),
            })
            .collect(),
        not_before_ms: task.not_before_ms,
        version: task.version,
        schedule: task.origin.as_ref().map(|o| o.schedule.clone()).unwrap_or_default(),
        occurrence_ms: task.origin.as_ref().map_or(0, |o| o.occurrence_ms),
    }
}

pub fn schedule_spec_from_api(spec: Option<api::ScheduleSpec>) -> Result<ScheduleSpec, Status> {
    let spec = spec.ok_or_else(|| Status::invalid_argument("a schedule needs a spec"))?;
    let overlap = match spec.overlap.as_str() {
        "" => Overlap::Allow,
        s => Overlap::parse(s)
            .ok_or_else(|| Status::invalid_argument(format!("unknown overlap {s:?} (allow, forbid, replace)")))?,
    };
    let catch_up = match spec.catch_up.as_str() {
        "" => CatchUp::One,
        s => CatchUp::parse(s)
            .ok_or_else(|| Status::invalid_argument(format!("unknown catch-up {s:?} (none, one, all)")))?,
    };
    let or_default = |v: u64, default: u64| if v == 0 { default } else { v };
    Ok(ScheduleSpec {
        cron: spec.cron,
        timezone: if spec.timezone.is_empty() { "UTC".to_string() } else { spec.timezone },
        overlap,
        catch_up,
        max_catch_up: or_default(spec.max_catch_up.into(), raftsched_state::limits::CATCH_UP_RUNS_DEFAULT.into())
            .try_into()
            .unwrap_or(u32::MAX),
        start_deadline_ms: or_default(spec.start_deadline_ms, raftsched_state::limits::START_DEADLINE_MS_DEFAULT),
        task: spec_from_api(spec.task)?,
    })
}

pub fn schedule_spec_to_api(spec: &ScheduleSpec) -> api::ScheduleSpec {
    api::ScheduleSpec {
        cron: spec.cron.clone(),
        timezone: spec.timezone.clone(),
        overlap: spec.overlap.as_str().to_string(),
        catch_up: spec.catch_up.as_str().to_string(),
        max_catch_up: spec.max_catch_up,
        start_deadline_ms: spec.start_deadline_ms,
        task: Some(spec_to_api(&spec.task)),
    }
}

pub fn schedule_to_api(schedule: &Schedule) -> api::Schedule {
    api::Schedule {
        name: schedule.name.clone(),
        concurrency_key: schedule.concurrency.as_ref().map(|c| c.key.clone()).unwrap_or_default(),
        concurrency_limit: schedule.concurrency.as_ref().map_or(0, |c| c.limit),
        spec: Some(schedule_spec_to_api(&schedule.spec)),
        created_at_ms: schedule.created_at_ms,
        paused: schedule.paused,
        has_next_due: schedule.next_due_ms.is_some(),
        next_due_ms: schedule.next_due_ms.unwrap_or(0),
        last_task_id: schedule.last_task.unwrap_or(0),
        runs_total: schedule.runs_total,
        missed_total: schedule.missed_total,
        history: schedule
            .history
            .iter()
            .map(|r| api::OccurrenceRecord {
                occurrence_ms: r.occurrence_ms,
                last_occurrence_ms: r.last_occurrence_ms,
                count: r.count,
                count_capped: r.count_capped,
                fired_at_ms: r.fired_at_ms,
                task_id: r.task_id.unwrap_or(0),
                missed: r.missed.as_ref().map_or("", |m| m.as_str()).to_string(),
                missed_detail: match &r.missed {
                    Some(raftsched_state::MissReason::Refused { reason }) => reason.clone(),
                    _ => String::new(),
                },
            })
            .collect(),
        version: schedule.version,
    }
}

/// `beats`: the leader's in-memory heartbeat times (`liveness.rs`).
pub(crate) fn node_to_api(node: &Worker, now_ms: u64, beats: &crate::liveness::BeatTimes) -> api::WorkerInfo {
    let last_heartbeat_ms = crate::liveness::last_heartbeat_ms(node, beats);
    api::WorkerInfo {
        id: node.id.clone(),
        addr: node.addr.clone(),
        state: node.state.as_str().to_string(),
        state_enum: api::worker_state_enum(node.state.as_str()),
        slots: node.slots,
        slots_in_use: node.held.len() as u32,
        labels: node.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        epoch: node.epoch,
        last_heartbeat_ms,
        heartbeat_age_ms: now_ms.saturating_sub(last_heartbeat_ms),
    }
}

pub fn rejection_to_status(rejection: Rejection) -> Status {
    let message = rejection.to_string();
    match rejection {
        Rejection::KeyConflict { .. } | Rejection::WorkerIdInUse { .. } => Status::already_exists(message),
        Rejection::UnknownWorker { .. } => Status::not_found(message),
        Rejection::NotHolder { .. } => Status::permission_denied(message),
        Rejection::WorkerNotCurrent { .. } | Rejection::StaleToken { .. } => Status::failed_precondition(message),
        Rejection::TooManyWorkers { .. } => crate::limits::overloaded(message),
        Rejection::StaleDecision => Status::aborted(message),
        Rejection::NotFound { .. } => Status::not_found(message),
        Rejection::NotCancellable { .. } => Status::failed_precondition(message),
        Rejection::TooManyPending { .. } | Rejection::TooManyTasks { .. } => crate::limits::overloaded(message),
        Rejection::Invalid { .. } => Status::invalid_argument(message),
        Rejection::ScheduleExists { .. } => Status::already_exists(message),
        Rejection::NoSchedule { .. } => Status::not_found(message),
        Rejection::TooManySchedules { .. } | Rejection::TooManyScheduled { .. } => crate::limits::overloaded(message),
    }
}

/// A state-machine answer of the wrong kind for the request: a bug, reported as INTERNAL.
pub fn unexpected(response: raftsched_state::Response) -> Status {
    Status::internal(format!("unexpected state machine answer {response:?}"))
}

/// An after policy as the API spells it ("" is "success").
pub fn after_policy_from_api(text: &str) -> Result<raftsched_state::AfterPolicy, Status> {
    match text {
        "" => Ok(raftsched_state::AfterPolicy::Success),
        other => raftsched_state::AfterPolicy::parse(other).ok_or_else(|| {
            Status::invalid_argument(format!("after_policy {other:?}: expected \"success\" or \"finished\""))
        }),
    }
}

/// A concurrency key and limit as the API gives them, checked: none when neither is set.
pub fn concurrency_from_api(key: String, limit: u32) -> Result<Option<raftsched_state::Concurrency>, Status> {
    match (key.is_empty(), limit) {
        (true, 0) => Ok(None),
        (true, _) => Err(Status::invalid_argument("concurrency_limit without a concurrency_key")),
        (false, limit) => {
            let c = raftsched_state::Concurrency { key, limit };
            c.validate().map_err(Status::invalid_argument)?;
            Ok(Some(c))
        }
    }
}
