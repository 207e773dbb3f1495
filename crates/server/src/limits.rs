//! Bounds of the server edge, units last. The state machine's own bounds are in
//! `raftsched_state::limits`.

use std::time::Duration;

/// Client requests a replica works on at once; over it: RESOURCE_EXHAUSTED (not a queue).
pub const IN_FLIGHT_REQUESTS_MAX: usize = 4096;
/// Largest client API message. A spec is at most 64 KiB; the rest is headroom for framing.
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 1024 * 1024;
/// Largest replica-to-replica message: `RAFT_PAYLOAD_ENTRIES_MAX` entries of at most ~65 KiB each,
/// or one snapshot chunk.
pub const RAFT_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Entries per AppendEntries; with the 64 KiB spec bound this stays far below the message bound.
pub const RAFT_PAYLOAD_ENTRIES_MAX: u64 = 256;
/// Largest snapshot a follower reassembles from the leader's chunks.
pub const SNAPSHOT_BYTES_MAX: usize = 2048 * 1024 * 1024;
/// Bytes per snapshot chunk sent to a lagging replica.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;
/// How long a replica works on one client request (waiting for a leader, forwarding, waiting for
/// its state to catch up) before it answers UNAVAILABLE. Below the CLI's default 10 s timeout, so
/// the client has time to retry through another replica.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(5_000);
/// Timeout of one forwarded write or read-index call to the leader. A leader that died mid-call
/// must not hold the client for long: after this the replica looks for the new leader.
pub const FORWARD_TIMEOUT: Duration = Duration::from_millis(2_000);
/// Timeout of one member's answer to a cluster status request.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Connection timeout to a peer replica.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Refuses a batch of `len` items outside 1..=`max` with INVALID_ARGUMENT naming the limit.
pub fn check_batch_len(what: &str, len: usize, max: usize, limit_name: &str) -> Result<(), tonic::Status> {
    if len == 0 || len > max {
        return Err(tonic::Status::invalid_argument(format!("{len} {what}: must be 1..={max} ({limit_name})")));
    }
    Ok(())
}

/// Reports in one `Worker.ReportMany` call.
pub const REPORT_BATCH_LEN_MAX: usize = 256;
/// Writes a follower hands to the leader in one `Raft.Forward` call (`forwarder.rs`).
pub const FORWARD_BATCH_LEN_MAX: usize = 256;
/// Backoff while no leader is known: starts here and doubles up to the max.
pub const LEADER_WAIT_BACKOFF_MS_MIN: u64 = 10;
pub const LEADER_WAIT_BACKOFF_MS_MAX: u64 = 200;

const _: () = assert!(FORWARD_TIMEOUT.as_millis() < REQUEST_TIMEOUT.as_millis());
const _: () = assert!(
    RAFT_PAYLOAD_ENTRIES_MAX as usize * (raftsched_state::limits::SPEC_BYTES_MAX + 1024) < RAFT_MESSAGE_BYTES_MAX
);
const _: () = assert!((SNAPSHOT_CHUNK_BYTES as usize) < RAFT_MESSAGE_BYTES_MAX / 2);

// Transport limits (`transport.rs`, `serve.rs`): what a caller can hold before anything knows
// who it is. Per connection a client can hold at most `REQUEST_BODY_BYTES_PER_CONNECTION_MAX` of
// unread requests; in all, `REQUEST_BODY_BYTES_MAX`; for at most `REQUEST_BODY_MS_MAX` each.

/// Connections a replica serves at once; the next is closed at once (overload `connections_max`).
pub const CONNECTIONS_MAX: usize = 4096;
/// A connection that sends nothing this long after it was accepted is closed.
pub const CONNECTION_FIRST_BYTE_MS_MAX: u64 = 10_000;
/// HTTP/2 streams (calls) in flight on one connection, announced in SETTINGS; more are refused
/// by the HTTP/2 layer (REFUSED_STREAM) and retried by well-behaved clients.
pub const HTTP2_STREAMS_PER_CONNECTION_MAX: u32 = 256;
/// Request headers (all of them, decoded) per call.
pub const HEADER_LIST_BYTES_MAX: u32 = 16 * 1024;
/// Declared but not yet decoded request bytes one connection may hold (client and worker APIs).
pub const REQUEST_BODY_BYTES_PER_CONNECTION_MAX: usize = 32 * 1024 * 1024;
/// The same, over all connections.
pub const REQUEST_BODY_BYTES_MAX: usize = 128 * 1024 * 1024;
/// A request body must have arrived this long after its headers (client and worker APIs).
pub const REQUEST_BODY_MS_MAX: u64 = 10_000;
/// Server-side bound on any unary call, whatever deadline the client sent (or none): above the
/// longest long poll, so only a stuck call meets it.
pub const CALL_MS_MAX: u64 = LONG_POLL_MS_MAX + 10_000;
/// HTTP/2 PING interval on idle connections, and how long a PING may go unanswered before the
/// connection is closed: a peer that vanished stops holding its connection slot.
pub const HTTP2_KEEPALIVE_INTERVAL_MS: u64 = 10_000;
pub const HTTP2_KEEPALIVE_TIMEOUT_MS: u64 = 20_000;

