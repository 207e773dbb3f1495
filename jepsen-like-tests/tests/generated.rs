//! Property tests over the history generator: for every model, every anomaly and a spread of
//! shapes (1 to 50 clients, up to 5,000 operations, with time-outs), a clean history is
//! `linearizable` and a history with an injected anomaly is `not linearizable`, each decided (never
//! `unknown`) within a generous budget. No time is asserted.
//!
//! Shapes keep the clients per key within what an exhaustive checker decides: a single register
//! or string shared by 20 or more clients with a violation makes every checker of this family
//! (Porcupine too) enumerate an exponential number of orders; docs/benchmarks.md (the Porcupine
//! campaign) shows where that starts.

use jepsen_like_tests::check::{check_history, CheckOptions, Verdict};
use jepsen_like_tests::generate::{generate, Anomaly, GenConfig};
use jepsen_like_tests::model::ModelKind;

/// (clients, keys, operations, time-outs per thousand).
type Shape = (usize, usize, usize, u64);

const REGISTER_SHAPES: [Shape; 5] =
    [(1, 1, 2_000, 10), (5, 1, 2_000, 5), (10, 1, 1_000, 5), (20, 4, 5_000, 5), (50, 10, 5_000, 10)];
const KV_SHAPES: [Shape; 5] =
    [(1, 1, 2_000, 10), (1, 5, 5_000, 10), (5, 2, 5_000, 5), (10, 5, 2_000, 10), (50, 25, 5_000, 10)];
const SCHEDULER_SHAPES: [Shape; 4] = [(1, 1, 5_000, 10), (5, 1, 5_000, 50), (20, 1, 5_000, 10), (50, 1, 5_000, 20)];

fn verdict_word(v: &Verdict) -> String {
    match v {
        Verdict::Linearizable => "linearizable".into(),
        Verdict::NotLinearizable(_) => "not linearizable".into(),
        Verdict::Unknown(why) => format!("unknown ({why})"),
    }
}

fn check_model(model: ModelKind, shapes: &[Shape], seeds: std::ops::Range<u64>) {
    let opts = CheckOptions { timeout_ms: 300_000, ..CheckOptions::default() };
    let mut wrong = Vec::new();
    let mut checked = 0;
    for &(clients, keys, operations, info_per_mille) in shapes {
        for anomaly in Anomaly::ALL {
            for seed in seeds.clone() {
                let mut cfg = GenConfig::new(model, clients, operations, seed);
                cfg.keys = keys;
                cfg.info_per_mille = info_per_mille;
                cfg.anomaly = anomaly;
                cfg.scene = true;
                let h = generate(&cfg);
                assert!(h.ops.len() >= operations, "{cfg:?}: {} operations", h.ops.len());
                let v = check_history(model, &h, &opts).unwrap_or_else(|e| panic!("{cfg:?}: {e}"));
                let expected = if cfg.linearizable() { "linearizable" } else { "not linearizable" };
                if verdict_word(&v) != expected {
                    wrong.push(format!("{cfg:?}: expected {expected}, got {}", verdict_word(&v)));
                }
                if let Verdict::NotLinearizable(report) = &v {
                    // The report stays small: the window that cannot be ordered, not the history.
                    assert!(
                        !report.window.is_empty() && report.window.len() <= 64,
                        "{cfg:?}: window {}",
                        report.window.len()
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {checked} wrong:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn register_histories_get_their_verdict_by_construction() {
    check_model(ModelKind::Register, &REGISTER_SHAPES, 0..2);
}

#[test]
fn kv_histories_get_their_verdict_by_construction() {
    check_model(ModelKind::Kv, &KV_SHAPES, 0..2);
}

#[test]
fn scheduler_histories_get_their_verdict_by_construction() {
    check_model(ModelKind::Scheduler, &SCHEDULER_SHAPES, 0..2);
}

#[test]
fn the_same_seed_gives_the_same_history_and_a_history_round_trips_through_jsonl() {
    for model in [ModelKind::Register, ModelKind::Kv, ModelKind::Scheduler] {
        let mut cfg = GenConfig::new(model, 8, 2_000, 42);
        cfg.anomaly = Anomaly::Vanish;
        let a = generate(&cfg).to_jsonl();
        assert_eq!(a, generate(&cfg).to_jsonl());
        let again = jepsen_like_tests::parse::parse_str(&a).unwrap();
        assert_eq!(again.to_jsonl(), a);
        cfg.seed = 43;
        assert_ne!(a, generate(&cfg).to_jsonl());
    }
}
