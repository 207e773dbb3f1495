//! Availability figures: how well the cluster kept taking writes, and how many Raft terms passed,
//! while each kind of fault was in force. Pure functions over the run's own records: the fault
//! intervals (from the nemesis timeline), the completion times of the writes that succeeded (from
//! the history) and the term samples (`terms.jsonl`, see [`super::terms`]). All times are
//! nanoseconds since the run's start, as in `history.jsonl` and `nemesis.jsonl`.
//!
//! Definitions, per line (a fault kind such as `kill-leader`, `none` or `all`):
//!
//! - **window**: the load phase, from the moment the clients start to the moment they are told to
//!   stop. Everything below is clipped to it.
//! - **intervals**: a fault kind's intervals run from each `start` event of that fault to its next
//!   `stop` event (the window's end if none). `none` has the quiet intervals: the window minus
//!   every fault interval. `all` has one interval, the whole window. `faults` counts the intervals
//!   (for `none`: the quiet stretches; for `all`: every fault of every kind).
//! - **writes**: completions of type `ok` of the operations that change state: `submit` and
//!   `cancel` ([`WRITE_FS`]); their completion times.
//! - `write_availability`: each interval is cut into [`BUCKET_MS`] buckets from its start (the
//!   last one shorter); the share, over all intervals of the line, of bucket time in buckets in
//!   which at least one write completed (a shorter last bucket counts for its length). 3 decimals.
//! - `longest_no_write_ms`: the gaps between consecutive write completions anywhere in the window
//!   (the window's start and end count as completions, so gaps are clipped to it); the longest
//!   gap that overlaps one of the line's intervals.
//! - `terms_total`: for each interval, the highest term sampled from its start until
//!   [`ELECTION_TAIL_MS`] after its end or until the next fault starts, whichever is first (never
//!   before its end), minus the highest term sampled before its start (when there is no sample
//!   before it: the lowest sampled in that span); 0 when nothing was sampled in the span. Summed
//!   over the line's intervals. Quiet intervals end where the next fault starts, so theirs have
//!   no tail; `all`'s tail runs to 5 s after the window.
//! - `elections_per_fault`: `terms_total / faults`, 3 decimals.
//!
//! A line whose intervals are all empty reports `null` for the two fractions.

use std::collections::BTreeMap;

use serde::Serialize;

use super::nemesis::NemesisEvent;
use super::recorder::Line;
use super::terms::TermSample;

/// Resolution of `write_availability`.
pub const BUCKET_MS: u64 = 250;
/// How long after a fault its elections are still counted (unless the next fault starts first).
pub const ELECTION_TAIL_MS: u64 = 5_000;
/// The operations whose `ok` completions count as successful writes.
pub const WRITE_FS: [&str; 2] = ["submit", "cancel"];

const MS: u64 = 1_000_000;

/// A stretch of time `[start_ns, end_ns)` of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub kind: String,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Interval {
    pub fn new(kind: &str, start_ns: u64, end_ns: u64) -> Interval {
        Interval { kind: kind.to_string(), start_ns, end_ns }
    }

    fn overlaps(&self, a: u64, b: u64) -> bool {
        a < self.end_ns && self.start_ns < b
    }
}

/// The figures of one line; a value of `verdict.json`'s `availability`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindFigures {
    pub faults: usize,
    pub write_availability: Option<f64>,
    pub longest_no_write_ms: u64,
    pub elections_per_fault: Option<f64>,
    pub terms_total: u64,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Completion times of the successful writes, sorted.
pub fn write_completions(lines: &[Line]) -> Vec<u64> {
    let mut times: Vec<u64> =
        lines.iter().filter(|l| l.kind == "ok" && WRITE_FS.contains(&l.f)).map(|l| l.time_ns).collect();
    times.sort_unstable();
    times
}

/// Each fault's interval, from its `start` to its next `stop` (the window's end if none), clipped
/// to `window`; empty ones dropped. Other phases (`repair`, `error`, `crash`) are ignored.
pub fn fault_intervals(events: &[NemesisEvent], window: (u64, u64)) -> Vec<Interval> {
    let mut raw = Vec::new();
    let mut open: Option<&NemesisEvent> = None;
    for e in events {
        match e.phase {
            "start" => {
                if let Some(s) = open.replace(e) {
                    raw.push(Interval::new(&s.fault, s.time_ns, e.time_ns));
                }
            }
            "stop" if open.is_some_and(|s| s.fault == e.fault) => {
                let s = open.take().expect("checked");
                raw.push(Interval::new(&s.fault, s.time_ns, e.time_ns));
            }
            _ => {}
        }
    }
    if let Some(s) = open {
        raw.push(Interval::new(&s.fault, s.time_ns, window.1));
    }
    raw.into_iter()
        .map(|i| Interval { start_ns: i.start_ns.max(window.0), end_ns: i.end_ns.min(window.1), ..i })
        .filter(|i| i.start_ns < i.end_ns)
        .collect()
}

