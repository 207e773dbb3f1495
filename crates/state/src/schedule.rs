//! Recurring schedules: replicated records, and the conditional `FireSchedule` command that turns
//! due occurrences into tasks exactly once.
//!
//! Why this is safe across leader changes: a fire names the occurrence it was decided for
//! (`occurrence_ms`), and `apply` accepts it only while that is still the schedule's `next_due_ms`;
//! applying it moves `next_due_ms` past the fire's time. A second fire of the same occurrence
//! (an ex-leader's, a retry) is therefore `StaleDecision`. Each occurrence's task also carries the
//! idempotency key `schedule:NAME:MS`, so even a logic error here could not create two tasks for one
//! occurrence: the key would name the first.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::calendar::Timing;
use crate::concurrency::Concurrency;
use crate::limits;
use crate::spec::TaskSpec;
use crate::task::TaskId;

/// What to do with an occurrence that falls due while the previous occurrence's task has not ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Overlap {
    /// Run both.
    Allow,
    /// Skip the new occurrence and record it as missed.
    Forbid,
    /// Cancel the running task, then run the new occurrence.
    Replace,
}

/// What to do with occurrences fired later than `start_deadline_ms` after their time (the cluster
/// was down or had no leader).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CatchUp {
    /// Run none of them; record them as missed.
    None,
    /// Run the latest of them (unless an on-time occurrence runs anyway); record the rest.
    One,
    /// Run each, at most `max_catch_up` (the latest ones); record the rest.
    All,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Allow => "allow",
            Overlap::Forbid => "forbid",
            Overlap::Replace => "replace",
        }
    }
    pub fn parse(text: &str) -> Option<Overlap> {
        [Overlap::Allow, Overlap::Forbid, Overlap::Replace].into_iter().find(|o| o.as_str() == text)
    }
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::One => "one",
            CatchUp::All => "all",
        }
    }
    pub fn parse(text: &str) -> Option<CatchUp> {
        [CatchUp::None, CatchUp::One, CatchUp::All].into_iter().find(|c| c.as_str() == text)
    }
}

/// A schedule as created. Creating an existing name again with an equal spec is a retry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// 5 or 6 cron fields, a nickname (`@hourly`), or `@every DURATION`.
    pub cron: String,
    /// IANA zone the cron fields are read in.
    pub timezone: String,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub max_catch_up: u32,
    pub start_deadline_ms: u64,
    /// The task each occurrence runs (`run_at_ms` must be unset).
    pub task: TaskSpec,
}

impl ScheduleSpec {
    /// A spec with the default policies: overlap allow, catch-up one, in UTC.
    pub fn new(cron: &str, task: TaskSpec) -> ScheduleSpec {
        ScheduleSpec {
            cron: cron.to_string(),
            timezone: "UTC".to_string(),
            overlap: Overlap::Allow,
            catch_up: CatchUp::One,
            max_catch_up: limits::CATCH_UP_RUNS_DEFAULT,
            start_deadline_ms: limits::START_DEADLINE_MS_DEFAULT,
            task,
        }
    }

    /// The parsed timing (cron or `@every` in the zone).
    pub fn timing(&self) -> Result<Timing, String> {
        Timing::parse(&self.cron, &self.timezone)
    }

    /// Checks every bound and parses the timing.
    pub fn validate(&self) -> Result<Timing, String> {
        let timing = self.timing()?;
        if self.max_catch_up > limits::CATCH_UP_RUNS_MAX {
            return Err(format!(
                "max catch-up {} is over catch_up_runs_max {}",
                self.max_catch_up,
                limits::CATCH_UP_RUNS_MAX
            ));
        }
        if self.start_deadline_ms > limits::START_DEADLINE_MS_MAX {
            return Err(format!(
                "start deadline {} ms is over start_deadline_ms_max {}",
                self.start_deadline_ms,
                limits::START_DEADLINE_MS_MAX
            ));
        }
        if self.task.run_at_ms.is_some() {
            return Err("a schedule's task cannot have its own run-at time".to_string());
        }
        self.task.validate().map_err(|e| e.to_string())?;
        Ok(timing)
    }
}

/// Checks a schedule name: 1..=64 bytes of `[A-Za-z0-9._-]`.
pub fn validate_schedule_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= limits::SCHEDULE_NAME_BYTES_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("a schedule name must be 1..={} characters of A-Z a-z 0-9 . _ -", limits::SCHEDULE_NAME_BYTES_MAX))
    }
}

/// The idempotency key of occurrence `occurrence_ms` of schedule `name`. Client submits may not use
/// the `schedule:` prefix, so only a fire can create a task under it.
pub fn occurrence_key(name: &str, occurrence_ms: u64) -> String {
    format!("{}{name}:{occurrence_ms}", OCCURRENCE_KEY_PREFIX)
}

pub use crate::spec::OCCURRENCE_KEY_PREFIX;

/// Why an occurrence did not run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MissReason {
    /// Fired after its start deadline and the catch-up policy did not run it.
    Late,
    /// `--catch-up all` ran `max_catch_up` later ones instead.
    CatchUpLimit,
    /// `--overlap forbid` and the previous occurrence's task had not ended.
    Overlap,
    /// The task could not be created (e.g. tasks_pending_max reached).
    Refused { reason: String },
}

impl MissReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            MissReason::Late => "late",
            MissReason::CatchUpLimit => "catch_up_limit",
            MissReason::Overlap => "overlap",
            MissReason::Refused { .. } => "refused",
        }
    }
}

/// What became of one occurrence, or of a range of consecutive missed occurrences.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OccurrenceRecord {
    /// The (first) occurrence's scheduled time.
    pub occurrence_ms: u64,
    /// The last occurrence of the range (= `occurrence_ms` for a single one).
    pub last_occurrence_ms: u64,
    /// Occurrences in the range; a lower bound when `count_capped`.
    pub count: u64,
    pub count_capped: bool,
    /// The leader's time when it fired them.
    pub fired_at_ms: u64,
    /// The task that runs it, or why none does.
    pub task_id: Option<TaskId>,
    pub missed: Option<MissReason>,
}

/// A schedule's replicated record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    pub spec: ScheduleSpec,
    pub created_at_ms: u64,
    /// `@every` occurrences are `anchor_ms + k * interval` (the creation or last resume time).
    pub anchor_ms: u64,
    pub paused: bool,
    /// The next occurrence to fire; `None` when paused or the expression never matches again.
    pub next_due_ms: Option<u64>,
    /// The task of the latest occurrence that ran (the one overlap policies look at).
    pub last_task: Option<TaskId>,
    pub runs_total: u64,
    pub missed_total: u64,
    /// The newest `SCHEDULE_HISTORY_LEN_MAX` records, oldest first.
    pub history: VecDeque<OccurrenceRecord>,
    /// Log index of the last change.
    pub version: u64,
    /// The concurrency key every task it creates gets (`schedule create --concurrency-key`). Not
    /// in this type's own encoding: the format layer carries it beside the state from format 9.
    #[serde(skip)]
    pub concurrency: Option<Concurrency>,
}

impl Schedule {
    pub(crate) fn record(&mut self, record: OccurrenceRecord) {
        if record.missed.is_some() {
            self.missed_total += record.count;
        } else {
            self.runs_total += 1;
        }
        if self.history.len() == limits::SCHEDULE_HISTORY_LEN_MAX {
            self.history.pop_front();
        }
        self.history.push_back(record);
    }
}
