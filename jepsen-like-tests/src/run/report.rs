//! The run's HTML report: verdict and invariants, a timeline of operations per client with the
//! faults drawn across it, and latency over time. One self-contained file (inline SVG, no
//! scripts), so it opens from the run directory or a CI artifact.

use std::collections::HashMap;
use std::fmt::Write;

use super::nemesis::NemesisEvent;
use super::recorder::{Line, VIRTUAL_PROCESS_BASE};
use super::RunOutcome;

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 60.0;
const LANE: f64 = 14.0;

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A client operation: process, f, invoke and completion time (ns), outcome.
struct Op<'a> {
    process: u64,
    f: &'a str,
    call_ns: u64,
    ret_ns: u64,
    kind: &'a str,
}

fn client_ops(lines: &[Line]) -> Vec<Op<'_>> {
    let mut open: HashMap<u64, (&str, u64)> = HashMap::new();
    let mut ops = Vec::new();
    for l in lines.iter().filter(|l| l.process < VIRTUAL_PROCESS_BASE) {
        if l.kind == "invoke" {
            open.insert(l.process, (l.f, l.time_ns));
        } else if let Some((f, call_ns)) = open.remove(&l.process) {
            ops.push(Op { process: l.process, f, call_ns, ret_ns: l.time_ns, kind: l.kind });
        }
    }
    ops
}

fn color(kind: &str) -> &'static str {
    match kind {
        "ok" => "#3a7",
        "fail" => "#e90",
        _ => "#d33",
    }
}

/// Fault intervals: (start ns, stop ns, label).
fn intervals(events: &[NemesisEvent], end_ns: u64) -> Vec<(u64, u64, String)> {
    let mut out = Vec::new();
    let mut open: Option<(u64, String)> = None;
    for e in events {
        match e.phase {
            "start" => open = Some((e.time_ns, format!("{} {}", e.fault, e.targets.join(",")))),
            "stop" => {
                if let Some((t, label)) = open.take() {
                    out.push((t, e.time_ns, label));
                }
            }
            _ => {}
        }
    }
    if let Some((t, label)) = open {
        out.push((t, end_ns, label));
    }
    out
}

/// The report: the verdict and invariants, the availability table, the operations and faults on
/// one timeline, and every call's latency over time.
pub fn render(
    outcome: &RunOutcome,
    lines: &[Line],
    events: &[NemesisEvent],
    violation_html: Option<&std::path::Path>,
) -> String {
    let ops = client_ops(lines);
    let end_ns = lines.last().map(|l| l.time_ns).unwrap_or(1).max(1);
    let x = |ns: u64| LEFT + (ns as f64 / end_ns as f64) * (WIDTH - LEFT - 10.0);
    let faults = intervals(events, end_ns);
    let mut html = String::new();
    verdict_section(&mut html, outcome, violation_html);
    availability_table(&mut html, outcome);
    timeline(&mut html, outcome.clients, &ops, &faults, end_ns, &x);
    latencies(&mut html, &ops, &faults, end_ns, &x);
    html.push_str("<p>Files: history.jsonl (check again with <code>jepsen-like-tests check --model scheduler history.jsonl</code>), nemesis.jsonl, terms.jsonl, verdict.json, logs/.</p>");
    html
}

/// The page's head: the verdict, the run's figures, and the invariants.
fn verdict_section(html: &mut String, outcome: &RunOutcome, violation_html: Option<&std::path::Path>) {
    let verdict = if outcome.valid { "<b style=color:#3a7>VALID</b>" } else { "<b style=color:#d33>INVALID</b>" };
    let _ = write!(
        html,
        "<!doctype html><meta charset=utf-8><title>raftsched jepsen-like run</title>\
         <style>body{{font:14px sans-serif;margin:20px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}</style>\
         <h1>raftsched jepsen-like run: {verdict}</h1>\
         <p>{} replicas, {} workers, {} clients, {} s, seed {}; faults injected: {} ({}); replica fault flags: {}; partitions {}.</p>\
         <p>Operations: {} ({} ok, {} fail, {} info); zombie (stale-token) reports: {}. Linearizability (scheduler model): <b>{}</b>.",
        outcome.nodes,
        outcome.workers,
        outcome.clients,
        outcome.time_limit_s,
        outcome.seed,
        outcome.faults,
        esc(&outcome.fault_kinds.join(", ")),
        esc(&if outcome.replica_faults.is_empty() { "none".to_string() } else { outcome.replica_faults.join(", ") }),
        if outcome.partitions_possible { "on (network namespaces)" } else { "off (not root)" },
        outcome.operations,
        outcome.ok,
        outcome.fail,
        outcome.info,
        outcome.zombie_reports,
        esc(&outcome.linearizability),
    );
    if let Some(path) = violation_html {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = write!(html, " The operations that cannot be ordered: <a href=\"{}\">{}</a>.", esc(&name), esc(&name));
    }
    html.push_str("</p><h2>Invariants</h2><table><tr><th>invariant</th><th>holds</th><th>detail</th></tr>");
    for inv in &outcome.invariants {
        let _ = write!(
            html,
            "<tr><td>{}</td><td style=color:{}>{}</td><td>{}</td></tr>",
            esc(inv.name),
            if inv.holds { "#3a7" } else { "#d33" },
            if inv.holds { "yes" } else { "NO" },
            esc(&inv.detail)
        );
    }
    html.push_str("</table>");
}

