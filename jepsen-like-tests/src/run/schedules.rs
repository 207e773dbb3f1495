//! The `schedules` workload: recurring schedules that fire through every fault, and the checks
//! that each occurrence made at most one task and that none vanished unrecorded.
//!
//! Schedules are set up once before the faults (not recorded: they are not part of the
//! linearizability model) and paused when the faults stop, so the run can wait for every task to
//! end. What they did is then judged from the final state: the schedules' records and the tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use raftsched_api as api;
use raftsched_client::Client;

use super::checks::{invariant, Invariant};

/// Every occurrence interval, in ms (`@every 1s`).
pub const INTERVAL_MS: u64 = 1_000;

/// The schedules: (name, overlap policy, task). `forbid` with a task longer than the interval
/// exercises the overlap decision on every fire.
pub const SCHEDULES: [(&str, &str, &str); 2] =
    [("every-1s", "allow", "echo:tick"), ("forbid-1s", "forbid", "sleep:1500")];

fn spec(overlap: &str, builtin: &str) -> api::ScheduleSpec {
    let (name, arg) = builtin.split_once(':').unwrap_or((builtin, ""));
    api::ScheduleSpec {
        cron: format!("@every {INTERVAL_MS}ms"),
        timezone: "UTC".into(),
        overlap: overlap.into(),
        catch_up: "all".into(),
        max_catch_up: 100,
        start_deadline_ms: 10_000,
        task: Some(raftsched_client::builtin(name, arg)),
    }
}

/// Creates the schedules (retrying until `deadline`; creation is idempotent).
pub async fn create(client: &Client, deadline: Instant) -> Result<(), String> {
    for (name, overlap, task) in SCHEDULES {
        retry(deadline, || client.create_schedule(name, spec(overlap, task))).await?;
    }
    Ok(())
}

/// Pauses every schedule so that the run can wait for their tasks to end.
pub async fn pause_all(client: &Client, deadline: Instant) -> Result<(), String> {
    for (name, _, _) in SCHEDULES {
        retry(deadline, || client.pause_schedule(name, true)).await?;
    }
    Ok(())
}

/// The schedules' final records.
pub async fn fetch(client: &Client) -> Result<Vec<api::Schedule>, String> {
    client.list_schedules(false).await.map(|r| r.schedules).map_err(|e| e.to_string())
}

