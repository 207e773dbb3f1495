//! The web status page on the `--http` port: `GET /` is a self-refreshing HTML page (no external
//! assets), `GET /status.json` the data it shows, as this replica sees it: every member's role,
//! term, indexes and lag behind the leader; the workers with slots and heartbeat age; task counts
//! by state; the newest tasks. Served from local state without a read barrier, so it keeps
//! working (and shows what is wrong) when the cluster has no leader.

use serde_json::{json, Value};

use raftsched_state::TaskState;

use crate::replica::{now_ms, Replica};

/// Tasks listed on the page.
pub const RECENT_TASKS_MAX: usize = 25;

pub const PAGE_HTML: &str = include_str!("status_page.html");

pub async fn status_json(replica: &Replica) -> Value {
    let members = replica.cluster_status().await;
    let own = replica.own_status();
    let leader_last = members.iter().filter(|m| m.role == "leader").map(|m| m.last_log_index).max();
    let replicas: Vec<Value> = members
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "addr": m.addr,
                "role": m.role,
                "term": m.term,
                "last_log_index": m.last_log_index,
                "applied_index": m.applied_index,
                "lag": leader_last.filter(|_| m.reachable).map(|l| l.saturating_sub(m.applied_index)),
                "reachable": m.reachable,
                "error": m.error,
                "this": m.id == own.id,
                "clock_skew_ms": if m.clock_skew_known { json!(m.clock_skew_ms) } else { Value::Null },
                "no_quorum": m.no_quorum,
            })
        })
        .collect();
    let beats = replica.beat_times().await;
    let now = now_ms();
    let (workers, counts, recent) = replica.sm.read(|sm| {
        let workers: Vec<Value> = sm
            .nodes()
            .map(|n| {
                json!({
                    "id": n.id,
                    "addr": n.addr,
                    "state": n.state.as_str(),
                    "slots": n.slots,
                    "slots_in_use": n.held.len(),
                    "epoch": n.epoch,
                    "heartbeat_age_ms": now.saturating_sub(crate::liveness::last_heartbeat_ms(n, &beats)),
                })
            })
            .collect();
        let counts: serde_json::Map<String, Value> =
            TaskState::ALL.iter().map(|s| (s.as_str().to_string(), json!(sm.count(*s)))).collect();
        let recent: Vec<Value> = sm
            .newest(RECENT_TASKS_MAX)
            .into_iter()
            .map(|t| {
                json!({
                    "id": t.id,
                    "key": t.key,
                    "state": t.state.as_str(),
                    "attempt": t.attempt(),
                    "worker": t.assignment.as_ref().map(|a| a.worker_id.clone()),
                    "updated_at_ms": t.updated_at_ms,
                    "exit_code": t.result.as_ref().map(|r| r.exit_code),
                })
            })
            .collect();
        (workers, counts, recent)
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
        "security": security_json(&replica.auth),
    })
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
