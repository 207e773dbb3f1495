//! Scenario files for the state machine (`tests/scenarios/*.txt`), in the style of etcd raft's datadriven tests: commands
//! in, the state machine's answers out, in a small text format, checked by one helper (`check`).
//!
//! A file is a sequence of cases separated by blank lines. A case is a command line, optional
//! input lines (a flow's tasks), `----`, then the expected output:
//!
//! ```text
//! # comments start with '#'
//! submit b after=1
//! ----
//! submitted 2
//! ```
//!
//! Every command is applied at the next log index at the current time (`now MS` moves it; 1000
//! at the start), and the state's invariants are checked after each (`Log::apply`). Run with
//! `RAFTSCHED_REWRITE_SCENARIOS=1` to write what the machine answered as the expected output
//! (then read the diff before committing it).
//!
//! Commands:
//! - `version N`: the cluster version (`Op::SetClusterVersion`).
//! - `register W [slots=N] [instance=N] [labels=k=v,k=v]`, `drain W`, `expire W`.
//! - `submit KEY [spec=echo:X|sleep:MS|fail:N] [attempts=N] [after=ID,ID] [after-key=K,K]
//!   [policy=success|finished] [ckey=K limit=N]`; `cancel ID`.
//! - `flow KEY` with one input line per task: `NAME [after=N,N] [policy=...] [ckey=K limit=N]`.
//! - `dispatch`: the leader's plan, assigned (`Op::Assign`); `release`: scheduled tasks whose time
//!   has come become pending (`Op::ReleaseDue`).
//! - `start ID`, `finish ID [exit=N]`: the holder reports with the current token;
//!   `report ID token=T [exit=N]` with any token.
//! - `now MS`; `reset` (a fresh state machine); `states` (every task); `keys` (concurrency keys
//!   in use); `workers`.

use std::collections::BTreeMap;
use std::fmt::Write;

use raftsched_state::{
    AfterPolicy, AfterSpec, Concurrency, FlowSpec, FlowTask, Op, ReportEvent, Response, SubmitOptions, TaskSpec,
};

#[path = "../common/mod.rs"]
mod common;

use common::Log;

/// Every `*.txt` beside this file.
#[test]
fn scenarios() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenario files in {}", dir.display());
    for file in files {
        check(&file);
    }
}

/// One case of a file: where it starts, the comments before it, the command, its input lines
/// and the expected output.
struct Case {
    line: usize,
    comments: Vec<String>,
    command: String,
    input: Vec<String>,
    expected: String,
}

/// Runs the scenario file at `path` against a fresh state machine; panics with every case whose
/// output differs (or rewrites the file, with `RAFTSCHED_REWRITE_SCENARIOS=1`).
pub fn check(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cases = parse(&text);
    let mut runner = Runner { log: Log::new(), now_ms: 1_000 };
    let mut failures = String::new();
    let mut rewritten = String::new();
    for case in &cases {
        let actual = runner.run(case);
        if actual.trim_end() != case.expected.trim_end() {
            let _ = write!(
                failures,
                "\n{}:{}: {}\n--- expected\n{}\n--- actual\n{}\n",
                path.display(),
                case.line,
                case.command,
                case.expected.trim_end(),
                actual.trim_end()
            );
        }
        rewritten.push_str(&case.render(&actual));
    }
    if std::env::var_os("RAFTSCHED_REWRITE_SCENARIOS").is_some() {
        std::fs::write(path, rewritten).unwrap();
        return;
    }
    assert!(failures.is_empty(), "scenario mismatches:{failures}");
}

impl Case {
    fn render(&self, output: &str) -> String {
        let mut s = String::new();
        for comment in &self.comments {
            s.push_str(comment);
            s.push('\n');
        }
        s.push_str(&self.command);
        s.push('\n');
        for line in &self.input {
            s.push_str(line);
            s.push('\n');
        }
        s.push_str("----\n");
        s.push_str(output.trim_end());
        s.push_str("\n\n");
        s
    }
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut comments = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let line = line.trim_end();
        if line.starts_with('#') {
            comments.push(line.to_string());
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let comments = std::mem::take(&mut comments);
        let mut case =
            Case { line: n + 1, comments, command: line.to_string(), input: Vec::new(), expected: String::new() };
        for (_, l) in lines.by_ref() {
            if l.trim_end() == "----" {
                break;
            }
            case.input.push(l.trim_end().to_string());
        }
        while let Some((_, l)) = lines.peek() {
            if l.trim().is_empty() {
                break;
            }
            case.expected.push_str(l.trim_end());
            case.expected.push('\n');
            lines.next();
        }
        cases.push(case);
    }
    cases
}

