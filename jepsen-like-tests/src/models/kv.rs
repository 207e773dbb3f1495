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
//!
//! What makes many concurrent writes cheap to order (each checked against a brute force over
//! plain strings in the tests):
//! - the gets guide the search ([`Model::may_reach`], [`Model::leads_to`]): a get of `v` needs
//!   the state to be a prefix of `v` (or a put still to come to start it), and says which write
//!   comes next;
//! - a value no get can read is one state ([`KvState::Unread`]), so the orders of writes a put
//!   later overwrote do not multiply the nodes;
//! - a write no get saw is placed at once in such a state ([`Model::is_read_only_from`]);
//! - a timed-out write no get saw is dropped before the search.

use std::rc::Rc;

use serde_json::Value;

use crate::hash::FxHashSet;
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
    Put(Text, Readable),
    Append(Text, Readable),
}

/// One key's value as the search tracks it.
#[derive(Clone)]
pub enum KvState {
    Known(Text),
    /// A value that is not a prefix of any string a get of the key returned. Appends only
    /// extend a value, so every get fails from here until the next put: all such values behave
    /// alike, and compare equal so that the search's memo sees them as one state. This
    /// collapses the orders of writes whose strings no get ever returned (overwritten by a
    /// put), which otherwise each leave a different string behind. The value is kept for the
    /// report only.
    Unread(Text),
}

impl PartialEq for KvState {
    fn eq(&self, other: &KvState) -> bool {
        match (self, other) {
            (KvState::Known(a), KvState::Known(b)) => a == b,
            (KvState::Unread(_), KvState::Unread(_)) => true,
            _ => false,
        }
    }
}

impl Eq for KvState {}

impl std::hash::Hash for KvState {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            KvState::Known(t) => t.hash(state),
            KvState::Unread(_) => state.write_u8(0),
        }
    }
}

impl std::fmt::Debug for KvState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvState::Known(t) => t.fmt(f),
            KvState::Unread(t) => write!(f, "{t:?} (no get returned a string starting with it)"),
        }
    }
}

/// What the gets of one key say about a write of it, ignored when operations are compared.
#[derive(Clone, Default)]
pub struct Readable {
    /// The strings a get can return part of: every prefix of every string returned (as hashes;
    /// a collision only keeps a state [`KvState::Known`], which is always sound). Shared by the
    /// partition's writes.
    prefixes: Option<Rc<FxHashSet<u64>>>,
    /// The partition's get results, as [`observed_strings`] gives them.
    returned: Option<Rc<[Text]>>,
    /// No get returned this write's string (an append's anywhere in it, a put's at its start):
    /// whatever the state, the write leaves one no get reads ([`KvState::Unread`]). Worked out
    /// the first time it matters (a scan of the get results per write: too slow to do for all).
    unseen: std::cell::OnceCell<bool>,
}

impl Readable {
    fn of(returned: &[Text]) -> Readable {
        let mut set = FxHashSet::default();
        for t in returned {
            let (mut h, mut shift) = (0u64, 1u64);
            set.insert(prefix_key(h, shift));
            for &b in t.as_str().as_bytes() {
                h = h.wrapping_mul(HASH_BASE).wrapping_add(u64::from(b) + 1);
                shift = shift.wrapping_mul(HASH_BASE);
                set.insert(prefix_key(h, shift));
            }
        }
        Readable { prefixes: Some(Rc::new(set)), returned: Some(returned.into()), unseen: Default::default() }
    }

    /// Whether no get saw write `op` (whose `Readable` this is); see the field.
    fn unseen(&self, op: &KvOp) -> bool {
        *self.unseen.get_or_init(|| self.returned.as_ref().is_some_and(|seen| !observed(op, seen)))
    }

    /// `t` as a state: [`KvState::Unread`] if no get returned a string starting with it.
    fn state(&self, t: Text) -> KvState {
        match &self.prefixes {
            Some(set) if !set.contains(&prefix_key(t.h, t.shift)) => KvState::Unread(t),
            _ => KvState::Known(t),
        }
    }
}

fn prefix_key(h: u64, shift: u64) -> u64 {
    h.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ shift
}

