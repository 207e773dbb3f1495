//! `bench`: times the checker on the reference histories and on generated scheduler workloads.
//!
//! Parsing is excluded from every figure; typing and partitioning (`Model::prepare`) are
//! included, so the figures cover everything from a parsed [`History`] to the verdict. Each file is
//! checked `rounds` times and its fastest time is kept (warm caches, least disturbance from the
//! other processes on the machine); totals are the sums of those per-file times.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::check::{check_history, CheckOptions, Verdict};
use crate::generate::{generate, GenConfig};
use crate::history::History;
use crate::model::ModelKind;
use crate::parse::parse_file;

/// One row of `verdicts.tsv`.
#[derive(Debug, Clone)]
pub struct Reference {
    /// Path relative to the data folder, e.g. `etcd/etcd_002.log`.
    pub file: String,
    pub model: ModelKind,
    pub linearizable: bool,
}

/// The data folder next to this repository (`../shared/lincheck`, outside the repository), or
/// `$RAFTSCHED_SHARED_DIR/lincheck` when that variable is set (for a checkout that does not sit
/// beside `shared/`).
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("RAFTSCHED_SHARED_DIR") {
        Some(shared) => PathBuf::from(shared).join("lincheck"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/lincheck"),
    }
}

/// Reads `verdicts.tsv` (header line, then `file model linearizable source`).
pub fn read_verdicts(dir: &Path) -> anyhow::Result<Vec<Reference>> {
    let path = dir.join("verdicts.tsv");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(file), Some(model), Some(lin)) = (cols.first(), cols.get(1), cols.get(2)) else {
            bail!("{}: line {}: expected file, model, linearizable", path.display(), i + 1);
        };
        let model = ModelKind::parse(model).with_context(|| format!("line {}: unknown model {model:?}", i + 1))?;
        let linearizable = match *lin {
            "true" => true,
            "false" => false,
            other => bail!("{}: line {}: linearizable is {other:?}", path.display(), i + 1),
        };
        out.push(Reference { file: file.to_string(), model, linearizable });
    }
    Ok(out)
}

/// `bench` settings.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub dir: PathBuf,
    pub generate_ops: Vec<usize>,
    pub rounds: usize,
    pub timeout_ms: u64,
}

struct Timed {
    name: String,
    best: Duration,
    agrees: bool,
}

fn time_check(kind: ModelKind, h: &History, rounds: usize, opts: &CheckOptions) -> anyhow::Result<(Duration, Verdict)> {
    let mut best = Duration::MAX;
    let mut verdict = Verdict::Linearizable;
    for _ in 0..rounds.max(1) {
        let t0 = Instant::now();
        verdict = check_history(kind, h, opts)?;
        best = best.min(t0.elapsed());
    }
    Ok((best, verdict))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Runs the benchmark; returns the report (a markdown table and notes) and whether every
/// reference verdict was reproduced.
pub fn run(opts: &BenchOptions) -> anyhow::Result<(String, bool)> {
    let refs = read_verdicts(&opts.dir)?;
    let check_opts = CheckOptions { timeout_ms: opts.timeout_ms, ..CheckOptions::default() };
    let mut etcd: Vec<Timed> = Vec::new();
    let mut kv: Vec<Timed> = Vec::new();
    for r in &refs {
        let path = opts.dir.join(&r.file);
        let h = parse_file(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let (best, verdict) = time_check(r.model, &h, opts.rounds, &check_opts)?;
        let agrees = match verdict {
            Verdict::Linearizable => r.linearizable,
            Verdict::NotLinearizable(_) => !r.linearizable,
            Verdict::Unknown(_) => false,
        };
        let t = Timed { name: r.file.clone(), best, agrees };
        if r.model == ModelKind::Register {
            etcd.push(t);
        } else {
            kv.push(t);
        }
    }
    let mut out = String::new();
    let agreeing = etcd.iter().chain(&kv).filter(|t| t.agrees).count();
    let total_refs = etcd.len() + kv.len();
    let _ = writeln!(out, "| what | operations | checking time | verdict |");
    let _ = writeln!(out, "|---|---|---|---|");
    let etcd_total: Duration = etcd.iter().map(|t| t.best).sum();
    let etcd_agree = etcd.iter().filter(|t| t.agrees).count();
    let _ = writeln!(
        out,
        "| all {} etcd logs, total | 73-90 each | {} | {etcd_agree}/{} as in verdicts.tsv |",
        etcd.len(),
        ms(etcd_total),
        etcd.len()
    );
    let mut by_time: Vec<&Timed> = etcd.iter().collect();
    by_time.sort_by_key(|t| std::cmp::Reverse(t.best));
    for (t, rank) in by_time.iter().zip(["slowest", "2nd slowest", "3rd slowest"]) {
        let _ = writeln!(out, "| {} ({rank}) | | {} | |", t.name, ms(t.best));
    }
    for t in &kv {
        let _ = writeln!(out, "| {} | | {} | {} |", t.name, ms(t.best), if t.agrees { "as expected" } else { "WRONG" });
    }
    for &n in &opts.generate_ops {
        let h = generate(&GenConfig::new(ModelKind::Scheduler, 8, n, 1));
        let parts = crate::model::Model::prepare(&crate::models::scheduler::Scheduler, &h)
            .map(|p| p.partitions.len())
            .unwrap_or(0);
        let (best, verdict) = time_check(ModelKind::Scheduler, &h, opts.rounds.min(3), &check_opts)?;
        let v = match verdict {
            Verdict::Linearizable => "linearizable".to_string(),
            Verdict::NotLinearizable(_) => "NOT linearizable (generator bug)".to_string(),
            Verdict::Unknown(why) => format!("unknown ({why})"),
        };
        let _ =
            writeln!(out, "| generated scheduler workload ({parts} tasks, 10 processes) | {n} | {} | {v} |", ms(best));
    }
    let _ = writeln!(
        out,
        "\n{agreeing}/{total_refs} reference verdicts reproduced; best of {} rounds per file, parsing excluded.",
        opts.rounds
    );
    Ok((out, agreeing == total_refs))
}
