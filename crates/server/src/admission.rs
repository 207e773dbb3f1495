//! What a replica admits at once, each kind of call with a budget of its own, so that none can
//! starve another: client requests (`in_flight_requests_max`), long polls (`long_polls_max`: they
//! hold their slot for up to 30 s), and worker heartbeats (`heartbeats_in_flight_max`: a heartbeat
//! refused because client requests fill the replica would get a live worker declared down).
//! Past a budget the answer is RESOURCE_EXHAUSTED naming it, never a wait.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use crate::limits;

pub(crate) struct Admission {
    replica_id: u64,
    requests: Arc<Semaphore>,
    long_polls: Arc<Semaphore>,
    heartbeats: Arc<Semaphore>,
}

impl Admission {
    pub(crate) fn new(replica_id: u64) -> Admission {
        Admission {
            replica_id,
            requests: Arc::new(Semaphore::new(limits::IN_FLIGHT_REQUESTS_MAX)),
            long_polls: Arc::new(Semaphore::new(limits::LONG_POLLS_MAX)),
            heartbeats: Arc::new(Semaphore::new(limits::HEARTBEATS_IN_FLIGHT_MAX)),
        }
    }

    fn take(&self, budget: &Arc<Semaphore>, name: &str, max: usize) -> Result<OwnedSemaphorePermit, Status> {
        budget
            .clone()
            .try_acquire_owned()
            .map_err(|_| limits::overloaded(format!("replica {} is at {name} {max}", self.replica_id)))
    }

    pub(crate) fn request(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.take(&self.requests, "in_flight_requests_max", limits::IN_FLIGHT_REQUESTS_MAX)
    }

    pub(crate) fn long_poll(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.take(&self.long_polls, "long_polls_max", limits::LONG_POLLS_MAX)
    }

    pub(crate) fn heartbeat(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.take(&self.heartbeats, "heartbeats_in_flight_max", limits::HEARTBEATS_IN_FLIGHT_MAX)
    }
}
