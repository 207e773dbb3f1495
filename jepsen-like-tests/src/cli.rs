//! The command line (`check` and `bench`); `main.rs` only forwards to [`main`].

use std::collections::HashSet;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::bench::{self, BenchOptions};
use crate::check::{check_history, CheckOptions, Verdict, TIMEOUT_MS_DEFAULT};
use crate::generate::{self, Anomaly, GenConfig};
use crate::model::ModelKind;
use crate::parse::parse_file;

/// Exit code: every file is linearizable.
pub const EXIT_LINEARIZABLE: i32 = 0;
/// Exit code: some file is not linearizable (and none was unknown).
pub const EXIT_NOT_LINEARIZABLE: i32 = 1;
/// Exit code: bad usage, a bad input file, or a search that gave up. Takes precedence over 1,
/// because then the run did not decide every file.
pub const EXIT_UNKNOWN: i32 = 2;

#[derive(Parser, Debug)]
#[command(name = "jepsen-like-tests", about = "Linearizability checker for raftsched histories")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check history files; prints `FILE: linearizable|not linearizable|unknown (why)` per file.
    Check {
        /// The sequential specification to check against.
        #[arg(long, value_enum)]
        model: ModelKind,
        /// Time budget per file, in milliseconds; past it the verdict is `unknown`.
        #[arg(long, default_value_t = TIMEOUT_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
        timeout_ms: u64,
        /// Directory for violation artifacts (`<file>.violation.json` and `.html`); none written
        /// without it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// One JSON object per file on stdout instead of text: `file`, `verdict`
        /// ("linearizable", "not linearizable" or "unknown"), `why` (for unknown), `elapsed_ms`
        /// (typing, partitioning and search; reading the file excluded).
        #[arg(long)]
        json: bool,
        /// History files (JSON lines, EDN maps or Jepsen etcd logs; detected from content).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write generated histories whose verdict is known by construction (JSON lines): one, or a
    /// whole campaign with a manifest.
    Generate(GenerateArgs),
    /// Run raftsched under faults with a recorded workload, then check the history and the
    /// scheduler's invariants. Exit 0 only when everything holds.
    Run(RunArgs),
    /// Time the checker on the reference histories and on generated scheduler workloads.
    Bench {
        /// Folder with verdicts.tsv and the histories [default: ../shared/lincheck next to the
        /// workspace]
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Sizes of generated scheduler histories, in operations.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
        generate_ops: Vec<usize>,
        /// Times each file is checked (the fastest counts).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: u64,
        /// Time budget per file, in milliseconds.
        #[arg(long, default_value_t = 60_000)]
        timeout_ms: u64,
    },
}

