//! A Rust client for raftsched.
//!
//! It knows every replica's address, sends each call to one of them, and on `UNAVAILABLE` (no
//! leader yet, a replica down, a leader killed mid-call) tries the next replica with exponential
//! backoff until the call's timeout (at most 50 ms between rounds for the first two seconds, the
//! length of a failover, then up to 500 ms). Any replica serves any call, so the client never needs to
//! know which one leads; but a follower's answer to a write names the leader (`LEADER_HINT_KEY`),
//! and the client sends its next writes there, which spares the follower's forward hop. Reads stay
//! with the replica that last answered one, so many clients' reads stay spread. Retrying a submit
//! is safe because it carries an idempotency key: the state machine answers a repeated key with the
//! task it already created.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use raftsched_api as api;
use raftsched_api::scheduler_client::SchedulerClient;
use raftsched_api::security::AuthChannel;
pub use raftsched_api::security::{BearerToken, Dialer, TlsFiles};
use raftsched_api::worker_client::WorkerClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The replicas tried when neither `--cluster` nor `RAFTSCHED_CLUSTER` says otherwise: the
/// addresses `raftsched dev` uses.
pub const DEFAULT_CLUSTER: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";
/// Default time a call may take, retries included.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Largest reply the client accepts (a full list page of large specs).
const REPLY_BYTES_MAX: usize = 64 * 1024 * 1024;
const BACKOFF_MS_MIN: u64 = 20;
const BACKOFF_MS_MAX: u64 = 500;
/// The longest pause while a call has been failing for less than `ELECTION_WINDOW`: a leader's
/// failover takes about a third of a second, and a client that had backed off to 160 ms by then
/// answered up to 160 ms after the new leader could (`bench failover` measured it).
const BACKOFF_MS_MAX_WHILE_ELECTING: u64 = 50;
const ELECTION_WINDOW: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1_000);
/// `Client::leader` when no leader is known.
const NO_LEADER: usize = usize::MAX;

/// Whether a call writes (and so is best sent to the leader) or reads (served by any replica).
/// A worker's assignments poll counts as a write: the leader applies an entry first, so a poll
/// there hears of new work a commit round earlier than one on a follower.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Read,
    Write,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered and refused (bad input, not found, conflict, overload...).
    #[error("{}", .0.message())]
    Refused(Status),
    /// No replica gave an answer within the timeout.
    #[error("no replica answered within {timeout_ms} ms (last error: {last})")]
    Unavailable { timeout_ms: u128, last: String },
    /// The replicas that answered know the cluster has no leader and no quorum (the others did
    /// not answer): retrying now is pointless until enough replicas are back.
    #[error("no leader / no quorum: {message}")]
    NoQuorum { message: String },
    #[error("bad replica address {addr:?}: {why}")]
    BadAddress { addr: String, why: String },
    #[error("no replica addresses given")]
    NoAddresses,
}

impl ClientError {
    /// The gRPC code behind the error (`UNAVAILABLE` when nobody answered).
    pub fn code(&self) -> Code {
        match self {
            ClientError::Refused(s) => s.code(),
            ClientError::Unavailable { .. } | ClientError::NoQuorum { .. } => Code::Unavailable,
            ClientError::BadAddress { .. } | ClientError::NoAddresses => Code::InvalidArgument,
        }
    }
}

/// Parses `HOST:PORT,HOST:PORT,...`.
pub fn parse_cluster(text: &str) -> Result<Vec<String>, ClientError> {
    let addrs: Vec<String> = text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    if addrs.is_empty() {
        return Err(ClientError::NoAddresses);
    }
    for addr in &addrs {
        if !raftsched_api::is_host_port(addr) {
            return Err(ClientError::BadAddress { addr: addr.clone(), why: "expected HOST:PORT".into() });
        }
    }
    Ok(addrs)
}

