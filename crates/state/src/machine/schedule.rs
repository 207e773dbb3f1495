//! How the machine applies schedules (`crate::schedule` says what they are): create, pause,
//! delete, and the occurrences each tick starts or records as missed.

use crate::calendar::Timing;
use crate::command::{Rejection, Response};
use crate::concurrency::Concurrency;
use crate::limits;
use crate::machine::StateMachine;
use crate::schedule::{
    occurrence_key, validate_schedule_name, CatchUp, MissReason, OccurrenceRecord, Overlap, Schedule, ScheduleSpec,
};
use crate::task::{TaskId, TaskState};
use std::collections::VecDeque;

impl StateMachine {
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.get(name)
    }

    pub fn schedules(&self) -> impl Iterator<Item = &Schedule> {
        self.schedules.values()
    }

    /// Fires the leader should propose now: each live schedule whose next occurrence is due.
    pub fn plan_fires(&self, now_ms: u64) -> Vec<(String, u64)> {
        self.schedules
            .values()
            .filter(|s| !s.paused)
            .filter_map(|s| s.next_due_ms.filter(|&due| due <= now_ms).map(|due| (s.name.clone(), due)))
            .collect()
    }

    /// Whether a `scheduled` task's time has come (the leader then proposes `ReleaseDue`).
    pub fn has_scheduled_due(&self, now_ms: u64) -> bool {
        self.scheduled.first().is_some_and(|&(at, _)| at <= now_ms)
    }

    /// The earliest instant at which a schedule or a `scheduled` task falls due, so the leader's
    /// timer can sleep until then.
    pub fn next_timer_ms(&self) -> Option<u64> {
        let fires = self.schedules.values().filter(|s| !s.paused).filter_map(|s| s.next_due_ms);
        fires.chain(self.scheduled.first().map(|&(at, _)| at)).min()
    }

    /// Creates schedule `name` whose tasks get `concurrency` (none: as before). The same spec
    /// (and key) again is the same schedule.
    pub(crate) fn create_schedule(
        &mut self,
        index: u64,
        now_ms: u64,
        name: &str,
        spec: &ScheduleSpec,
        concurrency: Option<&Concurrency>,
    ) -> Response {
        let checked = validate_schedule_name(name)
            .and_then(|()| concurrency.map_or(Ok(()), Concurrency::validate))
            .and_then(|()| spec.validate());
        let timing = match checked {
            Ok(timing) => timing,
            Err(reason) => return Response::Rejected(Rejection::Invalid { reason }),
        };
        if let Some(existing) = self.schedules.get(name) {
            if existing.spec == *spec && existing.concurrency.as_ref() == concurrency {
                return Response::ScheduleCreated { created: false, next_due_ms: existing.next_due_ms };
            }
            return Response::Rejected(Rejection::ScheduleExists { name: name.to_string() });
        }
        if self.schedules.len() >= limits::SCHEDULES_MAX {
            let count = self.schedules.len();
            return Response::Rejected(Rejection::TooManySchedules { count, limit: limits::SCHEDULES_MAX });
        }
        let next_due_ms = timing.next_after(now_ms, now_ms);
        let schedule = Schedule {
            name: name.to_string(),
            spec: spec.clone(),
            created_at_ms: now_ms,
            anchor_ms: now_ms,
            paused: false,
            next_due_ms,
            last_task: None,
            runs_total: 0,
            missed_total: 0,
            history: VecDeque::new(),
            version: index,
            concurrency: concurrency.cloned(),
        };
        self.schedules.insert(name.to_string(), schedule);
        Response::ScheduleCreated { created: true, next_due_ms }
    }

    pub(crate) fn delete_schedule(&mut self, name: &str) -> Response {
        // Tasks it created stay, with their keys: deleting a schedule does not cancel its runs.
        match self.schedules.remove(name) {
            Some(_) => Response::ScheduleUpdated { next_due_ms: None },
            None => Response::Rejected(Rejection::NoSchedule { name: name.to_string() }),
        }
    }

    /// Pausing stops firing; resuming starts again from the first occurrence after the resume.
    /// Occurrences that fell while paused were asked not to run: they are not recorded as missed.
    pub(crate) fn set_schedule_paused(&mut self, index: u64, now_ms: u64, name: &str, paused: bool) -> Response {
        let Some(schedule) = self.schedules.get_mut(name) else {
            return Response::Rejected(Rejection::NoSchedule { name: name.to_string() });
        };
        if schedule.paused == paused {
            return Response::ScheduleUpdated { next_due_ms: schedule.next_due_ms };
        }
        schedule.paused = paused;
        schedule.version = index;
        if paused {
            schedule.next_due_ms = None;
        } else {
            // The spec was validated at creation: only the timing is needed here.
            let next = match schedule.spec.timing() {
                Ok(timing @ Timing::Every { .. }) => {
                    schedule.anchor_ms = now_ms;
                    timing.next_after(now_ms, now_ms)
                }
                Ok(timing) => timing.next_after(schedule.anchor_ms, now_ms),
                Err(_) => None,
            };
            schedule.next_due_ms = next;
        }
        Response::ScheduleUpdated { next_due_ms: schedule.next_due_ms }
    }

    /// Fires every occurrence of `name` from `occurrence_ms` (which must be its next due one) up to
    /// `now_ms`: on-time ones run, late ones follow the catch-up policy, each run follows the
    /// overlap policy, and the next due occurrence moves past `now_ms`.
    pub(crate) fn fire_schedule(&mut self, index: u64, now_ms: u64, name: &str, occurrence_ms: u64) -> Response {
        let Some(schedule) = self.schedules.get(name) else {
            return Response::Rejected(Rejection::NoSchedule { name: name.to_string() });
        };
        if schedule.paused || schedule.next_due_ms != Some(occurrence_ms) || now_ms < occurrence_ms {
            return Response::Rejected(Rejection::StaleDecision);
        }
        // Only the timing: the spec was validated at creation, and `create_task` checks the task.
        let Ok(timing) = schedule.spec.timing() else {
            // Only possible if a release changed what parses (e.g. a zone left the database). Stop
            // the schedule rather than refuse: a refusal would leave it due, and the leader would
            // propose the same fire again forever.
            let schedule = self.schedules.get_mut(name).expect("checked above");
            schedule.next_due_ms = None;
            schedule.version = index;
            return Response::Fired { n_run: 0, n_missed: 0, next_due_ms: None };
        };
        let anchor = schedule.anchor_ms;
        let spec = schedule.spec.clone();
        // The latest due occurrence; `occurrence_ms` itself is one, so this exists.
        let latest = timing.last_at_or_before(anchor, now_ms).filter(|&l| l >= occurrence_ms).unwrap_or(occurrence_ms);
        let runs = occurrences_to_run(&timing, anchor, occurrence_ms, latest, now_ms, &spec);
        // Everything before the oldest run (or through `latest` if nothing runs) was missed.
        let missed_until = runs.first().copied().unwrap_or(latest + 1);
        let (count, count_capped) =
            timing.count_between(anchor, occurrence_ms, missed_until, limits::MISSED_COUNT_SCAN_MAX);
        let next_due_ms = timing.next_after(anchor, now_ms.max(latest));
        let schedule = self.schedules.get_mut(name).expect("checked above");
        if count > 0 {
            let last = timing.last_at_or_before(anchor, missed_until - 1).unwrap_or(occurrence_ms);
            let reason = if spec.catch_up == CatchUp::All { MissReason::CatchUpLimit } else { MissReason::Late };
            schedule.record(OccurrenceRecord {
                occurrence_ms,
                last_occurrence_ms: last,
                count,
                count_capped,
                fired_at_ms: now_ms,
                task_id: None,
                missed: Some(reason),
            });
        }
        schedule.next_due_ms = next_due_ms;
        schedule.version = index;
        let (mut n_run, mut n_missed) = (0u32, count);
        for at in runs {
            if self.run_occurrence(index, now_ms, name, at, &spec) {
                n_run += 1;
            } else {
                n_missed += 1;
            }
        }
        Response::Fired { n_run, n_missed, next_due_ms }
    }

    /// Creates the task of one occurrence under the overlap policy; false when it did not run.
    fn run_occurrence(&mut self, index: u64, now_ms: u64, name: &str, at: u64, spec: &ScheduleSpec) -> bool {
        let previous =
            self.schedules[name].last_task.filter(|id| self.tasks.get(id).is_some_and(|t| !t.state.is_terminal()));
        let mut missed = None;
        if let Some(prev) = previous {
            match spec.overlap {
                Overlap::Allow => {}
                Overlap::Forbid => missed = Some(MissReason::Overlap),
                Overlap::Replace => {
                    let cancelled = self.cancel(index, prev, now_ms);
                    debug_assert!(matches!(cancelled, Response::Cancelled { .. }), "{cancelled:?}");
                }
            }
        }
        let mut task_id = None;
        if missed.is_none() {
            let key = occurrence_key(name, at);
            let origin = Some(crate::task::Occurrence { schedule: name.to_string(), occurrence_ms: at });
            match self.create_task(index, now_ms, &key, &spec.task, origin) {
                Response::Submitted { id, created } => {
                    if created {
                        self.limit_concurrency(id, self.schedules[name].concurrency.clone());
                    }
                    task_id = Some(id)
                }
                Response::Rejected(r) => missed = Some(MissReason::Refused { reason: r.to_string() }),
                other => unreachable!("create_task answered {other:?}"),
            }
        }
        let schedule = self.schedules.get_mut(name).expect("schedule of a running fire");
        if let Some(id) = task_id {
            schedule.last_task = Some(id);
        }
        let ran = task_id.is_some();
        schedule.record(OccurrenceRecord {
            occurrence_ms: at,
            last_occurrence_ms: at,
            count: 1,
            count_capped: false,
            fired_at_ms: now_ms,
            task_id,
            missed,
        });
        ran
    }

    /// Moves `scheduled` tasks whose time has come to pending, at most `RELEASE_BATCH_LEN_MAX`.
    pub(crate) fn release_due(&mut self, index: u64, now_ms: u64) -> Response {
        let due: Vec<TaskId> = self
            .scheduled
            .iter()
            .take_while(|&&(at, _)| at <= now_ms)
            .take(limits::RELEASE_BATCH_LEN_MAX)
            .map(|&(_, id)| id)
            .collect();
        for &id in &due {
            self.transition(index, now_ms, id, TaskState::Pending);
        }
        Response::Released { n_released: due.len() as u32 }
    }

    /// Checks the schedules' invariants (part of `check_invariants`).
    pub(crate) fn check_schedules(&self) -> Result<(), String> {
        if self.schedules.len() > limits::SCHEDULES_MAX {
            return Err(format!("{} schedules, over schedules_max", self.schedules.len()));
        }
        for (name, s) in &self.schedules {
            if s.name != *name {
                return Err(format!("schedule stored under {name:?} is named {:?}", s.name));
            }
            if s.paused && s.next_due_ms.is_some() {
                return Err(format!("paused schedule {name:?} has a next occurrence"));
            }
            if s.history.len() > limits::SCHEDULE_HISTORY_LEN_MAX {
                return Err(format!("schedule {name:?} keeps {} records", s.history.len()));
            }
            if s.history.iter().zip(s.history.iter().skip(1)).any(|(a, b)| a.last_occurrence_ms >= b.occurrence_ms) {
                return Err(format!("schedule {name:?} records occurrences out of order or twice"));
            }
            if let (Some(due), Some(last)) = (s.next_due_ms, s.history.back()) {
                if due <= last.last_occurrence_ms {
                    return Err(format!("schedule {name:?} is due at {due}, not after its last occurrence"));
                }
            }
            if let Some(id) = s.last_task {
                let task = self.tasks.get(&id).ok_or(format!("schedule {name:?}'s last task {id} is unknown"))?;
                if task.origin.as_ref().map(|o| o.schedule.as_str()) != Some(name.as_str()) {
                    return Err(format!("schedule {name:?}'s last task {id} is not one of its occurrences"));
                }
            }
        }
        Ok(())
    }
}

