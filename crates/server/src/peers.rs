//! Connections to other replicas, one lazily connected tonic channel per address, shared by Raft
//! replication, forwarding and status; and to workers, for the task output a replica relays
//! (`output_relay.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use raftsched_api::raft_client::RaftClient;
use raftsched_api::scheduler_client::SchedulerClient;
use raftsched_api::security::{AuthChannel, Dialer};
use raftsched_api::worker_output_client::WorkerOutputClient;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::Channel;

use crate::limits::{self, OUTPUT_CHUNK_BYTES_MAX, OUTPUT_STREAMS_MAX, WORKER_CONNECT_TIMEOUT};

/// Peers are dialed with this replica's TLS identity and its `replica` token, if configured;
/// workers with the TLS identity only (`Dialer::for_workers`).
pub struct Peers {
    dialer: Dialer,
    worker_dialer: Dialer,
    channels: Mutex<HashMap<String, Channel>>,
    output_streams: Arc<Semaphore>,
}

impl Default for Peers {
    fn default() -> Peers {
        Peers::new(Dialer::default())
    }
}

impl Peers {
    pub fn new(dialer: Dialer) -> Peers {
        let worker_dialer = dialer.for_workers();
        let output_streams = Arc::new(Semaphore::new(OUTPUT_STREAMS_MAX));
        Peers { dialer, worker_dialer, channels: Mutex::default(), output_streams }
    }

    /// Takes one of the `OUTPUT_STREAMS_MAX` relay slots, or RESOURCE_EXHAUSTED.
    pub fn admit_output_stream(&self) -> Result<OwnedSemaphorePermit, tonic::Status> {
        self.output_streams.clone().try_acquire_owned().map_err(|_| {
            limits::overloaded(format!(
                "this replica relays {OUTPUT_STREAMS_MAX} output streams at once (output_streams_max)"
            ))
        })
    }

    /// The output service of the worker at `addr`, over a connection of its own: workers are many
    /// and rarely asked, so none is kept.
    pub fn worker_output(&self, addr: &str) -> Result<WorkerOutputClient<Channel>, tonic::Status> {
        let endpoint = self
            .worker_dialer
            .endpoint(addr)
            .map_err(|e| tonic::Status::failed_precondition(format!("bad worker address {addr:?}: {e}")))?
            .connect_timeout(WORKER_CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(std::time::Duration::from_secs(5))
            .keep_alive_timeout(std::time::Duration::from_secs(5));
        Ok(WorkerOutputClient::new(endpoint.connect_lazy()).max_decoding_message_size(OUTPUT_CHUNK_BYTES_MAX))
    }

    /// The replica-to-replica client for `addr`.
    pub fn client(&self, addr: &str) -> Result<RaftClient<AuthChannel>, tonic::Status> {
        Ok(RaftClient::with_interceptor(self.channel(addr)?, self.dialer.token.clone())
            .max_decoding_message_size(limits::RAFT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(limits::RAFT_MESSAGE_BYTES_MAX))
    }

    /// The client API of the replica at `addr` (for admin requests a replica passes on).
    pub fn scheduler(&self, addr: &str) -> Result<SchedulerClient<AuthChannel>, tonic::Status> {
        Ok(SchedulerClient::with_interceptor(self.channel(addr)?, self.dialer.token.clone()))
    }

    fn channel(&self, addr: &str) -> Result<Channel, tonic::Status> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let endpoint = self
                    .dialer
                    .endpoint(addr)
                    .map_err(|e| tonic::Status::internal(format!("bad peer address {addr:?}: {e}")))?
                    .connect_timeout(limits::CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(std::time::Duration::from_secs(5))
                    .keep_alive_timeout(std::time::Duration::from_secs(5));
                let channel = endpoint.connect_lazy();
                channels.insert(addr.to_string(), channel.clone());
                channel
            }
        };
        Ok(channel)
    }
}