pub struct Client {
    addrs: Vec<String>,
    channels: Vec<Channel>,
    token: BearerToken,
    timeout: Duration,
    /// The replica to try first: the last one that answered.
    preferred: AtomicUsize,
    /// The replica writes go to first: the leader as the last write's answer named it
    /// (`LEADER_HINT_KEY`), or `NO_LEADER`. Reads keep to `preferred`, so they stay spread.
    leader: AtomicUsize,
    /// No retries: a retryable error is returned as `Unavailable` at once (a test harness that
    /// records each call's outcome needs one attempt per call).
    single_attempt: bool,
    /// Dialing without TLS: a protocol error then most likely means the replica requires TLS.
    plaintext: bool,
    /// Per replica: it has answered in gRPC before, so a protocol error from it now is a broken
    /// connection (it restarted mid-call), worth another try, not a replica that requires TLS.
    spoke_grpc: Vec<std::sync::atomic::AtomicBool>,
}

/// A plaintext client's view of a TLS replica: the bytes that come back are not HTTP/2. Said
/// plainly, with what to do, instead of "h2 protocol error". From a replica that has spoken
/// gRPC to this client before, the same error is a connection that broke: `Unavailable`, retried.
fn explain_plaintext(status: Status, addr: &str, spoke_grpc: bool) -> Status {
    let message = status.message();
    let garbled = ["h2 protocol error", "frame with invalid size", "invalid HTTP", "connection reset"]
        .iter()
        .any(|m| message.contains(m));
    if !garbled {
        return status;
    }
    if spoke_grpc {
        return Status::unavailable(format!("{addr}: the connection broke ({message})"));
    }
    Status::new(
        status.code(),
        format!(
            "{addr} does not speak plaintext gRPC ({message}); it probably requires TLS: give --tls-ca, \
             --tls-cert and --tls-key (and --token-file)"
        ),
    )
}

/// A progress bar, `[#####     ]`, 30 characters inside: `done` of `total` filled (`total` 0
/// counts as 1). Long commands draw it on stderr (the benchmarks, the harness).
pub fn progress_bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 30;
    let filled = (done.min(total) * WIDTH / total.max(1)) as usize;
    format!("[{}{}]", "#".repeat(filled), " ".repeat(WIDTH as usize - filled))
}

/// The rules a client checks before it sends, so a bad argument is a usage error at once rather
/// than a round trip: the bounds and parsers the state machine itself applies (which decides
/// again in `apply`). What a command line or another client needs of the state crate comes
/// through here, never from it directly.
pub mod rules {
    pub use raftsched_state::calendar::{parse_duration_ms, Timing};
    pub use raftsched_state::limits;
    pub use raftsched_state::schedule::validate_schedule_name;
    pub use raftsched_state::worker::validate_worker_id;
    pub use raftsched_state::{TaskSpec, TaskState};
}

/// Whether a call that failed with `code` may succeed if sent again (possibly to another replica):
/// the client retries these itself; callers with per-item answers (`report_many`) use it too.
pub fn retryable_code(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::Aborted)
}

fn retryable(status: &Status) -> bool {
    retryable_code(status.code())
}

impl Client {
    /// A client for the replicas at `addrs`; no connection is made until the first call.
    pub fn new(addrs: Vec<String>, timeout: Duration) -> Result<Client, ClientError> {
        Client::with_dialer(addrs, timeout, &Dialer::default())
    }

