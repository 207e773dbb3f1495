//! How tasks and status are printed: JSON for scripts, short text for people.

use raftsched_client::api;
pub use raftsched_client::api::json::task_json;
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

/// Writes raw bytes to stdout (a task's output, as it was written), flushed, with `write_out`'s
/// handling of a closed pipe and other errors.
pub fn write_out_bytes(data: &[u8]) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let Err(e) = stdout.write_all(data).and_then(|()| stdout.flush()) else { return };
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("raftsched: error: cannot write to stdout: {e}");
    std::process::exit(1);
}

pub fn spec_text(spec: Option<&api::TaskSpec>) -> String {
    match spec.and_then(|s| s.exec.as_ref()) {
        Some(api::task_spec::Exec::Builtin(b)) => format!("{}:{}", b.name, b.arg),
        Some(api::task_spec::Exec::Command(c)) => c.argv.join(" "),
        None => String::new(),
    }
}

pub fn task_text(task: &api::Task) -> String {
    let mut lines = vec![
        format!("id:         {}", task.id),
        format!("key:        {}", task.key),
        format!("state:      {}", task.state),
        format!("spec:       {}", spec_text(task.spec.as_ref())),
        format!("created_at: {}", when(task.created_at_ms)),
        format!("updated_at: {}", when(task.updated_at_ms)),
    ];
    if let Some(at) = task.spec.as_ref().map(|s| s.run_at_ms).filter(|&at| at > 0) {
        lines.push(format!("run_at:     {}", when(at)));
    }
    if !task.schedule.is_empty() {
        let when = format_ms(task.occurrence_ms);
        lines.push(format!("schedule:   {} (occurrence {when})", task.schedule));
    }
    if !task.after.is_empty() {
        let ids: Vec<String> = task.after.iter().map(u64::to_string).collect();
        lines.push(format!("after:      {} (policy {})", ids.join(", "), task.after_policy));
    }
    if !task.concurrency_key.is_empty() {
        lines.push(format!("concurrency: key {} (limit {})", task.concurrency_key, task.concurrency_limit));
    }
    if task.skipped_by > 0 {
        lines.push(format!("skipped:    task {} did not succeed", task.skipped_by));
    }
    if !task.worker_id.is_empty() {
        lines.push(format!("worker:     {} (token {})", task.worker_id, task.token));
    }
    for (n, a) in task.attempts.iter().enumerate() {
        let outcome = if a.outcome.is_empty() { "open" } else { a.outcome.as_str() };
        lines.push(format!("attempt {}:  {} on {} (token {})", n + 1, outcome, a.worker_id, a.token));
        let times = [("assigned", a.assigned_at_ms), ("started", a.started_at_ms), ("ended", a.ended_at_ms)];
        for (what, ms) in times.into_iter().filter(|&(_, ms)| ms > 0) {
            lines.push(format!("  {what:<9} {}", when(ms)));
        }
    }
    if task.has_result {
        lines.push(format!("exit_code:  {}", task.exit_code));
        if task.streams_apart {
            lines.push(format!("stdout:     {}", task.output_tail));
            lines.push(format!("stderr:     {}", task.stderr_tail));
        } else {
            lines.push(format!("output:     {}", task.output_tail));
        }
        for cut in raftsched_api::json::output_cuts(task) {
            lines.push(format!("note:       {cut}"));
        }
    }
    lines.join("\n")
}

/// A Unix-ms instant for people: RFC 3339 in UTC and how long ago (or how far ahead) it is.
pub fn when(ms: u64) -> String {
    let at = format_ms(ms);
    let now = crate::unix_now_ms();
    match now.checked_sub(ms) {
        Some(ago) => format!("{at} ({} ago)", age(ago)),
        None => format!("{at} (in {})", age(ms - now)),
    }
}

/// A duration in ms, to the largest whole unit people read at a glance: 850ms, 12s, 3m20s, 5h2m, 4d3h.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

pub fn status_json(status: &api::ClusterStatusResponse) -> Value {
    let members: Vec<Value> = status.members.iter().map(raftsched_client::api::json::member_json).collect();
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

/// A Unix-ms instant as RFC 3339 in UTC (milliseconds shown only when not zero).
pub fn format_ms(ms: u64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms as i64) {
        Some(t) if ms.is_multiple_of(1000) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => format!("{ms} ms"),
    }
}
