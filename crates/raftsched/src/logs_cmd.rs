//! `raftsched logs ID [--attempt N] [--stderr] [--follow]`: an attempt's whole stdout or stderr,
//! kept by the worker that ran it and relayed by any replica (`Scheduler.ReadOutput`).
//!
//! The bytes go to stdout as the worker kept them. With `--follow`, a stream that breaks (the
//! worker restarted, the replica went away) is opened again at the byte reached, for up to
//! `FOLLOW_RETRY_MS_MAX` of failures in a row; a worker that restarted serves what it kept of its
//! earlier process's attempts, ended.

use std::time::{Duration, Instant};

use raftsched_client::{api, retryable_code, ClientError};

use crate::cli::LogsArgs;
use crate::client_cmds::{connect, parse_id};
use crate::error::{code_name, CliError};

/// How long `--follow` keeps trying to reopen a broken stream before it gives up.
pub const FOLLOW_RETRY_MS_MAX: u64 = 60_000;
/// Pause between two tries.
const FOLLOW_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// How one stream ended.
enum Ended {
    /// The attempt is over and everything kept was printed (whether the stream was cut).
    AttemptOver { cut: bool },
    /// Everything there is now was printed (no `--follow`).
    ForNow,
    /// The stream broke, or could not be opened: with `--follow` and a retryable code, open it
    /// again at the offset reached.
    Broken(tonic::Status),
}

pub async fn logs(args: LogsArgs) -> Result<(), CliError> {
    let id = parse_id(&args.id)?;
    if args.attempt == Some(0) {
        return Err(CliError::Usage("--attempt counts from 1".into()));
    }
    let client = connect(&args.cluster)?;
    let mut req = api::ReadOutputRequest {
        task_id: id,
        attempt: args.attempt.unwrap_or(0),
        stderr: args.stderr,
        offset: args.offset,
        follow: args.follow,
    };
    let mut failing_since: Option<Instant> = None;
    loop {
        let before = req.offset;
        let ended = match client.read_output(req).await {
            Ok(stream) => print_stream(stream, &mut req).await,
            Err(ClientError::Refused(status)) => Ended::Broken(status),
            Err(e) => Ended::Broken(tonic::Status::unavailable(e.to_string())),
        };
        if req.offset > before {
            failing_since = None;
        }
        match ended {
            Ended::AttemptOver { cut } => {
                if cut {
                    let stream = if args.stderr { "stderr" } else { "stdout" };
                    eprintln!(
                        "raftsched: {stream} of attempt {} was cut at {} bytes (output_attempt_bytes_max); `raftsched get {id}` shows its last bytes",
                        req.attempt, req.offset
                    );
                }
                return Ok(());
            }
            Ended::ForNow => return Ok(()),
            Ended::Broken(status) if !args.follow || !retryable_code(status.code()) => {
                return Err(CliError::Failed(format!("{} ({})", status.message(), code_name(status.code()))));
            }
            Ended::Broken(status) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_millis(FOLLOW_RETRY_MS_MAX) {
                    return Err(CliError::Failed(format!(
                        "{} (gave up after {FOLLOW_RETRY_MS_MAX} ms)",
                        status.message()
                    )));
                }
                tracing::info!(why = %status.message(), offset = req.offset, "output stream broke; opening it again");
                tokio::time::sleep(FOLLOW_RETRY_PAUSE).await;
            }
        }
    }
}

/// Prints `stream` to stdout, moving `req` on (the offset reached; the attempt, once known, so a
/// reopened stream stays on it).
async fn print_stream(mut stream: tonic::Streaming<api::OutputChunk>, req: &mut api::ReadOutputRequest) -> Ended {
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                if chunk.attempt > 0 {
                    req.attempt = chunk.attempt;
                }
                crate::output::write_out_bytes(&chunk.data);
                req.offset += chunk.data.len() as u64;
                if chunk.ended {
                    return Ended::AttemptOver { cut: chunk.cut };
                }
            }
            Ok(None) if req.follow => {
                return Ended::Broken(tonic::Status::unavailable("the stream ended before the attempt did"))
            }
            Ok(None) => return Ended::ForNow,
            Err(status) => return Ended::Broken(status),
        }
    }
}
