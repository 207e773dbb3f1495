//! A small EDN reader: enough for Jepsen histories (one map per line) and etcd log values.
//!
//! EDN values become JSON values so that the rest of the crate has one value type: `nil` → null,
//! integers → numbers, strings → strings, keywords → strings without the colon, vectors and lists
//! → arrays, maps → objects (keys must be keywords, strings or integers). Floats, sets, tagged
//! literals and characters are refused: no history we read uses them.

use serde_json::{Map, Value};

use crate::history::{Event, EventType, HistoryError};

/// Nesting limit, so that a hostile line cannot overflow the stack.
const NESTING_DEPTH_MAX: usize = 64;

struct Reader<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && (self.s[self.pos].is_ascii_whitespace() || self.s[self.pos] == b',') {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn token(&mut self) -> &str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() || b",{}[]()\"".contains(&c) {
                break;
            }
            self.pos += 1;
        }
        // The slice ends at ASCII delimiters of a &str, so it is valid UTF-8.
        std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("")
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > NESTING_DEPTH_MAX {
            return Err(format!("nested deeper than {NESTING_DEPTH_MAX}"));
        }
        self.skip_ws();
        match self.peek() {
            None => Err("unexpected end of value".into()),
            Some(b'"') => self.string().map(Value::String),
            Some(open @ (b'[' | b'(')) => {
                let close = if open == b'[' { b']' } else { b')' };
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        return Ok(Value::Array(items));
                    }
                    items.push(self.value(depth + 1)?);
                }
            }
            Some(b'{') => {
                self.pos += 1;
                let mut map = Map::new();
                loop {
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        return Ok(Value::Object(map));
                    }
                    let key = match self.value(depth + 1)? {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        other => return Err(format!("map key {other} is not a keyword, string or integer")),
                    };
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        return Err(format!("map key :{key} has no value"));
                    }
                    let v = self.value(depth + 1)?;
                    map.insert(key, v);
                }
            }
            Some(b':') => {
                self.pos += 1;
                let t = self.token();
                if t.is_empty() {
                    return Err("empty keyword".into());
                }
                Ok(Value::String(t.to_string()))
            }
            Some(_) => {
                let t = self.token();
                match t {
                    "" => Err(format!("unexpected {:?}", self.peek().map(char::from).unwrap_or(' '))),
                    "nil" => Ok(Value::Null),
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    _ => t.parse::<i64>().map(Value::from).map_err(|_| format!("unsupported EDN token {t:?}")),
                }
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|_| "string is not UTF-8".into()),
                b'\\' => {
                    let esc = self.peek().ok_or("unterminated escape")?;
                    self.pos += 1;
                    out.push(match esc {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'"' => b'"',
                        b'\\' => b'\\',
                        other => return Err(format!("unsupported escape \\{}", char::from(other))),
                    });
                }
                _ => out.push(c),
            }
        }
        Err("unterminated string".into())
    }
}

/// Parses text that must hold exactly one EDN value.
pub fn parse_whole_value(text: &str) -> Result<Value, String> {
    let mut r = Reader { s: text.as_bytes(), pos: 0 };
    let v = r.value(0)?;
    r.skip_ws();
    if r.pos != r.s.len() {
        return Err(format!("unexpected text after the value at byte {}", r.pos));
    }
    Ok(v)
}

/// Parses one EDN-map event line (`{:process 0, :type :ok, :f :get, :key "5", :value ""}`);
/// `n` is its 1-based line number. `:time` (Jepsen's nanoseconds) is read as `time_ns`.
pub fn parse_event_line(line: &str, n: usize) -> Result<Event, HistoryError> {
    let err = |m: String| HistoryError::new(n, m);
    let Value::Object(mut map) = parse_whole_value(line).map_err(|m| err(format!("bad EDN: {m}")))? else {
        return Err(err("expected one EDN map per line".into()));
    };
    let process = map
        .get("process")
        .and_then(Value::as_u64)
        .ok_or_else(|| err(":process missing or not a non-negative integer".into()))?;
    let kind = map
        .get("type")
        .and_then(Value::as_str)
        .and_then(EventType::parse)
        .ok_or_else(|| err(":type missing or not one of :invoke, :ok, :fail, :info".into()))?;
    let f = match map.remove("f") {
        Some(Value::String(f)) => f,
        _ => return Err(err(":f missing or not a keyword".into())),
    };
    let key = match map.remove("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k),
        Some(Value::Number(k)) => Some(k.to_string()),
        Some(other) => return Err(err(format!(":key {other} is not a string or integer"))),
    };
    let value = map.remove("value").unwrap_or(Value::Null);
    let time_ns = map.get("time").and_then(Value::as_u64);
    Ok(Event { line: n, process, kind, f, key, value, time_ns })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_values() {
        assert_eq!(parse_whole_value("[1 -2, nil :x \"a b\"]").unwrap(), json!([1, -2, null, "x", "a b"]));
        assert_eq!(parse_whole_value("{:a {:b (1)}}").unwrap(), json!({"a": {"b": [1]}}));
        for bad in ["[1", "\"abc", "1.5", "{:a}", "1 2", "#{1}", ""] {
            assert!(parse_whole_value(bad).is_err(), "{bad}");
        }
        let deep = "[".repeat(1000);
        assert!(parse_whole_value(&deep).is_err());
    }

    #[test]
    fn reads_kv_event_lines() {
        let e = parse_event_line(r#"{:process 0, :type :ok, :f :append, :key "4", :value "x 0 1 y"}"#, 5).unwrap();
        assert_eq!((e.process, e.kind, e.f.as_str()), (0, EventType::Ok, "append"));
        assert_eq!((e.key.as_deref(), e.value), (Some("4"), json!("x 0 1 y")));
        assert_eq!(parse_event_line("{:process 0, :type :invoke}", 8).unwrap_err().line, 8);
        assert!(parse_event_line("{:process -1, :type :invoke, :f :get}", 8).is_err());
    }
}
