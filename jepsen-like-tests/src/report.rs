//! Explaining a violation: the window of operations that cannot be ordered, as text, JSON and an
//! HTML page with an SVG timeline.
//!
//! The search reports the longest sequence of operations it could linearize (a partial
//! linearization, as Porcupine shows). After that prefix, the operations that could come next
//! are those invoked before the earliest completion among the rest (the *blocker*): one of them
//! must be next, and none can be — each is either illegal in the state the prefix leaves, or legal
//! but leads only to dead ends. The window is those candidates plus the prefix operations that
//! overlap them in time (they could have been ordered differently) and the last few prefix
//! operations (which set the state), ordered by invoke. It is a heuristic explanation, not a
//! proven-minimal core: but it is small, and everything needed to see the conflict is in it.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::history::{History, Operation};
use crate::model::{Model, PartOp, Partition, StaticViolation, OPEN};

/// Prefix operations kept in the window for context even when they do not overlap the candidates.
const CONTEXT_OPERATIONS: usize = 3;

/// What an operation is, in a violation window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// In the longest linearizable prefix found, at this 1-based position.
    Linearized(usize),
    /// Could come next, but its result is impossible in the state after the prefix.
    Illegal,
    /// Could come next and is legal there, but no way to continue from it exists.
    DeadEnd,
    /// Part of a violation found without search (see [`StaticViolation`]).
    Conflicting,
}

impl Role {
    fn label(self) -> String {
        match self {
            Role::Linearized(k) => format!("linearized #{k}"),
            Role::Illegal => "cannot be next: illegal in that state".into(),
            Role::DeadEnd => "cannot be next: legal, but leads to a dead end".into(),
            Role::Conflicting => "conflicting".into(),
        }
    }
}

/// One operation of a violation window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowOp {
    /// Index in the history's operations (`None` for an operation the model added).
    pub index: Option<usize>,
    pub process: Option<u64>,
    pub description: String,
    pub call_line: Option<usize>,
    pub ret_line: Option<usize>,
    /// Event positions (time); `ret` is `None` for an indeterminate operation.
    pub call: u32,
    pub ret: Option<u32>,
    pub role: Role,
}

/// A violation, explained.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// Which partition (key, task) it is in.
    pub partition: String,
    /// One sentence.
    pub summary: String,
    pub partition_operations: usize,
    /// Length of the longest linearizable prefix found.
    pub linearized: usize,
    /// The model state after that prefix (Rust debug form).
    pub state_after_prefix: String,
    /// The prefix, in order (descriptions).
    pub prefix: Vec<String>,
    /// The window, by invoke position.
    pub window: Vec<WindowOp>,
    /// Number of events in the whole history (the timeline's right edge).
    pub history_events: u32,
}

fn window_op<O>(history: &History, p: &PartOp<O>, role: Role, synthetic: &str) -> WindowOp
where
    O: std::fmt::Debug,
{
    let h: Option<&Operation> = p.history_index.map(|i| &history.ops[i]);
    WindowOp {
        index: p.history_index,
        process: h.map(|h| h.process),
        description: h.map(Operation::describe).unwrap_or_else(|| synthetic.to_string()),
        call_line: h.map(|h| h.call_line),
        ret_line: h.and_then(|h| h.ret_line),
        call: p.call,
        ret: (p.ret != OPEN).then_some(p.ret),
        role,
    }
}

