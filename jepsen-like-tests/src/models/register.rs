//! Model `register`: exactly the etcd Jepsen test's register (Porcupine's `etcdModel`).
//!
//! State: `Option<i64>`, initially `None` (nil, never written).
//!
//! | operation | invoke `value` | `ok` `value` | legal when | new state |
//! | --- | --- | --- | --- | --- |
//! | `read` | `null` | `null` or N | the register is nil / holds N | unchanged |
//! | `write` | N | (ignored) | always | N |
//! | `cas` | `[A, B]` | (ignored) | `ok`: holds A; `fail`: does not hold A | B if it held A |
//!
//! A `fail` read and a `fail` write constrain nothing and are dropped; a `fail` cas stays (it says
//! the register did not hold A at its instant). `info` writes and cas are indeterminate; an
//! `info` cas follows the model (sets B only if the register holds A), with either outcome
//! allowed (an `info` cas `[A A]` changes nothing either way and is dropped). An `info` read
//! constrains nothing and is dropped. Histories with a `key` field are
//! split into one independent register per key.

use crate::history::{History, HistoryError, Outcome};
use crate::model::{group, op_error, Model, PartOp, Partition, Prepared, StaticViolation};
use crate::models::{int_arg, opt_int_result};

/// Outcome of a compare-and-set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CasOutcome {
    Ok,
    Fail,
    Unknown,
}

/// A typed register operation with its observed result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    Read(Option<i64>),
    Write(i64),
    Cas { from: i64, to: i64, outcome: CasOutcome },
}

/// The register model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

impl Model for Register {
    type State = Option<i64>;
    type Op = RegisterOp;

    fn init(&self) -> Option<i64> {
        None
    }

    #[inline]
    fn step(&self, state: &Option<i64>, op: &RegisterOp) -> Option<Option<i64>> {
        match *op {
            RegisterOp::Read(v) => (*state == v).then_some(*state),
            RegisterOp::Write(n) => Some(Some(n)),
            RegisterOp::Cas { from, to, outcome } => {
                let holds = *state == Some(from);
                match outcome {
                    CasOutcome::Ok => holds.then_some(Some(to)),
                    CasOutcome::Fail => (!holds).then_some(*state),
                    CasOutcome::Unknown => Some(if holds { Some(to) } else { *state }),
                }
            }
        }
    }

    fn is_read_only(&self, op: &RegisterOp) -> bool {
        match *op {
            RegisterOp::Read(_) => true,
            RegisterOp::Write(_) => false,
            RegisterOp::Cas { from, to, outcome } => {
                outcome == CasOutcome::Fail || (outcome == CasOutcome::Ok && from == to)
            }
        }
    }

    fn prepare(&self, history: &History) -> Result<Prepared<RegisterOp>, HistoryError> {
        let mut items = Vec::with_capacity(history.ops.len());
        for (i, h) in history.ops.iter().enumerate() {
            let op = match (h.f.as_str(), h.outcome) {
                ("read", Outcome::Ok) => RegisterOp::Read(opt_int_result(h, &h.output)?),
                ("read", _) => continue,
                ("write", Outcome::Fail) => continue,
                ("write", _) => RegisterOp::Write(int_arg(h, &h.input, "value")?),
                ("cas", outcome) => {
                    let pair = h.input.as_array().filter(|a| a.len() == 2);
                    let Some(pair) = pair else {
                        return Err(op_error(h, format!("argument {} is not [from to]", h.input)));
                    };
                    let from = int_arg(h, &pair[0], "from")?;
                    let to = int_arg(h, &pair[1], "to")?;
                    let outcome = match outcome {
                        Outcome::Ok => CasOutcome::Ok,
                        Outcome::Fail => CasOutcome::Fail,
                        // an indeterminate cas [A A] never changes anything: drop it
                        Outcome::Info if from == to => continue,
                        Outcome::Info => CasOutcome::Unknown,
                    };
                    RegisterOp::Cas { from, to, outcome }
                }
                (f, _) => return Err(op_error(h, format!("unknown operation {f:?} (register has read, write, cas)"))),
            };
            items.push((h.key.as_deref(), PartOp::from_history(op, i, h)));
        }
        let name = |k: &Option<&str>| match k {
            Some(k) => format!("register {k:?}"),
            None => "register".to_string(),
        };
        let partitions = group(items, name);
        let static_violation = partitions.iter().find_map(|p| unexplained_read(history, p));
        Ok(Prepared { partitions, static_violation })
    }
}

/// An operation's interval in event positions (`ret` = [`OPEN`] for an indeterminate one).
#[derive(Clone, Copy)]
struct Span {
    call: u32,
    ret: u32,
    index: usize,
}

