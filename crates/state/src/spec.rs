//! What a task runs: a builtin (for tests and demos) or a command line, plus scheduling hints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits;

/// A task id: 1, 2, 3... in the order `apply` created the tasks (not a log index: one entry may
/// carry a batch of submits). Unique, monotonic, and the same on every replica.
pub type TaskId = u64;

/// Task keys under this prefix belong to schedule occurrences (`schedule::occurrence_key`): a
/// submit may not use them, so only a fire can create a task under one.
pub const OCCURRENCE_KEY_PREFIX: &str = "schedule:";

/// What to execute.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Exec {
    /// `sleep:MS`, `echo:TEXT`, `fail:CODE`.
    Builtin { name: String, arg: String },
    /// A command line, argv[0] first.
    Command { argv: Vec<String> },
}

/// A task as submitted. Two submits with the same idempotency key must carry equal specs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskSpec {
    pub exec: Exec,
    /// Higher runs first; FIFO within one priority.
    pub priority: i32,
    /// Worker labels the task requires (`k=v`); BTreeMap so equality and encoding are canonical.
    pub constraints: BTreeMap<String, String>,
    /// Environment of a command task (added to the worker's).
    pub env: BTreeMap<String, String>,
    /// Working directory of a command task; the worker's own when `None`.
    pub cwd: Option<String>,
    /// The worker kills an attempt that runs longer; 0 means no timeout.
    pub timeout_ms: u64,
    /// Attempts before the task fails for good (failed, timed-out and lost attempts count).
    pub max_attempts: u32,
    /// Keep the task `scheduled` until this time (Unix ms), then make it pending (`submit --at`).
    pub run_at_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("unknown builtin {0:?} (known: sleep, echo, fail)")]
    UnknownBuiltin(String),
    #[error("builtin sleep takes milliseconds (0..={max}), got {arg:?}", max = limits::SLEEP_MS_MAX)]
    BadSleep { arg: String },
    #[error("builtin fail takes an exit code (1..=255), got {arg:?}")]
    BadFail { arg: String },
    #[error("a command needs at least one argument")]
    EmptyArgv,
    #[error("argv has {count} elements, over argv_count_max {max}", max = limits::ARGV_COUNT_MAX)]
    TooManyArgs { count: usize },
    #[error("spec is {bytes} bytes, over spec_bytes_max {max}", max = limits::SPEC_BYTES_MAX)]
    TooLarge { bytes: usize },
    #[error("{count} constraints, over constraint_count_max {max}", max = limits::CONSTRAINT_COUNT_MAX)]
    TooManyConstraints { count: usize },
    #[error("idempotency key is {bytes} bytes, over key_bytes_max {max}", max = limits::KEY_BYTES_MAX)]
    KeyTooLong { bytes: usize },
    #[error("idempotency key must not be empty")]
    KeyEmpty,
    #[error("{count} environment variables, over env_count_max {max}", max = limits::ENV_COUNT_MAX)]
    TooManyEnv { count: usize },
    #[error("environment names must be non-empty and contain no '=' or NUL")]
    BadEnv,
    #[error("timeout {ms} ms is over task_timeout_ms_max {max}", max = limits::TASK_TIMEOUT_MS_MAX)]
    TimeoutTooLong { ms: u64 },
    #[error("max attempts must be 1..={max}, got {n}", max = limits::ATTEMPTS_MAX)]
    BadAttempts { n: u32 },
    #[error("keys starting with {prefix:?} are reserved for schedule occurrences", prefix = OCCURRENCE_KEY_PREFIX)]
    ReservedKey,
    #[error("{0} must not contain NUL bytes")]
    Nul(&'static str),
}

impl TaskSpec {
    pub fn builtin(name: &str, arg: &str) -> TaskSpec {
        TaskSpec::default_with(Exec::Builtin { name: name.to_string(), arg: arg.to_string() })
    }

    pub fn command(argv: Vec<String>) -> TaskSpec {
        TaskSpec::default_with(Exec::Command { argv })
    }

    /// A spec running `exec` with every other field at its default.
    pub fn default_with(exec: Exec) -> TaskSpec {
        TaskSpec {
            exec,
            priority: 0,
            constraints: BTreeMap::new(),
            env: BTreeMap::new(),
            cwd: None,
            timeout_ms: 0,
            max_attempts: limits::ATTEMPTS_DEFAULT,
            run_at_ms: None,
        }
    }

    /// Parses the CLI form `NAME:ARG` of a builtin (`sleep:100`, `echo:hi`, `fail:3`).
    pub fn parse_builtin(text: &str) -> Result<TaskSpec, SpecError> {
        let (name, arg) = text.split_once(':').unwrap_or((text, ""));
        let spec = TaskSpec::builtin(name, arg);
        spec.validate()?;
        Ok(spec)
    }