const _: () = assert!(CLIENT_MESSAGE_BYTES_MAX <= REQUEST_BODY_BYTES_PER_CONNECTION_MAX);
const _: () = assert!(REQUEST_BODY_BYTES_PER_CONNECTION_MAX <= REQUEST_BODY_BYTES_MAX);
const _: () = assert!(REQUEST_BODY_BYTES_MAX <= u32::MAX as usize);

/// Longest long poll (WaitTask, Assignments).
pub const LONG_POLL_MS_MAX: u64 = 30_000;

/// The wait a long poll is served: `wait_ms`, at most `LONG_POLL_MS_MAX`, and whether it was cut.
pub fn long_poll_wait(wait_ms: u32) -> (std::time::Duration, bool) {
    let served = u64::from(wait_ms).min(LONG_POLL_MS_MAX);
    (std::time::Duration::from_millis(served), served < u64::from(wait_ms))
}

/// Says on `response` that its long poll was cut to `LONG_POLL_MS_MAX` (`WAIT_CAPPED_KEY`), so
/// the cap is never silent.
pub fn note_wait_capped<T>(mut response: tonic::Response<T>, capped: bool) -> tonic::Response<T> {
    if capped {
        response.metadata_mut().insert(raftsched_api::WAIT_CAPPED_KEY, LONG_POLL_MS_MAX.into());
    }
    response
}
/// Assignments the leader proposes in one Raft command.
pub const DISPATCH_BATCH_LEN_MAX: usize = 256;
/// The leader's scheduling loop wakes at least this often (it also wakes on every apply).
pub const LEADER_TICK_MS: u64 = 100;
/// Schedule fires one pass of the leader loop proposes (more wait for the next pass).
pub const FIRES_PER_TICK_MAX: usize = 64;
/// Least time between two read-index rounds that confirm worker heartbeats (`liveness.rs`): at
/// most 100 rounds a second whatever the fleet's size, for a few ms on each heartbeat's answer.
pub const HEARTBEAT_ROUND_GAP_MS: u64 = 10;
/// Long polls a replica holds open at once: each worker holds one (up to `workers_max`, 10,000,
/// all on the leader: worker calls go there first), each waiting client one. They take no
/// `in_flight_requests_max` slot.
pub const LONG_POLLS_MAX: usize = 16_384;
const _: () = assert!(LONG_POLLS_MAX >= raftsched_state::limits::WORKERS_MAX + 4096);
/// Heartbeats a replica handles at once, beside `in_flight_requests_max`: a few per worker of a
/// full registry (a worker has one out at a time, more only after a slow one).
pub const HEARTBEATS_IN_FLIGHT_MAX: usize = 16_384;
const _: () = assert!(HEARTBEATS_IN_FLIGHT_MAX >= raftsched_state::limits::WORKERS_MAX);

/// RESOURCE_EXHAUSTED for a limit reached. `message` names the limit (its `*_max` name, as every
/// overload message here does); programs need not parse it: the name also goes in the status's
/// details, a `google.rpc.ErrorInfo` (reason `LIMIT_REACHED`, domain `raftsched`, metadata
/// `limit`), a `QuotaFailure` violation whose subject is the limit, and a `RetryInfo` of one
/// second. The metric `raftsched_requests_rejected_overload_total{reason}` counts by the same name.
pub fn overloaded(message: impl Into<String>) -> tonic::Status {
    use tonic_types::{ErrorDetails, QuotaViolation, StatusExt};
    let message = message.into();
    let limit = crate::rpc_stats::overload_reason(&message);
    let metadata = std::collections::HashMap::from([("limit".to_string(), limit.clone())]);
    let mut details = ErrorDetails::with_error_info("LIMIT_REACHED", "raftsched", metadata);
    details.set_quota_failure(vec![QuotaViolation::new(limit, message.clone())]);
    details.set_retry_info(Some(std::time::Duration::from_secs(1)));
    tonic::Status::with_error_details(tonic::Code::ResourceExhausted, message, details)
}

/// Output streams a replica relays at once.
pub const OUTPUT_STREAMS_MAX: usize = 64;
/// Largest chunk taken from a worker (a worker sends at most 64 KiB; this leaves room for the
/// message around it).
pub const OUTPUT_CHUNK_BYTES_MAX: usize = 128 * 1024;
/// How long reaching a worker and its first answer may take.
pub const WORKER_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
