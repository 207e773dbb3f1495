//! Worker subcommands: run a worker, drain one, list them.

use std::collections::BTreeMap;

use raftsched_client::parse_cluster;
use raftsched_worker::WorkerConfig;

use crate::cli::{DrainArgs, ReadArgs, WorkerArgs};
use crate::client_cmds::connect;
use crate::error::CliError;
use crate::signals::StopSignal;

pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, CliError> {
    let mut labels = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| CliError::Usage(format!("label {part:?} is not k=v")))?;
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

pub fn worker_config(args: &WorkerArgs) -> Result<WorkerConfig, CliError> {
    let id = args.id.clone().ok_or_else(|| CliError::Usage("worker needs --id ID".into()))?;
    raftsched_client::rules::validate_worker_id(&id).map_err(CliError::Usage)?;
    if args.slots == 0 || args.slots > raftsched_client::rules::limits::WORKER_SLOTS_MAX {
        return Err(CliError::Usage(format!(
            "--slots must be 1..={}",
            raftsched_client::rules::limits::WORKER_SLOTS_MAX
        )));
    }
    if args.heartbeat_interval_ms == 0 || args.lease_ms <= args.heartbeat_interval_ms {
        return Err(CliError::Usage("--lease-ms must be above --heartbeat-interval-ms (> 0)".into()));
    }
    Ok(WorkerConfig {
        // Set to where output is served once its server listens (`start_output`).
        addr: format!("pull:{id}"),
        id,
        cluster: parse_cluster(&args.cluster.cluster)?,
        slots: args.slots,
        labels: parse_labels(&args.labels)?,
        heartbeat_interval_ms: args.heartbeat_interval_ms,
        lease_ms: args.lease_ms,
        register_timeout_ms: args.register_timeout_ms,
        dialer: crate::client_cmds::dialer(&args.cluster)?,
        stats: Default::default(),
        output: None,
    })
}

/// Keeps each attempt's whole output and serves it to replicas (`raftsched logs`).
async fn start_output(
    args: &WorkerArgs,
    config: &mut WorkerConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), CliError> {
    use raftsched_worker::output::{default_dir, OutputConfig};
    let tls = crate::client_cmds::tls_files(&args.cluster.tls)?
        .map(|files| files.server_config())
        .transpose()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let serving = raftsched_worker::output_server::OutputServing {
        output: OutputConfig {
            dir: args.output_dir.clone().unwrap_or_else(|| default_dir(&config.id)),
            attempt_bytes_max: args.output_attempt_bytes_max,
            total_bytes_max: args.output_bytes_max,
        },
        listen: args.listen,
        advertise: args.advertise.clone(),
        tls,
        insecure: args.insecure,
    };
    raftsched_worker::output_server::start(config, serving, stop).await.map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(())
}

/// `worker --http HOST:PORT`: the worker's own `/metrics` (`raftsched_worker::Stats`).
async fn serve_metrics(addr: std::net::SocketAddr, config: &WorkerConfig) -> Result<(), CliError> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| CliError::Failed(format!("--http {addr}: {e}")))?;
    let (stats, id, slots) = (config.stats.clone(), config.id.clone(), config.slots);
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = stats.render(&id, slots);
            async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }
        }),
    );
    tracing::info!(%addr, "serving the worker's /metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!(error = %e, "worker metrics server ended");
        }
    });
    Ok(())
}

/// Command attempts run under this binary's `__supervise`, so they die with the worker.
pub fn use_self_as_supervisor() {
    match std::env::current_exe() {
        Ok(path) => raftsched_worker::exec::set_supervisor(path),
        Err(e) => tracing::warn!(error = %e, "cannot find this binary; attempts run without a supervisor"),
    }
}

pub async fn run_worker(args: WorkerArgs) -> Result<(), CliError> {
    let mut stop = StopSignal::install();
    let mut config = worker_config(&args)?;
    if let Some(addr) = args.http {
        serve_metrics(addr, &config).await?;
    }
    use_self_as_supervisor();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    start_output(&args, &mut config, stop_rx.clone()).await?;
    let worker = tokio::spawn(raftsched_worker::run(config, stop_rx));
    tokio::pin!(worker);
    tokio::select! {
        _ = stop.recv() => {
            stop_tx.send_replace(true);
            worker.await.map_err(|e| CliError::Failed(e.to_string()))?.map_err(|e| CliError::Failed(e.to_string()))
        }
        result = &mut worker => result.map_err(|e| CliError::Failed(e.to_string()))?.map_err(|e| CliError::Failed(e.to_string())),
    }
}

pub async fn drain(args: DrainArgs) -> Result<(), CliError> {
    let client = connect(&args.cluster)?;
    client.drain_worker(&args.id).await?;
    outln!("{}", args.id);
    Ok(())
}

pub async fn workers(args: ReadArgs) -> Result<(), CliError> {
    let client = connect(&args.cluster)?;
    let reply = client.list_workers(args.stale).await?;
    if args.json {
        let values: Vec<_> = reply.workers.iter().map(raftsched_client::api::json::worker_json).collect();
        outln!("{}", serde_json::Value::Array(values));
    } else {
        outln!("{:<20} {:<22} {:<9} {:>5} {:>6}  heartbeat_age", "id", "addr", "state", "slots", "in_use");
        for w in &reply.workers {
            outln!(
                "{:<20} {:<22} {:<9} {:>5} {:>6}  {} ms",
                w.id,
                w.addr,
                w.state,
                w.slots,
                w.slots_in_use,
                w.heartbeat_age_ms
            );
        }
    }
    Ok(())
}

pub async fn keys(args: ReadArgs) -> Result<(), CliError> {
    let client = connect(&args.cluster)?;
    let keys = client.list_concurrency_keys(args.stale).await?.keys;
    if args.json {
        let values: Vec<_> = keys
            .iter()
            .map(|k| serde_json::json!({"key": k.key, "limit": k.limit, "held": k.held, "queued": k.queued}))
            .collect();
        outln!("{}", serde_json::Value::Array(values));
    } else {
        outln!("{:<32} {:>6} {:>6} {:>7}", "key", "limit", "held", "queued");
        for k in &keys {
            outln!("{:<32} {:>6} {:>6} {:>7}", k.key, k.limit, k.held, k.queued);
        }
    }
    Ok(())
}