/// Builds the explanation of a violation in `part` from the search's longest prefix.
pub fn violation<M: Model>(model: &M, history: &History, part: &Partition<M::Op>, prefix: &[u32]) -> Violation {
    let describe = |p: &PartOp<M::Op>| match p.history_index {
        Some(i) => history.ops[i].describe(),
        None => format!("(added by the model) {:?}", p.op),
    };
    let mut state = model.init();
    let mut placed = 0;
    for &i in prefix {
        match model.step(&state, &part.ops[i as usize].op) {
            Some(s) => state = s,
            None => break, // cannot happen: the search only stacks legal steps
        }
        placed += 1;
    }
    let prefix = &prefix[..placed];
    let done: HashSet<u32> = prefix.iter().copied().collect();
    let rest: Vec<usize> = (0..part.ops.len()).filter(|i| !done.contains(&(*i as u32))).collect();
    let blocker_ret = rest.iter().map(|&i| part.ops[i].ret).filter(|&r| r != OPEN).min().unwrap_or(OPEN);
    let candidates: Vec<usize> = rest.iter().copied().filter(|&i| part.ops[i].call < blocker_ret).collect();
    // The window starts at the earliest determinate candidate: an indeterminate operation stays a
    // candidate from its invoke to the end, and starting at the oldest of them would pull in most
    // of the history. Indeterminate operations are shown from the window's start on.
    let determinate = candidates.iter().filter(|&&i| !part.ops[i].is_open());
    let window_start = determinate
        .map(|&i| part.ops[i].call)
        .min()
        .or_else(|| candidates.iter().map(|&i| part.ops[i].call).min())
        .unwrap_or(0);
    let shown = |p: &PartOp<M::Op>| if p.is_open() { p.call >= window_start } else { p.ret > window_start };

    let mut window: Vec<WindowOp> = Vec::new();
    for (k, &i) in prefix.iter().enumerate() {
        let p = &part.ops[i as usize];
        if shown(p) || k + CONTEXT_OPERATIONS >= prefix.len() {
            window.push(window_op(history, p, Role::Linearized(k + 1), &describe(p)));
        }
    }
    let mut illegal = 0;
    for &i in &candidates {
        let p = &part.ops[i];
        let role = if model.step(&state, &p.op).is_some() {
            Role::DeadEnd
        } else {
            illegal += 1;
            Role::Illegal
        };
        if shown(p) || !p.is_open() {
            window.push(window_op(history, p, role, &describe(p)));
        }
    }
    window.sort_by_key(|w| w.call);
    let summary = format!(
        "in {}: linearized {} of {} operations (state then: {:?}); none of the {} operations that could come next can \
         ({} illegal in that state, {} leading to dead ends)",
        part.name,
        prefix.len(),
        part.ops.len(),
        state,
        candidates.len(),
        illegal,
        candidates.len() - illegal
    );
    Violation {
        partition: part.name.clone(),
        summary,
        partition_operations: part.ops.len(),
        linearized: prefix.len(),
        state_after_prefix: format!("{state:?}"),
        prefix: prefix.iter().map(|&i| describe(&part.ops[i as usize])).collect(),
        window,
        history_events: history.events,
    }
}

/// Explains a violation found without search.
pub fn static_violation(history: &History, sv: &StaticViolation) -> Violation {
    let mut window: Vec<WindowOp> = sv
        .ops
        .iter()
        .map(|&i| {
            let h = &history.ops[i];
            WindowOp {
                index: Some(i),
                process: Some(h.process),
                description: h.describe(),
                call_line: Some(h.call_line),
                ret_line: h.ret_line,
                call: h.call,
                ret: h.ret,
                role: Role::Conflicting,
            }
        })
        .collect();
    window.sort_by_key(|w| w.call);
    Violation {
        partition: "whole history".into(),
        summary: sv.message.clone(),
        partition_operations: history.ops.len(),
        linearized: 0,
        state_after_prefix: String::new(),
        prefix: Vec::new(),
        window,
        history_events: history.events,
    }
}

impl Violation {
    /// The explanation as indented text lines (for stderr, after the verdict line).
    pub fn to_text(&self) -> String {
        let mut out = format!("  {}\n", self.summary);
        let lines = |w: &WindowOp| match (w.call_line, w.ret_line, w.ret) {
            (Some(a), Some(b), Some(_)) => format!("lines {a}-{b}"),
            (Some(a), Some(b), None) => format!("lines {a}-end (info {b})"),
            (Some(a), None, _) => format!("lines {a}-end"),
            _ => "from the start".to_string(),
        };
        for w in &self.window {
            let process = w.process.map(|p| format!("process {p}")).unwrap_or_default();
            let _ = writeln!(out, "    {:<24} {:<11} {:<36} {}", lines(w), process, w.description, w.role.label());
        }
        out
    }

