//! Starting and stopping a replica.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, SnapshotPolicy};
use raftsched_api::raft_server::RaftServer;
use raftsched_api::scheduler_server::SchedulerServer;
use raftsched_api::worker_server::WorkerServer;
use raftsched_store::{NodeId, Raft};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;

use crate::config::ReplicaConfig;
use crate::limits;
use crate::network::NetworkFactory;
use crate::peers::Peers;
use crate::raft_service::RaftService;
use crate::replica::Replica;
use crate::scheduler_service::SchedulerService;
use crate::worker_service::WorkerService;

/// Why a replica did not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--initial-cluster does not list this replica's id {0}")]
    NotInCluster(u64),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("cannot create data dir {dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] raftsched_store::OpenError),
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error("raft failed to start: {0}")]
    Raft(String),
    #[error("{0}")]
    Insecure(String),
}

pub struct RunningReplica {
    replica: Arc<Replica>,
    /// The address the replica actually listens on (useful with port 0).
    pub local_addr: std::net::SocketAddr,
    stop_tx: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    loop_stop: tokio::sync::watch::Sender<bool>,
    leader_loop: JoinHandle<()>,
    election: JoinHandle<()>,
    http: Option<HttpServing>,
    /// The address of the `/metrics` HTTP server, when one was asked for.
    pub http_addr: Option<std::net::SocketAddr>,
}

impl RunningReplica {
    /// The leader this replica knows, waiting up to `timeout` for one to be elected.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let wait = self.replica.raft.wait(Some(timeout));
        wait.metrics(|m| m.current_leader.is_some(), "leader elected").await.ok().and_then(|m| m.current_leader)
    }

    /// Resolves when Raft stops by itself, which it does only on a fatal error (a failed fsync, a
    /// storage error), with that error.
    pub async fn raft_stopped(&self) -> Option<String> {
        let _ = self.replica.raft.wait(None).state(openraft::ServerState::Shutdown, "raft stopped").await;
        self.replica.raft.metrics().borrow().running_state.clone().err().map(|e| e.to_string())
    }

    /// Stops serving (in-flight requests finish), then stops Raft, which flushes the store.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        self.loop_stop.send_replace(true);
        if let Some((_, stop, task)) = self.http.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
        if let Err(e) = (&mut self.leader_loop).await {
            tracing::warn!(error = %e, "scheduling loop failed");
        }
        if let Err(e) = (&mut self.election).await {
            tracing::warn!(error = %e, "election driver failed");
        }
        match tokio::time::timeout(Duration::from_secs(5), &mut self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
            Err(_) => {
                tracing::warn!("server did not drain within 5 s; aborting it");
                self.server.abort();
            }
        }
        if let Err(e) = self.replica.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        tracing::info!(id = self.replica.id, "replica stopped");
    }
}

/// The HTTP port's address, what stops it, and its task.
type HttpServing = (std::net::SocketAddr, oneshot::Sender<()>, JoinHandle<()>);

pub async fn start(config: ReplicaConfig) -> Result<RunningReplica, StartError> {
    let addr = config.initial_cluster.get(&config.id).cloned().ok_or(StartError::NotInCluster(config.id))?;
    // Security first: a bad file, or an open setup not asked for, stops the start with its name
    // before the data dir is touched.
    let (auth, dialer) = security(&config)?;
    let auth = Arc::new(auth);
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StartError::DataDir { dir: config.data_dir.display().to_string(), source })?;
    let (listener, local_addr) = bind(config.listen).await?;
    let opened = raftsched_store::open(&config.data_dir, config.id)?;
    let replica = new_replica(&config, addr, opened, dialer, auth.clone()).await?;
    tokio::spawn(crate::metrics::watch_raft(replica.clone()));
    log_security(&auth, local_addr);
    let (server, stop_tx, health) = serve_grpc(&replica, &config, &auth, listener).await?;
    tracing::info!(id = config.id, %local_addr, data_dir = %config.data_dir.display(), "replica serving");
    let http = match config.http {
        Some(addr) => Some(serve_http(addr, &replica, &auth).await?),
        None => None,
    };
    let (loop_stop, loop_stop_rx) = tokio::sync::watch::channel(false);
    let election = tokio::spawn(crate::election::run(replica.clone(), config.timing.clone(), loop_stop_rx.clone()));
    tokio::spawn(crate::cluster_version::run(replica.clone(), loop_stop_rx.clone()));
    tokio::spawn(crate::health::watch(replica.clone(), health, loop_stop_rx.clone()));
    let leader_loop = tokio::spawn(crate::leader_loop::run(replica.clone(), loop_stop_rx));
    let http_addr = http.as_ref().map(|(a, _, _)| *a);
    Ok(RunningReplica {
        replica,
        local_addr,
        http_addr,
        stop_tx: Some(stop_tx),
        server,
        loop_stop,
        leader_loop,
        election,
        http,
    })
}

