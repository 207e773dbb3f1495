//! Model `scheduler`: raftsched's client API, one task at a time.
//!
//! Each idempotency key names at most one task, and tasks never interact, so every key is an
//! independent object: the history is partitioned by key (operations that name a task id go to
//! the key whose submit returned that id). Within a partition the state is:
//!
//! - `Absent`: no task for this key yet; or
//! - `Present { id, spec, status }`: `id` as returned by a submit (unknown while only an `info`
//!   submit may have created it), `spec` the spec it was created with, and `status` either `Live`
//!   (pending, assigned or running: workers move a task among these outside the history, so the
//!   model does not distinguish them) or `Ended` (succeeded / failed with an exit code, or
//!   cancelled), which never changes again.
//!
//! Operations (`key` on submits; `value` as shown; `error` means a `fail` completion whose value
//! is that string, or an object `{"error": "..."}`):
//!
//! | `f` | invoke `value` | result | legal when | effect |
//! | --- | --- | --- | --- | --- |
//! | `submit` | `{"spec": s}` | ok `{"id": n}` | absent, or present with spec `s` and id `n` | creates the task (id `n`) if absent |
//! | `submit` | | error `already_exists` | present with a spec other than `s` | none |
//! | `get` | `{"id": n}` | ok `{"state": st, "result_exit_code": c?}` | the task's status matches (`pending`/`assigned`/`running` = live; an ended status with the same exit code if `c` is given) | none |
//! | `get` | | error `not_found` | no task `n` | none |
//! | `cancel` | `{"id": n}` | ok | task live, or already cancelled | cancelled |
//! | `cancel` | | error `failed_precondition` | task ended | none |
//! | `complete` | `{"id": n, "exit_code": c}` | ok | task live | succeeded (`c` = 0) or failed with `c` |
//! | `complete` (by key) | `{"exit_code": c}` with the task's `key` and no `id` | as above | as above | as above, on the key's task whatever its id |
//! | `complete` | | error `failed_precondition` | task ended | none |
//! | `cancel`, `complete` | | error `not_found` | no task `n` | none |
//!
//! `info` submits, cancels and completes are indeterminate (applied as above if and when they take
//! effect); `info` gets and failures with any other error (e.g. `unavailable`) constrain nothing
//! and are dropped. One id returned for two different keys is reported as a violation before any
//! search. Operations on an id no `ok` submit returned (e.g. a worker completing a task whose
//! submit timed out) form their own partition, which starts with an indeterminate creation of
//! that task, so they are checked against each other only.

use serde_json::Value;

use crate::hash::FxHashMap;
use crate::history::{History, HistoryError, Operation, Outcome};
use crate::model::{group, op_error, result_error, Model, PartOp, Prepared, StaticViolation, OPEN};

/// Spec index of a task created by the model for an unknown submit.
pub const SPEC_UNKNOWN: u32 = u32::MAX;

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndKind {
    Succeeded,
    Failed,
    Cancelled,
}

/// A task's status as far as clients can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// pending, assigned or running
    Live,
    Ended {
        kind: EndKind,
        exit_code: Option<i64>,
    },
}

/// The state of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Absent,
    Present { id: Option<u64>, spec: u32, status: Status },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubmitResult {
    Created(u64),
    AlreadyExists,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GetResult {
    Live,
    Ended {
        kind: EndKind,
        exit_code: Option<i64>,
    },
    NotFound,
    /// A state no recorded operation gives its task (waiting, scheduled, skipped: dependencies
    /// or a run-at time, which the recorded clients never ask for): the id names another task,
    /// e.g. one created after the recorded one was lost. Matches no model state.
    Foreign,
}

/// Result of a cancel or a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndResult {
    Done,
    AlreadyEnded,
    NotFound,
    Unknown,
}

/// A typed scheduler operation with its observed result. Specs are interned to `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerOp {
    Submit {
        spec: u32,
        result: SubmitResult,
    },
    Get {
        id: u64,
        result: GetResult,
    },
    Cancel {
        id: u64,
        result: EndResult,
    },
    /// `id: None`: the task of the partition's key, whatever its id (a worker's completion the
    /// recorder knows by key only).
    Complete {
        id: Option<u64>,
        exit_code: i64,
        result: EndResult,
    },
}