/// The window minus the fault intervals (sorted by start), as intervals of kind `none`.
pub fn quiet_intervals(faults: &[Interval], window: (u64, u64)) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut from = window.0;
    for f in faults {
        if f.start_ns > from {
            out.push(Interval::new("none", from, f.start_ns.min(window.1)));
        }
        from = from.max(f.end_ns);
    }
    if from < window.1 {
        out.push(Interval::new("none", from, window.1));
    }
    out.retain(|i| i.start_ns < i.end_ns);
    out
}

/// Share of bucket time, over `intervals`, in buckets in which a write in `writes` (sorted)
/// completed; `None` when the intervals are empty.
pub fn write_availability(intervals: &[&Interval], writes: &[u64]) -> Option<f64> {
    let (mut total, mut served) = (0u64, 0u64);
    for i in intervals {
        let mut a = i.start_ns;
        while a < i.end_ns {
            let b = (a + BUCKET_MS * MS).min(i.end_ns);
            let first = writes.partition_point(|&w| w < a);
            if writes.get(first).is_some_and(|&w| w < b) {
                served += b - a;
            }
            total += b - a;
            a = b;
        }
    }
    (total > 0).then(|| round3(served as f64 / total as f64))
}

/// The longest gap between consecutive writes (sorted; the window's ends count as writes) that
/// overlaps one of `intervals`, in ms; 0 when none does.
pub fn longest_no_write_ms(intervals: &[&Interval], writes: &[u64], window: (u64, u64)) -> u64 {
    let inside = writes.iter().copied().filter(|&w| w > window.0 && w < window.1);
    let points: Vec<u64> = std::iter::once(window.0).chain(inside).chain(std::iter::once(window.1)).collect();
    points
        .windows(2)
        .filter(|p| intervals.iter().any(|i| i.overlaps(p[0], p[1])))
        .map(|p| (p[1] - p[0]) / MS)
        .max()
        .unwrap_or(0)
}

/// Terms that passed during `interval`: the highest term sampled in `[start, until]` minus the
/// highest before `start` (the lowest in the span when none is before); 0 without samples in it.
pub fn term_increase(interval: &Interval, until_ns: u64, samples: &[TermSample]) -> u64 {
    let span = || samples.iter().filter(|s| s.time_ns >= interval.start_ns && s.time_ns <= until_ns);
    let Some(after) = span().map(|s| s.term).max() else { return 0 };
    let before = samples.iter().filter(|s| s.time_ns < interval.start_ns).map(|s| s.term).max();
    let before = before.or_else(|| span().map(|s| s.term).min()).unwrap_or(after);
    after.saturating_sub(before)
}

/// Where an interval's elections stop being counted: [`ELECTION_TAIL_MS`] after its end, or the
/// next fault start after its start if earlier, but never before its end.
pub fn election_until(interval: &Interval, fault_starts: &[u64]) -> u64 {
    let tail = interval.end_ns + ELECTION_TAIL_MS * MS;
    let next = fault_starts.iter().copied().filter(|&s| s > interval.start_ns).min().unwrap_or(u64::MAX);
    tail.min(next).max(interval.end_ns)
}

/// The figures of one line over its intervals; `faults` is what the line counts as its faults.
pub fn figures(
    intervals: &[&Interval],
    faults: usize,
    fault_starts: &[u64],
    writes: &[u64],
    samples: &[TermSample],
    window: (u64, u64),
) -> KindFigures {
    let terms_total: u64 = intervals.iter().map(|i| term_increase(i, election_until(i, fault_starts), samples)).sum();
    KindFigures {
        faults,
        write_availability: write_availability(intervals, writes),
        longest_no_write_ms: longest_no_write_ms(intervals, writes, window),
        elections_per_fault: (faults > 0).then(|| round3(terms_total as f64 / faults as f64)),
        terms_total,
    }
}

