//! Jepsen etcd log lines: `INFO  jepsen.util - <process> :<type> :<f> <value>`, fields separated
//! by tabs or runs of spaces; the value is an EDN value (`nil`, an integer, `[a b]`, `:timed-out`).

use crate::history::{Event, EventType, HistoryError};
use crate::parse::edn;

const MARKER: &str = "jepsen.util - ";

/// Parses one non-empty line; `n` is its 1-based line number.
pub fn parse_line(line: &str, n: usize) -> Result<Event, HistoryError> {
    let err = |m: String| HistoryError::new(n, m);
    let start = line.find(MARKER).ok_or_else(|| err(format!("expected {MARKER:?} in an etcd log line")))?;
    let rest = &line[start + MARKER.len()..];
    let (process, rest) = next_field(rest).ok_or_else(|| err("missing process".into()))?;
    let process: u64 =
        process.parse().map_err(|_| err(format!("process {process:?} is not a non-negative integer")))?;
    let (kind, rest) = next_field(rest).ok_or_else(|| err("missing type".into()))?;
    let kind = kind
        .strip_prefix(':')
        .and_then(EventType::parse)
        .ok_or_else(|| err(format!("type {kind:?} is not one of :invoke, :ok, :fail, :info")))?;
    let (f, rest) = next_field(rest).ok_or_else(|| err("missing operation name".into()))?;
    let f = f.strip_prefix(':').ok_or_else(|| err(format!("operation {f:?} is not a keyword")))?;
    let value_text = rest.trim();
    let value = if value_text.is_empty() {
        serde_json::Value::Null
    } else {
        edn::parse_whole_value(value_text).map_err(|m| err(format!("bad value {value_text:?}: {m}")))?
    };
    Ok(Event { line: n, process, kind, f: f.to_string(), key: None, value, time_ns: None })
}

fn next_field(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_tabs_and_spaces_and_every_value_shape() {
        let e = parse_line("INFO  jepsen.util - 12\t:invoke\t:cas\t[2 4]", 1).unwrap();
        assert_eq!((e.process, e.kind, e.f.as_str(), e.value), (12, EventType::Invoke, "cas", json!([2, 4])));
        let e = parse_line("INFO  jepsen.util - 3   :fail   :read   :timed-out", 2).unwrap();
        assert_eq!((e.kind, e.value), (EventType::Fail, json!("timed-out")));
        let e = parse_line("INFO  jepsen.util - 3\t:ok\t:read\tnil", 3).unwrap();
        assert_eq!(e.value, json!(null));
        assert_eq!(parse_line("INFO  jepsen.util - x\t:ok\t:read\tnil", 9).unwrap_err().line, 9);
        assert!(parse_line("INFO  jepsen.util - 1\t:done\t:read\tnil", 9).is_err());
        assert!(parse_line("INFO  jepsen.util - 1\t:ok\t:read\t[1", 9).is_err());
    }
}
