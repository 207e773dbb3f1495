//! The command line (`check` and `bench`); `main.rs` only forwards to [`main`].

use std::collections::HashSet;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::bench::{self, BenchOptions};
use crate::check::{check_history, CheckOptions, Verdict, TIMEOUT_MS_DEFAULT};
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
        /// History files (JSON lines, EDN maps or Jepsen etcd logs; detected from content).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
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
        Command::Check { model, timeout_ms, out, files } => check(model, timeout_ms, out, &files),
        Command::Bench { dir, generate_ops, rounds, timeout_ms } => {
            let opts = BenchOptions {
                dir: dir.unwrap_or_else(bench::default_data_dir),
                generate_ops,
                rounds: rounds as usize,
                timeout_ms,
            };
            match bench::run(&opts) {
                Ok((report, all_agree)) => {
                    print!("{report}");
                    if all_agree {
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
    }
}

fn check(model: ModelKind, timeout_ms: u64, out: Option<PathBuf>, files: &[PathBuf]) -> i32 {
    let opts = CheckOptions { timeout_ms, ..CheckOptions::default() };
    let mut any_violation = false;
    let mut any_unknown = false;
    let mut artifact_names: HashSet<String> = HashSet::new();
    for file in files {
        let shown = file.display();
        let verdict = parse_file(file).and_then(|h| check_history(model, &h, &opts));
        match verdict {
            Err(e) => {
                any_unknown = true;
                println!("{shown}: unknown (bad input: {e})");
            }
            Ok(Verdict::Linearizable) => println!("{shown}: linearizable"),
            Ok(Verdict::Unknown(why)) => {
                any_unknown = true;
                println!("{shown}: unknown ({why})");
            }
            Ok(Verdict::NotLinearizable(v)) => {
                any_violation = true;
                println!("{shown}: not linearizable");
                eprint!("{}", v.to_text());
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
    }
    if any_unknown {
        EXIT_UNKNOWN
    } else if any_violation {
        EXIT_NOT_LINEARIZABLE
    } else {
        EXIT_LINEARIZABLE
    }
}