#[derive(clap::Args, Debug)]
struct GenerateArgs {
    /// Model of the history.
    #[arg(long, value_enum, default_value = "register")]
    model: ModelKind,
    /// Concurrent client processes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=generate::CLIENTS_MAX as u64))]
    clients: u64,
    /// Operations in the history.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=generate::OPERATIONS_MAX as u64))]
    ops: u64,
    /// Operations that time out (`info`), per thousand.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=1000))]
    info_per_mille: u64,
    /// Keys (register and kv) [default: 1 register, 10 kv keys].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    keys: Option<u64>,
    /// Worker processes (scheduler).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=100))]
    workers: u64,
    /// Anomaly injected where it is observable; `none` gives a linearizable history.
    #[arg(long, value_enum, default_value = "none")]
    anomaly: Anomaly,
    /// Play the scene even without an anomaly (the clean twin of a violating history).
    #[arg(long)]
    scene: bool,
    /// Seed: the same arguments and seed give the same history.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output file [default: stdout].
    #[arg(long, conflicts_with = "campaign")]
    out: Option<PathBuf>,
    /// Write this many histories of a mixed campaign (models, clients, sizes, time-outs,
    /// anomalies all varying) into --dir, with manifest.tsv; the other shape flags are ignored.
    #[arg(long, requires = "dir", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    campaign: Option<u64>,
    /// Directory for --campaign.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn generate_cmd(args: GenerateArgs) -> i32 {
    let result = match (args.campaign, &args.dir) {
        (Some(count), Some(dir)) => generate::write_campaign(dir, count as usize, args.seed)
            .map(|()| eprintln!("wrote {count} histories and manifest.tsv to {}", dir.display())),
        _ => {
            let mut cfg = GenConfig::new(args.model, args.clients as usize, args.ops as usize, args.seed);
            cfg.info_per_mille = args.info_per_mille;
            if let Some(k) = args.keys {
                cfg.keys = k as usize;
            }
            cfg.workers = args.workers as usize;
            cfg.anomaly = args.anomaly;
            cfg.scene = args.scene;
            let text = generate::generate(&cfg).to_jsonl();
            match &args.out {
                Some(path) => std::fs::write(path, text),
                None => {
                    use std::io::Write;
                    std::io::stdout().lock().write_all(text.as_bytes())
                }
            }
        }
    };
    match result {
        Ok(()) => EXIT_LINEARIZABLE,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_LINEARIZABLE,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_UNKNOWN
        }
    }
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Replicas.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=7))]
    nodes: u64,
    /// Worker processes (4 slots each).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=32))]
    workers: u64,
    /// Concurrent recorded clients, spread over the replicas.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    clients: u64,
    /// Length of the faulty phase, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    time_limit_s: u64,
    /// Faults to inject, comma-separated: families kill, pause, partition, worker, membership,
    /// all, none, or single faults (kill-one, kill-leader, kill-majority, kill-all, pause-one,
    /// pause-leader, isolate-leader, split-majority-minority, bridge, kill-worker, pause-worker,
    /// remove-add, transfer-leader, hostile); not in `all`: upgrade (needs --old-bin), damage.
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Seed of the fault schedule and the workload, so a failing run can be repeated.
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory [default: jepsen-runs/<unix time>-seed<seed>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The raftsched binary [default: beside this program, e.g. target/release/raftsched].
    #[arg(long)]
    raftsched_bin: Option<PathBuf>,
    /// Start the replicas on this older raftsched binary; the `upgrade` nemesis moves them to
    /// --raftsched-bin one at a time (e.g. the output of scripts/old-build.sh).
    #[arg(long, value_name = "PATH")]
    old_bin: Option<PathBuf>,
    /// Start every replica with `--fault NAME` (a fault-injection build): stale-reads,
    /// skip-fsync, unfenced-reports. The run is then expected to fail.
    #[arg(long, value_name = "NAME")]
    fault: Vec<String>,
    /// Run on loopback even as root (no partitions).
    #[arg(long)]
    no_netns: bool,
    /// Fault hold time range in ms, MIN-MAX.
    #[arg(long, default_value = "1000-5000", value_parser = parse_range)]
    fault_hold_ms: (u64, u64),
    /// Quiet time between faults in ms, MIN-MAX.
    #[arg(long, default_value = "1000-4000", value_parser = parse_range)]
    fault_quiet_ms: (u64, u64),
    /// Pause between one client's calls in ms, MIN-MAX.
    #[arg(long, default_value = "20-200", value_parser = parse_range)]
    think_ms: (u64, u64),
    /// How long to wait, after the faults stop, for a leader and for every task to end.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    recovery_timeout_s: u64,
    /// Keep the replicas' data dirs even when the run passes.
    #[arg(long)]
    keep_data: bool,
    /// Workloads, comma-separated: tasks (recorded clients: submit, get, cancel, completions),
    /// schedules (recurring schedules firing through the faults; needs workers), flows (a flow of
    /// dependent tasks under a concurrency key every 400 ms; needs workers).
    #[arg(long, value_delimiter = ',', default_value = "tasks,schedules,flows", value_parser = ["tasks", "schedules", "flows"])]
    workload: Vec<String>,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let a: u64 = a.trim().parse().map_err(|_| format!("{text:?} is not MIN-MAX in ms"))?;
    let b: u64 = b.trim().parse().map_err(|_| format!("{text:?} is not MIN-MAX in ms"))?;
    if a > b || b > 3_600_000 {
        return Err(format!("{text:?}: need MIN <= MAX <= 3600000"));
    }
    Ok((a, b))
}

