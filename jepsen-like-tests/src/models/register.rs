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
use crate::model::{group, op_error, Model, PartOp, Prepared};
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
        Ok(Prepared { partitions: group(items, name), static_violation: None })
    }
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
}
