//! The model-independent history: events as read from a file, paired into operations.
//!
//! Time is the position of an event in the file (its index among events): files are written in
//! real-time order, so positions order events exactly as the recorder saw them, without relying
//! on clocks. `time_ns` is kept only for drawing.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

/// Upper bound on operations in one history, so that a runaway file fails fast with an error
/// instead of exhausting memory (event positions are stored as `u32`).
pub const HISTORY_OPERATIONS_MAX: usize = 10_000_000;

/// Upper bound on one line of a history file, in bytes.
pub const LINE_BYTES_MAX: usize = 1 << 20;

/// An error in a history file, with the 1-based line it was found on (0 when it concerns the
/// file as a whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct HistoryError {
    pub line: usize,
    pub message: String,
}

impl HistoryError {
    pub fn new(line: usize, message: impl Into<String>) -> HistoryError {
        HistoryError { line, message: message.into() }
    }
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

/// What an event line says about its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

impl EventType {
    pub fn parse(text: &str) -> Option<EventType> {
        match text {
            "invoke" => Some(EventType::Invoke),
            "ok" => Some(EventType::Ok),
            "fail" => Some(EventType::Fail),
            "info" => Some(EventType::Info),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        }
    }
}

/// One line of a history file.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// 1-based line number in the file (for error messages and reports).
    pub line: usize,
    pub process: u64,
    pub kind: EventType,
    pub f: String,
    pub key: Option<String>,
    pub value: Value,
    pub time_ns: Option<u64>,
}

/// How an operation completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Took effect, with `output` as its result.
    Ok,
    /// Certainly did not take effect.
    Fail,
    /// Unknown (an `info` completion, or no completion before the end of the file).
    Info,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// An invoke paired with its completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub process: u64,
    pub f: String,
    pub key: Option<String>,
    /// The invoke's value (the argument).
    pub input: Value,
    /// The completion's value (the result; `null` when there was no completion line).
    pub output: Value,
    pub outcome: Outcome,
    /// Position of the invoke among the history's events.
    pub call: u32,
    /// Position of the completion; `None` for indeterminate operations, whose interval runs past
    /// the end of the history.
    pub ret: Option<u32>,
    /// Position of the `info` line, if any (only for drawing: it does not bound the interval).
    pub info_at: Option<u32>,
    pub call_line: usize,
    /// Line of the completion (`ok`, `fail` or `info`), if there was one.
    pub ret_line: Option<usize>,
    pub call_time_ns: Option<u64>,
    pub ret_time_ns: Option<u64>,
}

impl Operation {
    /// The operation `e` (an invoke at position `pos`) starts: indeterminate until completed.
    fn invoked(e: &Event, pos: u32) -> Operation {
        Operation {
            process: e.process,
            f: e.f.clone(),
            key: e.key.clone(),
            input: e.value.clone(),
            output: Value::Null,
            outcome: Outcome::Info,
            call: pos,
            ret: None,
            info_at: None,
            call_line: e.line,
            ret_line: None,
            call_time_ns: e.time_ns,
            ret_time_ns: None,
        }
    }

    /// Completes this operation with `e` (its process's next completion, at position `pos`).
    fn complete(&mut self, e: &Event, pos: u32) -> Result<(), HistoryError> {
        if self.f != e.f {
            let why = format!("completion is {:?} but the invoke on line {} is {:?}", e.f, self.call_line, self.f);
            return Err(HistoryError::new(e.line, why));
        }
        if e.key.is_some() && self.key.is_some() && e.key != self.key {
            let why = format!("completion key {:?} differs from the invoke's {:?}", e.key, self.key);
            return Err(HistoryError::new(e.line, why));
        }
        if self.key.is_none() {
            self.key = e.key.clone();
        }
        self.output = e.value.clone();
        self.ret_line = Some(e.line);
        self.ret_time_ns = e.time_ns;
        match e.kind {
            EventType::Ok => (self.outcome, self.ret) = (Outcome::Ok, Some(pos)),
            EventType::Fail => (self.outcome, self.ret) = (Outcome::Fail, Some(pos)),
            _ => (self.outcome, self.info_at) = (Outcome::Info, Some(pos)),
        }
        Ok(())
    }
}

impl Operation {
    /// A short human description, e.g. `cas [1,4] → fail` or `read → 3`.
    pub fn describe(&self) -> String {
        let mut s = self.f.clone();
        if let Some(k) = &self.key {
            s.push_str(&format!(" {k:?}"));
        }
        if !self.input.is_null() {
            s.push_str(&format!(" {}", self.input));
        }
        match self.outcome {
            // a write's ok (null or the argument repeated); a read always shows what it read
            Outcome::Ok if !self.input.is_null() && (self.output.is_null() || self.output == self.input) => {
                s.push_str(" → ok")
            }
            Outcome::Ok => s.push_str(&format!(" → {}", self.output)),
            Outcome::Fail => s.push_str(" → fail"),
            Outcome::Info => s.push_str(" → ?"),
        }
        s
    }
}

/// The format a history was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Jepsen etcd log lines (`INFO  jepsen.util - <process> :<type> :<f> <value>`).
    EtcdLog,
    /// One EDN map per line (`{:process 0, :type :invoke, :f :get, :key "1", :value nil}`).
    EdnMaps,
    /// One JSON object per line (see the crate documentation).
    JsonLines,
    /// Built in memory (e.g. by the workload generator).
    InMemory,
}