/// The scheduler model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scheduler;

/// `Some(bound id)` if `id` is (or can become) the task's id.
fn bind(known: Option<u64>, id: u64) -> Option<Option<u64>> {
    match known {
        None => Some(Some(id)),
        Some(k) if k == id => Some(Some(k)),
        Some(_) => None,
    }
}

/// A cancel or completion: `ended` is the status it sets on a live task.
fn end(state: &TaskState, id: Option<u64>, result: EndResult, ended: Status) -> Option<TaskState> {
    let TaskState::Present { id: known, spec, status } = *state else {
        return matches!(result, EndResult::NotFound | EndResult::Unknown).then_some(*state);
    };
    let bound = match id {
        Some(id) => bind(known, id),
        None => Some(known),
    };
    let Some(id) = bound else {
        // a different task id: for this key's task it does not exist
        return matches!(result, EndResult::NotFound | EndResult::Unknown).then_some(*state);
    };
    match (status, result) {
        (Status::Live, EndResult::Done | EndResult::Unknown) => Some(TaskState::Present { id, spec, status: ended }),
        (Status::Ended { .. }, EndResult::AlreadyEnded | EndResult::Unknown) => Some(*state),
        _ => None,
    }
}

impl Model for Scheduler {
    type State = TaskState;
    type Op = SchedulerOp;

    fn init(&self) -> TaskState {
        TaskState::Absent
    }

    fn step(&self, state: &TaskState, op: &SchedulerOp) -> Option<TaskState> {
        match *op {
            SchedulerOp::Submit { spec, result } => match (*state, result) {
                (TaskState::Absent, SubmitResult::Created(id)) => {
                    Some(TaskState::Present { id: Some(id), spec, status: Status::Live })
                }
                (TaskState::Absent, SubmitResult::Unknown) => {
                    Some(TaskState::Present { id: None, spec, status: Status::Live })
                }
                (TaskState::Absent, SubmitResult::AlreadyExists) => None,
                (TaskState::Present { id: known, spec: s, status }, SubmitResult::Created(id)) => {
                    (s == spec).then_some(())?;
                    bind(known, id).map(|id| TaskState::Present { id, spec: s, status })
                }
                (TaskState::Present { spec: s, .. }, SubmitResult::AlreadyExists) => (s != spec).then_some(*state),
                (TaskState::Present { .. }, SubmitResult::Unknown) => Some(*state),
            },
            SchedulerOp::Get { id, result } => {
                let TaskState::Present { id: known, spec, status } = *state else {
                    return (result == GetResult::NotFound).then_some(*state);
                };
                let Some(bound) = bind(known, id) else {
                    return (result == GetResult::NotFound).then_some(*state);
                };
                let ok = match (status, result) {
                    (Status::Live, GetResult::Live) => true,
                    (Status::Ended { kind, exit_code }, GetResult::Ended { kind: k, exit_code: c }) => {
                        kind == k && (c.is_none() || c == exit_code)
                    }
                    _ => false,
                };
                ok.then_some(TaskState::Present { id: bound, spec, status })
            }
            SchedulerOp::Cancel { id, result } => {
                // Cancelling a cancelled task succeeds again and changes nothing (idempotent).
                if let (TaskState::Present { id: known, spec, status }, EndResult::Done) = (*state, result) {
                    if matches!(status, Status::Ended { kind: EndKind::Cancelled, .. }) {
                        return bind(known, id).map(|id| TaskState::Present { id, spec, status });
                    }
                }
                end(state, Some(id), result, Status::Ended { kind: EndKind::Cancelled, exit_code: None })
            }
            SchedulerOp::Complete { id, exit_code, result } => {
                let kind = if exit_code == 0 { EndKind::Succeeded } else { EndKind::Failed };
                end(state, id, result, Status::Ended { kind, exit_code: Some(exit_code) })
            }
        }
    }

