//! Every bound the state machine enforces, with its unit last in the name.
//!
//! Why bounds live here: they decide what `apply` accepts, so they are part of the replicated
//! semantics. Changing one is a protocol change; all replicas must agree on it.

/// Idempotency key length. Keys are held for the task's whole life, so they cost memory per task.
pub const KEY_BYTES_MAX: usize = 128;
/// Number of argv elements in a command task.
pub const ARGV_COUNT_MAX: usize = 256;
/// Total bytes of a task spec (argv or builtin argument, plus constraints). A Raft entry carries
/// the spec, so this also bounds the entry size.
pub const SPEC_BYTES_MAX: usize = 64 * 1024;
/// Number of label constraints on one task.
pub const CONSTRAINT_COUNT_MAX: usize = 16;
/// Tasks that are pending (not yet assigned) at once, the hard bound `apply` enforces from cluster
/// version `PENDING_LIMIT_VERSION`. Over it a submit is refused with `TooManyPending`, which the
/// API maps to RESOURCE_EXHAUSTED. The bound an operator sets (`server --tasks-pending-max`,
/// checked by the leader before it proposes) is at most this.
pub const TASKS_PENDING_MAX: usize = 1_000_000;
/// The hard bound before cluster version `PENDING_LIMIT_VERSION` (what older builds apply: a mixed
/// cluster must refuse the same submits on every replica).
pub const TASKS_PENDING_MAX_V3: usize = 100_000;
/// The default of `server --tasks-pending-max`.
pub const TASKS_PENDING_MAX_DEFAULT: usize = 100_000;
/// The cluster version from which `apply` bounds pending tasks by `TASKS_PENDING_MAX`.
pub const PENDING_LIMIT_VERSION: u32 = 4;
/// Tasks held in the state machine in total (a later issue adds a retention policy).
pub const TASKS_TOTAL_MAX: usize = 2_000_000;
/// Largest page a `list` query returns.
pub const LIST_PAGE_SIZE_MAX: usize = 1_000;
/// Default page size of a `list` query.
pub const LIST_PAGE_SIZE_DEFAULT: usize = 100;
/// Longest `sleep:MS` builtin.
pub const SLEEP_MS_MAX: u64 = 24 * 3600 * 1000;
/// Bytes of a task's output tail kept with its result.
pub const OUTPUT_TAIL_BYTES_MAX: usize = 4 * 1024;
/// Environment variables of a command task.
pub const ENV_COUNT_MAX: usize = 64;
/// Attempts one task may take (first run plus retries).
pub const ATTEMPTS_MAX: u32 = 20;
/// Attempts when the submit does not say.
pub const ATTEMPTS_DEFAULT: u32 = 3;
/// Longest per-task timeout.
pub const TASK_TIMEOUT_MS_MAX: u64 = 7 * 24 * 3600 * 1000;
/// Slots one worker may offer (tasks it runs at once).
pub const WORKER_SLOTS_MAX: u32 = 1024;
/// Registered workers, live or down.
pub const WORKERS_MAX: usize = 10_000;
/// Worker id length.
pub const WORKER_ID_BYTES_MAX: usize = 128;
/// Labels of one worker.
pub const WORKER_LABEL_COUNT_MAX: usize = 32;
/// Ops in one batched Raft entry (client writes the leader groups together).
pub const BATCH_LEN_MAX: usize = 1024;
/// Assignments in one Raft command.
pub const ASSIGN_BATCH_LEN_MAX: usize = 1024;
/// Pending tasks the dispatch step of a `BatchDispatch` entry looks at (in queue order) before it
/// stops: it runs on every replica for every client write, so its cost must not grow with the
/// queue when the first tasks fit no worker (labels). Tasks further back are left to the
/// leader's own `Assign`, which looks at the whole queue.
pub const DISPATCH_SCAN_LEN_MAX: usize = 256;
/// Retry backoff after a failed or lost attempt: BASE * 2^(attempt-1), capped at MAX.
pub const RETRY_BACKOFF_MS_BASE: u64 = 200;
pub const RETRY_BACKOFF_MS_MAX: u64 = 10_000;

