//! Schedules and `run_at` tasks through `apply`: exactly one task per occurrence, catch-up and
//! overlap policies, pause/resume, and a property test over fires from several leaders' views.

use proptest::prelude::*;
use raftsched_state::{
    CatchUp, MissReason, Op, Overlap, Rejection, Response, ScheduleSpec, StateMachine, TaskSpec, TaskState,
};

mod common;

use common::Log;

impl Log {
    fn create(&mut self, now_ms: u64, name: &str, spec: ScheduleSpec) -> Option<u64> {
        match self.apply(now_ms, Op::CreateSchedule { name: name.into(), spec: Box::new(spec) }) {
            Response::ScheduleCreated { next_due_ms, .. } => next_due_ms,
            r => panic!("{r:?}"),
        }
    }
    /// What a leader does at `now_ms`: fire every due schedule.
    fn fire_due(&mut self, now_ms: u64) -> Vec<Response> {
        let fires = self.sm.plan_fires(now_ms);
        fires
            .into_iter()
            .map(|(name, occurrence_ms)| self.apply(now_ms, Op::FireSchedule { name, occurrence_ms }))
            .collect()
    }
    /// The occurrence times of the tasks schedule `name` created, in id order.
    fn runs(&self, name: &str) -> Vec<u64> {
        let page = self.sm.list(&raftsched_state::ListFilter { limit: 1000, ..Default::default() });
        page.tasks
            .iter()
            .filter_map(|t| t.origin.as_ref().filter(|o| o.schedule == name).map(|o| o.occurrence_ms))
            .collect()
    }
    fn end_all(&mut self, now_ms: u64, name: &str) {
        let ids: Vec<u64> = self
            .sm
            .list(&raftsched_state::ListFilter { limit: 1000, ..Default::default() })
            .tasks
            .iter()
            .filter(|t| t.origin.as_ref().is_some_and(|o| o.schedule == name) && !t.state.is_terminal())
            .map(|t| t.id)
            .collect();
        for id in ids {
            self.apply(now_ms, Op::Cancel { id });
        }
    }
}

fn every(interval: &str) -> ScheduleSpec {
    ScheduleSpec::new(&format!("@every {interval}"), TaskSpec::builtin("echo", "tick"))
}

#[test]
fn each_occurrence_fires_once_and_a_second_fire_is_stale() {
    let mut log = Log::new();
    assert_eq!(log.create(10_000, "s", every("1s")), Some(11_000));
    assert!(log.fire_due(10_999).is_empty());
    assert_eq!(log.fire_due(11_005), vec![Response::Fired { n_run: 1, n_missed: 0, next_due_ms: Some(12_000) }]);
    // An ex-leader that decided the same fire from an older state: refused, nothing created.
    assert_eq!(
        log.apply(11_010, Op::FireSchedule { name: "s".into(), occurrence_ms: 11_000 }),
        Response::Rejected(Rejection::StaleDecision)
    );
    // Fires ahead of time are refused too.
    assert_eq!(
        log.apply(11_500, Op::FireSchedule { name: "s".into(), occurrence_ms: 12_000 }),
        Response::Rejected(Rejection::StaleDecision)
    );
    log.fire_due(12_001);
    assert_eq!(log.runs("s"), vec![11_000, 12_000]);
    let task = log.sm.get_by_key("schedule:s:12000").unwrap();
    assert_eq!(task.state, TaskState::Pending);
    assert_eq!(task.created_at_ms, 12_001);
    let s = log.sm.schedule("s").unwrap();
    assert_eq!((s.runs_total, s.missed_total, s.next_due_ms), (2, 0, Some(13_000)));
}

