//! Serves the output this worker keeps (`output.rs`) to replicas, which relay it to clients
//! (`raftsched logs`). Replicas only, in every mode, as every other port follows:
//! - with TLS, the caller must present a certificate signed by the cluster CA that names a replica
//!   (`raftsched://replica/ID`); anything else is PERMISSION_DENIED or UNAUTHENTICATED;
//! - without TLS, the server listens on loopback only (so only what runs on this machine reaches
//!   it), unless the worker runs `--insecure`, which says so in its log.
//!
//! At most `OUTPUT_STREAMS_MAX` streams at once (RESOURCE_EXHAUSTED past it); each sends chunks of
//! at most `OUTPUT_CHUNK_BYTES_MAX` bytes, and stops when the caller goes away.

use std::net::SocketAddr;
use std::sync::Arc;

use raftsched_client::api;
use raftsched_client::api::worker_output_server::{WorkerOutput, WorkerOutputServer};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::ServerTlsConfig;
use tonic::{Request, Response, Status};

use crate::output::{AttemptKey, OutputConfig, OutputReader, OutputStore};
use crate::WorkerConfig;

/// Output streams served at once.
pub const OUTPUT_STREAMS_MAX: usize = 32;

/// What the worker keeps, where it serves it and who may call.
pub struct OutputServing {
    pub output: OutputConfig,
    pub listen: SocketAddr,
    /// The address replicas dial (default: the bound address; needed when `listen` is 0.0.0.0).
    pub advertise: Option<String>,
    /// Serve TLS with this worker's certificate, requiring replica certificates.
    pub tls: Option<ServerTlsConfig>,
    /// Permit a non-loopback address without TLS.
    pub insecure: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--listen {0}: not a loopback address, and no TLS: replicas could not be told from anyone else (give --tls-*, or --insecure on purpose)")]
    Exposed(SocketAddr),
    #[error("--listen {0}: say with --advertise HOST:PORT where replicas reach this worker")]
    NoAdvertise(SocketAddr),
    #[error("{0}")]
    Bounds(String),
    #[error("--output-dir {dir}: {source}")]
    Dir { dir: String, source: std::io::Error },
    #[error("--listen {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
}

/// Opens the output store, binds `serving.listen` and serves until `shutdown` turns true. Sets
/// `config.output` (every attempt's output is kept) and `config.addr` (registered: where replicas
/// dial). Returns the task serving.
pub async fn start(
    config: &mut WorkerConfig,
    serving: OutputServing,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listen = serving.listen;
    if serving.tls.is_none() && !listen.ip().is_loopback() {
        if !serving.insecure {
            return Err(ServeError::Exposed(listen));
        }
        tracing::warn!(%listen, "INSECURE: task output served without TLS on a non-loopback address: anyone who reaches it can read it");
    }
    if listen.ip().is_unspecified() && serving.advertise.is_none() {
        return Err(ServeError::NoAdvertise(listen));
    }
    let output = serving.output.fit(config.slots).map_err(ServeError::Bounds)?;
    let dir = output.dir.display().to_string();
    let store = OutputStore::open(output).map_err(|source| ServeError::Dir { dir, source })?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| ServeError::Bind { addr: listen, source })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Bind { addr: listen, source })?;
    let tls = serving.tls;
    let service = Service {
        store: store.clone(),
        worker_id: config.id.clone(),
        tls: tls.is_some(),
        streams: Arc::new(Semaphore::new(OUTPUT_STREAMS_MAX)),
    };
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls).map_err(|e| ServeError::Tls(e.to_string()))?;
    }
    let router = server.add_service(WorkerOutputServer::new(service));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::warn!(error = %e, "the output server stopped");
        }
    });
    config.addr = serving.advertise.unwrap_or_else(|| bound.to_string());
    config.output = Some(store);
    tracing::info!(addr = %bound, advertised = %config.addr, "serving task output to replicas");
    Ok(task)
}

struct Service {
    store: Arc<OutputStore>,
    worker_id: String,
    tls: bool,
    streams: Arc<Semaphore>,
}

impl Service {
    /// With TLS, only a replica's certificate passes (the TLS layer checked it is the CA's).
    fn check_caller<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if !self.tls {
            return Ok(());
        }
        match raftsched_api::security::certificate_identity_uri(request) {
            Some(identity) if identity == "replica" || identity.starts_with("replica/") => Ok(()),
            Some(identity) => Err(Status::permission_denied(format!(
                "task output is served to replicas only; this certificate names {identity}"
            ))),
            None if request.peer_certs().is_some_and(|c| !c.is_empty()) => Err(Status::permission_denied(
                "task output is served to replicas only; this certificate names no raftsched://replica",
            )),
            None => {
                Err(Status::unauthenticated("task output is served to replicas only: present a replica certificate"))
            }
        }
    }
}

#[tonic::async_trait]
impl WorkerOutput for Service {
    type ReadOutputStream = ReceiverStream<Result<api::OutputChunk, Status>>;

    async fn read_output(
        &self,
        request: Request<api::ReadOutputRequest>,
    ) -> Result<Response<Self::ReadOutputStream>, Status> {
        self.check_caller(&request)?;
        let req = request.into_inner();
        if req.attempt == 0 {
            return Err(Status::invalid_argument("attempt must be 1 or more"));
        }
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this worker serves {OUTPUT_STREAMS_MAX} output streams at once (output_streams_max)"
            ))
        })?;
        let key = AttemptKey { task_id: req.task_id, attempt: req.attempt };
        let reader = self.store.reader(key, req.stderr).map_err(Status::not_found)?;
        let (tx, rx) = mpsc::channel(4);
        let worker_id = self.worker_id.clone();
        tokio::spawn(async move {
            let _permit = permit;
            pump(reader, req, worker_id, tx).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Sends the stream from the asked offset: every chunk there is now, and with `follow` what comes
/// until the attempt ends. The last chunk says whether the attempt is over and the stream cut.
async fn pump(
    mut reader: OutputReader,
    req: api::ReadOutputRequest,
    worker_id: String,
    tx: mpsc::Sender<Result<api::OutputChunk, Status>>,
) {
    let mut offset = req.offset;
    loop {
        let next = tokio::select! {
            next = reader.next(offset, req.follow) => next,
            _ = tx.closed() => return,
        };
        let chunk = match next {
            Ok(chunk) => chunk,
            Err(e) => {
                let _ = tx.send(Err(Status::internal(format!("reading the kept output: {e}")))).await;
                return;
            }
        };
        let last = chunk.ended || chunk.data.is_empty();
        let n = chunk.data.len() as u64;
        let message = api::OutputChunk {
            data: chunk.data,
            offset,
            ended: chunk.ended,
            cut: chunk.cut,
            worker_id: worker_id.clone(),
            attempt: req.attempt,
        };
        if tx.send(Ok(message)).await.is_err() || last {
            return;
        }
        offset += n;
    }
}