    /// Once a task exists with a known id, no operation changes its id again, so a get, a submit
    /// and a cancel or completion that reports "not found" or "already ended" leave every later
    /// state as it is; once it has ended, nothing changes it at all.
    fn is_read_only_from(&self, state: &TaskState, op: &SchedulerOp) -> bool {
        let TaskState::Present { id: Some(_), status, .. } = state else { return false };
        match op {
            SchedulerOp::Get { .. } | SchedulerOp::Submit { .. } => true,
            SchedulerOp::Cancel { result, .. } | SchedulerOp::Complete { result, .. } => {
                matches!(status, Status::Ended { .. })
                    || matches!(result, EndResult::NotFound | EndResult::AlreadyEnded)
            }
        }
    }

    fn prepare(&self, history: &History) -> Result<Prepared<SchedulerOp>, HistoryError> {
        let mut specs: FxHashMap<&str, u32> = FxHashMap::default();
        // id → (key, index of the first ok submit that returned it)
        let mut id_key: FxHashMap<u64, (&str, usize)> = FxHashMap::default();
        let mut typed: Vec<Option<SchedulerOp>> = Vec::with_capacity(history.ops.len());
        let mut static_violation = None;
        for (i, h) in history.ops.iter().enumerate() {
            let op = typed_op(h, &mut specs)?;
            if let Some(SchedulerOp::Submit { result: SubmitResult::Created(id), .. }) = op {
                let key = h.key.as_deref().unwrap_or_default();
                let (first_key, first) = *id_key.entry(id).or_insert((key, i));
                if first_key != key && static_violation.is_none() {
                    static_violation = Some(StaticViolation {
                        message: format!(
                            "task id {id} was returned for two idempotency keys, {first_key:?} (line {}) and {key:?} (line {})",
                            history.ops[first].ret_line.unwrap_or(0),
                            h.ret_line.unwrap_or(0)
                        ),
                        ops: vec![first, i],
                    });
                }
            }
            typed.push(op);
        }
        let mut items: Vec<(PartKey, PartOp<SchedulerOp>)> = Vec::with_capacity(history.ops.len());
        let mut orphans_seen: FxHashMap<u64, ()> = FxHashMap::default();
        for (i, (h, op)) in history.ops.iter().zip(typed).enumerate() {
            let Some(op) = op else { continue };
            let part = match op {
                SchedulerOp::Submit { .. } | SchedulerOp::Complete { id: None, .. } => {
                    PartKey::Key(h.key.as_deref().unwrap_or_default())
                }
                SchedulerOp::Get { id, .. }
                | SchedulerOp::Cancel { id, .. }
                | SchedulerOp::Complete { id: Some(id), .. } => match id_key.get(&id) {
                    Some(&(key, _)) => PartKey::Key(key),
                    None => {
                        if orphans_seen.insert(id, ()).is_none() {
                            let create = SchedulerOp::Submit { spec: SPEC_UNKNOWN, result: SubmitResult::Unknown };
                            let op = PartOp { op: create, history_index: None, call: 0, ret: OPEN };
                            items.push((PartKey::Orphan(id), op));
                        }
                        PartKey::Orphan(id)
                    }
                },
            };
            items.push((part, PartOp::from_history(op, i, h)));
        }
        let name = |k: &PartKey| match k {
            PartKey::Key(key) => format!("key {key:?}"),
            PartKey::Orphan(id) => format!("task {id} (no ok submit returned it)"),
        };
        Ok(Prepared { partitions: group(items, name), static_violation })
    }
}

/// Which partition an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PartKey<'a> {
    Key(&'a str),
    /// A task id that no ok submit returned.
    Orphan(u64),
}

/// The error code of a `fail` completion: a string value or `{"error": "..."}`.
fn error_code(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(m) => m.get("error").and_then(Value::as_str),
        _ => None,
    }
}

fn id_arg(h: &Operation) -> Result<u64, HistoryError> {
    h.input
        .get("id")
        .and_then(Value::as_u64)
        .ok_or_else(|| op_error(h, format!("argument {} has no integer \"id\"", h.input)))
}

