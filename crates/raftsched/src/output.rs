//! How tasks and status are printed: JSON for scripts, short text for people.

use raftsched_client::api;
use serde_json::{json, Value};

/// Writes to stdout for `outln!`/`out!`. A closed pipe exits with status 0 and no message (the
/// reader has what it wanted); any other write error (a full disk under a redirect) is reported on
/// stderr with exit status 1, so output is never lost silently. Never a panic.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let Err(e) = std::io::stdout().lock().write_fmt(args) else { return };
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("raftsched: error: cannot write to stdout: {e}");
    std::process::exit(1);
}

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
    value["cwd"] = if spec.cwd.is_empty() { Value::Null } else { json!(spec.cwd) };
    value["timeout_ms"] = json!(spec.timeout_ms);
    value["max_attempts"] = json!(spec.max_attempts);
    value
}

pub fn spec_text(spec: Option<&api::TaskSpec>) -> String {
    match spec.and_then(|s| s.exec.as_ref()) {
        Some(api::task_spec::Exec::Builtin(b)) => format!("{}:{}", b.name, b.arg),
        Some(api::task_spec::Exec::Command(c)) => c.argv.join(" "),
        None => String::new(),
    }
}

pub fn task_json(task: &api::Task) -> Value {
    json!({
        "id": task.id,
        "key": task.key,
        "state": task.state,
        "spec": spec_json(task.spec.as_ref()),
        "created_at_ms": task.created_at_ms,
        "updated_at_ms": task.updated_at_ms,
        "attempt": task.attempt,
        "worker_id": if task.worker_id.is_empty() { Value::Null } else { json!(task.worker_id) },
        "token": if task.token == 0 { Value::Null } else { json!(task.token) },
        "result": if task.has_result { json!({ "exit_code": task.exit_code, "output_tail": task.output_tail }) } else { Value::Null },
        "attempts": task.attempts.iter().map(|a| json!({
            "worker_id": a.worker_id,
            "epoch": a.epoch,
            "token": a.token,
            "assigned_at_ms": a.assigned_at_ms,
            "started_at_ms": if a.started_at_ms == 0 { Value::Null } else { json!(a.started_at_ms) },
            "ended_at_ms": if a.ended_at_ms == 0 { Value::Null } else { json!(a.ended_at_ms) },
            "outcome": if a.outcome.is_empty() { Value::Null } else { json!(a.outcome) },
        })).collect::<Vec<_>>(),
        "not_before_ms": task.not_before_ms,
        "version": task.version,
        "run_at_ms": task.spec.as_ref().map_or(Value::Null, |s| if s.run_at_ms == 0 { Value::Null } else { json!(s.run_at_ms) }),
        "schedule": if task.schedule.is_empty() { Value::Null } else { json!(task.schedule) },
        "occurrence_ms": if task.schedule.is_empty() { Value::Null } else { json!(task.occurrence_ms) },
    })
}

pub fn task_text(task: &api::Task) -> String {
    let mut lines = vec![
        format!("id:         {}", task.id),
        format!("key:        {}", task.key),
        format!("state:      {}", task.state),
        format!("spec:       {}", spec_text(task.spec.as_ref())),
        format!("created_at: {} ms", task.created_at_ms),
        format!("updated_at: {} ms", task.updated_at_ms),
    ];
    if let Some(at) = task.spec.as_ref().map(|s| s.run_at_ms).filter(|&at| at > 0) {
        lines.push(format!("run_at:     {} ({at} ms)", crate::schedule_cmds::format_ms(at)));
    }
    if !task.schedule.is_empty() {
        let when = crate::schedule_cmds::format_ms(task.occurrence_ms);
        lines.push(format!("schedule:   {} (occurrence {when})", task.schedule));
    }
    if !task.worker_id.is_empty() {
        lines.push(format!("worker:     {} (token {})", task.worker_id, task.token));
    }
    for (n, a) in task.attempts.iter().enumerate() {
        let outcome = if a.outcome.is_empty() { "open" } else { a.outcome.as_str() };
        lines.push(format!("attempt {}:  {} on {} (token {})", n + 1, outcome, a.worker_id, a.token));
    }
    if task.has_result {
        lines.push(format!("exit_code:  {}", task.exit_code));
        lines.push(format!("output:     {}", task.output_tail));
    }
    lines.join("\n")
}

pub fn status_json(status: &api::ClusterStatusResponse) -> Value {
    let members: Vec<Value> = status
        .members
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "addr": m.addr,
                "role": m.role,
                "term": m.term,
                "last_log_index": m.last_log_index,
                "applied_index": m.applied_index,
                "reachable": m.reachable,
                "error": if m.error.is_empty() { Value::Null } else { json!(m.error) },
                "build_version": if m.build_version.is_empty() { Value::Null } else { json!(m.build_version) },
                "build_commit": if m.build_commit.is_empty() { Value::Null } else { json!(m.build_commit) },
                "format_min": m.format_min,
                "format_max": m.format_max,
                "clock_skew_ms": if m.clock_skew_known { json!(m.clock_skew_ms) } else { Value::Null },
                "no_quorum": m.no_quorum,
            })
        })
        .collect();
    json!({
        "leader": if status.has_leader { json!(status.leader) } else { Value::Null },
        "members": members,
        "answered_by": status.answered_by,
        "cluster_version": status.cluster_version,
    })
}

pub fn status_text(status: &api::ClusterStatusResponse) -> String {
    let leader = if status.has_leader { status.leader.to_string() } else { "none".to_string() };
    let mut out = format!(
        "leader: {leader}\ncluster version: {}\n{:<4} {:<22} {:<10} {:>6} {:>10} {:>10} {:>7} {:>9}  reachable\n",
        status.cluster_version, "id", "addr", "role", "term", "last_log", "applied", "formats", "skew_ms"
    );
    for m in &status.members {
        let reach = if m.reachable { "yes".to_string() } else { format!("no ({})", m.error) };
        let formats = format!("{}..{}", m.format_min, m.format_max);
        let skew = if m.clock_skew_known { m.clock_skew_ms.to_string() } else { "-".to_string() };
        let role = if m.no_quorum { format!("{} (no quorum)", m.role) } else { m.role.clone() };
        out.push_str(&format!(
            "{:<4} {:<22} {:<10} {:>6} {:>10} {:>10} {:>7} {:>9}  {}\n",
            m.id, m.addr, role, m.term, m.last_log_index, m.applied_index, formats, skew, reach
        ));
    }
    out.pop();
    out
}
