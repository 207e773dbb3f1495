//! Reading history files. The format is picked from the first non-empty line, so that `check`
//! needs no format flag and a runner's JSON output, Jepsen logs and EDN dumps all just work.

pub mod edn;
pub mod etcd;
pub mod jsonl;

use std::path::Path;

use crate::history::{Event, Format, History, HistoryError, LINE_BYTES_MAX};

/// Which format a line looks like, or `None` if it is none of them.
pub fn detect(line: &str) -> Option<Format> {
    let t = line.trim_start();
    if let Some(rest) = t.strip_prefix('{') {
        return match rest.trim_start().chars().next() {
            Some('"') | Some('}') => Some(Format::JsonLines),
            Some(':') => Some(Format::EdnMaps),
            _ => None,
        };
    }
    if t.contains("jepsen.util - ") {
        return Some(Format::EtcdLog);
    }
    None
}

/// Parses a whole history from text.
pub fn parse_str(text: &str) -> Result<History, HistoryError> {
    parse_lines(text.split('\n').map(Ok))
}

/// Reads and parses a history file. Non-UTF-8 lines are reported with their line number.
pub fn parse_file(path: &Path) -> Result<History, HistoryError> {
    let bytes = std::fs::read(path).map_err(|e| HistoryError::new(0, format!("cannot read: {e}")))?;
    parse_lines(bytes.split(|b| *b == b'\n').map(|l| std::str::from_utf8(l).map_err(|_| "not UTF-8 text")))
}

fn parse_lines<'a>(lines: impl Iterator<Item = Result<&'a str, &'static str>>) -> Result<History, HistoryError> {
    let mut format = None;
    let mut events: Vec<Event> = Vec::new();
    for (i, line) in lines.enumerate() {
        let n = i + 1;
        let line = line.map_err(|m| HistoryError::new(n, m))?;
        if line.len() > LINE_BYTES_MAX {
            return Err(HistoryError::new(n, format!("line longer than {LINE_BYTES_MAX} bytes")));
        }
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fmt = match format {
            Some(f) => f,
            None => {
                let f = detect(line).ok_or_else(|| {
                    HistoryError::new(
                        n,
                        "unrecognised history format (expected JSON lines, EDN maps or Jepsen etcd log lines)",
                    )
                })?;
                format = Some(f);
                f
            }
        };
        let event = match fmt {
            Format::JsonLines => jsonl::parse_line(line, n)?,
            Format::EdnMaps => edn::parse_event_line(line, n)?,
            Format::EtcdLog => etcd::parse_line(line, n)?,
            Format::InMemory => unreachable!("detect never returns InMemory"),
        };
        events.push(event);
    }
    History::from_events(format.unwrap_or(Format::InMemory), &events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Outcome;

    #[test]
    fn detects_each_format_from_its_first_line() {
        assert_eq!(detect(r#"{"process":0}"#), Some(Format::JsonLines));
        assert_eq!(detect("{:process 0, :type :invoke}"), Some(Format::EdnMaps));
        assert_eq!(detect("INFO  jepsen.util - 4\t:invoke\t:read\tnil"), Some(Format::EtcdLog));
        assert_eq!(detect("hello"), None);
    }

    #[test]
    fn all_three_formats_give_the_same_operations() {
        let etcd = "INFO  jepsen.util - 1\t:invoke\t:write\t3\nINFO  jepsen.util - 1   :ok   :write   3\n";
        let edn = "{:process 1, :type :invoke, :f :write, :value 3}\n\n{:process 1, :type :ok, :f :write, :value 3}\n";
        let json = "{\"process\":1,\"type\":\"invoke\",\"f\":\"write\",\"value\":3}\n{\"process\":1,\"type\":\"ok\",\"f\":\"write\",\"value\":3}";
        let a = parse_str(etcd).unwrap();
        let b = parse_str(edn).unwrap();
        let c = parse_str(json).unwrap();
        assert_eq!((a.format, b.format, c.format), (Format::EtcdLog, Format::EdnMaps, Format::JsonLines));
        for h in [&a, &b, &c] {
            assert_eq!(h.ops.len(), 1);
            assert_eq!((h.ops[0].f.as_str(), h.ops[0].outcome), ("write", Outcome::Ok));
            assert_eq!(h.ops[0].input, serde_json::Value::from(3));
        }
    }

    #[test]
    fn errors_carry_line_numbers() {
        let bad =
            "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n\n{\"process\":1,\"type\":\"okay\",\"f\":\"read\"}\n";
        assert_eq!(parse_str(bad).unwrap_err().line, 3);
        assert_eq!(parse_str("\n\nnonsense\n").unwrap_err().line, 3);
        assert_eq!(parse_str("").unwrap_err().line, 0);
    }

    #[test]
    fn jsonl_round_trips() {
        let json = concat!(
            "{\"process\":0,\"type\":\"invoke\",\"f\":\"submit\",\"key\":\"k\",\"value\":{\"spec\":\"a\"},\"time_ns\":5}\n",
            "{\"process\":1,\"type\":\"invoke\",\"f\":\"cancel\",\"value\":{\"id\":1}}\n",
            "{\"process\":0,\"type\":\"ok\",\"f\":\"submit\",\"key\":\"k\",\"value\":{\"id\":1},\"time_ns\":9}\n",
            "{\"process\":1,\"type\":\"info\",\"f\":\"cancel\",\"value\":null}\n",
        );
        let h = parse_str(json).unwrap();
        let again = parse_str(&h.to_jsonl()).unwrap();
        assert_eq!(h.ops, again.ops);
    }
}