    /// Bytes this spec costs in the state machine (an upper bound on its share of an entry).
    pub fn size_bytes(&self) -> usize {
        let exec = match &self.exec {
            Exec::Builtin { name, arg } => name.len() + arg.len(),
            Exec::Command { argv } => argv.iter().map(|a| a.len() + 1).sum(),
        };
        let maps = self.constraints.iter().chain(self.env.iter()).map(|(k, v)| k.len() + v.len() + 2).sum::<usize>();
        exec + maps + self.cwd.as_ref().map_or(0, String::len)
    }

    /// Checks every bound. Called by the API edge (to answer INVALID_ARGUMENT early) and again by
    /// `apply` (the decision that counts, whatever a replica's edge did).
    pub fn validate(&self) -> Result<(), SpecError> {
        let bytes = self.size_bytes();
        if bytes > limits::SPEC_BYTES_MAX {
            return Err(SpecError::TooLarge { bytes });
        }
        if self.constraints.len() > limits::CONSTRAINT_COUNT_MAX {
            return Err(SpecError::TooManyConstraints { count: self.constraints.len() });
        }
        for (k, v) in &self.constraints {
            if k.contains('\0') || v.contains('\0') {
                return Err(SpecError::Nul("constraint"));
            }
        }
        if self.env.len() > limits::ENV_COUNT_MAX {
            return Err(SpecError::TooManyEnv { count: self.env.len() });
        }
        if self.env.iter().any(|(k, v)| k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0')) {
            return Err(SpecError::BadEnv);
        }
        if self.cwd.as_ref().is_some_and(|c| c.is_empty() || c.contains('\0')) {
            return Err(SpecError::Nul("cwd"));
        }
        if self.timeout_ms > limits::TASK_TIMEOUT_MS_MAX {
            return Err(SpecError::TimeoutTooLong { ms: self.timeout_ms });
        }
        if self.max_attempts == 0 || self.max_attempts > limits::ATTEMPTS_MAX {
            return Err(SpecError::BadAttempts { n: self.max_attempts });
        }
        match &self.exec {
            Exec::Builtin { name, arg } => match name.as_str() {
                "sleep" => match arg.parse::<u64>() {
                    Ok(ms) if ms <= limits::SLEEP_MS_MAX => Ok(()),
                    _ => Err(SpecError::BadSleep { arg: arg.clone() }),
                },
                "echo" => {
                    if arg.contains('\0') {
                        return Err(SpecError::Nul("echo text"));
                    }
                    Ok(())
                }
                "fail" => match arg.parse::<u8>() {
                    Ok(code) if code >= 1 => Ok(()),
                    _ => Err(SpecError::BadFail { arg: arg.clone() }),
                },
                other => Err(SpecError::UnknownBuiltin(other.to_string())),
            },
            Exec::Command { argv } => {
                if argv.is_empty() {
                    return Err(SpecError::EmptyArgv);
                }
                if argv.len() > limits::ARGV_COUNT_MAX {
                    return Err(SpecError::TooManyArgs { count: argv.len() });
                }
                if argv.iter().any(|a| a.contains('\0')) {
                    return Err(SpecError::Nul("argv"));
                }
                Ok(())
            }
        }
    }
}

/// Checks an idempotency key against its bounds.
pub fn validate_key(key: &str) -> Result<(), SpecError> {
    if key.is_empty() {
        return Err(SpecError::KeyEmpty);
    }
    if key.len() > limits::KEY_BYTES_MAX {
        return Err(SpecError::KeyTooLong { bytes: key.len() });
    }
    if key.contains('\0') {
        return Err(SpecError::Nul("idempotency key"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_validate() {
        assert!(TaskSpec::parse_builtin("sleep:100").is_ok());
        assert!(TaskSpec::parse_builtin("echo:hi there").is_ok());
        assert!(TaskSpec::parse_builtin("echo").is_ok());
        assert!(TaskSpec::parse_builtin("fail:3").is_ok());
        assert_eq!(TaskSpec::parse_builtin("fail:0"), Err(SpecError::BadFail { arg: "0".into() }));
        assert_eq!(TaskSpec::parse_builtin("sleep:x"), Err(SpecError::BadSleep { arg: "x".into() }));
        assert_eq!(TaskSpec::parse_builtin("nope:1"), Err(SpecError::UnknownBuiltin("nope".into())));
    }

    #[test]
    fn bounds_are_enforced() {
        let big = TaskSpec::command(vec!["x".repeat(limits::SPEC_BYTES_MAX + 1)]);
        assert!(matches!(big.validate(), Err(SpecError::TooLarge { .. })));
        let many = TaskSpec::command(vec!["a".into(); limits::ARGV_COUNT_MAX + 1]);
        assert!(matches!(many.validate(), Err(SpecError::TooManyArgs { .. })));
        assert_eq!(TaskSpec::command(vec![]).validate(), Err(SpecError::EmptyArgv));
        assert!(matches!(validate_key(&"k".repeat(limits::KEY_BYTES_MAX + 1)), Err(SpecError::KeyTooLong { .. })));
        assert_eq!(validate_key(""), Err(SpecError::KeyEmpty));
        assert!(validate_key(&"k".repeat(limits::KEY_BYTES_MAX)).is_ok());
    }
}