/// Finished tasks one `PurgeFinished` command removes (the leader proposes more if more are due).
pub const PURGE_BATCH_LEN_MAX: usize = 1024;
/// Finished tasks beyond the retention limit before the leader purges (at most a tenth of the
/// limit): so that a purge removes a batch instead of one task per finished task.
pub const PURGE_SLACK_TASKS: u64 = 256;

/// Tasks waiting in state `scheduled` for their `run_at_ms` (`submit --at`).
pub const TASKS_SCHEDULED_MAX: usize = 100_000;
/// Tasks waiting for others at once (`submit --after`); with `DEPENDENCIES_PER_TASK_MAX`, bounds
/// the dependents index at 1.6 million edges.
pub const TASKS_WAITING_MAX: usize = 50_000;
/// Tasks in one flow (`flow submit`).
pub const TASKS_PER_FLOW_MAX: usize = 1_000;
/// Bytes of a flow task's name.
pub const FLOW_TASK_NAME_BYTES_MAX: usize = 64;
/// Bytes of a concurrency key.
pub const CONCURRENCY_KEY_BYTES_MAX: usize = 128;
/// Largest concurrency limit.
pub const CONCURRENCY_LIMIT_MAX: u32 = 10_000;
/// Tasks one task may run after (ids and keys together).
pub const DEPENDENCIES_PER_TASK_MAX: usize = 32;
/// How far ahead `submit --at` may point.
pub const RUN_AT_AHEAD_MS_MAX: u64 = 366 * 24 * 3600 * 1000;
/// Scheduled tasks one `ReleaseDue` command moves to pending (the leader proposes more if more are due).
pub const RELEASE_BATCH_LEN_MAX: usize = 1024;
/// Schedules held (live or paused).
pub const SCHEDULES_MAX: usize = 1_000;
/// Schedule name length (names are `[A-Za-z0-9._-]`).
pub const SCHEDULE_NAME_BYTES_MAX: usize = 64;
/// Cron expression length.
pub const CRON_EXPR_BYTES_MAX: usize = 256;
/// Shortest `@every` interval. Cron expressions cannot go below one second anyway.
pub const SCHEDULE_INTERVAL_MS_MIN: u64 = 1_000;
/// `--max-catch-up`: missed occurrences one fire may still run with `--catch-up all`.
pub const CATCH_UP_RUNS_MAX: u32 = 100;
pub const CATCH_UP_RUNS_DEFAULT: u32 = 10;
/// An occurrence fired later than this after its time counts as missed and is handled by the
/// schedule's catch-up policy; earlier, it simply runs (late by a failover, say).
pub const START_DEADLINE_MS_DEFAULT: u64 = 10_000;
pub const START_DEADLINE_MS_MAX: u64 = 3_600_000;
/// Occurrence records (runs and ranges of missed occurrences) kept per schedule, newest last.
pub const SCHEDULE_HISTORY_LEN_MAX: usize = 100;
/// Occurrences one fire enumerates to count a range of missed ones; beyond it the count is a
/// lower bound (a per-second schedule down for over a day).
pub const MISSED_COUNT_SCAN_MAX: u64 = 100_000;

const _: () = assert!(LIST_PAGE_SIZE_DEFAULT <= LIST_PAGE_SIZE_MAX);
const _: () = assert!(TASKS_PENDING_MAX <= TASKS_TOTAL_MAX / 2);
const _: () = assert!(TASKS_PENDING_MAX_V3 <= TASKS_PENDING_MAX && TASKS_PENDING_MAX_DEFAULT <= TASKS_PENDING_MAX);
const _: () = assert!(KEY_BYTES_MAX < SPEC_BYTES_MAX);
const _: () = assert!(ATTEMPTS_DEFAULT <= ATTEMPTS_MAX);
const _: () = assert!(RETRY_BACKOFF_MS_BASE <= RETRY_BACKOFF_MS_MAX);
const _: () = assert!(CATCH_UP_RUNS_DEFAULT <= CATCH_UP_RUNS_MAX);
const _: () = assert!(START_DEADLINE_MS_DEFAULT <= START_DEADLINE_MS_MAX);
const _: () = assert!(TASKS_SCHEDULED_MAX <= TASKS_TOTAL_MAX);
// A schedule's occurrence key ("schedule:NAME:MS") must fit in an idempotency key.
const _: () = assert!(9 + SCHEDULE_NAME_BYTES_MAX + 1 + 20 <= KEY_BYTES_MAX);
