//! The history recorder: every client call as an invoke line before it is sent and a completion
//! line after its answer, in the JSON-lines format of the crate docs.
//!
//! Lines are appended under one mutex at the moment they happen, so their order in the file is
//! the real-time order the checker relies on. `time_ns` counts from the run's start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

/// Upper bound on recorded events, so a runaway run fails loudly instead of exhausting memory.
pub const EVENTS_MAX: usize = 5_000_000;

/// One recorded line, kept for the report as well as written out.
#[derive(Debug, Clone)]
pub struct Line {
    pub process: u64,
    pub kind: &'static str,
    pub f: &'static str,
    pub key: Option<String>,
    pub value: Value,
    pub time_ns: u64,
}

impl Line {
    pub fn to_json(&self) -> String {
        let mut v = json!({"process": self.process, "type": self.kind, "f": self.f, "value": self.value, "time_ns": self.time_ns});
        if let Some(key) = &self.key {
            v["key"] = Value::String(key.clone());
        }
        v.to_string()
    }
}

pub struct Recorder {
    started: Instant,
    lines: Mutex<Vec<Line>>,
    next_virtual_process: AtomicU64,
}

/// Process numbers at and above this are not clients: one per virtual operation (a worker's
/// completion, a zombie report, a final read), so each has its own "process" as the format needs.
pub const VIRTUAL_PROCESS_BASE: u64 = 1_000_000;

impl Recorder {
    pub fn new(started: Instant) -> Recorder {
        Recorder { started, lines: Mutex::new(Vec::new()), next_virtual_process: AtomicU64::new(VIRTUAL_PROCESS_BASE) }
    }

    pub fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// A fresh process number for a one-operation virtual process.
    pub fn virtual_process(&self) -> u64 {
        self.next_virtual_process.fetch_add(1, Ordering::Relaxed)
    }

    /// Appends one line; returns false (and records nothing) past [`EVENTS_MAX`].
    pub fn record(&self, process: u64, kind: &'static str, f: &'static str, key: Option<&str>, value: Value) -> bool {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() >= EVENTS_MAX {
            return false;
        }
        // Taken under the lock so times never go backwards in file order.
        let time_ns = self.now_ns();
        lines.push(Line { process, kind, f, key: key.map(str::to_string), value, time_ns });
        true
    }

    pub fn len(&self) -> usize {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn snapshot(&self) -> Vec<Line> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