/// A whole history: operations in invoke order.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub format: Format,
    pub ops: Vec<Operation>,
    /// Number of events (lines that were not empty); positions are below this.
    pub events: u32,
}

impl History {
    /// Pairs each process's invoke with its next completion.
    ///
    /// An invoke still open at the end of the events becomes indeterminate (`Info`), as Jepsen
    /// treats a crashed client. A process may be reused after an `info` completion (its earlier
    /// operation simply stays open).
    pub fn from_events(format: Format, events: &[Event]) -> Result<History, HistoryError> {
        if events.is_empty() {
            return Err(HistoryError::new(0, "empty history (no events)"));
        }
        if events.len() > 2 * HISTORY_OPERATIONS_MAX {
            return Err(HistoryError::new(0, format!("more than {HISTORY_OPERATIONS_MAX} operations")));
        }
        let mut ops: Vec<Operation> = Vec::with_capacity(events.len() / 2 + 1);
        // process → index in `ops` of its outstanding operation
        let mut open: HashMap<u64, usize> = HashMap::new();
        for (pos, e) in events.iter().enumerate() {
            let pos = pos as u32;
            if e.kind == EventType::Invoke {
                if let Some(&prev) = open.get(&e.process) {
                    let why = format!(
                        "process {} invokes again while its operation from line {} is outstanding",
                        e.process, ops[prev].call_line
                    );
                    return Err(HistoryError::new(e.line, why));
                }
                open.insert(e.process, ops.len());
                ops.push(Operation::invoked(e, pos));
                continue;
            }
            let Some(i) = open.remove(&e.process) else {
                let why = format!("{} completion of process {} without an invoke", e.kind.as_str(), e.process);
                return Err(HistoryError::new(e.line, why));
            };
            ops[i].complete(e, pos)?;
        }
        Ok(History { format, ops, events: events.len() as u32 })
    }

    /// Writes the history in the JSON-lines format (events in position order).
    pub fn to_jsonl(&self) -> String {
        let mut lines: Vec<(u32, String)> = Vec::with_capacity(self.ops.len() * 2);
        for op in &self.ops {
            let mut invoke = serde_json::json!({
                "process": op.process, "type": "invoke", "f": op.f, "value": op.input,
            });
            if let Some(k) = &op.key {
                invoke["key"] = Value::String(k.clone());
            }
            if let Some(t) = op.call_time_ns {
                invoke["time_ns"] = t.into();
            }
            lines.push((op.call, invoke.to_string()));
            if let Some(pos) = op.ret.or(op.info_at) {
                let mut done = serde_json::json!({
                    "process": op.process, "type": op.outcome.as_str(), "f": op.f, "value": op.output,
                });
                if let Some(k) = &op.key {
                    done["key"] = Value::String(k.clone());
                }
                if let Some(t) = op.ret_time_ns {
                    done["time_ns"] = t.into();
                }
                lines.push((pos, done.to_string()));
            }
        }
        lines.sort_by_key(|(pos, _)| *pos);
        let mut out = String::new();
        for (_, l) in lines {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(line: usize, process: u64, kind: EventType, f: &str, value: Value) -> Event {
        Event { line, process, kind, f: f.into(), key: None, value, time_ns: None }
    }

    #[test]
    fn pairs_invoke_with_next_completion_and_leaves_info_open() {
        let events = vec![
            ev(1, 0, EventType::Invoke, "write", 1.into()),
            ev(2, 1, EventType::Invoke, "read", Value::Null),
            ev(3, 0, EventType::Info, "write", "timed-out".into()),
            ev(4, 1, EventType::Ok, "read", 1.into()),
            ev(5, 2, EventType::Invoke, "read", Value::Null),
        ];
        let h = History::from_events(Format::InMemory, &events).unwrap();
        assert_eq!(h.ops.len(), 3);
        assert_eq!((h.ops[0].outcome, h.ops[0].ret, h.ops[0].info_at), (Outcome::Info, None, Some(2)));
        assert_eq!((h.ops[1].outcome, h.ops[1].ret), (Outcome::Ok, Some(3)));
        assert_eq!(h.ops[1].output, Value::from(1));
        // no completion before the end: indeterminate
        assert_eq!((h.ops[2].outcome, h.ops[2].ret), (Outcome::Info, None));
    }

    #[test]
    fn rejects_double_invoke_and_orphan_completion_with_line_numbers() {
        let events =
            vec![ev(1, 0, EventType::Invoke, "read", Value::Null), ev(2, 0, EventType::Invoke, "read", Value::Null)];
        assert_eq!(History::from_events(Format::InMemory, &events).unwrap_err().line, 2);
        let events = vec![ev(7, 3, EventType::Ok, "read", Value::Null)];
        assert_eq!(History::from_events(Format::InMemory, &events).unwrap_err().line, 7);
        let events =
            vec![ev(1, 0, EventType::Invoke, "read", Value::Null), ev(2, 0, EventType::Ok, "write", Value::Null)];
        assert_eq!(History::from_events(Format::InMemory, &events).unwrap_err().line, 2);
        assert!(History::from_events(Format::InMemory, &[]).is_err());
    }
}