/// The occurrences from `first` (the next due one) to `latest` that run when fired at `now_ms`:
/// those within the start deadline, and the late ones the catch-up policy asks for, oldest
/// first. Bounded: the deadline is at most an hour and occurrences at least a second apart, and
/// catch-up runs at most `max_catch_up`.
fn occurrences_to_run(
    timing: &Timing,
    anchor: u64,
    first: u64,
    latest: u64,
    now_ms: u64,
    spec: &ScheduleSpec,
) -> Vec<u64> {
    let cutoff = now_ms.saturating_sub(spec.start_deadline_ms);
    let mut on_time = Vec::new();
    let mut t = Some(latest);
    while let Some(at) = t.filter(|&at| at >= cutoff && at >= first) {
        on_time.push(at);
        t = if at == first { None } else { timing.last_at_or_before(anchor, at - 1) };
    }
    // `t` is now the newest late occurrence, if any.
    let mut late_runs = Vec::new();
    let mut t = t.filter(|&at| at >= first);
    let late_wanted = match spec.catch_up {
        CatchUp::None => 0,
        CatchUp::One if on_time.is_empty() => 1,
        CatchUp::One => 0,
        CatchUp::All => spec.max_catch_up,
    };
    while let Some(at) = t.filter(|_| late_runs.len() < late_wanted as usize) {
        late_runs.push(at);
        t = if at == first { None } else { timing.last_at_or_before(anchor, at - 1) };
    }
    let mut runs: Vec<u64> = late_runs.into_iter().chain(on_time).collect();
    runs.sort_unstable();
    runs.dedup();
    runs
}
