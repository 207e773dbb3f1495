//! Prometheus metrics (`GET /metrics` on the `--http` port), rendered in the text format from
//! state the replica already keeps: Raft metrics, the applied state, a few counters, and the
//! store's sync-latency histogram. No metrics library: the set is small and the format is simple.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use openraft::ServerState;
use raftsched_state::observed::{FINAL_STATE_NAMES, OUTCOME_NAMES, QUEUE_WAIT_BUCKETS_MS};
use raftsched_state::{TaskState, WorkerState};
use raftsched_store::{SyncStats, SYNC_BUCKETS_US};

use crate::process_metrics::line;
use crate::replica::Replica;
use crate::rpc_stats::RPC_BUCKETS_US;

/// Keeps `replica.snapshot_seen` current (the time the snapshot index last changed) and counts
/// leader changes. Ends when Raft stops (its metrics channel closes).
pub async fn watch_raft(replica: Arc<Replica>) {
    let mut metrics = replica.raft.metrics();
    let mut leader = metrics.borrow().current_leader;
    loop {
        let (index, now_leading) = {
            let m = metrics.borrow_and_update();
            (m.snapshot.map_or(0, |l| l.index), m.current_leader)
        };
        if now_leading != leader {
            leader = now_leading;
            replica.counters.leader_changes_total.fetch_add(1, Relaxed);
        }
        {
            let mut seen = replica.snapshot_seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.0 != index {
                *seen = (index, std::time::Instant::now());
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The replica's `/metrics` in Prometheus text format, section by section.
pub fn render(replica: &Replica, sync: &Arc<SyncStats>) -> String {
    let mut out = String::with_capacity(4096);
    let m = replica.raft.metrics().borrow().clone();
    line(&mut out, "raftsched_build_info", "Always 1; the labels say which build runs.", "gauge");
    let commit = if crate::BUILD_COMMIT.is_empty() { "unknown" } else { crate::BUILD_COMMIT };
    let _ = writeln!(out, "raftsched_build_info{{version=\"{}\",commit=\"{commit}\"}} 1", env!("CARGO_PKG_VERSION"));
    line(&mut out, "raftsched_has_leader", "1 while this replica knows a leader.", "gauge");
    let _ = writeln!(out, "raftsched_has_leader {}", u8::from(m.current_leader.is_some()));
    line(&mut out, "raftsched_leader_changes_total", "Times the leader this replica knows of changed.", "counter");
    let _ = writeln!(out, "raftsched_leader_changes_total {}", replica.counters.leader_changes_total.load(Relaxed));
    crate::process_metrics::render(&mut out);
    raft_series(&mut out, replica, &m);
    state_series(&mut out, replica);
    counter_series(&mut out, replica);
    security(&mut out, replica);
    availability(&mut out, replica);
    outcomes(&mut out, replica);
    disk_series(&mut out, sync);
    request_series(&mut out, replica);
    out
}

/// Raft's view: term, role, log, commit, apply, snapshot, purge indexes.
fn raft_series(
    out: &mut String,
    replica: &Replica,
    m: &openraft::RaftMetrics<raftsched_store::NodeId, openraft::BasicNode>,
) {
    line(out, "raftsched_raft_term", "Current Raft term.", "gauge");
    let _ = writeln!(out, "raftsched_raft_term {}", m.current_term);
    line(out, "raftsched_raft_role", "1 for this replica's current role.", "gauge");
    for (role, state) in [
        ("leader", ServerState::Leader),
        ("follower", ServerState::Follower),
        ("candidate", ServerState::Candidate),
        ("learner", ServerState::Learner),
    ] {
        let _ = writeln!(out, "raftsched_raft_role{{role=\"{role}\"}} {}", u8::from(m.state == state));
    }
    line(out, "raftsched_raft_last_log_index", "Index of the last entry in this replica's log.", "gauge");
    let _ = writeln!(out, "raftsched_raft_last_log_index {}", m.last_log_index.unwrap_or(0));
    line(out, "raftsched_raft_commit_index", "Highest log index this replica knows to be committed.", "gauge");
    let _ = writeln!(out, "raftsched_raft_commit_index {}", replica.committed_index.load(Relaxed));
    line(out, "raftsched_raft_applied_index", "Index of the last entry applied to the state machine.", "gauge");
    let _ = writeln!(out, "raftsched_raft_applied_index {}", m.last_applied.map_or(0, |l| l.index));
    line(out, "raftsched_raft_snapshot_index", "Index covered by the last snapshot.", "gauge");
    let _ = writeln!(out, "raftsched_raft_snapshot_index {}", m.snapshot.map_or(0, |l| l.index));
    line(out, "raftsched_raft_purged_index", "Log entries up to this index are compacted away.", "gauge");
    let _ = writeln!(out, "raftsched_raft_purged_index {}", m.purged.map_or(0, |l| l.index));
    line(
        out,
        "raftsched_snapshot_age_seconds",
        "Time since this replica took or installed its last snapshot (or started, if it has not since).",
        "gauge",
    );
    let seen_at = replica.snapshot_seen.lock().unwrap_or_else(|p| p.into_inner()).1;
    let _ = writeln!(out, "raftsched_snapshot_age_seconds {:.3}", seen_at.elapsed().as_secs_f64());
    line(
        out,
        "raftsched_raft_log_entries",
        "Entries in this replica's log (last log index minus purged index).",
        "gauge",
    );
    let _ = writeln!(
        out,
        "raftsched_raft_log_entries {}",
        m.last_log_index.unwrap_or(0).saturating_sub(m.purged.map_or(0, |l| l.index))
    );
}

/// Tasks and workers by state in this replica's applied state.
fn state_series(out: &mut String, replica: &Replica) {
    let (tasks, workers) = replica.sm.read(|sm| {
        let tasks: Vec<(TaskState, u64)> = TaskState::ALL.iter().map(|s| (*s, sm.count(*s))).collect();
        let mut workers = [0u64; 3];
        for n in sm.workers() {
            workers[match n.state {
                WorkerState::Ready => 0,
                WorkerState::Draining => 1,
                WorkerState::Down => 2,
            }] += 1;
        }
        (tasks, workers)
    });
    line(out, "raftsched_tasks", "Tasks by state in this replica's applied state.", "gauge");
    for (state, n) in tasks {
        let _ = writeln!(out, "raftsched_tasks{{state=\"{}\"}} {n}", state.as_str());
    }
    line(out, "raftsched_workers", "Registered workers by state.", "gauge");
    for (state, n) in ["ready", "draining", "down"].iter().zip(workers) {
        let _ = writeln!(out, "raftsched_workers{{state=\"{state}\"}} {n}");
    }
}

/// Requests, proposals, forwards and heartbeats served.
fn counter_series(out: &mut String, replica: &Replica) {
    let c = &replica.counters;
    for (name, help, value) in [
        ("raftsched_proposals_total", "Client writes proposed while leading.", &c.proposals_total),
        ("raftsched_forwarded_requests_total", "Client writes forwarded to the leader.", &c.forwarded_total),
        ("raftsched_requests_total", "Client requests served.", &c.requests_total),
        (
            "raftsched_worker_heartbeats_total",
            "Worker heartbeats answered as leader (no log entry).",
            &c.heartbeats_total,
        ),
    ] {
        line(out, name, help, "counter");
        let _ = writeln!(out, "{name} {}", value.load(Relaxed));
    }
}

/// Durable sync latency and the syncs that also ran syncfs.
fn disk_series(out: &mut String, sync: &SyncStats) {
    line(
        out,
        "raftsched_disk_sync_seconds",
        "Latency of durable syncs (sled flush + fdatasync, + syncfs when sled wrote blob files).",
        "histogram",
    );
    let sync_buckets: Vec<u64> = sync.buckets.iter().map(|b| b.load(Relaxed)).collect();
    histogram(
        out,
        "raftsched_disk_sync_seconds",
        "",
        SYNC_BUCKETS_US.iter().copied().zip(sync_buckets),
        sync.count.load(Relaxed),
        sync.sum_us.load(Relaxed),
    );
    line(
        out,
        "raftsched_disk_fs_syncs_total",
        "Durable syncs that also ran syncfs (new sled blob files, or the first sync).",
        "counter",
    );
    let _ = writeln!(out, "raftsched_disk_fs_syncs_total {}", sync.fs_syncs.load(Relaxed));
}

/// gRPC request latency by RPC and answer code.
fn request_series(out: &mut String, replica: &Replica) {
    line(
        out,
        "raftsched_request_duration_seconds",
        "gRPC request latency by RPC (Service/Method) and answer code, arrival to response.",
        "histogram",
    );
    for (rpc, code, h) in replica.rpc_stats.snapshot() {
        histogram(
            out,
            "raftsched_request_duration_seconds",
            &format!("rpc=\"{rpc}\",code=\"{code}\","),
            RPC_BUCKETS_US.iter().copied().zip(h.buckets.iter().map(|b| b.load(Relaxed))),
            h.count.load(Relaxed),
            h.sum_us.load(Relaxed),
        );
    }
}

/// Overload and security series: RESOURCE_EXHAUSTED answers by the limit reached, requests
/// refused by authentication by service and reason, and the security mode.
/// Clock skew, readiness and check-quorum (`clock.rs`, `health.rs`, `quorum.rs`).
fn availability(out: &mut String, replica: &Replica) {
    let verdict = replica.clocks.published();
    line(
        out,
        "raftsched_clock_skew_seconds",
        "This replica's wall clock minus the median of the cluster's clocks (absent while unknown).",
        "gauge",
    );
    if let Some(skew_ms) = verdict.skew_ms() {
        let _ = writeln!(out, "raftsched_clock_skew_seconds {}", skew_ms as f64 / 1000.0);
    }
    line(out, "raftsched_clock_skew_seconds_max", "clock_skew_ms_max, in seconds.", "gauge");
    let _ = writeln!(out, "raftsched_clock_skew_seconds_max {}", replica.clocks.bound_ms as f64 / 1000.0);
    line(out, "raftsched_ready", "1 while this replica can serve linearizable requests (/readyz).", "gauge");
    let _ = writeln!(out, "raftsched_ready {}", u8::from(replica.readiness.borrow().is_ok()));
    line(out, "raftsched_no_quorum", "1 while this replica knows no quorum is in touch.", "gauge");
    let _ = writeln!(out, "raftsched_no_quorum {}", u8::from(replica.no_quorum().is_some()));
}

fn security(out: &mut String, replica: &Replica) {
    let name = "raftsched_requests_rejected_overload_total";
    line(out, name, "Requests refused with RESOURCE_EXHAUSTED, by the limit reached.", "counter");
    let mut overload = replica.rpc_stats.overload_counts();
    if !overload.iter().any(|(r, _)| r == "in_flight_requests_max") {
        overload.push(("in_flight_requests_max".into(), 0));
    }
    for (reason, n) in overload {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
    }
    let auth = &replica.auth;
    let name = "raftsched_requests_refused_auth_total";
    line(out, name, "Requests refused for their credentials (UNAUTHENTICATED, PERMISSION_DENIED).", "counter");
    for service in crate::auth::Service::ALL {
        for reason in crate::auth::Refusal::ALL {
            let n = auth.refusals.count(service, reason);
            let _ = writeln!(out, "{name}{{service=\"{}\",reason=\"{}\"}} {n}", service.label(), reason.label());
        }
    }
    let name = "raftsched_peer_calls_unauthenticated_total";
    line(out, name, "Raft calls let through without a proof (--accept-unauthenticated-peers).", "counter");
    let _ = writeln!(out, "{name} {}", auth.unauthenticated_peer_calls.load(Relaxed));
    let name = "raftsched_insecure";
    line(out, name, "1 when the replica was started with --insecure.", "gauge");
    let _ = writeln!(out, "{name} {}", u8::from(auth.insecure));
}

/// Task outcomes and queue waits as `apply` saw them (`raftsched_state::observed`): every replica
/// applies the same entries, so every replica shows the same figures for the entries it applied.
fn outcomes(out: &mut String, replica: &Replica) {
    let seen = replica.sm.read(|sm| sm.observed().clone());
    line(out, "raftsched_task_attempts_ended_total", "Attempts ended, by outcome (as applied here).", "counter");
    for (outcome, n) in OUTCOME_NAMES.iter().zip(seen.attempts_ended) {
        let _ = writeln!(out, "raftsched_task_attempts_ended_total{{outcome=\"{outcome}\"}} {n}");
    }
    line(
        out,
        "raftsched_tasks_ended_total",
        "Tasks that reached a final state, by state (as applied here).",
        "counter",
    );
    for (state, n) in FINAL_STATE_NAMES.iter().zip(seen.tasks_ended) {
        let _ = writeln!(out, "raftsched_tasks_ended_total{{state=\"{state}\"}} {n}");
    }
    line(
        out,
        "raftsched_task_queue_wait_seconds",
        "Time from when a task could run (submitted, run-at time, retry backoff) to its assignment.",
        "histogram",
    );
    let cumulative = seen.queue_wait_buckets.iter().scan(0u64, |sum, n| {
        *sum += n;
        Some(*sum)
    });
    let bounds_us = QUEUE_WAIT_BUCKETS_MS.iter().map(|ms| ms * 1_000);
    let count = seen.queue_wait_buckets.iter().sum();
    let sum_us = seen.queue_wait_sum_ms.saturating_mul(1_000);
    histogram(out, "raftsched_task_queue_wait_seconds", "", bounds_us.zip(cumulative), count, sum_us);
}

/// One histogram's series: `_bucket` lines (bounds in microseconds, shown in seconds) with the
/// `+Inf` bucket, `_sum` and `_count`. `labels` is empty or `name="value",` (with the comma).
fn histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    buckets: impl Iterator<Item = (u64, u64)>,
    count: u64,
    sum_us: u64,
) {
    for (bound_us, n) in buckets {
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{}\"}} {n}", bound_us as f64 / 1e6);
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
    let plain = labels.trim_end_matches(',');
    let braces = if plain.is_empty() { String::new() } else { format!("{{{plain}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {}", sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{braces} {count}");
}
