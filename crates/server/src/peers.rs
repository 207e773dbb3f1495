//! Connections to other replicas, one lazily connected tonic channel per address, shared by Raft
//! replication, forwarding and status.

use std::collections::HashMap;
use std::sync::Mutex;

use raftsched_api::raft_client::RaftClient;
use raftsched_api::scheduler_client::SchedulerClient;
use raftsched_api::security::{AuthChannel, Dialer};
use tonic::transport::Channel;

use crate::limits;

/// Peers are dialed with this replica's TLS identity and its `replica` token, if configured.
#[derive(Default)]
pub struct Peers {
    dialer: Dialer,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    pub fn new(dialer: Dialer) -> Peers {
        Peers { dialer, channels: Mutex::default() }
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