#[test]
fn a_fire_within_the_start_deadline_runs_every_late_occurrence() {
    // A failover of 2.5 s: three occurrences are late but within the default 10 s deadline.
    let mut log = Log::new();
    log.create(0, "s", ScheduleSpec { catch_up: CatchUp::None, ..every("1s") });
    log.fire_due(1_000);
    assert_eq!(log.fire_due(4_500), vec![Response::Fired { n_run: 3, n_missed: 0, next_due_ms: Some(5_000) }]);
    assert_eq!(log.runs("s"), vec![1_000, 2_000, 3_000, 4_000]);
}

fn outage(catch_up: CatchUp, max_catch_up: u32) -> (Log, Vec<u64>) {
    let mut log = Log::new();
    let spec = ScheduleSpec { catch_up, max_catch_up, start_deadline_ms: 1_500, ..every("1s") };
    log.create(0, "s", spec);
    log.fire_due(1_000);
    // Down from 1.2 s to 10.3 s: occurrences 2..=10 s fall due; at 10.3 s only 9 and 10 s (within
    // 1.5 s) are on time.
    log.fire_due(10_300);
    let runs = log.runs("s");
    (log, runs)
}

#[test]
fn catch_up_none_records_every_late_occurrence_as_missed() {
    let (log, runs) = outage(CatchUp::None, 10);
    assert_eq!(runs, vec![1_000, 9_000, 10_000]);
    let s = log.sm.schedule("s").unwrap();
    let missed = s.history.iter().find(|r| r.missed.is_some()).unwrap();
    assert_eq!((missed.occurrence_ms, missed.last_occurrence_ms, missed.count), (2_000, 8_000, 7));
    assert_eq!(missed.missed, Some(MissReason::Late));
    assert_eq!((s.runs_total, s.missed_total), (3, 7));
}

#[test]
fn catch_up_one_runs_the_latest_late_occurrence_only_when_nothing_ran_on_time() {
    // With on-time occurrences, late ones are missed under `one`.
    let (_, runs) = outage(CatchUp::One, 10);
    assert_eq!(runs, vec![1_000, 9_000, 10_000]);
    // A longer outage ending right after a due time... where no occurrence is on time.
    let mut log = Log::new();
    log.create(0, "s", ScheduleSpec { catch_up: CatchUp::One, start_deadline_ms: 100, ..every("1s") });
    log.fire_due(1_000);
    log.fire_due(10_300);
    assert_eq!(log.runs("s"), vec![1_000, 10_000]);
    let s = log.sm.schedule("s").unwrap();
    assert_eq!((s.runs_total, s.missed_total), (2, 8));
}

#[test]
fn catch_up_all_runs_each_up_to_the_limit() {
    let (log, runs) = outage(CatchUp::All, 100);
    assert_eq!(runs, (1..=10).map(|s| s * 1_000).collect::<Vec<_>>());
    assert_eq!(log.sm.schedule("s").unwrap().missed_total, 0);
    let (log, runs) = outage(CatchUp::All, 3);
    // The three latest late ones (6, 7, 8 s) plus the on-time 9 and 10 s.
    assert_eq!(runs, vec![1_000, 6_000, 7_000, 8_000, 9_000, 10_000]);
    let s = log.sm.schedule("s").unwrap();
    let missed = s.history.iter().find(|r| r.missed.is_some()).unwrap();
    assert_eq!((missed.occurrence_ms, missed.last_occurrence_ms, missed.count), (2_000, 5_000, 4));
    assert_eq!(missed.missed, Some(MissReason::CatchUpLimit));
}

#[test]
fn overlap_forbid_skips_replace_cancels_allow_runs_both() {
    let mut log = Log::new();
    for (name, overlap) in [("a", Overlap::Allow), ("f", Overlap::Forbid), ("r", Overlap::Replace)] {
        log.create(0, name, ScheduleSpec { overlap, ..every("1s") });
    }
    log.fire_due(1_000);
    log.fire_due(2_000);
    assert_eq!(log.runs("a"), vec![1_000, 2_000]);
    assert_eq!(log.runs("f"), vec![1_000]);
    let f = log.sm.schedule("f").unwrap();
    assert_eq!(f.history.back().unwrap().missed, Some(MissReason::Overlap));
    assert_eq!(log.runs("r"), vec![1_000, 2_000]);
    assert_eq!(log.sm.get_by_key("schedule:r:1000").unwrap().state, TaskState::Cancelled);
    assert_eq!(log.sm.get_by_key("schedule:r:2000").unwrap().state, TaskState::Pending);
    // Once the previous run ends, forbid runs again.
    log.end_all(2_500, "f");
    log.fire_due(3_000);
    assert_eq!(log.runs("f"), vec![1_000, 3_000]);
}

