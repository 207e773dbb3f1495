//! The oracle: every history in `shared/lincheck/verdicts.tsv` (82 etcd register logs and 2 kv
//! logs from Porcupine's test data) must get exactly its listed verdict with its listed model.
//! No time is asserted; the time budget per file is generous so that a loaded machine cannot turn
//! a verdict into `unknown`.

use jepsen_like_tests::bench::{default_data_dir, read_verdicts};
use jepsen_like_tests::check::{check_history, CheckOptions, Verdict};
use jepsen_like_tests::model::ModelKind;
use jepsen_like_tests::parse::parse_file;

#[test]
fn every_reference_history_gets_its_listed_verdict() {
    let dir = default_data_dir();
    let refs = read_verdicts(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot read {}/verdicts.tsv ({e}): the test data lives in shared/ beside the repository; \
             set RAFTSCHED_SHARED_DIR to its path if this checkout is elsewhere",
            dir.display()
        )
    });
    assert_eq!(refs.len(), 84, "verdicts.tsv rows");
    let opts = CheckOptions { timeout_ms: 300_000, ..CheckOptions::default() };
    let mut wrong = Vec::new();
    let (mut register, mut kv) = (0, 0);
    for r in &refs {
        let h = parse_file(&dir.join(&r.file)).unwrap_or_else(|e| panic!("{}: {e}", r.file));
        match r.model {
            ModelKind::Register => register += 1,
            _ => kv += 1,
        }
        let got = match check_history(r.model, &h, &opts).unwrap_or_else(|e| panic!("{}: {e}", r.file)) {
            Verdict::Linearizable => Some(true),
            Verdict::NotLinearizable(v) => {
                assert!(!v.window.is_empty(), "{}: a violation must come with a window", r.file);
                Some(false)
            }
            Verdict::Unknown(_) => None,
        };
        if got != Some(r.linearizable) {
            wrong.push(format!("{}: expected {}, got {got:?}", r.file, r.linearizable));
        }
    }
    assert_eq!((register, kv), (82, 2));
    assert!(wrong.is_empty(), "{} of {} verdicts differ:\n{}", wrong.len(), refs.len(), wrong.join("\n"));
}