async fn bind(addr: std::net::SocketAddr) -> Result<(TcpListener, std::net::SocketAddr), StartError> {
    let listen_err = |source| StartError::Listen { addr: addr.to_string(), source };
    let listener = TcpListener::bind(addr).await.map_err(listen_err)?;
    let local_addr = listener.local_addr().map_err(listen_err)?;
    Ok((listener, local_addr))
}

/// openraft's settings from this replica's timing.
fn raft_config(config: &ReplicaConfig) -> Result<Config, StartError> {
    Config {
        cluster_name: "raftsched".to_string(),
        heartbeat_interval: config.timing.heartbeat_interval_ms,
        election_timeout_min: config.timing.election_timeout_ms_min,
        election_timeout_max: config.timing.election_timeout_ms_max,
        install_snapshot_timeout: 5_000,
        max_payload_entries: limits::RAFT_PAYLOAD_ENTRIES_MAX,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.timing.snapshot_every_entries_for(config.id)),
        snapshot_max_chunk_size: limits::SNAPSHOT_CHUNK_BYTES,
        max_in_snapshot_log_to_keep: config.timing.snapshot_logs_kept,
        // Elections are started by `election.rs`, which draws a fresh timeout for every wait.
        enable_elect: false,
        ..Default::default()
    }
    .validate()
    .map_err(|e| StartError::Config(e.to_string()))
}

/// The replica: its Raft node over the opened store, the proposer and forwarder beside it, and
/// the shared state every service reads.
async fn new_replica(
    config: &ReplicaConfig,
    addr: String,
    opened: raftsched_store::Opened,
    dialer: raftsched_api::security::Dialer,
    auth: Arc<crate::auth::Auth>,
) -> Result<Arc<Replica>, StartError> {
    let sm = opened.sm_store.handle();
    let opened_sync_stats = opened.sync_stats.clone();
    let committed_index = opened.committed_index.clone();
    let log_flushes = opened.log_store.flushes();
    let peers = Arc::new(Peers::new(dialer));
    let active = opened.sm_store.active_version();
    let clocks = Arc::new(crate::clock::Clocks::new(config.clock_skew_ms_max));
    let quorum = Arc::new(crate::quorum::Quorum::default());
    let network = NetworkFactory {
        peers: peers.clone(),
        unreachable_retry_ms: (config.timing.heartbeat_interval_ms / 2).max(1),
        active: active.clone(),
        clocks: clocks.clone(),
        quorum: quorum.clone(),
    };
    let raft = Raft::new(config.id, Arc::new(raft_config(config)?), network, opened.log_store, opened.sm_store)
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    bootstrap(config, &addr, &raft).await?;
    let proposer = crate::proposer::Proposer::start(raft.clone(), config.id, clocks.clone(), log_flushes);
    let forwarder = crate::forwarder::Forwarder::start(peers.clone(), active.clone());
    Ok(Arc::new(Replica::new(crate::replica::Parts {
        config,
        addr,
        raft,
        sm,
        peers,
        writes: crate::replica::Writes { proposer, forwarder, tasks_pending_max: config.tasks_pending_max },
        sync_stats: opened_sync_stats,
        committed_index,
        clocks,
        quorum,
        active,
        auth,
    })))
}

/// First start: every replica proposes the same initial membership; it becomes log entry 0 on
/// each of them, so it does not matter who does it first. On a restart the data dir wins.
async fn bootstrap(config: &ReplicaConfig, addr: &str, raft: &Raft) -> Result<(), StartError> {
    if !config.bootstrap {
        tracing::info!(id = config.id, %addr, "joining: waiting for a member to add this replica (raftsched cluster add)");
    } else if !raft.is_initialized().await.map_err(|e| StartError::Raft(e.to_string()))? {
        let members: BTreeMap<u64, BasicNode> =
            config.initial_cluster.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
        tracing::info!(id = config.id, ?members, "first start: initializing the cluster");
        if let Err(e) = raft.initialize(members).await {
            // NotAllowed means a peer's entries arrived first: already initialized, which is fine.
            tracing::info!(error = %e, "initialize skipped");
        }
    }
    Ok(())
}

