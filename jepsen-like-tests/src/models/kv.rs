//! Model `kv`: a map from string keys to strings, every key initially `""` (Porcupine's
//! `kvModel`). Keys are independent, so each key is its own partition with a single string as
//! state.
//!
//! | operation | `key` | invoke `value` | `ok` `value` | legal when | new value of the key |
//! | --- | --- | --- | --- | --- | --- |
//! | `get` | required | `null` | string read | the key holds it | unchanged |
//! | `put` | required | string | (ignored) | always | the string |
//! | `append` | required | string | (ignored) | always | old value + the string |
//!
//! A `fail` or `info` get and a `fail` put/append constrain nothing and are dropped; an `info`
//! put/append is indeterminate.

use std::rc::Rc;

use serde_json::Value;

use crate::history::{History, HistoryError, Operation, Outcome};
use crate::model::{group, op_error, result_error, Model, PartOp, Prepared};

/// A string with its polynomial hash (and, for appends, the factor that shifts a hash past it):
/// the search hashes and compares states at every step, and a key's string grows with the
/// history, so hashing it whole would make each step O(length). Reference-counted, so a clone
/// is a pointer copy.
#[derive(Clone)]
pub struct Text {
    s: Rc<str>,
    h: u64,
    /// `HASH_BASE` to the power of the length, wrapping.
    shift: u64,
}

const HASH_BASE: u64 = 0x100_0000_01b3;

impl Text {
    pub fn new(s: &str) -> Text {
        let (mut h, mut shift) = (0u64, 1u64);
        for &b in s.as_bytes() {
            h = h.wrapping_mul(HASH_BASE).wrapping_add(u64::from(b) + 1);
            shift = shift.wrapping_mul(HASH_BASE);
        }
        Text { s: Rc::from(s), h, shift }
    }

    pub fn as_str(&self) -> &str {
        &self.s
    }

    pub fn is_empty(&self) -> bool {
        self.s.is_empty()
    }

    /// `self` followed by `tail`; the hash in O(1), the string copied once.
    fn append(&self, tail: &Text) -> Text {
        let mut s = String::with_capacity(self.s.len() + tail.s.len());
        s.push_str(&self.s);
        s.push_str(&tail.s);
        Text {
            s: Rc::from(s),
            h: self.h.wrapping_mul(tail.shift).wrapping_add(tail.h),
            shift: self.shift.wrapping_mul(tail.shift),
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.h == other.h && (Rc::ptr_eq(&self.s, &other.s) || self.s == other.s)
    }
}

impl Eq for Text {}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.h);
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.s, f)
    }
}

/// A typed kv operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOp {
    Get(Text),
    Put(Text),
    Append(Text),
}

/// The kv model (one key's value).
#[derive(Debug, Clone, Copy, Default)]
pub struct Kv;

fn string(h: &Operation, v: &Value, is_result: bool) -> Result<Text, HistoryError> {
    match v {
        Value::String(s) => Ok(Text::new(s)),
        other if is_result => Err(result_error(h, format!("result {other} is not a string"))),
        other => Err(op_error(h, format!("argument {other} is not a string"))),
    }
}

impl Model for Kv {
    type State = Text;
    type Op = KvOp;

    fn init(&self) -> Text {
        Text::new("")
    }

    fn step(&self, state: &Text, op: &KvOp) -> Option<Text> {
        match op {
            KvOp::Get(v) => (state == v).then(|| state.clone()),
            KvOp::Put(v) => Some(v.clone()),
            KvOp::Append(v) if v.is_empty() => Some(state.clone()),
            KvOp::Append(v) => Some(state.append(v)),
        }
    }

    fn is_read_only(&self, op: &KvOp) -> bool {
        match op {
            KvOp::Get(_) => true,
            KvOp::Append(v) => v.is_empty(),
            KvOp::Put(_) => false,
        }
    }