#[test]
fn pause_resume_and_delete() {
    let mut log = Log::new();
    log.create(0, "s", every("1s"));
    log.fire_due(1_000);
    assert_eq!(
        log.apply(1_100, Op::SetSchedulePaused { name: "s".into(), paused: true }),
        Response::ScheduleUpdated { next_due_ms: None }
    );
    assert!(log.fire_due(5_000).is_empty());
    // Resuming counts `@every` from the resume; occurrences while paused are not missed.
    assert_eq!(
        log.apply(5_500, Op::SetSchedulePaused { name: "s".into(), paused: false }),
        Response::ScheduleUpdated { next_due_ms: Some(6_500) }
    );
    log.fire_due(6_500);
    assert_eq!(log.runs("s"), vec![1_000, 6_500]);
    assert_eq!(log.sm.schedule("s").unwrap().missed_total, 0);
    // Same name and spec again: a retry. Another spec: refused.
    assert_eq!(
        log.apply(7_000, Op::CreateSchedule { name: "s".into(), spec: Box::new(every("1s")) }),
        Response::ScheduleCreated { created: false, next_due_ms: Some(7_500) }
    );
    assert_eq!(
        log.apply(7_000, Op::CreateSchedule { name: "s".into(), spec: Box::new(every("2s")) }),
        Response::Rejected(Rejection::ScheduleExists { name: "s".into() })
    );
    assert_eq!(
        log.apply(7_100, Op::DeleteSchedule { name: "s".into() }),
        Response::ScheduleUpdated { next_due_ms: None }
    );
    assert_eq!(
        log.apply(7_200, Op::DeleteSchedule { name: "s".into() }),
        Response::Rejected(Rejection::NoSchedule { name: "s".into() })
    );
    // Its tasks stay.
    assert_eq!(log.runs("s"), vec![1_000, 6_500]);
}

#[test]
fn bad_schedules_are_refused_in_apply() {
    let mut log = Log::new();
    let cases = [
        ("bad name", every("1s")),
        ("s", ScheduleSpec::new("not cron", TaskSpec::builtin("echo", ""))),
        ("s", ScheduleSpec { timezone: "Nowhere/City".into(), ..every("1s") }),
        ("s", every("10ms")),
        ("s", ScheduleSpec { max_catch_up: 1_000, ..every("1s") }),
        ("s", ScheduleSpec::new("@every 1s", TaskSpec::builtin("nope", ""))),
    ];
    for (name, spec) in cases {
        let r = log.apply(0, Op::CreateSchedule { name: name.into(), spec: Box::new(spec) });
        assert!(matches!(r, Response::Rejected(Rejection::Invalid { .. })), "{r:?}");
    }
    assert_eq!(log.sm.schedules().count(), 0);
    // Clients cannot take an occurrence's key.
    let r = log.apply(0, Op::Submit { key: "schedule:s:1000".into(), spec: TaskSpec::builtin("echo", "") });
    assert!(matches!(r, Response::Rejected(Rejection::Invalid { .. })), "{r:?}");
}

