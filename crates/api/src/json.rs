//! The JSON shape of each API thing, produced by one function each and used by every edge that
//! prints or serves JSON: the CLI's `--json`, the HTTP API and `/status.json`. Field names follow
//! the proto's; an absent value is `null` (never `0` or `""` standing for "none").

use serde_json::{json, Value};

use crate::v1 as api;

/// `null` for the proto's "none" values.
fn some_str(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        json!(s)
    }
}

fn some_u64(n: u64) -> Value {
    if n == 0 {
        Value::Null
    } else {
        json!(n)
    }
}

/// A task spec (`null` when absent).
pub fn spec_json(spec: Option<&api::TaskSpec>) -> Value {
    let Some(spec) = spec else { return Value::Null };
    let mut value = match &spec.exec {
        Some(api::task_spec::Exec::Builtin(b)) => json!({ "builtin": { "name": b.name, "arg": b.arg } }),
        Some(api::task_spec::Exec::Command(c)) => json!({ "command": c.argv }),
        None => json!({}),
    };
    value["priority"] = json!(spec.priority);
    let constraints: std::collections::BTreeMap<_, _> = spec.constraints.iter().collect();
    value["constraints"] = json!(constraints);
    let env: std::collections::BTreeMap<_, _> = spec.env.iter().collect();
    value["env"] = json!(env);
    value["cwd"] = some_str(&spec.cwd);
    value["timeout_ms"] = json!(spec.timeout_ms);
    value["max_attempts"] = json!(spec.max_attempts);
    value
}

/// A task's result: `output_tail` is stdout's tail when `streams_apart`, else both streams joined
/// (results recorded before format 5); the byte counts say whether a tail was cut.
fn result_json(task: &api::Task) -> Value {
    if !task.has_result {
        return Value::Null;
    }
    let apart = task.streams_apart;
    json!({
        "exit_code": task.exit_code,
        "output_tail": task.output_tail,
        "streams_apart": apart,
        "stderr_tail": if apart { json!(task.stderr_tail) } else { Value::Null },
        "stdout_bytes": if apart { json!(task.stdout_bytes) } else { Value::Null },
        "stderr_bytes": if apart { json!(task.stderr_bytes) } else { Value::Null },
        "output_cut": !output_cuts(task).is_empty(),
    })
}

/// One line per stream whose tail was cut: what part of it the result holds. Empty when the result
/// holds each stream whole (or does not say: results before format 5).
pub fn output_cuts(task: &api::Task) -> Vec<String> {
    if !task.has_result || !task.streams_apart {
        return Vec::new();
    }
    [("stdout", &task.output_tail, task.stdout_bytes), ("stderr", &task.stderr_tail, task.stderr_bytes)]
        .into_iter()
        .filter(|(_, tail, bytes)| *bytes > tail.len() as u64)
        .map(|(name, tail, bytes)| {
            let kept = tail.len() as u64;
            format!(
                "{name} cut: {} bytes dropped, the result keeps the last {kept} of {bytes} (output_tail_bytes_max)",
                bytes - kept
            )
        })
        .collect()
}

/// A task, with its spec, result and attempts.
pub fn task_json(task: &api::Task) -> Value {
    json!({
        "id": task.id,
        "key": task.key,
        "state": task.state,
        "spec": spec_json(task.spec.as_ref()),
        "created_at_ms": task.created_at_ms,
        "updated_at_ms": task.updated_at_ms,
        "attempt": task.attempt,
        "worker_id": some_str(&task.worker_id),
        "token": some_u64(task.token),
        "result": result_json(task),
        "after": task.after,
        "after_policy": some_str(&task.after_policy),
        "skipped_by": some_u64(task.skipped_by),
        "concurrency_key": some_str(&task.concurrency_key),
        "concurrency_limit": some_u64(u64::from(task.concurrency_limit)),
        "attempts": task.attempts.iter().map(|a| json!({
            "worker_id": a.worker_id,
            "epoch": a.epoch,
            "token": a.token,
            "assigned_at_ms": a.assigned_at_ms,
            "started_at_ms": some_u64(a.started_at_ms),
            "ended_at_ms": some_u64(a.ended_at_ms),
            "outcome": some_str(&a.outcome),
        })).collect::<Vec<_>>(),
        "not_before_ms": some_u64(task.not_before_ms),
        "version": task.version,
        "run_at_ms": task.spec.as_ref().map_or(Value::Null, |s| some_u64(s.run_at_ms)),
        "schedule": some_str(&task.schedule),
        "occurrence_ms": if task.schedule.is_empty() { Value::Null } else { json!(task.occurrence_ms) },
    })
}

/// A schedule, with its spec, next occurrence and recent runs and misses.
pub fn schedule_json(s: &api::Schedule) -> Value {
    let spec = s.spec.clone().unwrap_or_default();
    json!({
        "name": s.name,
        "concurrency_key": some_str(&s.concurrency_key),
        "concurrency_limit": some_u64(u64::from(s.concurrency_limit)),
        "cron": spec.cron,
        "timezone": spec.timezone,
        "overlap": spec.overlap,
        "catch_up": spec.catch_up,
        "max_catch_up": spec.max_catch_up,
        "start_deadline_ms": spec.start_deadline_ms,
        "task": spec_json(spec.task.as_ref()),
        "paused": s.paused,
        "created_at_ms": s.created_at_ms,
        "next_due_ms": if s.has_next_due { json!(s.next_due_ms) } else { Value::Null },
        "last_task_id": some_u64(s.last_task_id),
        "runs_total": s.runs_total,
        "missed_total": s.missed_total,
        "history": s.history.iter().map(|r| json!({
            "occurrence_ms": r.occurrence_ms,
            "last_occurrence_ms": r.last_occurrence_ms,
            "count": r.count,
            "count_capped": r.count_capped,
            "fired_at_ms": r.fired_at_ms,
            "task_id": some_u64(r.task_id),
            "missed": if r.missed.is_empty() { Value::Null } else { json!(r.missed) },
            "missed_detail": if r.missed_detail.is_empty() { Value::Null } else { json!(r.missed_detail) },
        })).collect::<Vec<_>>(),
        "version": s.version,
    })
}