fn log_security(auth: &crate::auth::Auth, local_addr: std::net::SocketAddr) {
    tracing::info!(
        tls = auth.tls,
        tokens = auth.tokens.is_some(),
        cluster_secret = auth.secret.is_some(),
        accept_unauthenticated_peers = auth.accept_unauthenticated_peers,
        "security"
    );
    if auth.accept_unauthenticated_peers {
        tracing::warn!("replica-to-replica calls without a cluster-secret proof are accepted (--accept-unauthenticated-peers): restart without it once every replica has the secret");
    }
    if auth.insecure {
        tracing::warn!(
            "INSECURE (--insecure): {}",
            crate::auth::insecure_summary(auth, local_addr).unwrap_or_else(|| "nothing is open".into())
        );
    }
}

/// The gRPC port's services (client, peer, worker, health, reflection) behind their guards and
/// the transport limits. Returns the serving task, what stops it, and the health reporter.
async fn serve_grpc(
    replica: &Arc<Replica>,
    config: &ReplicaConfig,
    auth: &Arc<crate::auth::Auth>,
    listener: TcpListener,
) -> Result<
    (JoinHandle<Result<(), tonic::transport::Error>>, oneshot::Sender<()>, tonic_health::server::HealthReporter),
    StartError,
> {
    let guard = |service| crate::auth::Guard { auth: auth.clone(), service };
    let scheduler = SchedulerServer::new(SchedulerService { replica: replica.clone() })
        .max_decoding_message_size(limits::CLIENT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::CLIENT_MESSAGE_BYTES_MAX * 64);
    let raft_rpc = RaftServer::new(RaftService::new(replica.clone()))
        .max_decoding_message_size(limits::RAFT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::RAFT_MESSAGE_BYTES_MAX);
    let workers = WorkerServer::new(WorkerService { replica: replica.clone() })
        .max_decoding_message_size(limits::CLIENT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::CLIENT_MESSAGE_BYTES_MAX * 64);
    // grpc.health.v1 and server reflection, so standard tools (grpcurl, load balancers) work
    // against any replica. "" is the whole server; each service is listed too.
    // The services start NOT_SERVING; `health.rs` says SERVING once a read index completes.
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_not_serving::<SchedulerServer<SchedulerService>>().await;
    health.set_not_serving::<WorkerServer<WorkerService>>().await;
    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let reflection = crate::reflection::replica_index().map_err(|e| StartError::Config(format!("reflection: {e}")))?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // TCP_NODELAY on every accepted connection (`transport::accept`): `Server::tcp_nodelay` applies
    // only to listeners tonic binds itself. Without it, a response written as two segments
    // (headers, then data) waited for the client's delayed ACK, ~40 ms per call.
    let open_connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stats = replica.rpc_stats.clone();
    let incoming =
        tokio_stream::StreamExt::filter_map(tokio_stream::wrappers::TcpListenerStream::new(listener), move |conn| {
            match conn {
                Ok(stream) => crate::transport::accept(stream, &open_connections, &stats).map(Ok),
                Err(e) => Some(Err(e)),
            }
        });
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) =
        config.tls.as_ref().map(|t| t.server_config()).transpose().map_err(|e| StartError::Config(e.to_string()))?
    {
        builder = builder.tls_config(tls).map_err(|e| StartError::Config(format!("TLS: {e}")))?;
    }
    let server = tokio::spawn(
        builder
            .tcp_nodelay(true)
            .max_concurrent_streams(limits::HTTP2_STREAMS_PER_CONNECTION_MAX)
            .http2_max_header_list_size(limits::HEADER_LIST_BYTES_MAX)
            .timeout(Duration::from_millis(limits::CALL_MS_MAX))
            .http2_keepalive_interval(Some(Duration::from_millis(limits::HTTP2_KEEPALIVE_INTERVAL_MS)))
            .http2_keepalive_timeout(Some(Duration::from_millis(limits::HTTP2_KEEPALIVE_TIMEOUT_MS)))
            .layer(crate::rpc_stats::LatencyLayer(replica.rpc_stats.clone()))
            .layer(crate::transport::BodyBudgetLayer::default())
            .add_service(InterceptedService::new(scheduler, guard(crate::auth::Service::Scheduler)))
            .add_service(InterceptedService::new(raft_rpc, guard(crate::auth::Service::Raft)))
            .add_service(InterceptedService::new(workers, guard(crate::auth::Service::Worker)))
            .add_service(health_service)
            .add_service(crate::reflection::v1::server(reflection.clone()))
            .add_service(crate::reflection::v1alpha::server(reflection))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            }),
    );
    Ok((server, stop_tx, health))
}

