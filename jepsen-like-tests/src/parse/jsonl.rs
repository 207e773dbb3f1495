//! The JSON-lines format (specified in the crate documentation).

use serde::Deserialize;
use serde_json::Value;

use crate::history::{Event, EventType, HistoryError};

#[derive(Deserialize)]
struct Line {
    process: u64,
    #[serde(rename = "type")]
    kind: String,
    f: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    time_ns: Option<u64>,
}

/// Parses one non-empty line; `n` is its 1-based line number.
pub fn parse_line(line: &str, n: usize) -> Result<Event, HistoryError> {
    let l: Line = serde_json::from_str(line).map_err(|e| HistoryError::new(n, format!("bad JSON event: {e}")))?;
    let kind = EventType::parse(&l.kind)
        .ok_or_else(|| HistoryError::new(n, format!("type {:?} is not one of invoke, ok, fail, info", l.kind)))?;
    Ok(Event { line: n, process: l.process, kind, f: l.f, key: l.key, value: l.value, time_ns: l.time_ns })
}