/// Types one operation; `None` if it constrains nothing.
fn typed_op<'h>(h: &'h Operation, specs: &mut FxHashMap<&'h str, u32>) -> Result<Option<SchedulerOp>, HistoryError> {
    let err = error_code(&h.output);
    let op = match h.f.as_str() {
        "submit" => {
            if h.key.is_none() {
                return Err(op_error(h, "missing key"));
            }
            let spec = h
                .input
                .get("spec")
                .and_then(Value::as_str)
                .ok_or_else(|| op_error(h, format!("argument {} has no string \"spec\"", h.input)))?;
            let next = specs.len() as u32;
            let spec = *specs.entry(spec).or_insert(next);
            let result = match (h.outcome, err) {
                (Outcome::Ok, _) => SubmitResult::Created(
                    h.output
                        .get("id")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| result_error(h, format!("result {} has no integer \"id\"", h.output)))?,
                ),
                (Outcome::Fail, Some("already_exists")) => SubmitResult::AlreadyExists,
                (Outcome::Fail, _) => return Ok(None),
                (Outcome::Info, _) => SubmitResult::Unknown,
            };
            SchedulerOp::Submit { spec, result }
        }
        "get" => {
            let id = id_arg(h)?;
            let result = match (h.outcome, err) {
                (Outcome::Ok, _) => get_result(h)?,
                (Outcome::Fail, Some("not_found")) => GetResult::NotFound,
                _ => return Ok(None),
            };
            SchedulerOp::Get { id, result }
        }
        "cancel" | "complete" => {
            // A completion may name its task by idempotency key instead of id.
            let id = if h.f == "complete" && h.key.is_some() && h.input.get("id").is_none_or(Value::is_null) {
                None
            } else {
                Some(id_arg(h)?)
            };
            let result = match (h.outcome, err) {
                (Outcome::Ok, _) => EndResult::Done,
                (Outcome::Fail, Some("failed_precondition")) => EndResult::AlreadyEnded,
                (Outcome::Fail, Some("not_found")) => EndResult::NotFound,
                (Outcome::Fail, _) => return Ok(None),
                (Outcome::Info, _) => EndResult::Unknown,
            };
            if h.f == "cancel" {
                SchedulerOp::Cancel { id: id.expect("cancel has an id"), result }
            } else {
                let exit_code = h
                    .input
                    .get("exit_code")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| op_error(h, format!("argument {} has no integer \"exit_code\"", h.input)))?;
                SchedulerOp::Complete { id, exit_code, result }
            }
        }
        f => return Err(op_error(h, format!("unknown operation {f:?} (scheduler has submit, get, cancel, complete)"))),
    };
    Ok(Some(op))
}

