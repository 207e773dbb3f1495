//! Wire types <-> state types, and state rejections -> gRPC status codes. The only module that
//! knows both sides.

use raftsched_api as api;
use raftsched_state::{Exec, Node, Rejection, Task, TaskSpec};
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
    api::Task {
        id: task.id,
        key: task.key.clone(),
        state: task.state.as_str().to_string(),
        spec: Some(spec_to_api(&task.spec)),
        created_at_ms: task.created_at_ms,
        updated_at_ms: task.updated_at_ms,
        attempt: task.attempt(),
        worker_id,
        token,
        has_result,
        exit_code,
        output_tail,
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
    }
}

pub fn node_to_api(node: &Node, now_ms: u64) -> api::WorkerInfo {
    api::WorkerInfo {
        id: node.id.clone(),
        addr: node.addr.clone(),
        state: node.state.as_str().to_string(),
        slots: node.slots,
        slots_in_use: node.held.len() as u32,
        labels: node.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        epoch: node.epoch,
        last_heartbeat_ms: node.last_heartbeat_ms,
        heartbeat_age_ms: now_ms.saturating_sub(node.last_heartbeat_ms),
    }
}

pub fn rejection_to_status(rejection: Rejection) -> Status {
    let message = rejection.to_string();
    match rejection {
        Rejection::KeyConflict { .. } | Rejection::WorkerIdInUse { .. } => Status::already_exists(message),
        Rejection::UnknownWorker { .. } => Status::not_found(message),
        Rejection::WorkerNotCurrent { .. } | Rejection::StaleToken { .. } => Status::failed_precondition(message),
        Rejection::TooManyWorkers { .. } => Status::resource_exhausted(message),
        Rejection::StaleDecision => Status::aborted(message),
        Rejection::NotFound { .. } => Status::not_found(message),
        Rejection::NotCancellable { .. } => Status::failed_precondition(message),
        Rejection::TooManyPending { .. } | Rejection::TooManyTasks { .. } => Status::resource_exhausted(message),
        Rejection::Invalid { .. } => Status::invalid_argument(message),
    }
}

/// A state-machine answer of the wrong kind for the request: a bug, reported as INTERNAL.
pub fn unexpected(response: raftsched_state::Response) -> Status {
    Status::internal(format!("unexpected state machine answer {response:?}"))
}