/// The HTTP port: the HTTP/JSON API, `/healthz`, `/readyz`, `/metrics`, the status page.
async fn serve_http(
    addr: std::net::SocketAddr,
    replica: &Arc<Replica>,
    auth: &Arc<crate::auth::Auth>,
) -> Result<HttpServing, StartError> {
    let (listener, http_addr) = bind(addr).await?;
    tracing::info!(%http_addr, "serving /metrics and the status page at /");
    let router = http_router(replica, auth, http_addr);
    let (http_stop, http_stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router).with_graceful_shutdown(async {
            let _ = http_stop_rx.await;
        });
        if let Err(e) = served.await {
            tracing::warn!(error = %e, "http server ended");
        }
    });
    Ok((http_addr, http_stop, task))
}

fn http_router(replica: &Arc<Replica>, auth: &Arc<crate::auth::Auth>, http_addr: std::net::SocketAddr) -> axum::Router {
    let (for_metrics, for_status, for_ready) = (replica.clone(), replica.clone(), replica.clone());
    crate::http_api::router(replica.clone(), auth.clone(), http_addr)
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let readiness = for_ready.readiness.borrow().clone();
                async move {
                    match readiness {
                        Ok(()) => (axum::http::StatusCode::OK, "ready\n".to_string()),
                        Err(why) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(move || {
                let replica = for_metrics.clone();
                async move {
                    let body = crate::metrics::render(&replica, &replica.sync_stats);
                    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
                }
            }),
        )
        .route(
            "/",
            axum::routing::get(|| async {
                ([(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], crate::status_page::PAGE_HTML)
            }),
        )
        .route(
            "/status.json",
            axum::routing::get(move |axum::extract::RawQuery(query): axum::extract::RawQuery| {
                let replica = for_status.clone();
                async move {
                    let (status, body) = match crate::status_page::View::parse(query.as_deref()) {
                        Ok(view) => (
                            axum::http::StatusCode::OK,
                            crate::status_page::status_json(&replica, view).await.to_string(),
                        ),
                        Err(why) => (axum::http::StatusCode::BAD_REQUEST, json_error(&why)),
                    };
                    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body)
                }
            }),
        )
}

/// This replica's checks on callers and the credentials it dials peers with, from the files
/// named in `config`. Refuses an unauthenticated setup unless `--insecure` says it is meant.
fn security(config: &ReplicaConfig) -> Result<(crate::auth::Auth, raftsched_api::security::Dialer), StartError> {
    let bad = |e: raftsched_api::security::SecurityError| StartError::Config(e.to_string());
    let tokens = config.token_file.as_deref().map(crate::auth::Tokens::from_file).transpose().map_err(bad)?;
    let replica_token = match &tokens {
        Some(t) => Some(t.replica_token(config.id).ok_or_else(|| {
            StartError::Config("the token file has no `replica` token (replicas call each other with it)".into())
        })?),
        None => None,
    };
    let secret = config
        .cluster_secret_file
        .as_deref()
        .map(raftsched_api::security::ClusterSecret::from_file)
        .transpose()
        .map_err(bad)?;
    if config.accept_unauthenticated_peers && secret.is_none() {
        return Err(StartError::Config("--accept-unauthenticated-peers goes with --cluster-secret-file".into()));
    }
    let mut dialer =
        raftsched_api::security::Dialer::new(config.tls.as_ref(), replica_token.as_deref()).map_err(bad)?;
    if let Some(secret) = &secret {
        dialer.token = dialer.token.with_peer_proof(secret, config.id).map_err(bad)?;
    }
    let auth = crate::auth::Auth {
        tls: config.tls.is_some(),
        tokens,
        secret,
        accept_unauthenticated_peers: config.accept_unauthenticated_peers,
        insecure: config.insecure,
        ..Default::default()
    };
    if let Some(open) = crate::auth::insecure_summary(&auth, config.listen) {
        if !config.insecure {
            return Err(StartError::Insecure(format!(
                "refusing to start: {open}; give --cluster-secret-file FILE (raftsched secret generate --out FILE) \
                 or --tls-ca/--tls-cert/--tls-key with --token-file, or --insecure to run open on purpose"
            )));
        }
    }
    Ok((auth, dialer))
}

/// `{"error": "..."}`.
fn json_error(why: &str) -> String {
    serde_json::json!({ "error": why }).to_string()
}