fn run(args: RunArgs) -> i32 {
    let nemeses = match crate::run::nemesis::Fault::parse_list(&args.nemesis) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("--nemesis: {e}");
            return EXIT_UNKNOWN;
        }
    };
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let seed = args.seed.unwrap_or(now_s);
    let out = args.out.unwrap_or_else(|| PathBuf::from(format!("jepsen-runs/{now_s}-seed{seed}")));
    let bin = args.raftsched_bin.unwrap_or_else(crate::run::default_raftsched_bin);
    if nemeses.contains(&crate::run::nemesis::Fault::Upgrade) && args.old_bin.is_none() {
        eprintln!("--nemesis upgrade needs --old-bin PATH (the build to upgrade from; scripts/old-build.sh makes one)");
        return EXIT_UNKNOWN;
    }
    if let Some(old) = &args.old_bin {
        if !old.is_file() {
            eprintln!("--old-bin {}: no such file", old.display());
            return EXIT_UNKNOWN;
        }
    }
    let mut config = crate::run::RunConfig::new(bin, out);
    config.old_bin = args.old_bin;
    config.nodes = args.nodes as usize;
    config.workers = args.workers as usize;
    config.clients = args.clients as usize;
    config.time_limit_s = args.time_limit_s;
    config.nemeses = nemeses;
    config.seed = seed;
    config.faults = args.fault;
    config.netns = !args.no_netns;
    config.fault_hold_ms = args.fault_hold_ms;
    config.fault_quiet_ms = args.fault_quiet_ms;
    config.think_ms = args.think_ms;
    config.recovery_timeout_s = args.recovery_timeout_s;
    config.keep_data = args.keep_data;
    if !args.workload.iter().any(|w| w == "tasks") {
        config.clients = 0;
    }
    config.schedules = args.workload.iter().any(|w| w == "schedules");
    config.flows = args.workload.iter().any(|w| w == "flows");
    if (config.schedules || config.flows) && config.workers == 0 {
        eprintln!("--workload schedules and flows need workers to run their tasks (--workers 0 given)");
        return EXIT_UNKNOWN;
    }
    finish(crate::run::run(&config).map(|o| (format!("{}\n", crate::run::summary(&o)), o.valid)))
}

/// Prints a command's report and maps it to the exit code: 0 when everything held, 1 when not,
/// 2 when the command could not be carried out.
fn finish(result: anyhow::Result<(String, bool)>) -> i32 {
    match result {
        Ok((report, held)) => {
            print!("{report}");
            if held {
                EXIT_LINEARIZABLE
            } else {
                EXIT_NOT_LINEARIZABLE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_UNKNOWN
        }
    }
}

/// Runs the command line; returns the process exit code.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return EXIT_LINEARIZABLE;
        }
        Err(e) => {
            // clap's message up to its first blank line, folded into one line
            let text = e.to_string();
            let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            eprintln!("{}", first.join(" "));
            return EXIT_UNKNOWN;
        }
    };
    match cli.command {
        Command::Check { model, timeout_ms, json, out, files } => check(model, timeout_ms, json, out, &files),
        Command::Generate(args) => generate_cmd(args),
        Command::Run(args) => run(args),
        Command::Bench { dir, generate_ops, rounds, timeout_ms } => {
            let opts = BenchOptions {
                dir: dir.unwrap_or_else(bench::default_data_dir),
                generate_ops,
                rounds: rounds as usize,
                timeout_ms,
            };
            finish(bench::run(&opts))
        }
    }
}

fn check(model: ModelKind, timeout_ms: u64, json: bool, out: Option<PathBuf>, files: &[PathBuf]) -> i32 {
    let opts = CheckOptions { timeout_ms, ..CheckOptions::default() };
    let mut any_violation = false;
    let mut any_unknown = false;
    let mut artifact_names: HashSet<String> = HashSet::new();
    for file in files {
        let shown = file.display().to_string();
        let mut elapsed_ms = 0.0;
        let verdict = parse_file(file).and_then(|h| {
            let started = std::time::Instant::now();
            let v = check_history(model, &h, &opts);
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
            v
        });
        let (word, why) = match &verdict {
            Err(e) => ("unknown", Some(format!("bad input: {e}"))),
            Ok(Verdict::Linearizable) => ("linearizable", None),
            Ok(Verdict::Unknown(why)) => ("unknown", Some(why.clone())),
            Ok(Verdict::NotLinearizable(_)) => ("not linearizable", None),
        };
        any_unknown |= word == "unknown";
        any_violation |= word == "not linearizable";
        if json {
            let line = serde_json::json!({"file": shown, "verdict": word, "why": why, "elapsed_ms": elapsed_ms});
            println!("{line}");
        } else {
            match &why {
                Some(why) => println!("{shown}: {word} ({why})"),
                None => println!("{shown}: {word}"),
            }
        }
        if let Ok(Verdict::NotLinearizable(v)) = &verdict {
            if !json {
                eprint!("{}", v.to_text());
            }
            if let Some(dir) = &out {
                let base = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or("history".into());
                let mut name = base.clone();
                let mut k = 1;
                while !artifact_names.insert(name.clone()) {
                    k += 1;
                    name = format!("{base}-{k}");
                }
                match v.write_artifacts(dir, &name) {
                    Ok((json, html)) => eprintln!("  wrote {} and {}", json.display(), html.display()),
                    Err(e) => {
                        eprintln!("cannot write artifacts to {}: {e}", dir.display());
                        any_unknown = true;
                    }
                }
            }
        }
    }
    if any_unknown {
        EXIT_UNKNOWN
    } else if any_violation {
        EXIT_NOT_LINEARIZABLE
    } else {
        EXIT_LINEARIZABLE
    }
}