/// A replica as a member's status call describes it (`cluster status --json`, `/status.json`).
pub fn member_json(m: &api::MemberStatus) -> Value {
    let text = |s: &str| if s.is_empty() { Value::Null } else { json!(s) };
    json!({
        "id": m.id,
        "addr": m.addr,
        "role": m.role,
        "term": m.term,
        "last_log_index": m.last_log_index,
        "applied_index": m.applied_index,
        "reachable": m.reachable,
        "error": text(&m.error),
        "build_version": text(&m.build_version),
        "build_commit": text(&m.build_commit),
        "format_min": m.format_min,
        "format_max": m.format_max,
        "clock_skew_ms": if m.clock_skew_known { json!(m.clock_skew_ms) } else { Value::Null },
        "no_quorum": m.no_quorum,
    })
}

/// A worker, as the replica that answered sees it.
pub fn worker_json(w: &api::WorkerInfo) -> Value {
    json!({
        "id": w.id,
        "addr": w.addr,
        "state": w.state,
        "slots": w.slots,
        "slots_in_use": w.slots_in_use,
        "labels": w.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
        "epoch": w.epoch,
        "last_heartbeat_ms": w.last_heartbeat_ms,
        "heartbeat_age_ms": w.heartbeat_age_ms,
    })
}

/// The input shape of a task spec: what [`spec_json`] prints, read back strictly (an unknown
/// field is an error, so a typo never silently means a default).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecInput {
    command: Option<Vec<String>>,
    builtin: Option<BuiltinInput>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    constraints: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    cwd: Option<String>,
    timeout_ms: Option<u64>,
    max_attempts: Option<u32>,
    run_at_ms: Option<u64>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BuiltinInput {
    name: String,
    #[serde(default)]
    arg: String,
}

/// A task spec from its JSON shape (the HTTP API's submit). The limits are checked where every
/// submit's are, by the replica.
pub fn spec_from_json(value: Value) -> Result<api::TaskSpec, String> {
    if value.is_null() {
        return Err(r#"a spec is required, e.g. {"command": ["echo", "hi"]}"#.into());
    }
    let input: SpecInput = serde_json::from_value(value).map_err(|e| format!("spec: {e}"))?;
    let exec = match (input.command, input.builtin) {
        (Some(argv), None) => api::task_spec::Exec::Command(api::CommandLine { argv }),
        (None, Some(b)) => api::task_spec::Exec::Builtin(api::Builtin { name: b.name, arg: b.arg }),
        _ => return Err("spec: exactly one of \"command\" (an argv list) and \"builtin\" is required".into()),
    };
    Ok(api::TaskSpec {
        exec: Some(exec),
        priority: input.priority,
        constraints: input.constraints.into_iter().collect(),
        env: input.env.into_iter().collect(),
        cwd: input.cwd.unwrap_or_default(),
        timeout_ms: input.timeout_ms.unwrap_or(0),
        max_attempts: input.max_attempts.unwrap_or(0),
        run_at_ms: input.run_at_ms.unwrap_or(0),
    })
}

/// A flow as JSON (a flow file, or the HTTP API's body): `{"key": K, "tasks": [{"name", "spec",
/// "after", "after_policy", "concurrency_key", "concurrency_limit"}]}`; `key` may be absent when
/// the caller gives it otherwise.
pub fn flow_from_json(value: Value) -> Result<api::SubmitFlowRequest, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FlowInput {
        #[serde(default)]
        key: String,
        tasks: Vec<TaskInput>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TaskInput {
        name: String,
        spec: Value,
        #[serde(default)]
        after: Vec<String>,
        #[serde(default)]
        after_policy: String,
        #[serde(default)]
        concurrency_key: String,
        #[serde(default)]
        concurrency_limit: u32,
    }
    let input: FlowInput = serde_json::from_value(value).map_err(|e| format!("flow: {e}"))?;
    let mut tasks = Vec::with_capacity(input.tasks.len());
    for t in input.tasks {
        let spec = spec_from_json(t.spec).map_err(|e| format!("task {:?}: {e}", t.name))?;
        tasks.push(api::FlowTaskSpec {
            name: t.name,
            spec: Some(spec),
            after: t.after,
            after_policy: t.after_policy,
            concurrency_key: t.concurrency_key,
            concurrency_limit: t.concurrency_limit,
        });
    }
    Ok(api::SubmitFlowRequest { key: input.key, tasks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_reads_back_what_it_prints() {
        let spec = spec_from_json(json!({"command": ["echo", "hi"], "env": {"A": "1"}, "timeout_ms": 5})).unwrap();
        let printed = spec_json(Some(&spec));
        assert_eq!(spec_from_json(printed).unwrap(), spec);
        for bad in [
            json!(null),
            json!({}),
            json!({"command": ["x"], "builtin": {"name": "echo"}}),
            json!({"comand": ["x"]}),
            json!([1]),
        ] {
            assert!(spec_from_json(bad.clone()).is_err(), "{bad}");
        }
    }
}