/// A command's words: the positional ones, then `name=value` options.
struct Words<'a> {
    args: Vec<&'a str>,
    options: BTreeMap<&'a str, &'a str>,
}

impl<'a> Words<'a> {
    fn new(text: &'a str) -> Words<'a> {
        let mut args = Vec::new();
        let mut options = BTreeMap::new();
        for word in text.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) if !args.is_empty() => {
                    options.insert(k, v);
                }
                _ => args.push(word),
            }
        }
        Words { args, options }
    }

    fn arg(&self, i: usize) -> &'a str {
        self.args.get(i).copied().unwrap_or_else(|| panic!("argument {i} missing in {:?}", self.args))
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        self.options.get(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
    }

    fn list(&self, name: &str) -> Vec<&'a str> {
        self.options.get(name).map_or(Vec::new(), |v| v.split(',').filter(|s| !s.is_empty()).collect())
    }

    fn policy(&self) -> AfterPolicy {
        match self.options.get("policy").copied() {
            None | Some("success") => AfterPolicy::Success,
            Some("finished") => AfterPolicy::Finished,
            Some(other) => panic!("policy {other:?}"),
        }
    }

    fn concurrency(&self) -> Option<Concurrency> {
        let key = self.options.get("ckey")?;
        Some(Concurrency { key: key.to_string(), limit: self.num("limit", 1) })
    }

    fn spec(&self, key: &str) -> TaskSpec {
        let spec = self.options.get("spec").copied().unwrap_or("echo:");
        let (name, arg) = spec.split_once(':').unwrap_or((spec, ""));
        let arg = if name == "echo" && arg.is_empty() { key } else { arg };
        let mut spec = TaskSpec::builtin(name, arg);
        spec.max_attempts = self.num("attempts", 1);
        if let Some(at) = self.options.get("at") {
            spec.run_at_ms = Some(at.parse().expect("at=MS"));
        }
        spec
    }
}

struct Runner {
    log: Log,
    now_ms: u64,
}

impl Runner {
    fn run(&mut self, case: &Case) -> String {
        let w = Words::new(&case.command);
        match w.arg(0) {
            "now" => {
                self.now_ms = w.arg(1).parse().expect("now MS");
                format!("now {}", self.now_ms)
            }
            "reset" => {
                *self = Runner { log: Log::new(), now_ms: 1_000 };
                "a fresh state machine".into()
            }
            "states" => self.states(),
            "keys" => self.keys(),
            "workers" => self.workers(),
            _ => {
                let op = self.op(&w, &case.input);
                render(&self.log.apply(self.now_ms, op))
            }
        }
    }

    fn op(&self, w: &Words, input: &[String]) -> Op {
        let sm = &self.log.sm;
        match w.arg(0) {
            "version" => Op::SetClusterVersion { version: w.arg(1).parse().expect("version N") },
            "register" => Op::RegisterWorker {
                worker_id: w.arg(1).into(),
                instance: w.num("instance", 1),
                addr: String::new(),
                slots: w.num("slots", 4),
                labels: w
                    .list("labels")
                    .iter()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            },
            "drain" => Op::DrainWorker { worker_id: w.arg(1).into() },
            "expire" => {
                let worker = sm.worker(w.arg(1)).expect("a registered worker");
                Op::ExpireWorker {
                    worker_id: worker.id.clone(),
                    epoch: worker.epoch,
                    heartbeat_seq: worker.heartbeat_seq,
                }
            }
            "submit" => submit_op(w),
            "cancel" => Op::Cancel { id: w.arg(1).parse().expect("cancel ID") },
            "release" => Op::ReleaseDue,
            "flow" => Op::SubmitFlow { key: w.arg(1).into(), flow: Box::new(flow(input)) },
            "dispatch" => Op::Assign { items: sm.plan_assignments(self.now_ms, 1_000) },
            "start" | "finish" | "report" => {
                let task_id: u64 = w.arg(1).parse().expect("task id");
                let held = sm.get(task_id).and_then(|t| t.assignment.as_ref()).map_or(0, |a| a.token);
                let token = w.num("token", held);
                let event = match w.arg(0) {
                    "start" => ReportEvent::Started,
                    _ => {
                        ReportEvent::Ended { exit_code: w.num("exit", 0), output_tail: String::new(), timed_out: false }
                    }
                };
                Op::Report { task_id, token, event }
            }
            other => panic!("unknown scenario command {other:?}"),
        }
    }