/// Every line: one per fault kind in `events`, `none` and `all`.
pub fn availability(
    events: &[NemesisEvent],
    writes: &[u64],
    samples: &[TermSample],
    window: (u64, u64),
) -> BTreeMap<String, KindFigures> {
    let faults = fault_intervals(events, window);
    let quiet = quiet_intervals(&faults, window);
    let starts: Vec<u64> = faults.iter().map(|f| f.start_ns).collect();
    let mut kinds: Vec<&str> = faults.iter().map(|f| f.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut out = BTreeMap::new();
    for kind in kinds {
        let mine: Vec<&Interval> = faults.iter().filter(|f| f.kind == kind).collect();
        out.insert(kind.to_string(), figures(&mine, mine.len(), &starts, writes, samples, window));
    }
    let quiet_refs: Vec<&Interval> = quiet.iter().collect();
    out.insert("none".into(), figures(&quiet_refs, quiet.len(), &starts, writes, samples, window));
    let whole = Interval::new("all", window.0, window.1);
    out.insert("all".into(), figures(&[&whole], faults.len(), &[], writes, samples, window));
    out
}

fn fraction(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |f| format!("{f:.3}"))
}

/// One line of text per kind, for the end of the run.
pub fn summary_lines(figures: &BTreeMap<String, KindFigures>) -> Vec<String> {
    figures
        .iter()
        .map(|(kind, f)| {
            format!(
                "availability {kind}: {} faults, writes ok in {} of the time, longest without a write {} ms, \
                 {} terms ({} per fault)",
                f.faults,
                fraction(f.write_availability),
                f.longest_no_write_ms,
                f.terms_total,
                fraction(f.elections_per_fault),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const S: u64 = 1_000_000_000;

    fn ev(time_ms: u64, phase: &'static str, fault: &str) -> NemesisEvent {
        NemesisEvent { time_ns: time_ms * MS, phase, fault: fault.into(), targets: vec![] }
    }

    /// `fault` in force from `start_ms` to `stop_ms`: its start and stop events.
    fn held(fault: &str, start_ms: u64, stop_ms: u64) -> [NemesisEvent; 2] {
        [ev(start_ms, "start", fault), ev(stop_ms, "stop", fault)]
    }

    fn sample(time_ms: u64, term: u64) -> TermSample {
        TermSample { time_ns: time_ms * MS, replica: 1, term, leader: 1, role: "follower".into() }
    }

    fn line(kind: &'static str, f: &'static str, time_ms: u64) -> Line {
        Line { process: 0, kind, f, key: None, value: Value::Null, time_ns: time_ms * MS }
    }

    #[test]
    fn writes_are_ok_submits_and_cancels() {
        let lines = [
            line("invoke", "submit", 1),
            line("ok", "submit", 2),
            line("ok", "get", 3),
            line("fail", "cancel", 4),
            line("info", "submit", 5),
            line("ok", "cancel", 6),
        ];
        assert_eq!(write_completions(&lines), vec![2 * MS, 6 * MS]);
    }

    #[test]
    fn intervals_pair_start_and_stop_and_clip() {
        let events = [
            ev(500, "start", "kill-one"),
            ev(1_500, "repair", "kill-one"),
            ev(2_000, "stop", "kill-one"),
            ev(2_100, "crash", "n2"),
            ev(3_000, "start", "pause-one"),
            ev(4_000, "stop", "pause-one"),
            ev(9_000, "start", "bridge"),
        ];
        let got = fault_intervals(&events, (1_000 * MS, 10_000 * MS));
        assert_eq!(
            got,
            vec![
                Interval::new("kill-one", 1_000 * MS, 2_000 * MS),
                Interval::new("pause-one", 3_000 * MS, 4_000 * MS),
                Interval::new("bridge", 9_000 * MS, 10_000 * MS),
            ]
        );
        let quiet = quiet_intervals(&got, (0, 10_000 * MS));
        assert_eq!(
            quiet,
            vec![
                Interval::new("none", 0, 1_000 * MS),
                Interval::new("none", 2_000 * MS, 3_000 * MS),
                Interval::new("none", 4_000 * MS, 9_000 * MS),
            ]
        );
    }

    #[test]
    fn availability_counts_buckets_with_a_write() {
        // 1 s = 4 buckets: [0,250) has a write, [250,500) none, [500,750) one at 500, [750,1000) none.
        let i = Interval::new("k", 0, S);
        assert_eq!(write_availability(&[&i], &[10 * MS, 500 * MS, 1_000 * MS]), Some(0.5));
        // A shorter last bucket counts for its length: 1.1 s, a write only in [1000,1100).
        let j = Interval::new("k", 0, 1_100 * MS);
        assert_eq!(write_availability(&[&j], &[1_050 * MS]), Some(0.091));
        // Pooled over intervals: 2 of 8 buckets.
        let k = Interval::new("k", 2 * S, 3 * S);
        assert_eq!(write_availability(&[&i, &k], &[100 * MS, 2_900 * MS]), Some(0.25));
        assert_eq!(write_availability(&[], &[1]), None);
    }

    #[test]
    fn longest_gap_overlapping_the_intervals() {
        let window = (0, 10 * S);
        let writes = [S, 2 * S, 6 * S, 7 * S];
        // Gaps: 0-1, 1-2, 2-6 (4 s), 6-7, 7-10 (3 s, clipped to the window's end).
        let fault = Interval::new("k", 6_500 * MS, 6_600 * MS);
        assert_eq!(longest_no_write_ms(&[&fault], &writes, window), 1_000);
        let later = Interval::new("k", 9 * S, 10 * S);
        assert_eq!(longest_no_write_ms(&[&fault, &later], &writes, window), 3_000);
        let spans = Interval::new("k", 1_500 * MS, 2_500 * MS);
        assert_eq!(longest_no_write_ms(&[&spans], &writes, window), 4_000);
        assert_eq!(longest_no_write_ms(&[&fault], &[], window), 10_000);
    }

    #[test]
    fn term_increase_uses_the_span_and_the_baseline() {
        let samples = [sample(0, 3), sample(900, 4), sample(1_500, 6), sample(6_500, 7), sample(7_100, 9)];
        let i = Interval::new("k", 1_000 * MS, 2_000 * MS);
        // Until 7 s (5 s tail): max 7 (6.5 s) minus 4 before.
        assert_eq!(term_increase(&i, election_until(&i, &[]), &samples), 3);
        // The next fault at 3 s cuts the tail: max 6 minus 4.
        assert_eq!(election_until(&i, &[1_000 * MS, 3 * S]), 3 * S);
        assert_eq!(term_increase(&i, 3 * S, &samples), 2);
        // No sample before: the lowest in the span is the baseline.
        let first = Interval::new("k", 0, 100 * MS);
        assert_eq!(term_increase(&first, S, &samples), 1);
        // Nothing sampled in the span.
        assert_eq!(term_increase(&Interval::new("k", 20 * S, 21 * S), 22 * S, &samples), 0);
        // A next fault starting before this one ends does not cut it short.
        assert_eq!(election_until(&i, &[1_500 * MS]), 2 * S);
    }

    #[test]
    fn lines_per_kind_none_and_all() {
        let events =
            [held("kill-leader", 1_000, 2_000), held("kill-leader", 3_000, 4_000), held("pause-one", 6_000, 7_000)]
                .concat();
        // Writes every 100 ms except during the kills.
        let writes: Vec<u64> = (0..80)
            .map(|k| k * 100 * MS)
            .filter(|&t| !(S..2 * S).contains(&t) && !(3 * S..4 * S).contains(&t))
            .collect();
        let samples = [sample(500, 1), sample(1_500, 2), sample(2_500, 2), sample(3_500, 4), sample(8_000, 4)];
        let got = availability(&events, &writes, &samples, (0, 8 * S));
        assert_eq!(got.keys().collect::<Vec<_>>(), ["all", "kill-leader", "none", "pause-one"]);
        let kill = &got["kill-leader"];
        assert_eq!(
            kill,
            &KindFigures {
                faults: 2,
                write_availability: Some(0.0),
                longest_no_write_ms: 1_100,
                // 2-1 for the first (cut at 3 s), 4-2 for the second.
                elections_per_fault: Some(1.5),
                terms_total: 3,
            }
        );
        assert_eq!(got["pause-one"].write_availability, Some(1.0));
        assert_eq!(got["pause-one"].terms_total, 0);
        assert_eq!(got["none"].faults, 4);
        assert_eq!(got["none"].write_availability, Some(1.0));
        assert_eq!(got["none"].longest_no_write_ms, 1_100);
        let all = &got["all"];
        assert_eq!((all.faults, all.terms_total, all.elections_per_fault), (3, 3, Some(1.0)));
        assert_eq!(all.write_availability, Some(0.75));
        assert_eq!(summary_lines(&got).len(), 4);
    }
}