    fn prepare(&self, history: &History) -> Result<Prepared<KvOp>, HistoryError> {
        let mut items = Vec::with_capacity(history.ops.len());
        for (i, h) in history.ops.iter().enumerate() {
            let op = match (h.f.as_str(), h.outcome) {
                ("get", Outcome::Ok) => KvOp::Get(string(h, &h.output, true)?),
                ("get", _) | ("put" | "append", Outcome::Fail) => continue,
                ("put", _) => KvOp::Put(string(h, &h.input, false)?),
                ("append", _) => KvOp::Append(string(h, &h.input, false)?),
                (f, _) => return Err(op_error(h, format!("unknown operation {f:?} (kv has get, put, append)"))),
            };
            let Some(key) = &h.key else {
                return Err(op_error(h, "missing key"));
            };
            items.push((key.as_str(), PartOp::from_history(op, i, h)));
        }
        Ok(Prepared { partitions: group(items, |k| format!("key {k:?}")), static_violation: None })
    }
}

#[cfg(test)]
mod tests {
    use crate::check::{check_history, CheckOptions, Verdict};
    use crate::model::ModelKind;
    use crate::parse::parse_str;

    fn verdict(lines: &[&str]) -> Verdict {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        check_history(ModelKind::Kv, &parse_str(&text).unwrap(), &CheckOptions::default()).unwrap()
    }

    #[test]
    fn keys_start_empty_and_append_concatenates() {
        let ok = [
            r#"{:process 0, :type :invoke, :f :get, :key "a", :value nil}"#,
            r#"{:process 0, :type :ok, :f :get, :key "a", :value ""}"#,
            r#"{:process 0, :type :invoke, :f :append, :key "a", :value "x"}"#,
            r#"{:process 1, :type :invoke, :f :append, :key "a", :value "y"}"#,
            r#"{:process 0, :type :ok, :f :append, :key "a", :value "x"}"#,
            r#"{:process 1, :type :ok, :f :append, :key "a", :value "y"}"#,
            r#"{:process 2, :type :invoke, :f :put, :key "b", :value "z"}"#,
            r#"{:process 2, :type :ok, :f :put, :key "b", :value "z"}"#,
            r#"{:process 0, :type :invoke, :f :get, :key "a", :value nil}"#,
            r#"{:process 0, :type :ok, :f :get, :key "a", :value "yx"}"#,
        ];
        assert!(verdict(&ok).is_linearizable());
        let bad = [
            r#"{:process 0, :type :invoke, :f :append, :key "a", :value "x"}"#,
            r#"{:process 0, :type :ok, :f :append, :key "a", :value "x"}"#,
            r#"{:process 0, :type :invoke, :f :append, :key "a", :value "y"}"#,
            r#"{:process 0, :type :ok, :f :append, :key "a", :value "y"}"#,
            r#"{:process 1, :type :invoke, :f :get, :key "b", :value nil}"#,
            r#"{:process 1, :type :ok, :f :get, :key "b", :value ""}"#,
            r#"{:process 0, :type :invoke, :f :get, :key "a", :value nil}"#,
            r#"{:process 0, :type :ok, :f :get, :key "a", :value "yx"}"#,
        ];
        let Verdict::NotLinearizable(v) = verdict(&bad) else { panic!("expected a violation") };
        assert_eq!(v.partition, "key \"a\"");
        assert_eq!(v.state_after_prefix, "\"xy\"");
    }

    #[test]
    fn an_info_put_may_land_late_and_a_missing_key_is_an_error() {
        let ok = [
            r#"{"process":0,"type":"invoke","f":"put","key":"a","value":"v"}"#,
            r#"{"process":0,"type":"info","f":"put","key":"a"}"#,
            r#"{"process":1,"type":"invoke","f":"get","key":"a"}"#,
            r#"{"process":1,"type":"ok","f":"get","key":"a","value":""}"#,
            r#"{"process":1,"type":"invoke","f":"get","key":"a"}"#,
            r#"{"process":1,"type":"ok","f":"get","key":"a","value":"v"}"#,
        ];
        assert!(verdict(&ok).is_linearizable());
        let text = "{\"process\":0,\"type\":\"invoke\",\"f\":\"get\"}\n{\"process\":0,\"type\":\"ok\",\"f\":\"get\",\"value\":\"\"}\n";
        let e = check_history(ModelKind::Kv, &parse_str(text).unwrap(), &CheckOptions::default()).unwrap_err();
        assert_eq!(e.line, 1);
    }
}