    fn states(&self) -> String {
        let mut out = String::new();
        for t in self.log.sm.list(&Default::default()).tasks {
            let _ = write!(out, "{} {} {}", t.id, t.key, t.state.as_str());
            if let Some(a) = &t.assignment {
                let _ = write!(out, " on {}", a.worker_id);
            }
            if let Some(by) = t.after.as_ref().and_then(|a| a.skipped_by) {
                let _ = write!(out, " (skipped by {by})");
            }
            out.push('\n');
        }
        if out.is_empty() {
            out.push_str("no tasks");
        }
        out
    }

    fn keys(&self) -> String {
        let keys: Vec<String> = (self.log.sm.keys_in_use())
            .map(|(k, u)| format!("{k} limit {} held {} queued {}", u.limit, u.held, u.queued))
            .collect();
        if keys.is_empty() {
            "no keys".into()
        } else {
            keys.join("\n")
        }
    }

    fn workers(&self) -> String {
        let workers: Vec<String> = (self.log.sm.workers())
            .map(|n| format!("{} {} epoch {} holds {:?}", n.id, n.state.as_str(), n.epoch, n.held))
            .collect();
        workers.join("\n")
    }
}

fn submit_op(w: &Words) -> Op {
    let key = w.arg(1).to_string();
    let spec = w.spec(&key);
    let ids: Vec<u64> = w.list("after").iter().map(|i| i.parse().expect("after=ID,ID")).collect();
    let keys: Vec<String> = w.list("after-key").iter().map(|k| k.to_string()).collect();
    let after = (!ids.is_empty() || !keys.is_empty()).then(|| AfterSpec { ids, keys, policy: w.policy() });
    match (after, w.concurrency()) {
        (None, None) => Op::Submit { key, spec },
        (Some(after), None) => Op::SubmitAfter { key, spec, after: Box::new(after) },
        (after, concurrency) => Op::SubmitWith { key, spec, options: Box::new(SubmitOptions { after, concurrency }) },
    }
}

fn flow(input: &[String]) -> FlowSpec {
    let tasks = input
        .iter()
        .map(|line| {
            let w = Words::new(line);
            let name = w.arg(0).to_string();
            FlowTask {
                spec: w.spec(&name),
                after: w.list("after").iter().map(|a| a.to_string()).collect(),
                policy: w.policy(),
                concurrency: w.concurrency(),
                name,
            }
        })
        .collect();
    FlowSpec { tasks }
}

/// A response in a line (a batch: one line per item).
fn render(response: &Response) -> String {
    match response {
        Response::Submitted { id, created: true } => format!("submitted {id}"),
        Response::Submitted { id, created: false } => format!("submitted {id} (already)"),
        Response::Cancelled { id } => format!("cancelled {id}"),
        Response::Registered { epoch } => format!("registered epoch {epoch}"),
        Response::Expired { n_requeued } => format!("expired ({n_requeued} requeued)"),
        Response::Drained => "drained".into(),
        Response::Assigned { token, n_assigned, n_stale } => {
            format!("assigned {n_assigned} under token {token} ({n_stale} stale)")
        }
        Response::Reported => "reported".into(),
        Response::Released { n_released } => format!("released {n_released}"),
        Response::ClusterVersionSet { version } => format!("cluster version {version}"),
        Response::Batch(items) => items.iter().map(render).collect::<Vec<_>>().join("\n"),
        Response::Rejected(why) => format!("rejected: {why}"),
        other => format!("{other:?}"),
    }
}
