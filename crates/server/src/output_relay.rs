//! `Scheduler.ReadOutput`: an attempt's stdout or stderr, relayed from the worker that keeps it
//! (`crates/worker/src/output.rs`). The replica finds the attempt and its worker in the state,
//! dials the address that worker registered (over its own connection, with the replica's TLS
//! identity and nothing else: no token, no peer proof), and passes the chunks on.
//!
//! Bounds (in `limits.rs`): `OUTPUT_STREAMS_MAX` relays at once per replica (RESOURCE_EXHAUSTED
//! past it), chunks of at most `OUTPUT_CHUNK_BYTES_MAX` accepted from a worker,
//! `WORKER_CONNECT_TIMEOUT` to reach it. A relay ends when the worker's stream does or the client
//! goes away.

use raftsched_api as api;
use raftsched_state::StateMachine;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use crate::limits::WORKER_CONNECT_TIMEOUT;
use crate::replica::Replica;

pub type OutputStream = ReceiverStream<Result<api::OutputChunk, Status>>;

/// Where an attempt's output is: which attempt, the worker that ran it, and its address.
#[derive(Debug, PartialEq, Eq)]
struct Located {
    attempt: u32,
    worker_id: String,
    addr: String,
}

/// Finds attempt `attempt` (0: the latest) of task `task_id` and where its worker is.
fn locate(sm: &StateMachine, task_id: u64, attempt: u32) -> Result<Located, Status> {
    let task = sm.get(task_id).ok_or_else(|| Status::not_found(format!("no task with id {task_id}")))?;
    let made = task.attempts.len() as u32;
    if made == 0 {
        return Err(Status::not_found(format!(
            "task {task_id} has not run yet (it is {}): no output",
            task.state.as_str()
        )));
    }
    let attempt = if attempt == 0 { made } else { attempt };
    let Some(run) = task.attempts.get(attempt as usize - 1) else {
        return Err(Status::not_found(format!("task {task_id} has no attempt {attempt} (it has {made})")));
    };
    let worker_id = run.worker_id.clone();
    let node = sm.worker(&worker_id).ok_or_else(|| {
        Status::not_found(format!(
            "worker {worker_id}, which ran attempt {attempt} of task {task_id}, has left the registry: its output stays on its machine"
        ))
    })?;
    if !serves_output(&node.addr) {
        return Err(Status::failed_precondition(format!(
            "worker {worker_id} serves no output (it registered {:?}, not HOST:PORT: a build before live output)",
            node.addr
        )));
    }
    Ok(Located { attempt, worker_id, addr: node.addr.clone() })
}

/// Whether a registered worker address is one to dial (`HOST:PORT`); workers before live output
/// register `pull:ID`.
fn serves_output(addr: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && host != "pull" && port.parse::<u16>().is_ok())
}

/// Opens the relay of `req`'s output: an error here (before any chunk) says why there is none.
pub(crate) async fn relay_output(replica: &Replica, req: api::ReadOutputRequest) -> Result<OutputStream, Status> {
    if req.task_id == 0 {
        return Err(Status::invalid_argument("task id 0 does not exist; ids start at 1"));
    }
    let permit = replica.peers.admit_output_stream()?;
    let at = replica.read(false, |sm| locate(sm, req.task_id, req.attempt)).await??;
    let mut client = replica.peers.worker_output(&at.addr)?;
    let ask = api::ReadOutputRequest { attempt: at.attempt, ..req };
    let opened = tokio::time::timeout(WORKER_CONNECT_TIMEOUT, client.read_output(ask)).await;
    let mut upstream = match opened {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return Err(worker_refused(&at, status)),
        Err(_) => {
            let why = format!("no answer within {} s", WORKER_CONNECT_TIMEOUT.as_secs());
            return Err(unreachable(&at, &why));
        }
    };
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let _permit = permit;
        loop {
            let next = tokio::select! {
                next = upstream.message() => next,
                _ = tx.closed() => return,
            };
            let item = match next {
                Ok(Some(mut chunk)) => {
                    // The state says who ran which attempt; a worker's word is not needed.
                    chunk.worker_id.clone_from(&at.worker_id);
                    chunk.attempt = at.attempt;
                    Ok(chunk)
                }
                Ok(None) => return,
                Err(status) => Err(gone_mid_stream(&at, status)),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

fn unreachable(at: &Located, why: &str) -> Status {
    Status::unavailable(format!("worker {} at {} cannot be reached now: {why}", at.worker_id, at.addr))
}

/// A worker's refusal, said as the worker's, or UNAVAILABLE when it could not be reached.
fn worker_refused(at: &Located, status: Status) -> Status {
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled => {
            unreachable(at, status.message())
        }
        Code::Unauthenticated | Code::PermissionDenied => Status::internal(format!(
            "worker {} refused this replica: {} (does this replica's certificate name raftsched://replica/ID?)",
            at.worker_id,
            status.message()
        )),
        code => Status::new(code, format!("worker {}: {}", at.worker_id, status.message())),
    }
}

fn gone_mid_stream(at: &Located, status: Status) -> Status {
    Status::unavailable(format!(
        "worker {} stopped sending attempt {}'s output: {} (ask again with an offset to go on)",
        at.worker_id,
        at.attempt,
        status.message()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_and_port_is_dialed() {
        for addr in ["127.0.0.1:7100", "w1.example:7100", "[::1]:7100"] {
            assert!(serves_output(addr), "{addr}");
        }
        for addr in ["pull:w1", "", "127.0.0.1", "w1:port", ":7100", "w1:70000"] {
            assert!(!serves_output(addr), "{addr}");
        }
    }
}