/// A read (or an `ok` cas, which reads its `from`) that no order can explain, found without any
/// search: a determinate write of another value X (or an `ok` cas setting it) ended before the
/// read began, and nothing that can set the read's value can be placed between X and the read.
/// Then in every order the last operation to set the register before the read is X or comes
/// after X, and none of those sets the value read. This is the shape of a stale read, a lost
/// write and a write that vanishes, and it is decided in O(n log n) where the search would have
/// to exhaust every order of the operations before it (exponential with many concurrent
/// clients). A history it does not catch still goes to the search, so it never changes a verdict.
fn unexplained_read(history: &History, part: &Partition<RegisterOp>) -> Option<StaticViolation> {
    use std::collections::HashMap;
    let span = |p: &PartOp<RegisterOp>| Span { call: p.call, ret: p.ret, index: p.history_index.unwrap_or(0) };
    // Who may set each value (the initial nil is set before everything and never in between).
    let mut sources: HashMap<Option<i64>, Vec<Span>> = HashMap::new();
    let mut barriers: Vec<(Span, Option<i64>)> = Vec::new();
    let mut reads: Vec<(Span, Option<i64>)> = Vec::new();
    for p in &part.ops {
        match p.op {
            RegisterOp::Read(v) => reads.push((span(p), v)),
            RegisterOp::Write(n) => {
                sources.entry(Some(n)).or_default().push(span(p));
                if !p.is_open() {
                    barriers.push((span(p), Some(n)));
                }
            }
            RegisterOp::Cas { from, to, outcome: CasOutcome::Ok } => {
                reads.push((span(p), Some(from)));
                sources.entry(Some(to)).or_default().push(span(p));
                barriers.push((span(p), Some(to)));
            }
            RegisterOp::Cas { to, outcome: CasOutcome::Unknown, .. } => {
                sources.entry(Some(to)).or_default().push(span(p))
            }
            RegisterOp::Cas { outcome: CasOutcome::Fail, .. } => {}
        }
    }
    // Per value: sources by invoke, with the latest completion among each prefix.
    let sources: HashMap<Option<i64>, (Vec<u32>, Vec<u32>)> = sources
        .into_iter()
        .map(|(v, mut spans)| {
            spans.sort_by_key(|s| s.call);
            let calls = spans.iter().map(|s| s.call).collect();
            let latest = spans
                .iter()
                .scan(0u32, |m, s| {
                    *m = (*m).max(s.ret);
                    Some(*m)
                })
                .collect();
            (v, (calls, latest))
        })
        .collect();
    barriers.sort_by_key(|(s, _)| s.ret);
    reads.sort_by_key(|(s, _)| s.call);
    // The two latest-invoked barriers ended so far, with different values.
    let mut best: [Option<(Span, Option<i64>)>; 2] = [None, None];
    let mut next = 0;
    for &(r, v) in &reads {
        while next < barriers.len() && barriers[next].0.ret < r.call {
            best = keep_two_latest(best, barriers[next]);
            next += 1;
        }
        let Some((x, xv)) = best.into_iter().flatten().find(|&(_, xv)| xv != v) else { continue };
        let placeable = sources.get(&v).is_some_and(|(calls, latest)| {
            let n = calls.partition_point(|&c| c < r.ret);
            n > 0 && latest[n - 1] > x.call
        });
        if !placeable {
            let show = |v: Option<i64>| v.map_or("nil".to_string(), |n| n.to_string());
            let message = format!(
                "in {}: a read of {} cannot be explained: {} set the register to {} and ended before the read began, \
                 and nothing that sets {} can come between them",
                part.name,
                show(v),
                history.ops[x.index].describe(),
                show(xv),
                show(v)
            );
            return Some(StaticViolation { message, ops: vec![x.index, r.index] });
        }
    }
    None
}

/// `best` with `b` added: the latest-invoked barrier, and the latest-invoked one with another
/// value than that.
fn keep_two_latest(best: [Option<(Span, Option<i64>)>; 2], b: (Span, Option<i64>)) -> [Option<(Span, Option<i64>)>; 2] {
    let mut all: Vec<(Span, Option<i64>)> = best.into_iter().flatten().collect();
    all.push(b);
    all.sort_by_key(|(s, _)| std::cmp::Reverse(s.call));
    let first = all[0];
    let second = all.iter().copied().find(|&(_, v)| v != first.1);
    [Some(first), second]
}

#[cfg(test)]
mod tests {
    use crate::check::{check_history, CheckOptions, Verdict};
    use crate::model::ModelKind;
    use crate::parse::parse_str;

    /// Builds an etcd log from `process type f value` rows.
    fn etcd(rows: &[&str]) -> String {
        rows.iter()
            .map(|r| {
                let f: Vec<&str> = r.split_whitespace().collect();
                format!("INFO  jepsen.util - {}\t:{}\t:{}\t{}\n", f[0], f[1], f[2], f[3..].join(" "))
            })
            .collect()
    }

    fn verdict(rows: &[&str]) -> Verdict {
        check_history(ModelKind::Register, &parse_str(&etcd(rows)).unwrap(), &CheckOptions::default()).unwrap()
    }