    /// Writes `<name>.violation.json` and `<name>.violation.html` into `dir` (created if needed);
    /// returns the two paths.
    pub fn write_artifacts(&self, dir: &Path, name: &str) -> std::io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let json = dir.join(format!("{name}.violation.json"));
        let html = dir.join(format!("{name}.violation.html"));
        let body = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&json, body + "\n")?;
        std::fs::write(&html, self.to_html(name))?;
        Ok((json, html))
    }

    /// A self-contained HTML page: summary, SVG timeline of the window (one row per process, a bar
    /// from invoke to completion, colored by role), and the window as a table.
    pub fn to_html(&self, title: &str) -> String {
        const WIDTH_PX: f64 = 1000.0;
        const LEFT_PX: f64 = 110.0;
        const ROW_PX: f64 = 34.0;
        let mut processes: Vec<Option<u64>> = self.window.iter().map(|w| w.process).collect();
        processes.sort();
        processes.dedup();
        let start = self.window.iter().map(|w| w.call).min().unwrap_or(0);
        let end = self.window.iter().map(|w| w.ret.unwrap_or(self.history_events)).max().unwrap_or(start) + 1;
        let span = f64::from((end - start).max(1));
        let x = |t: u32| LEFT_PX + (f64::from(t.saturating_sub(start)) / span) * (WIDTH_PX - LEFT_PX - 10.0);
        let height = ROW_PX * processes.len() as f64 + 20.0;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH_PX}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">\n"
        );
        for (row, p) in processes.iter().enumerate() {
            let y = 10.0 + ROW_PX * row as f64;
            let name = p.map(|p| format!("process {p}")).unwrap_or_else(|| "model".into());
            let _ = writeln!(svg, "<text x=\"4\" y=\"{}\">{}</text>", y + 18.0, esc(&name));
            let _ = writeln!(
                svg,
                "<line x1=\"{LEFT_PX}\" y1=\"{0}\" x2=\"{WIDTH_PX}\" y2=\"{0}\" stroke=\"#ddd\"/>",
                y + ROW_PX - 4.0
            );
        }
        for w in &self.window {
            let row = processes.iter().position(|p| *p == w.process).unwrap_or(0);
            let y = 10.0 + ROW_PX * row as f64;
            let (x0, x1) = (x(w.call), x(w.ret.unwrap_or(end)));
            let color = match w.role {
                Role::Linearized(_) => "#43a047",
                Role::Illegal => "#e53935",
                Role::DeadEnd => "#fb8c00",
                Role::Conflicting => "#8e24aa",
            };
            let dash = if w.ret.is_none() { " stroke-dasharray=\"4 3\" stroke=\"#333\"" } else { "" };
            let tag = match w.role {
                Role::Linearized(k) => format!("#{k} "),
                _ => String::new(),
            };
            let _ = writeln!(
                svg,
                "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"22\" rx=\"3\" fill=\"{color}\" fill-opacity=\"0.8\"{dash}><title>{}</title></rect>",
                y + 4.0,
                (x1 - x0).max(3.0),
                esc(&format!("{} ({})", w.description, w.role.label()))
            );
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                x0 + 3.0,
                y + 19.0,
                esc(&format!("{tag}{}", w.description))
            );
        }
        svg.push_str("</svg>\n");

        let mut rows = String::new();
        for w in &self.window {
            let _ = writeln!(
                rows,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                w.call_line.map(|l| l.to_string()).unwrap_or_default(),
                w.ret_line.map(|l| l.to_string()).unwrap_or_else(|| "open".into()),
                w.process.map(|p| p.to_string()).unwrap_or_default(),
                esc(&format!("{} — {}", w.description, w.role.label()))
            );
        }
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}: not linearizable</title>\n\
             <style>body{{font-family:sans-serif;margin:20px}} td,th{{padding:2px 8px;text-align:left}}</style></head><body>\n\
             <h1>{t}: not linearizable</h1>\n<p>{s}</p>\n\
             <p>Green: in the longest linearizable prefix (numbered in order). Red: could come next but is illegal \
             in the state the prefix leaves. Orange: could come next and is legal, but leads to a dead end. \
             Dashed: indeterminate (may take effect until the end of the history).</p>\n{svg}\
             <table><tr><th>invoke line</th><th>completion line</th><th>process</th><th>operation</th></tr>\n{rows}</table>\n</body></html>\n",
            t = esc(title),
            s = esc(&self.summary),
        )
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