impl PartialEq for Readable {
    fn eq(&self, _: &Readable) -> bool {
        true
    }
}

impl Eq for Readable {}

impl std::hash::Hash for Readable {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl std::fmt::Debug for Readable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("_")
    }
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
    type State = KvState;
    type Op = KvOp;

    fn init(&self) -> KvState {
        KvState::Known(Text::new(""))
    }

    fn step(&self, state: &KvState, op: &KvOp) -> Option<KvState> {
        match (op, state) {
            (KvOp::Get(v), KvState::Known(s)) => (s == v).then(|| state.clone()),
            (KvOp::Get(_), KvState::Unread(_)) => None,
            (KvOp::Put(v, readable), _) => Some(readable.state(v.clone())),
            (KvOp::Append(v, _), _) if v.is_empty() => Some(state.clone()),
            (KvOp::Append(v, readable), KvState::Known(s)) => Some(readable.state(s.append(v))),
            (KvOp::Append(v, _), KvState::Unread(s)) => Some(KvState::Unread(s.append(v))),
        }
    }

    fn is_read_only(&self, op: &KvOp) -> bool {
        match op {
            KvOp::Get(_) => true,
            KvOp::Append(v, _) => v.is_empty(),
            KvOp::Put(..) => false,
        }
    }

    /// Also a write no get saw, in a state no get reads: it leaves that state as it is (all
    /// unread states are one), and wherever else it could go it would leave an unread state too,
    /// followed by nothing but writes until the next put. So placing it now is as good as any
    /// later place, and the search places it without trying the others.
    fn is_read_only_from(&self, state: &KvState, op: &KvOp) -> bool {
        match (state, op) {
            (KvState::Unread(_), KvOp::Put(_, r) | KvOp::Append(_, r)) if r.unseen(op) => true,
            _ => self.is_read_only(op),
        }
    }

    const LOOKS_AHEAD: bool = true;

    /// A get of `v` is reached from `state` through appends only if `state` is a prefix of `v`,
    /// or through a put of `p` (and appends after it) only if `p` is.
    fn may_reach<'o>(&self, state: &KvState, next: &KvOp, mut between: impl Iterator<Item = &'o KvOp>) -> bool {
        let KvOp::Get(v) = next else { return true };
        let reached_from = |s: &Text| v.as_str().starts_with(s.as_str());
        matches!(state, KvState::Known(s) if reached_from(s))
            || between.any(|o| matches!(o, KvOp::Put(p, _) if reached_from(p)))
    }

    /// The append that continues `state` towards the get's string, or the put it starts with.
    fn leads_to(&self, state: &KvState, next: &KvOp, candidate: &KvOp) -> bool {
        let KvOp::Get(v) = next else { return false };
        let v = v.as_str();
        let continues = |s: &str| v.len() > s.len() && v.starts_with(s);
        match (candidate, state) {
            (KvOp::Append(a, _), KvState::Known(s)) => {
                let s = s.as_str();
                !a.is_empty() && continues(s) && v[s.len()..].starts_with(a.as_str())
            }
            (KvOp::Put(p, _), KvState::Known(s)) => !v.starts_with(s.as_str()) && v.starts_with(p.as_str()),
            (KvOp::Put(p, _), KvState::Unread(_)) => v.starts_with(p.as_str()),
            _ => false,
        }
    }

    fn prepare(&self, history: &History) -> Result<Prepared<KvOp>, HistoryError> {
        let mut items = Vec::with_capacity(history.ops.len());
        for (i, h) in history.ops.iter().enumerate() {
            let op = match (h.f.as_str(), h.outcome) {
                ("get", Outcome::Ok) => KvOp::Get(string(h, &h.output, true)?),
                ("get", _) | ("put" | "append", Outcome::Fail) => continue,
                ("put", _) => KvOp::Put(string(h, &h.input, false)?, Readable::default()),
                ("append", _) => KvOp::Append(string(h, &h.input, false)?, Readable::default()),
                (f, _) => return Err(op_error(h, format!("unknown operation {f:?} (kv has get, put, append)"))),
            };
            let Some(key) = &h.key else {
                return Err(op_error(h, "missing key"));
            };
            items.push((key.as_str(), PartOp::from_history(op, i, h)));
        }
        let mut partitions = group(items, |k| format!("key {k:?}"));
        for part in &mut partitions {
            let returned = observed_strings(&part.ops);
            drop_unobserved_open_writes(&mut part.ops, &returned);
            let readable = Readable::of(&returned);
            for o in &mut part.ops {
                if let KvOp::Put(_, r) | KvOp::Append(_, r) = &mut o.op {
                    *r = readable.clone();
                }
            }
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
fn drop_unobserved_open_writes(ops: &mut Vec<PartOp<KvOp>>, seen: &[Text]) {
    if !ops.iter().any(|o| o.is_open() && !matches!(o.op, KvOp::Get(_))) {
        return;
    }
    let kept: Vec<PartOp<KvOp>> = ops.iter().filter(|o| !o.is_open() || observed(&o.op, seen)).cloned().collect();
    *ops = kept;
}

/// Whether a get may have seen `op`: after an append of `v`, every state until the next put
/// contains `v`; after a put of `v`, every state until the next put starts with `v`. `seen`: get
/// results such that every get result is a prefix of one of them ([`observed_strings`]).
fn observed(op: &KvOp, seen: &[Text]) -> bool {
    match op {
        KvOp::Append(v, _) => v.is_empty() || seen.iter().any(|s| s.as_str().contains(v.as_str())),
        KvOp::Put(v, _) => seen.iter().any(|s| s.as_str().starts_with(v.as_str())),
        KvOp::Get(_) => true,
    }
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
        // After "x", appending "y" is legal but the get of "yx" can no longer be reached, so the
        // search (see `Model::may_reach`) stops there.
        assert!(v.state_after_prefix.starts_with("\"x\""), "{}", v.state_after_prefix);
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
    fn brute_force(ops: &[(Ref, u32, u32)], done: &mut Vec<bool>, state: &str) -> bool {
        let rest: Vec<usize> = (0..ops.len()).filter(|&i| !done[i]).collect();
        if rest.iter().all(|&i| ops[i].2 == crate::model::OPEN) {
            return true;
        }
        let first_ret = rest.iter().map(|&i| ops[i].2).min().unwrap_or(crate::model::OPEN);
        for &i in &rest {
            if ops[i].1 < first_ret {
                let next = match &ops[i].0 {
                    Ref::Get(v) if *v == state => state.to_string(),
                    Ref::Get(_) => continue,
                    Ref::Put(v) => v.to_string(),
                    Ref::Append(v) => format!("{state}{v}"),
                };
                done[i] = true;
                let ok = brute_force(ops, done, &next);
                done[i] = false;
                if ok {
                    return true;
                }
            }
        }
        false
    }

    /// The reference's own operations (plain strings), independent of the model's.
    enum Ref {
        Get(&'static str),
        Put(&'static str),
        Append(&'static str),
    }

    #[test]
    fn dropping_unobserved_time_outs_agrees_with_brute_force() {
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
            // "d" is in no get's value: writes no get saw (see `Readable::unseen`).
            let tokens = ["a", "b", "ab", "c", "", "d"];
            let mut lines: Vec<(u32, String)> = Vec::new();
            let mut typed: Vec<(Ref, u32, u32)> = Vec::new();
            for (k, &(call, ret)) in spans.iter().enumerate() {
                let open = rnd(3) == 0;
                let tok = tokens[rnd(6) as usize];
                let (f, input, output, op) = match rnd(if open { 2 } else { 3 }) {
                    0 => ("append", format!("{tok:?}"), "null".to_string(), Ref::Append(tok)),
                    1 => ("put", format!("{tok:?}"), "null".to_string(), Ref::Put(tok)),
                    _ => {
                        let seen = ["", "a", "ab", "ba", "abc", "c", "ca"][rnd(7) as usize];
                        ("get", "null".to_string(), format!("{seen:?}"), Ref::Get(seen))
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
            let expected = brute_force(&typed, &mut vec![false; n], "");
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
