//! Wire types <-> state types, and state rejections -> gRPC status codes. The only module that
//! knows both sides.

use raftsched_api as api;
use raftsched_state::{Exec, Rejection, Task, TaskSpec};
use tonic::Status;

pub fn spec_from_api(spec: Option<api::TaskSpec>) -> Result<TaskSpec, Status> {
    let spec = spec.ok_or_else(|| Status::invalid_argument("submit needs a spec"))?;
    let exec = match spec.exec {
        Some(api::task_spec::Exec::Builtin(b)) => Exec::Builtin { name: b.name, arg: b.arg },
        Some(api::task_spec::Exec::Command(c)) => Exec::Command { argv: c.argv },
        None => return Err(Status::invalid_argument("spec needs a builtin or a command")),
    };
    Ok(TaskSpec { exec, priority: spec.priority, constraints: spec.constraints.into_iter().collect() })
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
        attempt: task.attempt,
        worker_id,
        token,
        has_result,
        exit_code,
        output_tail,
    }
}

pub fn rejection_to_status(rejection: Rejection) -> Status {
    let message = rejection.to_string();
    match rejection {
        Rejection::KeyConflict { .. } => Status::already_exists(message),
        Rejection::NotFound { .. } => Status::not_found(message),
        Rejection::NotCancellable { .. } => Status::failed_precondition(message),
        Rejection::TooManyPending { .. } | Rejection::TooManyTasks { .. } => Status::resource_exhausted(message),
        Rejection::Invalid { .. } => Status::invalid_argument(message),
    }
}