/// A lane per client, a bar per call, faults as shaded bands across all lanes.
fn timeline(
    html: &mut String,
    clients: usize,
    ops: &[Op<'_>],
    faults: &[(u64, u64, String)],
    end_ns: u64,
    x: &impl Fn(u64) -> f64,
) {
    let n_lanes = clients as f64;
    let height = 30.0 + n_lanes * LANE + 20.0;
    let _ = write!(
        html,
        "<h2>Operations and faults</h2><p>One lane per client; a bar per call from invoke to completion \
         (<span style=color:#3a7>ok</span>, <span style=color:#e90>fail</span>, <span style=color:#d33>info</span>); \
         shaded: a fault in force (hover for which).</p><svg width={WIDTH} height={height} style=border:1px solid #ddd>"
    );
    for (a, b, label) in faults {
        let _ = write!(
            html,
            "<rect x={:.1} y=10 width={:.1} height={:.1} fill=#88f fill-opacity=0.18><title>{}</title></rect>\
             <text x={:.1} y=22 font-size=9 fill=#447>{}</text>",
            x(*a),
            (x(*b) - x(*a)).max(1.0),
            height - 20.0,
            esc(label),
            x(*a) + 2.0,
            esc(label.split(' ').next().unwrap_or_default())
        );
    }
    for p in 0..clients {
        let _ = write!(html, "<text x=4 y={:.1} font-size=10>c{p}</text>", 30.0 + p as f64 * LANE + 10.0);
    }
    for op in ops {
        let y = 30.0 + op.process as f64 * LANE;
        let _ = write!(
            html,
            "<rect x={:.1} y={y:.1} width={:.2} height={:.1} fill={}><title>{} {} {:.1} ms</title></rect>",
            x(op.call_ns),
            (x(op.ret_ns) - x(op.call_ns)).max(0.6),
            LANE - 3.0,
            color(op.kind),
            op.f,
            op.kind,
            (op.ret_ns - op.call_ns) as f64 / 1e6
        );
    }
    axis(html, height - 5.0, end_ns, x);
    html.push_str("</svg>");
}

/// Every call's latency at its invoke time, log scale 0.1 ms .. 10 s.
fn latencies(html: &mut String, ops: &[Op<'_>], faults: &[(u64, u64, String)], end_ns: u64, x: &impl Fn(u64) -> f64) {
    let plot_h = 260.0;
    let y = |ms: f64| {
        let l = ms.clamp(0.1, 10_000.0).log10(); // -1 ..= 4
        10.0 + (4.0 - l) / 5.0 * (plot_h - 30.0)
    };
    let _ = write!(
        html,
        "<h2>Latency over time</h2><p>Each call at its invoke time; log scale.</p><svg width={WIDTH} height={plot_h} style=border:1px solid #ddd>"
    );
    for (a, b, label) in faults {
        let _ = write!(
            html,
            "<rect x={:.1} y=0 width={:.1} height={:.1} fill=#88f fill-opacity=0.15><title>{}</title></rect>",
            x(*a),
            (x(*b) - x(*a)).max(1.0),
            plot_h - 20.0,
            esc(label)
        );
    }
    for ms in [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0] {
        let (line_y, text_y) = (y(ms), y(ms) + 3.0);
        let _ = write!(
            html,
            "<line x1={LEFT} x2={WIDTH} y1={line_y:.1} y2={line_y:.1} stroke=#eee /><text x=4 y={text_y:.1} font-size=10>{ms} ms</text>"
        );
    }
    for op in ops {
        let ms = (op.ret_ns - op.call_ns) as f64 / 1e6;
        let _ = write!(html, "<circle cx={:.1} cy={:.1} r=1.5 fill={} />", x(op.call_ns), y(ms), color(op.kind));
    }
    axis(html, plot_h - 5.0, end_ns, x);
    html.push_str("</svg>");
}

/// The availability figures, one row per fault kind, `none` and `all`.
fn availability_table(html: &mut String, outcome: &RunOutcome) {
    let fraction = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |f| format!("{f:.3}"));
    html.push_str(
        "<h2>Availability</h2><p>Per fault kind, while its faults were in force (<code>none</code>: between \
         faults; <code>all</code>: the whole load): the share of 250 ms buckets with a successful write \
         (submit or cancel), the longest time without one, and the Raft terms that passed (until 5 s \
         after each fault or the next fault). Definitions in docs/testing.md.</p>\
         <table><tr><th>kind</th><th>faults</th><th>write availability</th><th>longest without a write (ms)</th>\
         <th>terms</th><th>terms per fault</th></tr>",
    );
    for (kind, f) in &outcome.availability {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(kind),
            f.faults,
            fraction(f.write_availability),
            f.longest_no_write_ms,
            f.terms_total,
            fraction(f.elections_per_fault)
        );
    }
    html.push_str("</table>");
}

fn axis(html: &mut String, y: f64, end_ns: u64, x: &impl Fn(u64) -> f64) {
    let end_s = end_ns / 1_000_000_000;
    let step = (end_s / 10).max(1);
    let mut s = 0;
    while s <= end_s {
        let _ = write!(html, "<text x={:.1} y={y:.1} font-size=10>{s}s</text>", x(s * 1_000_000_000));
        s += step;
    }
}
