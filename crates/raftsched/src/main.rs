//! `raftsched`: the one binary. Thin by design: argument parsing, output formatting and process
//! concerns (signals, exit codes, logging) live here; everything else is in the library crates.

/// A line on stdout for one-shot commands (see [`output::write_out`]): a reader that went away
/// (`raftsched list | head -1`) ends the command quietly, as other Unix tools do.
macro_rules! outln {
    () => {
        $crate::output::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// [`outln!`] without the newline.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!($($arg)*))
    };
}

mod bench;
mod certs;
mod cli;
mod client_cmds;
mod dev;
mod error;
mod flow_cmds;
mod logs_cmd;
mod output;
mod schedule_cmds;
mod server_cmd;
mod settings;
mod signals;
mod worker_cmds;

use crate::cli::{CertsCommand, Cli, ClusterCommand, Command, FlowCommand, SecretCommand, WorkerCommand};
use crate::error::CliError;

fn main() {
    let cli = match settings::parse() {
        Ok(cli) => cli,
        Err(e) => exit_on_usage_error(e),
    };
    // The supervisor is a plain process: no runtime, no logging.
    if let Command::Supervise { argv } = &cli.command {
        std::process::exit(raftsched_worker::exec::supervise(argv));
    }
    let default_level = match cli.command {
        Command::Server(_) | Command::Dev(_) | Command::Worker { command: None, .. } => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAFTSCHED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default_level},openraft=warn")));
    // Colours only for a person at a terminal: log files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("raftsched: error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // Don't wait for lingering background tasks (lazy reconnects) at exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    if let Err(e) = result {
        if !matches!(e, CliError::Exit(_)) {
            eprintln!("raftsched: error: {e}");
        }
        std::process::exit(e.exit_code());
    }
}

/// Help and version print as clap renders them; a usage error becomes one line and exit 2.
fn exit_on_usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    // clap's message up to its first blank line, folded into one line, so that "the following
    // required arguments were not provided:" keeps the names that follow it.
    let text = e.render().to_string();
    let lines: Vec<&str> =
        text.lines().skip_while(|l| l.trim().is_empty()).take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    let first = if lines.is_empty() { "invalid arguments".to_string() } else { lines.join(" ") };
    let first = first.trim_start_matches("error: ");
    eprintln!("raftsched: error: {first} (see raftsched --help)");
    std::process::exit(2);
}

/// `raftsched version`: the `--version` line, or its parts as JSON.
fn print_version(json: bool) {
    if !json {
        outln!("raftsched {}", cli::VERSION.as_str());
        return;
    }
    let commit = raftsched_server::BUILD_COMMIT;
    outln!(
        "{}",
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "commit": if commit.is_empty() { None } else { Some(commit) },
            "format_min": raftsched_format::FORMAT_VERSION_MIN,
            "format_max": raftsched_format::FORMAT_VERSION_MAX,
        })
    );
}

/// This machine's wall clock as Unix milliseconds (for `--at +DURATION`).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Server(args) => server_cmd::run(args).await,
        Command::Dev(args) => dev::run(args).await,
        Command::Submit(args) => client_cmds::submit(args).await,
        Command::Get(args) => client_cmds::get(args).await,
        Command::List(args) => client_cmds::list(args).await,
        Command::Cancel(args) => client_cmds::cancel(args).await,
        Command::Cluster { command: ClusterCommand::Status(args) } => client_cmds::cluster_status(args).await,
        Command::Cluster { command: ClusterCommand::Add(args) } => client_cmds::member_add(args).await,
        Command::Cluster { command: ClusterCommand::Remove(args) } => client_cmds::member_remove(args).await,
        Command::Cluster { command: ClusterCommand::TransferLeader(args) } => client_cmds::transfer_leader(args).await,
        Command::Bench { command } => bench::run(command).await,
        Command::Version { json } => {
            print_version(json);
            Ok(())
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "raftsched", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            Ok(())
        }
        Command::Recover(args) => server_cmd::recover(args).await,
        Command::Certs { command: CertsCommand::Generate(args) } => certs::generate(&args),
        Command::Secret { command: SecretCommand::Generate(args) } => certs::generate_secret(&args),
        Command::Supervise { .. } => unreachable!("handled before the runtime starts"),
        Command::Worker { command: Some(WorkerCommand::Drain(args)), .. } => worker_cmds::drain(args).await,
        Command::Worker { command: None, args } => worker_cmds::run_worker(args).await,
        Command::Workers(args) => worker_cmds::workers(args).await,
        Command::Keys(args) => worker_cmds::keys(args).await,
        Command::Flow { command: FlowCommand::Submit(args) } => flow_cmds::submit(args).await,
        Command::Flow { command: FlowCommand::Get(args) } => flow_cmds::get(args).await,
        Command::Logs(args) => logs_cmd::logs(args).await,
        Command::Watch(args) => client_cmds::watch(args).await,
        Command::Schedule { command } => schedule_cmds::run(command).await,
    }
}