fn get_result(h: &Operation) -> Result<GetResult, HistoryError> {
    let state = h.output.get("state").and_then(Value::as_str).unwrap_or("");
    let exit_code = match h.output.get("result_exit_code") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| result_error(h, format!("result_exit_code {v} is not an integer")))?),
    };
    let kind = match state {
        "pending" | "assigned" | "running" => return Ok(GetResult::Live),
        "waiting" | "scheduled" | "skipped" => return Ok(GetResult::Foreign),
        "succeeded" => EndKind::Succeeded,
        "failed" => EndKind::Failed,
        "cancelled" => EndKind::Cancelled,
        other => {
            return Err(result_error(
                h,
                format!(
                    "state {other:?} is not one of pending, assigned, running, succeeded, failed, cancelled (or \
                     waiting, scheduled, skipped)"
                ),
            ))
        }
    };
    Ok(GetResult::Ended { kind, exit_code })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{check_history, CheckOptions, Verdict};
    use crate::model::ModelKind;
    use crate::parse::parse_str;

    /// Builds a JSON-lines history from compact rows: (process, type, f, key, value).
    fn history(rows: &[(u64, &str, &str, Option<&str>, Value)]) -> String {
        rows.iter()
            .map(|(p, t, f, k, v)| {
                let mut o = serde_json::json!({"process": p, "type": t, "f": f, "value": v});
                if let Some(k) = k {
                    o["key"] = Value::String(k.to_string());
                }
                o.to_string() + "\n"
            })
            .collect()
    }

    fn verdict(text: &str) -> Verdict {
        check_history(ModelKind::Scheduler, &parse_str(text).unwrap(), &CheckOptions::default()).unwrap()
    }

    use serde_json::json;

    /// A recorded task seen waiting or skipped is another task under its id (its own was lost):
    /// no order explains it.
    #[test]
    fn a_recorded_task_seen_in_a_state_it_cannot_have_is_not_linearizable() {
        for state in ["waiting", "scheduled", "skipped"] {
            let h = history(&[
                (0, "invoke", "submit", Some("a"), json!({"spec": "echo 1"})),
                (0, "ok", "submit", Some("a"), json!({"id": 7})),
                (1, "invoke", "get", None, json!({"id": 7})),
                (1, "ok", "get", None, json!({"state": state})),
            ]);
            assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)), "{state}");
        }
    }

    #[test]
    fn linearizable_history_with_concurrency_retries_and_a_timed_out_submit() {
        let h = history(&[
            (0, "invoke", "submit", Some("a"), json!({"spec": "echo 1"})),
            (1, "invoke", "submit", Some("a"), json!({"spec": "echo 1"})),
            (0, "ok", "submit", Some("a"), json!({"id": 7})),
            (2, "invoke", "get", None, json!({"id": 7})),
            (1, "ok", "submit", Some("a"), json!({"id": 7})),
            (2, "ok", "get", None, json!({"state": "running"})),
            (3, "invoke", "submit", Some("a"), json!({"spec": "other"})),
            (3, "fail", "submit", Some("a"), json!({"error": "already_exists"})),
            (9, "invoke", "complete", None, json!({"id": 7, "exit_code": 3})),
            (0, "invoke", "cancel", None, json!({"id": 7})),
            (9, "ok", "complete", None, json!(null)),
            (0, "fail", "cancel", None, json!("failed_precondition")),
            (2, "invoke", "get", None, json!({"id": 7})),
            (2, "ok", "get", None, json!({"state": "failed", "result_exit_code": 3})),
            // a submit that timed out, then its task completed by a worker
            (4, "invoke", "submit", Some("b"), json!({"spec": "x"})),
            (4, "info", "submit", Some("b"), json!(null)),
            (9, "invoke", "complete", None, json!({"id": 8, "exit_code": 0})),
            (9, "ok", "complete", None, json!(null)),
            (5, "invoke", "get", None, json!({"id": 8})),
            (5, "ok", "get", None, json!({"state": "succeeded", "result_exit_code": 0})),
        ]);
        assert!(verdict(&h).is_linearizable(), "{:?}", verdict(&h));
    }

    #[test]
    fn two_ids_for_one_key_and_spec_is_a_violation() {
        let h = history(&[
            (0, "invoke", "submit", Some("a"), json!({"spec": "s"})),
            (0, "ok", "submit", Some("a"), json!({"id": 1})),
            (1, "invoke", "submit", Some("a"), json!({"spec": "s"})),
            (1, "ok", "submit", Some("a"), json!({"id": 2})),
        ]);
        let Verdict::NotLinearizable(v) = verdict(&h) else { panic!("expected a violation") };
        assert_eq!(v.partition, "key \"a\"");
        assert_eq!(v.linearized, 1);
        // one id for two keys is caught before the search
        let h = history(&[
            (0, "invoke", "submit", Some("a"), json!({"spec": "s"})),
            (0, "ok", "submit", Some("a"), json!({"id": 1})),
            (1, "invoke", "submit", Some("b"), json!({"spec": "s"})),
            (1, "ok", "submit", Some("b"), json!({"id": 1})),
        ]);
        let Verdict::NotLinearizable(v) = verdict(&h) else { panic!("expected a violation") };
        assert_eq!(v.window.len(), 2);
    }

    #[test]
    fn not_reading_your_own_write_is_a_violation() {
        let h = history(&[
            (0, "invoke", "submit", Some("a"), json!({"spec": "s"})),
            (0, "ok", "submit", Some("a"), json!({"id": 1})),
            (0, "invoke", "get", None, json!({"id": 1})),
            (0, "fail", "get", None, json!({"error": "not_found"})),
        ]);
        assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
        // also: a cancel acknowledged, then the task still reported pending
        let h = history(&[
            (0, "invoke", "submit", Some("a"), json!({"spec": "s"})),
            (0, "ok", "submit", Some("a"), json!({"id": 1})),
            (0, "invoke", "cancel", None, json!({"id": 1})),
            (0, "ok", "cancel", None, json!(null)),
            (1, "invoke", "get", None, json!({"id": 1})),
            (1, "ok", "get", None, json!({"state": "pending"})),
        ]);
        assert!(matches!(verdict(&h), Verdict::NotLinearizable(_)));
        // but a not_found concurrent with the submit is fine
        let h = history(&[
            (0, "invoke", "submit", Some("a"), json!({"spec": "s"})),
            (1, "invoke", "get", None, json!({"id": 1})),
            (1, "fail", "get", None, json!({"error": "not_found"})),
            (0, "ok", "submit", Some("a"), json!({"id": 1})),
        ]);
        assert!(verdict(&h).is_linearizable());
    }

    #[test]
    fn double_completion_is_a_violation() {
        let h = history(&[
            (0, "invoke", "submit", Some("a"), json!({"spec": "s"})),
            (0, "ok", "submit", Some("a"), json!({"id": 1})),
            (8, "invoke", "complete", None, json!({"id": 1, "exit_code": 0})),
            (9, "invoke", "complete", None, json!({"id": 1, "exit_code": 1})),
            (8, "ok", "complete", None, json!(null)),
            (9, "ok", "complete", None, json!(null)),
        ]);
        let Verdict::NotLinearizable(v) = verdict(&h) else { panic!("expected a violation") };
        assert_eq!(v.linearized, 2);
        assert!(v.window.iter().any(|w| w.role == crate::report::Role::Illegal));
    }

    #[test]
    fn bad_values_are_errors_with_line_numbers() {
        let h = history(&[
            (0, "invoke", "submit", Some("a"), json!({"spec": "s"})),
            (0, "ok", "submit", Some("a"), json!({"task": 1})),
        ]);
        let e = check_history(ModelKind::Scheduler, &parse_str(&h).unwrap(), &CheckOptions::default()).unwrap_err();
        assert_eq!(e.line, 2);
        let h = history(&[(0, "invoke", "reboot", None, json!(null)), (0, "ok", "reboot", None, json!(null))]);
        let e = check_history(ModelKind::Scheduler, &parse_str(&h).unwrap(), &CheckOptions::default()).unwrap_err();
        assert_eq!(e.line, 1);
    }

    /// Found by the Porcupine campaign: a timed-out resubmit beside gets of the same task. A
    /// read-only operation that is indeterminate must not be placed as a forced read (its node
    /// is subsumed by the node it was placed at, which is not a failure).
    #[test]
    fn a_timed_out_resubmit_among_gets_is_linearizable() {
        let lines = [
            r#"{"f":"submit","key":"k970","process":33,"time_ns":625000,"type":"invoke","value":{"spec":"run job 970"}}"#,
            r#"{"f":"submit","key":"k970","process":33,"time_ns":652000,"type":"ok","value":{"id":964}}"#,
            r#"{"f":"get","process":126,"time_ns":653000,"type":"invoke","value":{"id":964}}"#,
            r#"{"f":"submit","key":"k970","process":104,"time_ns":654000,"type":"invoke","value":{"spec":"run job 970"}}"#,
            r#"{"f":"get","process":75,"time_ns":658000,"type":"invoke","value":{"id":964}}"#,
            r#"{"f":"get","process":126,"time_ns":661000,"type":"ok","value":{"result_exit_code":null,"state":"assigned"}}"#,
            r#"{"f":"get","process":75,"time_ns":661000,"type":"ok","value":{"result_exit_code":null,"state":"running"}}"#,
            r#"{"f":"get","process":65,"time_ns":665000,"type":"invoke","value":{"id":964}}"#,
            r#"{"f":"get","process":55,"time_ns":668000,"type":"invoke","value":{"id":964}}"#,
            r#"{"f":"get","process":65,"time_ns":686000,"type":"ok","value":{"result_exit_code":null,"state":"running"}}"#,
            r#"{"f":"submit","key":"k970","process":104,"time_ns":687000,"type":"info","value":null}"#,
            r#"{"f":"get","process":55,"time_ns":687000,"type":"ok","value":{"result_exit_code":null,"state":"pending"}}"#,
        ];
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        assert!(verdict(&text).is_linearizable());
    }
}
