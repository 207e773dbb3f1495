//! The CLI's errors and exit codes: 1 for a refused request, 2 for bad usage.

use raftsched_client::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The user's arguments are wrong: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The cluster refused or did not answer, or the local process failed: exit 1.
    #[error("{0}")]
    Failed(String),
    /// Exit with this code and print nothing more (`submit --wait` of a failed task).
    #[error("")]
    Exit(i32),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
            CliError::Exit(code) => *code,
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        match e {
            ClientError::BadAddress { .. } | ClientError::NoAddresses => CliError::Usage(e.to_string()),
            ClientError::Refused(status) => {
                CliError::Failed(format!("{} ({})", status.message(), code_name(status.code())))
            }
            ClientError::Unavailable { .. } | ClientError::NoQuorum { .. } => CliError::Failed(e.to_string()),
        }
    }
}

pub use raftsched_client::api::code_name;