#[test]
fn a_task_with_a_run_at_time_waits_scheduled_then_becomes_pending_once() {
    let mut log = Log::new();
    let spec = TaskSpec { run_at_ms: Some(5_000), ..TaskSpec::builtin("echo", "later") };
    let Response::Submitted { id, created: true } =
        log.apply(1_000, Op::Submit { key: "k".into(), spec: spec.clone() })
    else {
        panic!()
    };
    assert_eq!(log.sm.get(id).unwrap().state, TaskState::Scheduled);
    assert_eq!(log.sm.next_timer_ms(), Some(5_000));
    assert_eq!(log.apply(4_999, Op::ReleaseDue), Response::Released { n_released: 0 });
    assert_eq!(log.sm.plan_assignments(4_999, 10), vec![]);
    assert_eq!(log.apply(5_001, Op::ReleaseDue), Response::Released { n_released: 1 });
    assert_eq!(log.sm.get(id).unwrap().state, TaskState::Pending);
    assert_eq!(log.apply(5_002, Op::ReleaseDue), Response::Released { n_released: 0 });
    // A retry of the submit is the same task.
    assert_eq!(log.apply(5_003, Op::Submit { key: "k".into(), spec }), Response::Submitted { id, created: false });
    // A scheduled task can be cancelled before its time; a time in the past is pending at once.
    let later = TaskSpec { run_at_ms: Some(9_000), ..TaskSpec::builtin("echo", "x") };
    let Response::Submitted { id: id2, .. } = log.apply(6_000, Op::Submit { key: "k2".into(), spec: later }) else {
        panic!()
    };
    assert_eq!(log.apply(6_001, Op::Cancel { id: id2 }), Response::Cancelled { id: id2 });
    assert_eq!(log.apply(9_500, Op::ReleaseDue), Response::Released { n_released: 0 });
    let past = TaskSpec { run_at_ms: Some(1), ..TaskSpec::builtin("echo", "x") };
    let Response::Submitted { id: id3, .. } = log.apply(6_000, Op::Submit { key: "k3".into(), spec: past }) else {
        panic!()
    };
    assert_eq!(log.sm.get(id3).unwrap().state, TaskState::Pending);
    let far = TaskSpec { run_at_ms: Some(u64::MAX), ..TaskSpec::builtin("echo", "x") };
    let r = log.apply(6_000, Op::Submit { key: "k4".into(), spec: far });
    assert!(matches!(r, Response::Rejected(Rejection::Invalid { .. })), "{r:?}");
}

#[test]
fn schedules_and_scheduled_tasks_survive_the_snapshot_encoding() {
    let mut log = Log::new();
    log.create(0, "s", ScheduleSpec { overlap: Overlap::Forbid, ..every("1s") });
    log.fire_due(1_000);
    log.fire_due(5_000);
    let spec = TaskSpec { run_at_ms: Some(9_000), ..TaskSpec::builtin("echo", "later") };
    log.apply(5_000, Op::Submit { key: "k".into(), spec });
    let bytes = bincode::serialize(&log.sm).unwrap();
    let restored: StateMachine = bincode::deserialize(&bytes).unwrap();
    assert_eq!(restored, log.sm);
    assert_eq!(restored.check_invariants(), Ok(()));
    assert_eq!(restored.schedule("s").unwrap().next_due_ms, Some(6_000));
    assert_eq!(restored.next_timer_ms(), Some(6_000));
}

/// A step of a generated history: time passes, a leader (current or one with a stale view) fires,
/// the schedule is paused or resumed, or running occurrences end.
#[derive(Clone, Debug)]
enum Step {
    Advance {
        ms: u64,
    },
    FireCurrent,
    /// A fire decided from an older view: a past due time (or a made-up one).
    FireStale {
        back: u64,
    },
    Pause,
    Resume,
    EndRuns,
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u64..4_000).prop_map(|ms| Step::Advance { ms }),
        3 => Just(Step::FireCurrent),
        2 => (0u64..5).prop_map(|back| Step::FireStale { back }),
        1 => Just(Step::Pause),
        1 => Just(Step::Resume),
        1 => Just(Step::EndRuns),
    ]
}