    /// Like [`Client::new`], dialing with TLS and/or a bearer token as `dialer` says.
    pub fn with_dialer(addrs: Vec<String>, timeout: Duration, dialer: &Dialer) -> Result<Client, ClientError> {
        if addrs.is_empty() {
            return Err(ClientError::NoAddresses);
        }
        let mut channels = Vec::with_capacity(addrs.len());
        for addr in &addrs {
            let endpoint = dialer
                .endpoint(addr)
                .map_err(|why| ClientError::BadAddress { addr: addr.clone(), why })?
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true);
            channels.push(endpoint.connect_lazy());
        }
        Ok(Client {
            spoke_grpc: channels.iter().map(|_| Default::default()).collect(),
            addrs,
            channels,
            token: dialer.token.clone(),
            timeout,
            preferred: AtomicUsize::new(0),
            leader: AtomicUsize::new(NO_LEADER),
            single_attempt: false,
            plaintext: dialer.tls.is_none(),
        })
    }

    /// Starts with replica `index` (mod the count), e.g. to spread many clients over replicas.
    pub fn prefer(self, index: usize) -> Client {
        self.preferred.store(index % self.addrs.len(), Ordering::Relaxed);
        self
    }

    /// Makes every call a single attempt: no retry through other replicas, no backoff.
    pub fn single_attempt(mut self) -> Client {
        self.single_attempt = true;
        self
    }

    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The replica this client sends writes to first: the leader as the last write's answer named
    /// it, if that is one of its addresses; `None` before any write or after the leader failed.
    pub fn leader_addr(&self) -> Option<&str> {
        self.addrs.get(self.leader.load(Ordering::Relaxed)).map(String::as_str)
    }

    /// Like `call`, for a write: sent to the leader first when an earlier write's answer named it.
    async fn call_write<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: FnMut(SchedulerClient<AuthChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_scheduler(Route::Write, call).await
    }

    /// For the worker service: every worker call (registration, heartbeats, reports and the
    /// assignments poll) goes to the leader first, like a write.
    async fn call_worker<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: FnMut(WorkerClient<AuthChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut call = call;
        let token = &self.token;
        self.call_channel(Route::Write, |channel| {
            call(WorkerClient::with_interceptor(channel, token.clone()).max_decoding_message_size(REPLY_BYTES_MAX))
        })
        .await
    }

    /// Runs `call` against replicas in turn until one answers with anything but a retryable error.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: FnMut(SchedulerClient<AuthChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_scheduler(Route::Read, call).await
    }

    async fn call_scheduler<T, F, Fut>(&self, route: Route, call: F) -> Result<T, ClientError>
    where
        F: FnMut(SchedulerClient<AuthChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut call = call;
        let token = &self.token;
        self.call_channel(route, |channel| {
            call(SchedulerClient::with_interceptor(channel, token.clone()).max_decoding_message_size(REPLY_BYTES_MAX))
        })
        .await
    }

    async fn call_channel<T, F, Fut>(&self, route: Route, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let mut backoff_ms = BACKOFF_MS_MIN;
        let leader = self.leader.load(Ordering::Relaxed);
        let mut index = if route == Route::Write && leader < self.addrs.len() {
            leader
        } else {
            self.preferred.load(Ordering::Relaxed) % self.addrs.len()
        };
        let mut n_tried = 0usize;
        let mut last = String::from("not tried");
        let mut no_quorum: Option<String> = None;
        loop {
            let remaining = self.timeout.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Err(ClientError::Unavailable { timeout_ms: self.timeout.as_millis(), last });
            }
            let answer = tokio::time::timeout(remaining, call(self.channels[index].clone())).await;
            let spoke_grpc = &self.spoke_grpc[index];
            let answer = match answer {
                Ok(Err(status)) if self.plaintext => {
                    Ok(Err(explain_plaintext(status, &self.addrs[index], spoke_grpc.load(Ordering::Relaxed))))
                }
                other => other,
            };
            if matches!(answer, Ok(Ok(_))) {
                spoke_grpc.store(true, Ordering::Relaxed);
            }
            match answer {
                Ok(Ok(reply)) => {
                    if route == Route::Write {
                        // A replica that forwarded names the leader; one that did not is it. A
                        // leader this client has no address for (another advertised name) is
                        // not one it can go to: it keeps to its own order then.
                        let leader = match reply.metadata().get(raftsched_api::LEADER_HINT_KEY) {
                            None => index,
                            Some(hint) => hint
                                .to_str()
                                .ok()
                                .and_then(|addr| self.addrs.iter().position(|a| a == addr))
                                .unwrap_or(NO_LEADER),
                        };
                        self.leader.store(leader, Ordering::Relaxed);
                    } else {
                        self.preferred.store(index, Ordering::Relaxed);
                    }
                    return Ok(reply.into_inner());
                }
                Ok(Err(status)) if !retryable(&status) => return Err(ClientError::Refused(status)),
                Ok(Err(status)) => {
                    last = format!("{}: {}", self.addrs[index], status.message());
                    if status.message().contains(NO_QUORUM_MARK) {
                        no_quorum = Some(last.clone());
                    }
                }
                Err(_) => last = format!("{}: timed out", self.addrs[index]),
            }
            if self.single_attempt {
                return Err(ClientError::Unavailable { timeout_ms: self.timeout.as_millis(), last });
            }
            tracing::debug!(%last, "retrying through the next replica");
            // The leader as last known did not answer: forget it, so the next write looks again.
            let _ = self.leader.compare_exchange(index, NO_LEADER, Ordering::Relaxed, Ordering::Relaxed);
            index = (index + 1) % self.addrs.len();
            n_tried += 1;
            // Back off once every replica has been tried in this round.
            if n_tried.is_multiple_of(self.addrs.len()) {
                // A whole round in which the replicas that answered said there is no quorum: say
                // so now rather than after the timeout.
                if let Some(message) = no_quorum.take() {
                    return Err(ClientError::NoQuorum { message });
                }
                let pause = Duration::from_millis(backoff_ms).min(self.timeout.saturating_sub(started.elapsed()));
                tokio::time::sleep(pause).await;
                let cap =
                    if started.elapsed() < ELECTION_WINDOW { BACKOFF_MS_MAX_WHILE_ELECTING } else { BACKOFF_MS_MAX };
                backoff_ms = (backoff_ms * 2).min(cap);
            }
        }
    }

    pub async fn submit(&self, key: &str, spec: api::TaskSpec) -> Result<api::SubmitResponse, ClientError> {
        self.submit_waiting(key, spec, Duration::ZERO).await
    }

    /// Submits and, in the same call, waits up to `wait` (at most 30 s) for the task to end; the
    /// reply's `task` is the task when answered (not yet ended if `wait` passed). Retries are as
    /// safe as for `submit`: the key names one task.
    pub async fn submit_waiting(
        &self,
        key: &str,
        spec: api::TaskSpec,
        wait: Duration,
    ) -> Result<api::SubmitResponse, ClientError> {
        let wait_ms = wait.as_millis().min(u128::from(u32::MAX)) as u32;
        self.submit_request(api::SubmitRequest {
            key: key.to_string(),
            spec: Some(spec),
            wait_ms,
            ..Default::default()
        })
        .await
    }

    /// Submits as `req` says (dependencies, a wait); retries are as safe as for `submit`.
    pub async fn submit_request(&self, req: api::SubmitRequest) -> Result<api::SubmitResponse, ClientError> {
        self.call_write(|mut c| {
            let req = req.clone();
            async move { c.submit(req).await }
        })
        .await
    }

    pub async fn get(&self, id: u64, stale: bool) -> Result<api::Task, ClientError> {
        self.call(|mut c| async move { c.get_task(api::GetTaskRequest { id, stale }).await }).await
    }

    pub async fn list_page(&self, req: api::ListTasksRequest) -> Result<api::ListTasksResponse, ClientError> {
        self.call(|mut c| {
            let req = req.clone();
            async move { c.list_tasks(req).await }
        })
        .await
    }

    pub async fn cancel(&self, id: u64) -> Result<api::CancelResponse, ClientError> {
        self.call_write(|mut c| async move { c.cancel(api::CancelRequest { id }).await }).await
    }

    /// Long poll: the task once its version is above `after_version`, or as it is after `wait`.
    pub async fn wait_task(&self, id: u64, after_version: u64, wait: Duration) -> Result<api::Task, ClientError> {
        let wait_ms = wait.as_millis().min(u128::from(u32::MAX)) as u32;
        let req = api::WaitTaskRequest { id, after_version, wait_ms, until_ended: false };
        self.call(|mut c| async move { c.wait_task(req).await }).await
    }

    /// Long poll: the task once it has ended, or as it is after `wait`.
    pub async fn wait_task_ended(&self, id: u64, wait: Duration) -> Result<api::Task, ClientError> {
        let wait_ms = wait.as_millis().min(u128::from(u32::MAX)) as u32;
        let req = api::WaitTaskRequest { id, after_version: 0, wait_ms, until_ended: true };
        self.call(|mut c| async move { c.wait_task(req).await }).await
    }

    /// Submits a flow: every task or none; retries are safe (the key names the flow).
    pub async fn submit_flow(&self, req: api::SubmitFlowRequest) -> Result<api::SubmitFlowResponse, ClientError> {
        self.call_write(|mut c| {
            let req = req.clone();
            async move { c.submit_flow(req).await }
        })
        .await
    }

    /// An attempt's output as a stream of chunks, from any replica (which relays it from the
    /// worker). Opening is retried like any read; a stream that breaks later is the caller's to
    /// open again at the offset it reached.
    pub async fn read_output(
        &self,
        req: api::ReadOutputRequest,
    ) -> Result<tonic::Streaming<api::OutputChunk>, ClientError> {
        self.call(|mut c| async move { c.read_output(req).await }).await
    }

    pub async fn get_flow(&self, key: &str, stale: bool) -> Result<api::GetFlowResponse, ClientError> {
        let key = key.to_string();
        self.call(|mut c| {
            let key = key.clone();
            async move { c.get_flow(api::GetFlowRequest { key, stale }).await }
        })
        .await
    }

    pub async fn list_concurrency_keys(&self, stale: bool) -> Result<api::ListConcurrencyKeysResponse, ClientError> {
        self.call(|mut c| async move { c.list_concurrency_keys(api::ListConcurrencyKeysRequest { stale }).await }).await
    }

    pub async fn list_workers(&self, stale: bool) -> Result<api::ListWorkersResponse, ClientError> {
        self.call(|mut c| async move { c.list_workers(api::ListWorkersRequest { stale }).await }).await
    }

    pub async fn drain_worker(&self, id: &str) -> Result<api::DrainWorkerResponse, ClientError> {
        let id = id.to_string();
        self.call_write(|mut c| {
            let id = id.clone();
            async move { c.drain_worker(api::DrainWorkerRequest { id }).await }
        })
        .await
    }

    pub async fn register_worker(
        &self,
        req: api::RegisterWorkerRequest,
    ) -> Result<api::RegisterWorkerResponse, ClientError> {
        self.call_worker(|mut c| {
            let req = req.clone();
            async move { c.register_worker(req).await }
        })
        .await
    }

    pub async fn heartbeat(&self, id: &str, instance: u64) -> Result<api::HeartbeatResponse, ClientError> {
        let id = id.to_string();
        self.call_worker(|mut c| {
            let id = id.clone();
            async move { c.heartbeat(api::HeartbeatRequest { id, instance }).await }
        })
        .await
    }

    pub async fn assignments(&self, req: api::AssignmentsRequest) -> Result<api::AssignmentsResponse, ClientError> {
        self.call_worker(|mut c| {
            let req = req.clone();
            async move { c.assignments(req).await }
        })
        .await
    }

    pub async fn report(&self, req: api::ReportRequest) -> Result<api::ReportResponse, ClientError> {
        self.call_worker(|mut c| {
            let req = req.clone();
            async move { c.report(req).await }
        })
        .await
    }

    /// Several reports in one call; one outcome per report, in order (`code` 0: applied).
    pub async fn report_many(&self, reports: Vec<api::ReportRequest>) -> Result<api::ReportManyResponse, ClientError> {
        let req = api::ReportManyRequest { reports };
        self.call_worker(|mut c| {
            let req = req.clone();
            async move { c.report_many(req).await }
        })
        .await
    }

    pub async fn add_member(&self, id: u64, addr: &str) -> Result<api::MembershipResponse, ClientError> {
        let req = api::AddMemberRequest { id, addr: addr.to_string() };
        self.call(|mut c| {
            let req = req.clone();
            async move { c.add_member(req).await }
        })
        .await
    }

    pub async fn remove_member(&self, id: u64) -> Result<api::MembershipResponse, ClientError> {
        self.call(|mut c| async move { c.remove_member(api::RemoveMemberRequest { id }).await }).await
    }

    pub async fn transfer_leader(&self, to: u64) -> Result<api::TransferLeaderResponse, ClientError> {
        self.call(|mut c| async move { c.transfer_leader(api::TransferLeaderRequest { to }).await }).await
    }

    pub async fn create_schedule(
        &self,
        name: &str,
        spec: api::ScheduleSpec,
    ) -> Result<api::ScheduleResponse, ClientError> {
        self.create_schedule_request(api::CreateScheduleRequest {
            name: name.to_string(),
            spec: Some(spec),
            ..Default::default()
        })
        .await
    }

    /// Creates a schedule as `req` says (a concurrency key for its tasks, too).
    pub async fn create_schedule_request(
        &self,
        req: api::CreateScheduleRequest,
    ) -> Result<api::ScheduleResponse, ClientError> {
        self.call_write(|mut c| {
            let req = req.clone();
            async move { c.create_schedule(req).await }
        })
        .await
    }

    pub async fn get_schedule(&self, name: &str, stale: bool) -> Result<api::Schedule, ClientError> {
        let req = api::GetScheduleRequest { name: name.to_string(), stale };
        self.call(|mut c| {
            let req = req.clone();
            async move { c.get_schedule(req).await }
        })
        .await
    }

    pub async fn list_schedules(&self, stale: bool) -> Result<api::ListSchedulesResponse, ClientError> {
        self.call(|mut c| async move { c.list_schedules(api::ListSchedulesRequest { stale }).await }).await
    }

    /// Pauses (`paused`) or resumes a schedule.
    pub async fn pause_schedule(&self, name: &str, paused: bool) -> Result<api::ScheduleResponse, ClientError> {
        let req = api::PauseScheduleRequest { name: name.to_string(), paused };
        self.call_write(|mut c| {
            let req = req.clone();
            async move { c.pause_schedule(req).await }
        })
        .await
    }

    pub async fn delete_schedule(&self, name: &str) -> Result<api::ScheduleResponse, ClientError> {
        let req = api::DeleteScheduleRequest { name: name.to_string() };
        self.call_write(|mut c| {
            let req = req.clone();
            async move { c.delete_schedule(req).await }
        })
        .await
    }

    pub async fn cluster_status(&self) -> Result<api::ClusterStatusResponse, ClientError> {
        self.call(|mut c| async move { c.cluster_status(api::ClusterStatusRequest {}).await }).await
    }
}

/// What a replica's UNAVAILABLE says when it knows there is no quorum (`raftsched-server`'s
/// `quorum.rs`).
pub const NO_QUORUM_MARK: &str = "no quorum:";

/// Helpers to build specs.
pub fn builtin(name: &str, arg: &str) -> api::TaskSpec {
    api::TaskSpec {
        exec: Some(api::task_spec::Exec::Builtin(api::Builtin { name: name.to_string(), arg: arg.to_string() })),
        ..Default::default()
    }
}

pub fn command(argv: Vec<String>) -> api::TaskSpec {
    api::TaskSpec { exec: Some(api::task_spec::Exec::Command(api::CommandLine { argv })), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_lists() {
        assert_eq!(parse_cluster("a:1, b:2").unwrap(), vec!["a:1", "b:2"]);
        assert!(matches!(parse_cluster(""), Err(ClientError::NoAddresses)));
        assert!(matches!(parse_cluster("a"), Err(ClientError::BadAddress { .. })));
        assert!(matches!(parse_cluster("a:99999"), Err(ClientError::BadAddress { .. })));
    }
}
