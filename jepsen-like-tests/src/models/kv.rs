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
        let mut partitions = group(items, |k| format!("key {k:?}"));
        for part in &mut partitions {
            drop_unobserved_open_writes(&mut part.ops);
        }
        Ok(Prepared { partitions, static_violation: None })
    }
}

/// Drops indeterminate writes no get can have seen. After an append of `v`, every state until the
/// next put contains `v`; after a put of `v`, every state until the next put starts with `v`. If
/// no get returned such a string, no get was linearized in that stretch, so the same order without
/// the write explains every result (appends and puts return nothing, and an indeterminate
/// operation may be left out). This keeps the search from trying every order of the timed-out
/// writes that never took effect: with many of them pending, that order is exponential.
fn drop_unobserved_open_writes(ops: &mut Vec<PartOp<KvOp>>) {
    if !ops.iter().any(|o| o.is_open() && !matches!(o.op, KvOp::Get(_))) {
        return;
    }
    let seen = observed_strings(ops);
    let observed = |o: &PartOp<KvOp>| match &o.op {
        KvOp::Append(v) => v.is_empty() || seen.iter().any(|s| s.as_str().contains(v.as_str())),
        KvOp::Put(v) => seen.iter().any(|s| s.as_str().starts_with(v.as_str())),
        KvOp::Get(_) => true,
    };
    let kept: Vec<PartOp<KvOp>> = ops.iter().filter(|o| !o.is_open() || observed(o)).cloned().collect();
    *ops = kept;
}

/// Get results such that every get result is a prefix of one of them: consecutive gets of a key
/// mostly extend each other, so these are few, and searching them is cheap.
fn observed_strings(ops: &[PartOp<KvOp>]) -> Vec<Text> {
    let mut out: Vec<Text> = Vec::new();
    let mut head = Text::new("");
    for o in ops {
        let KvOp::Get(g) = &o.op else { continue };
        if g.as_str().starts_with(head.as_str()) {
            head = g.clone();
        } else if !head.as_str().starts_with(g.as_str()) {
            out.push(std::mem::replace(&mut head, g.clone()));
        }
    }
    out.push(head);
    out
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

    /// Exhaustive reference on one key, without dropping anything: try every operation that may
    /// come next (invoked before the earliest completion among the rest).
    fn brute_force(ops: &[(super::KvOp, u32, u32)], done: &mut Vec<bool>, state: &super::Text) -> bool {
        use crate::model::Model;
        let rest: Vec<usize> = (0..ops.len()).filter(|&i| !done[i]).collect();
        if rest.iter().all(|&i| ops[i].2 == crate::model::OPEN) {
            return true;
        }
        let first_ret = rest.iter().map(|&i| ops[i].2).min().unwrap_or(crate::model::OPEN);
        for &i in &rest {
            if ops[i].1 < first_ret {
                if let Some(next) = super::Kv.step(state, &ops[i].0) {
                    done[i] = true;
                    let ok = brute_force(ops, done, &next);
                    done[i] = false;
                    if ok {
                        return true;
                    }
                }
            }
        }
        false
    }

    #[test]
    fn dropping_unobserved_time_outs_agrees_with_brute_force() {
        use super::{KvOp, Text};
        let mut seed = 11u64;
        let mut rnd = |n: u64| {
            seed += 1;
            crate::check::splitmix64(seed) % n
        };
        let (mut yes, mut no) = (0, 0);
        for _ in 0..3000 {
            let n = 2 + rnd(6) as usize;
            // events in time order; each op gets an invoke and (unless open) a completion
            let spans = crate::search::random_intervals(n, &mut rnd);
            let tokens = ["a", "b", "ab", "c", ""];
            let mut lines: Vec<(u32, String)> = Vec::new();
            let mut typed: Vec<(KvOp, u32, u32)> = Vec::new();
            for (k, &(call, ret)) in spans.iter().enumerate() {
                let open = rnd(3) == 0;
                let tok = tokens[rnd(5) as usize];
                let (f, input, output, op) = match rnd(if open { 2 } else { 3 }) {
                    0 => ("append", format!("{tok:?}"), "null".to_string(), KvOp::Append(Text::new(tok))),
                    1 => ("put", format!("{tok:?}"), "null".to_string(), KvOp::Put(Text::new(tok))),
                    _ => {
                        let seen = ["", "a", "ab", "ba", "abc", "c", "ca"][rnd(7) as usize];
                        ("get", "null".to_string(), format!("{seen:?}"), KvOp::Get(Text::new(seen)))
                    }
                };
                let inv = format!(r#"{{"process":{k},"type":"invoke","f":"{f}","key":"x","value":{input}}}"#);
                lines.push((call, inv));
                if !open {
                    lines.push((ret, format!(r#"{{"process":{k},"type":"ok","f":"{f}","key":"x","value":{output}}}"#)));
                }
                typed.push((op, call, if open { crate::model::OPEN } else { ret }));
            }
            lines.sort();
            let text: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
            let expected = brute_force(&typed, &mut vec![false; n], &Text::new(""));
            let got = verdict_text(&text).is_linearizable();
            assert_eq!(got, expected, "{text}");
            if expected {
                yes += 1;
            } else {
                no += 1;
            }
        }
        assert!(yes > 300 && no > 300, "{yes} linearizable, {no} not");
    }

    fn verdict_text(text: &str) -> Verdict {
        check_history(ModelKind::Kv, &parse_str(text).unwrap(), &CheckOptions::default()).unwrap()
    }
}
