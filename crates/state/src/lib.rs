//! The deterministic core of raftsched: the replicated scheduler state machine.
//!
//! Everything in this crate is a pure function of the command sequence it is fed. It reads no
//! clock, no randomness, no environment, and does no IO: time enters as `Command::now_ms`, a value
//! chosen by the leader when it proposes. Task ids come from a counter in the state (1, 2, 3... in
//! apply order), fencing tokens from the log index of the entry that assigned. Two replicas that
//! apply the same log therefore hold byte-identical state (see `tests/determinism.rs`).
//!
//! Architecture invariant: this crate depends on `serde`, `thiserror` and pure calendar crates only
//! (`chrono` without its clock feature, `chrono-tz` with its compiled-in zone database, `croner`).
//! It knows nothing of openraft, tokio, tonic or sled; `cargo tree -p raftsched-state` proves it,
//! and CI checks that no clock-reading crate (`iana-time-zone`) is among its dependencies.

/// Derived data kept beside the state (indexes, observations): rebuilt from the state or the
/// commands, never encoded, so two machines with the same state are equal whatever these hold,
/// and a state's `Debug` text is the same whether they are built or not.
macro_rules! not_state {
    ($($t:ty),* $(,)?) => {$(
        impl PartialEq for $t {
            fn eq(&self, _: &Self) -> bool {
                true
            }
        }

        impl Eq for $t {}

        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("_")
            }
        }
    )*};
}

pub mod after;
pub mod calendar;
pub mod command;
pub mod concurrency;
pub mod flow;
pub mod limits;
pub mod machine;
pub mod observed;
pub mod query;
pub mod schedule;
pub mod spec;
pub mod task;
pub mod worker;

pub use after::{After, AfterPolicy, AfterSpec, AFTER_VERSION};
pub use command::{AssignItem, Command, Op, Output, Rejection, ReportEvent, Response, SubmitOptions};
pub use concurrency::{Concurrency, KeyUse, CONCURRENCY_VERSION, SCHEDULE_CONCURRENCY_VERSION};
pub use flow::{flow_task_key, FlowSpec, FlowTask, FLOW_VERSION};
pub use machine::{retry_backoff_ms, tail_of, InvariantBroken, StateMachine, CLOCK_VERSION, OUTPUT_APART_VERSION};
pub use query::{ListFilter, ListPage};
pub use schedule::{CatchUp, MissReason, OccurrenceRecord, Overlap, Schedule, ScheduleSpec};
pub use spec::{Exec, SpecError, TaskSpec};
pub use task::{Assignment, Attempt, Occurrence, Outcome, Streams, Task, TaskId, TaskResult, TaskState};
pub use worker::{Worker, WorkerState};