    #[test]
    fn an_info_write_may_take_effect_after_its_info_line() {
        let rows = [
            "1 invoke write 1",
            "1 info write :timed-out",
            "2 invoke read nil",
            "2 ok read nil", // the write has not happened yet...
            "2 invoke read nil",
            "2 ok read 1", // ...and now it has, after its :info line
        ];
        assert!(verdict(&rows).is_linearizable());
        // an info write may also never happen
        assert!(verdict(&["1 invoke write 1", "1 info write :timed-out", "2 invoke read nil", "2 ok read nil"])
            .is_linearizable());
        // but it cannot be undone
        let rows = [
            "1 invoke write 1",
            "1 info write :timed-out",
            "2 invoke read nil",
            "2 ok read 1",
            "2 invoke read nil",
            "2 ok read nil",
        ];
        assert!(!verdict(&rows).is_linearizable());
    }

    #[test]
    fn a_failed_cas_means_the_register_did_not_hold_its_expected_value() {
        let ok = [
            "1 invoke write 1",
            "1 ok write 1",
            "2 invoke cas [2 3]",
            "2 fail cas [2 3]",
            "2 invoke read nil",
            "2 ok read 1",
        ];
        assert!(verdict(&ok).is_linearizable());
        let bad = ["1 invoke write 1", "1 ok write 1", "2 invoke cas [1 2]", "2 fail cas [1 2]"];
        let Verdict::NotLinearizable(v) = verdict(&bad) else { panic!("expected a violation") };
        assert_eq!((v.linearized, v.window.len()), (1, 2));
        // concurrent with a write of 2, the failed cas [1 2] can go after it
        let ok = [
            "1 invoke write 1",
            "1 ok write 1",
            "3 invoke write 2",
            "2 invoke cas [1 2]",
            "2 fail cas [1 2]",
            "3 ok write 2",
        ];
        assert!(verdict(&ok).is_linearizable());
        // a successful cas needs the value; an info cas follows the model
        assert!(!verdict(&["2 invoke cas [1 2]", "2 ok cas [1 2]"]).is_linearizable());
        let info = [
            "1 invoke write 1",
            "1 ok write 1",
            "2 invoke cas [1 2]",
            "2 info cas :timed-out",
            "3 invoke read nil",
            "3 ok read 2",
        ];
        assert!(verdict(&info).is_linearizable());
    }

    #[test]
    fn reads_see_nil_first_and_failed_reads_constrain_nothing() {
        assert!(!verdict(&["1 invoke write 1", "1 ok write 1", "2 invoke read nil", "2 ok read nil"]).is_linearizable());
        assert!(verdict(&["1 invoke write 1", "1 ok write 1", "2 invoke read nil", "2 fail read :timed-out"])
            .is_linearizable());
        assert!(!verdict(&["2 invoke read nil", "2 ok read 0"]).is_linearizable());
    }

    #[test]
    fn bad_values_are_errors_with_line_numbers() {
        let h = parse_str(&etcd(&["1 invoke write 1", "1 ok write 1", "2 invoke cas [1]", "2 ok cas [1]"])).unwrap();
        assert_eq!(check_history(ModelKind::Register, &h, &CheckOptions::default()).unwrap_err().line, 3);
        let h = parse_str(&etcd(&["2 invoke read nil", "2 ok read \"x\""])).unwrap();
        assert_eq!(check_history(ModelKind::Register, &h, &CheckOptions::default()).unwrap_err().line, 2);
    }

    #[test]
    fn the_unexplained_read_check_only_flags_what_the_search_rejects() {
        use crate::model::Model;
        let mut seed = 5u64;
        let mut rnd = |n: u64| {
            seed += 1;
            crate::check::splitmix64(seed) % n
        };
        let (mut flagged, mut cleared) = (0, 0);
        for _ in 0..3000 {
            let n = 2 + rnd(7) as usize;
            let spans = crate::search::random_intervals(n, &mut rnd);
            let mut lines: Vec<(u32, String)> = Vec::new();
            for (k, &(call, ret)) in spans.iter().enumerate() {
                let v = rnd(3);
                let (f, arg, done) = match rnd(4) {
                    0 | 1 => ("read", "nil".to_string(), if rnd(4) == 0 { "nil".to_string() } else { v.to_string() }),
                    2 => ("write", v.to_string(), v.to_string()),
                    _ => ("cas", format!("[{} {v}]", rnd(3)), format!("[{} {v}]", rnd(3))),
                };
                let kind = match rnd(6) {
                    0 if f != "read" => "info",
                    1 if f == "cas" => "fail",
                    _ => "ok",
                };
                lines.push((call, format!("{k} invoke {f} {arg}")));
                lines.push((ret, format!("{k} {kind} {f} {done}")));
            }
            lines.sort();
            let rows: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
            let h = parse_str(&etcd(&rows)).unwrap();
            let prepared = super::Register.prepare(&h).unwrap();
            let Some(sv) = &prepared.static_violation else { continue };
            // The search alone, on the same partitions, must find no linearization either.
            let searched = prepared.partitions.iter().all(|p| {
                crate::check::check_partition(&super::Register, p, 60_000) == crate::check::SearchOutcome::Linearizable
            });
            assert!(!searched, "flagged a linearizable history ({}):\n{}", sv.message, rows.join("\n"));
            flagged += 1;
            cleared += usize::from(!searched);
        }
        assert!(flagged > 100, "only {flagged} flagged");
        assert_eq!(flagged, cleared);
    }
}
