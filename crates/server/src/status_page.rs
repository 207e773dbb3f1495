//! The web status page on the `--http` port: `GET /` is a self-refreshing HTML page (no external
//! assets), `GET /status.json` the data it shows, as this replica sees it: every member's role,
//! term, indexes and lag behind the leader; the workers with labels, slots and heartbeat age;
//! task counts by state; a page of tasks, newest first (`?state=S` filters, `?before=ID` pages
//! back); one task in full (`?task=ID`: attempts, worker, token, times, exit code, output tail);
//! the schedules with their next occurrence and recent misses. Served from local state without a
//! read barrier, so it keeps working (and shows what is wrong) when the cluster has no leader.
//! Tasks, workers and schedules have the JSON shapes of the CLI and the HTTP API
//! (`raftsched_api::json`).

use serde_json::{json, Value};

use raftsched_api::json::{schedule_json, task_json, worker_json};
use raftsched_state::{TaskId, TaskState};

use crate::convert::{node_to_api, schedule_to_api, task_to_api};
use crate::replica::{now_ms, Replica};

/// Tasks listed on one page.
pub const RECENT_TASKS_MAX: usize = 25;
/// Tasks looked at for one page of a filtered list, at most (a rare state in a large table).
pub const PAGE_SCAN_TASKS_MAX: usize = 100_000;

pub const PAGE_HTML: &str = include_str!("status_page.html");

/// What the page asks for: which tasks to list, and which to show in full.
#[derive(Debug, Default, Clone, Copy)]
pub struct View {
    pub state: Option<TaskState>,
    pub before: Option<TaskId>,
    pub task: Option<TaskId>,
}

impl View {
    /// From `/status.json`'s query string; a bad parameter is an error naming it.
    pub fn parse(query: Option<&str>) -> Result<View, String> {
        // The HTTP API's strict query parser: known names only, each once, decoded.
        let query =
            crate::http_api::Query::parse(query, &["state", "before", "task"]).map_err(|r| r.message().to_string())?;
        let state = match query.get("state").filter(|s| !s.is_empty()) {
            Some(s) => Some(TaskState::parse(s).ok_or_else(|| format!("unknown state {s:?}"))?),
            None => None,
        };
        let id = |name| query.number(name).map_err(|r| r.message().to_string());
        Ok(View { state, before: id("before")?, task: id("task")? })
    }
}

pub async fn status_json(replica: &Replica, view: View) -> Value {
    let members = replica.cluster_status().await;
    let own = replica.own_status();
    let leader_last = members.iter().filter(|m| m.role == "leader").map(|m| m.last_log_index).max();
    let replicas: Vec<Value> = members
        .iter()
        .map(|m| {
            let mut v = raftsched_api::json::member_json(m);
            v["lag"] = json!(leader_last.filter(|_| m.reachable).map(|l| l.saturating_sub(m.applied_index)));
            v["this"] = json!(m.id == own.id);
            v
        })
        .collect();
    let beats = replica.beat_times().await;
    let now = now_ms();
    let (workers, counts, (recent, next_before), task, schedules) = replica.sm.read(|sm| {
        let workers: Vec<Value> = sm.workers().map(|n| worker_json(&node_to_api(n, now, &beats))).collect();
        let counts: serde_json::Map<String, Value> =
            TaskState::ALL.iter().map(|s| (s.as_str().to_string(), json!(sm.count(*s)))).collect();
        let (page, next_before) = sm.newest(view.state, view.before, RECENT_TASKS_MAX, PAGE_SCAN_TASKS_MAX);
        let page: Vec<Value> = page.into_iter().map(|t| redacted(task_json(&task_to_api(t)), &["spec"])).collect();
        let task =
            view.task.map(|id| sm.get(id).map_or(Value::Null, |t| redacted(task_json(&task_to_api(t)), &["spec"])));
        let schedules: Vec<Value> =
            sm.schedules().map(|s| redacted(schedule_json(&schedule_to_api(s)), &["task"])).collect();
        (workers, counts, (page, next_before), task, schedules)
    });
    json!({
        "replica": own.id,
        "leader": (own.current_leader != 0).then_some(own.current_leader),
        "term": own.term,
        "now_ms": now,
        "clock_skew_ms_max": replica.clocks.bound_ms,
        "ready": replica.readiness.borrow().is_ok(),
        "not_ready_reason": replica.readiness.borrow().clone().err(),
        "replicas": replicas,
        "workers": workers,
        "task_counts": counts,
        "recent_tasks": recent,
        "tasks_state": view.state.map(|s| s.as_str()),
        "tasks_next_before": next_before,
        "task": task,
        "schedules": schedules,
        "security": security_json(&replica.auth),
    })
}

/// `value` with the values of the environment at `value[spec]["env"]` hidden: the page and
/// `/status.json` are open to whoever reaches the HTTP port, and environment variables are where
/// tasks get their secrets. The names stay, so the shape is the CLI's.
fn redacted(mut value: Value, spec: &[&str]) -> Value {
    let env = spec.iter().try_fold(&mut value, |v, key| v.get_mut(*key)).and_then(|s| s.get_mut("env"));
    if let Some(Value::Object(env)) = env {
        for v in env.values_mut() {
            *v = json!("<hidden>");
        }
    }
    value
}

/// How this replica checks its callers (never a credential itself).
fn security_json(auth: &crate::auth::Auth) -> serde_json::Value {
    json!({
        "insecure": auth.insecure,
        "tls": auth.tls,
        "tokens": auth.tokens.is_some(),
        "cluster_secret": auth.secret.is_some(),
        "accept_unauthenticated_peers": auth.accept_unauthenticated_peers,
        "peers_authenticated": auth.peers_authenticated(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_hides_environment_values_but_keeps_the_shape() {
        let task = json!({"id": 1, "spec": {"command": ["x"], "env": {"TOKEN": "s3cret", "MODE": "a"}}});
        let shown = redacted(task, &["spec"]);
        assert_eq!(shown["spec"]["env"], json!({"TOKEN": "<hidden>", "MODE": "<hidden>"}));
        assert_eq!(shown["spec"]["command"], json!(["x"]));
        let schedule = json!({"name": "n", "task": {"env": {"K": "v"}}});
        assert_eq!(redacted(schedule, &["task"])["task"]["env"]["K"], "<hidden>");
        assert_eq!(redacted(json!({"id": 2, "spec": null}), &["spec"]), json!({"id": 2, "spec": null}));
    }

    #[test]
    fn views_parse_strictly() {
        let v = View::parse(Some("state=failed&before=9&task=3")).unwrap();
        assert_eq!((v.state, v.before, v.task), (Some(TaskState::Failed), Some(9), Some(3)));
        assert!(View::parse(Some("state=nope")).is_err());
        assert!(View::parse(Some("before=x")).is_err());
        assert!(View::parse(Some("colour=red")).is_err());
        assert!(View::parse(None).is_ok());
    }
}