fn arb_spec() -> impl Strategy<Value = ScheduleSpec> {
    (
        prop_oneof![Just("@every 1s"), Just("@every 3s"), Just("*/2 * * * * *"), Just("* * * * *")],
        prop_oneof![Just(CatchUp::None), Just(CatchUp::One), Just(CatchUp::All)],
        prop_oneof![Just(Overlap::Allow), Just(Overlap::Forbid), Just(Overlap::Replace)],
        0u32..4,
        0u64..5_000,
    )
        .prop_map(|(cron, catch_up, overlap, max_catch_up, start_deadline_ms)| ScheduleSpec {
            catch_up,
            overlap,
            max_catch_up,
            start_deadline_ms,
            ..ScheduleSpec::new(cron, TaskSpec::builtin("echo", "p"))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// For any sequence of fires (from the current leader's view or stale ones), pauses, resumes
    /// and ends of runs: each occurrence yields at most one task, occurrences strictly increase,
    /// and without pauses every occurrence up to the last fire is accounted for exactly once (run
    /// or recorded missed).
    #[test]
    fn each_occurrence_yields_at_most_one_task(spec in arb_spec(), steps in prop::collection::vec(arb_step(), 1..60)) {
        let mut log = Log::new();
        let t0 = 1_764_000_000_000u64; // 2025-11-24, a whole second
        let mut now = t0;
        log.create(now, "s", spec.clone());
        let mut seen_due = vec![];
        let mut paused_ever = false;
        let mut last_latest = None;
        for step in steps {
            match step {
                Step::Advance { ms } => now += ms,
                Step::FireCurrent => {
                    for r in log.fire_due(now) {
                        prop_assert!(matches!(r, Response::Fired { .. }), "{:?}", r);
                    }
                }
                Step::FireStale { back } => {
                    let occurrence_ms = seen_due.iter().rev().nth(back as usize).copied().unwrap_or(now.saturating_sub(back * 700));
                    let current = log.sm.schedule("s").and_then(|s| s.next_due_ms);
                    let r = log.apply(now, Op::FireSchedule { name: "s".into(), occurrence_ms });
                    if Some(occurrence_ms) != current {
                        prop_assert_eq!(r, Response::Rejected(Rejection::StaleDecision));
                    }
                }
                Step::Pause => { paused_ever = true; log.apply(now, Op::SetSchedulePaused { name: "s".into(), paused: true }); }
                Step::Resume => { log.apply(now, Op::SetSchedulePaused { name: "s".into(), paused: false }); }
                Step::EndRuns => log.end_all(now, "s"),
            }
            let s = log.sm.schedule("s").unwrap();
            if let Some(due) = s.next_due_ms { seen_due.push(due); }
            if let Some(r) = s.history.back() { last_latest = Some(r.last_occurrence_ms); }
            // Never two tasks for one occurrence; each task's key names its occurrence.
            let runs = log.runs("s");
            let mut sorted = runs.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), runs.len(), "an occurrence ran twice: {:?}", runs);
            prop_assert_eq!(&sorted, &runs, "occurrences ran out of order");
            // Forbid: never two runs of the schedule alive at once.
            if spec.overlap != Overlap::Allow {
                let alive = log.sm.list(&raftsched_state::ListFilter { limit: 1000, ..Default::default() })
                    .tasks.iter().filter(|t| t.origin.is_some() && !t.state.is_terminal()).count();
                prop_assert!(alive <= 1, "{} runs alive under {:?}", alive, spec.overlap);
            }
        }
        if let (false, Some(last)) = (paused_ever, last_latest) {
            let s = log.sm.schedule("s").unwrap();
            let timing = spec.validate().unwrap();
            let first = timing.next_after(t0, t0).unwrap();
            let (expected, _) = timing.count_between(t0, first, last + 1, u64::MAX);
            prop_assert_eq!(s.runs_total + s.missed_total, expected, "occurrences skipped or repeated");
            prop_assert_eq!(s.runs_total as usize, log.runs("s").len());
        }
    }
}
