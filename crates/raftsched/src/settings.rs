//! Settings for the long-running commands (`server`, `worker`, `dev`) from more than flags:
//!
//! - **Environment**: every flag has a variable, `RAFTSCHED_` and the flag's name in capitals
//!   with `_` for `-` (`--heartbeat-timeout-ms` ↔ `RAFTSCHED_HEARTBEAT_TIMEOUT_MS`). A few flags
//!   that client commands share already name theirs (`RAFTSCHED_CLUSTER`, `RAFTSCHED_TLS_CA`, ...).
//! - **A TOML file**: `--config FILE` (or `RAFTSCHED_CONFIG`), with the flags' names as keys
//!   (`heartbeat-timeout-ms = 3000`; `_` works for `-` too), a list for a flag given many times.
//!
//! A flag wins over the environment, the environment over the file, the file over the built-in
//! default. An unknown key in the file is an error that names it: a typo never silently leaves a
//! default in force. One mechanism for every command: it walks the commands' flags as clap
//! declares them, so a new flag gets its variable and its key without further code.

use std::ffi::OsString;
use std::path::Path;

use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches};

use crate::cli::Cli;

/// The commands that take settings from the environment and a file.
const SETTLED: &[&str] = &["server", "worker", "dev"];
/// Flags only the command line gives: `--fault` (test builds only) among them, since a
/// deliberate bug must be asked for where it shows.
const NOT_SETTLED: &[&str] = &["help", "version", "config", "fault"];
/// Largest config file read, in bytes: settings are a few dozen lines.
pub const CONFIG_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Parses the command line as [`Cli::try_parse`] does, with environment and file settings for
/// the commands in [`SETTLED`].
pub fn parse() -> Result<Cli, clap::Error> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut command = Cli::command();
    // The file is for the command that runs (the first word naming one of them).
    let running = args.iter().skip(1).find_map(|a| SETTLED.iter().find(|s| a.as_os_str() == **s)).copied();
    let file = match running {
        Some(_) => config_path(&args).map(|p| read_config(&p)).transpose().map_err(|e| command.error(e.0, e.1))?,
        None => None,
    };
    for name in SETTLED {
        let file = file.as_ref().filter(|_| running == Some(*name));
        let mut unknown = None;
        command = command.mut_subcommand(name, |sub| settle(sub, file, &mut unknown));
        if let Some(key) = unknown {
            let message =
                format!("--config: unknown setting {key:?} for `raftsched {name}` (keys are its flags' names)");
            return Err(command.error(clap::error::ErrorKind::UnknownArgument, message));
        }
    }
    let matches = command.try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// `--config FILE`, `--config=FILE` or `RAFTSCHED_CONFIG`, wherever it is on the command line.
fn config_path(args: &[OsString]) -> Option<std::path::PathBuf> {
    let mut it = args.iter().map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(|p| p.into_owned().into());
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(p.into());
        }
    }
    std::env::var_os("RAFTSCHED_CONFIG").map(Into::into)
}

type ConfigError = (clap::error::ErrorKind, String);

/// The file's settings.
fn read_config(path: &Path) -> Result<toml::Table, ConfigError> {
    let io = |e: std::io::Error| (clap::error::ErrorKind::Io, format!("--config {}: {e}", path.display()));
    let bytes = raftsched_api::security::read_bounded(path, CONFIG_FILE_BYTES_MAX)
        .map_err(|e| (clap::error::ErrorKind::Io, format!("--config {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes).map_err(|_| io(std::io::Error::other("not UTF-8")))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        (clap::error::ErrorKind::InvalidValue, format!("--config {}: {}", path.display(), e.message()))
    })?;
    Ok(table)
}

/// Adds the environment variable and the file's value to every flag of `sub`; the first key of
/// the file that names no flag goes to `unknown`.
fn settle(sub: Command, file: Option<&toml::Table>, unknown: &mut Option<String>) -> Command {
    if let Some(table) = file {
        let longs: Vec<String> = sub
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| !NOT_SETTLED.contains(l))
            .map(str::to_string)
            .collect();
        *unknown = table.keys().find(|k| !longs.contains(&k.replace('_', "-"))).cloned();
    }
    sub.mut_args(|arg| {
        let Some(long) = arg.get_long().map(str::to_string) else { return arg };
        if NOT_SETTLED.contains(&long.as_str()) {
            return arg;
        }
        let arg = if arg.get_env().is_none() { arg.env(leak(env_name(&long))) } else { arg };
        let value = file.and_then(|t| t.get(&long).or_else(|| t.get(&long.replace('-', "_"))));
        match value {
            Some(v) => with_file_value(arg, v),
            None => arg,
        }
    })
}

/// `RAFTSCHED_` and the flag in capitals, `_` for `-`.
pub fn env_name(long: &str) -> String {
    format!("RAFTSCHED_{}", long.to_ascii_uppercase().replace('-', "_"))
}

fn with_file_value(arg: Arg, value: &toml::Value) -> Arg {
    let text = |v: &toml::Value| match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(x) => x.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        // A nested list or table is no flag's value: clap reports it as invalid.
        toml::Value::Array(_) | toml::Value::Table(_) => "(a list or table)".to_string(),
    };
    let values: Vec<&'static str> = match value {
        toml::Value::Array(items) => items.iter().map(|v| leak(text(v))).collect(),
        v => vec![leak(text(v))],
    };
    // A value from the file satisfies a required flag (clap counts no default as given).
    let arg = arg.required(false).required_unless_present(clap::builder::Resettable::<clap::Id>::Reset);
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => arg.default_value(values[0]),
        _ => arg.default_values(values),
    }
}

/// A string that lives as long as the process: clap keeps `&'static str` names and defaults, and
/// these are made once, at start.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(env_name("heartbeat-timeout-ms"), "RAFTSCHED_HEARTBEAT_TIMEOUT_MS");
        let args: Vec<OsString> = ["raftsched", "server", "--config=/x.toml"].iter().map(Into::into).collect();
        assert_eq!(config_path(&args), Some("/x.toml".into()));
        let args: Vec<OsString> = ["raftsched", "worker", "--", "--config", "y"].iter().map(Into::into).collect();
        assert_eq!(config_path(&args).filter(|_| std::env::var_os("RAFTSCHED_CONFIG").is_none()), None);
    }
}
