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
/// Tasks that are pending (not yet assigned) at once. Over it a submit is refused with
/// `TooManyPending`, which the API maps to RESOURCE_EXHAUSTED.
pub const TASKS_PENDING_MAX: usize = 100_000;
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
/// Retry backoff after a failed or lost attempt: BASE * 2^(attempt-1), capped at MAX.
pub const RETRY_BACKOFF_MS_BASE: u64 = 200;
pub const RETRY_BACKOFF_MS_MAX: u64 = 10_000;

const _: () = assert!(LIST_PAGE_SIZE_DEFAULT <= LIST_PAGE_SIZE_MAX);
const _: () = assert!(TASKS_PENDING_MAX <= TASKS_TOTAL_MAX);
const _: () = assert!(KEY_BYTES_MAX < SPEC_BYTES_MAX);
const _: () = assert!(ATTEMPTS_DEFAULT <= ATTEMPTS_MAX);
const _: () = assert!(RETRY_BACKOFF_MS_BASE <= RETRY_BACKOFF_MS_MAX);