async fn retry<T, F, Fut>(deadline: Instant, mut call: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, raftsched_client::ClientError>>,
{
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A schedule's tasks, by schedule name.
type Runs<'a> = BTreeMap<&'a str, Vec<&'a api::Task>>;

/// The checks over the final schedules and tasks.
pub fn invariants(schedules: &[api::Schedule], tasks: &[api::Task]) -> Vec<Invariant> {
    let mut runs: Runs = BTreeMap::new();
    for t in tasks.iter().filter(|t| !t.schedule.is_empty()) {
        runs.entry(t.schedule.as_str()).or_default().push(t);
    }
    vec![once_per_occurrence(&runs), every_occurrence_accounted(schedules, &runs), forbid_never_overlaps(&runs)]
}

/// One task per occurrence, under the occurrence's key.
fn once_per_occurrence(runs: &Runs) -> Invariant {
    let mut problems = Vec::new();
    let mut n_occurrences = 0;
    for (name, list) in runs {
        let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
        for t in list {
            if let Some(other) = seen.insert(t.occurrence_ms, t.id) {
                problems
                    .push(format!("schedule {name}: occurrence {} made tasks {other} and {}", t.occurrence_ms, t.id));
            }
            let key = format!("schedule:{name}:{}", t.occurrence_ms);
            if t.key != key {
                problems.push(format!("task {} of {name} has key {:?}, not {key:?}", t.id, t.key));
            }
        }
        n_occurrences += seen.len();
    }
    let detail = format!("{n_occurrences} occurrences of {} schedules ran once each", runs.len());
    invariant("one task per schedule occurrence", problems, detail)
}

/// Every occurrence from the first to the last fired ran or was recorded missed, exactly once.
fn every_occurrence_accounted(schedules: &[api::Schedule], runs: &Runs) -> Invariant {
    let mut problems = Vec::new();
    let mut n_accounted = 0u64;
    for (name, _, _) in SCHEDULES {
        let Some(s) = schedules.iter().find(|s| s.name == name) else {
            problems.push(format!("schedule {name} is gone"));
            continue;
        };
        let ran: BTreeSet<u64> =
            runs.get(name).map(|l| l.iter().map(|t| t.occurrence_ms).collect()).unwrap_or_default();
        n_accounted += account(name, s, &ran, &mut problems);
    }
    invariant(
        "every schedule occurrence ran or was recorded missed",
        problems,
        format!("{n_accounted} occurrences accounted for"),
    )
}

/// Checks schedule `s`'s occurrences (`ran`: those a task ran for) against its counts and its
/// history; how many occurrences it should have had.
fn account(name: &str, s: &api::Schedule, ran: &BTreeSet<u64>, problems: &mut Vec<String>) -> u64 {
    if ran.len() as u64 != s.runs_total {
        problems.push(format!("schedule {name} says {} runs, {} tasks exist", s.runs_total, ran.len()));
    }
    let mut missed = BTreeSet::new();
    for r in s.history.iter().filter(|r| !r.missed.is_empty()) {
        missed.extend((r.occurrence_ms..=r.last_occurrence_ms).step_by(INTERVAL_MS as usize));
    }
    let Some(&last) = ran.iter().chain(missed.iter()).max() else { return 0 };
    let expected: BTreeSet<u64> = (s.created_at_ms + INTERVAL_MS..=last).step_by(INTERVAL_MS as usize).collect();
    if s.runs_total + s.missed_total != expected.len() as u64 {
        problems.push(format!(
            "schedule {name}: {} runs + {} missed for {} occurrences",
            s.runs_total,
            s.missed_total,
            expected.len()
        ));
    }
    // The history keeps the newest records only: check the window it covers.
    let window_start = s.history.first().map_or(u64::MAX, |r| r.occurrence_ms);
    for o in expected.range(window_start..) {
        match (ran.contains(o), missed.contains(o)) {
            (true, true) => problems.push(format!("schedule {name}: occurrence {o} ran and was missed")),
            (false, false) => problems.push(format!("schedule {name}: occurrence {o} vanished")),
            _ => {}
        }
    }
    expected.len() as u64
}

/// forbid: the previous run has ended (for good) before the next one is first assigned.
fn forbid_never_overlaps(runs: &Runs) -> Invariant {
    let mut problems = Vec::new();
    for (name, overlap, _) in SCHEDULES.iter().filter(|(_, o, _)| *o == "forbid") {
        let mut list = runs.get(name).cloned().unwrap_or_default();
        list.sort_by_key(|t| t.occurrence_ms);
        for pair in list.windows(2) {
            let ended = matches!(pair[0].state.as_str(), "succeeded" | "failed" | "cancelled");
            let prev_end = pair[0].attempts.iter().map(|a| a.ended_at_ms).max().unwrap_or(0);
            let next_start = pair[1].attempts.first().map_or(u64::MAX, |a| a.assigned_at_ms);
            if !ended || next_start < prev_end {
                problems.push(format!(
                    "schedule {name} ({overlap}): task {} assigned at {next_start} before task {} ({}) ended at {prev_end}",
                    pair[1].id, pair[0].id, pair[0].state
                ));
            }
        }
    }
    invariant("forbid: never two runs of a schedule alive", problems, "no overlapping runs".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64, name: &str, occurrence_ms: u64, assigned: u64, ended: u64) -> api::Task {
        api::Task {
            id,
            key: format!("schedule:{name}:{occurrence_ms}"),
            state: "succeeded".into(),
            schedule: name.into(),
            occurrence_ms,
            attempts: vec![api::Attempt { assigned_at_ms: assigned, ended_at_ms: ended, ..Default::default() }],
            ..Default::default()
        }
    }

    fn schedule(name: &str, runs: &[u64], missed: &[(u64, u64)]) -> api::Schedule {
        let mut history: Vec<api::OccurrenceRecord> = runs
            .iter()
            .map(|&o| api::OccurrenceRecord { occurrence_ms: o, last_occurrence_ms: o, count: 1, ..Default::default() })
            .chain(missed.iter().map(|&(a, b)| api::OccurrenceRecord {
                occurrence_ms: a,
                last_occurrence_ms: b,
                count: (b - a) / INTERVAL_MS + 1,
                missed: "late".into(),
                ..Default::default()
            }))
            .collect();
        history.sort_by_key(|r| r.occurrence_ms);
        api::Schedule {
            name: name.into(),
            created_at_ms: 0,
            runs_total: runs.len() as u64,
            missed_total: missed.iter().map(|(a, b)| (b - a) / INTERVAL_MS + 1).sum(),
            history,
            ..Default::default()
        }
    }

    fn holds(schedules: &[api::Schedule], tasks: &[api::Task]) -> Vec<bool> {
        invariants(schedules, tasks).iter().map(|i| i.holds).collect()
    }

    #[test]
    fn a_clean_run_holds() {
        let s = [
            schedule("every-1s", &[1_000, 4_000], &[(2_000, 3_000)]),
            schedule("forbid-1s", &[1_000, 3_000], &[(2_000, 2_000)]),
        ];
        let t = [
            task(1, "every-1s", 1_000, 1_010, 1_020),
            task(2, "every-1s", 4_000, 4_010, 4_020),
            task(3, "forbid-1s", 1_000, 1_010, 2_500),
            task(4, "forbid-1s", 3_000, 3_010, 3_020),
        ];
        assert_eq!(holds(&s, &t), vec![true, true, true]);
    }

    #[test]
    fn a_second_task_for_an_occurrence_a_vanished_occurrence_and_an_overlap_are_caught() {
        let s = [schedule("every-1s", &[1_000, 3_000], &[]), schedule("forbid-1s", &[1_000, 2_000], &[])];
        let t = [
            task(1, "every-1s", 1_000, 1_010, 1_020),
            task(2, "every-1s", 1_000, 1_010, 1_020),
            task(3, "every-1s", 3_000, 3_010, 3_020),
            task(4, "forbid-1s", 1_000, 1_010, 2_500),
            task(5, "forbid-1s", 2_000, 2_010, 2_020),
        ];
        // Occurrence 2000 of every-1s neither ran nor was recorded; forbid-1s ran 2000 while 1000 ran.
        assert_eq!(holds(&s, &t), vec![false, false, false]);
    }
}
