//! `raftsched server`: one replica, until SIGTERM or Ctrl-C.

use raftsched_server::config::RaftTiming;
use raftsched_server::fault::Fault;
use raftsched_server::{parse_initial_cluster, ReplicaConfig};

use crate::cli::{RecoverArgs, ServerArgs, TimingArgs};
use crate::error::CliError;
use crate::signals::StopSignal;

/// `--tasks-pending-max`, checked against the bound `apply` enforces.
pub fn tasks_pending_max(args: &TimingArgs) -> Result<usize, CliError> {
    let max = raftsched_client::rules::limits::TASKS_PENDING_MAX;
    if args.tasks_pending_max == 0 || args.tasks_pending_max > max {
        return Err(CliError::Usage(format!("--tasks-pending-max must be 1..={max}")));
    }
    Ok(args.tasks_pending_max)
}

pub fn timing(args: &TimingArgs) -> Result<RaftTiming, CliError> {
    if args.heartbeat_interval_ms == 0 || args.election_timeout_ms_min <= args.heartbeat_interval_ms {
        return Err(CliError::Usage("--election-timeout-ms-min must be above --heartbeat-interval-ms (> 0)".into()));
    }
    if args.election_timeout_ms_max <= args.election_timeout_ms_min {
        return Err(CliError::Usage("--election-timeout-ms-max must be above --election-timeout-ms-min".into()));
    }
    if args.snapshot_every_entries == 0 {
        return Err(CliError::Usage("--snapshot-every-entries must be positive".into()));
    }
    Ok(RaftTiming {
        heartbeat_interval_ms: args.heartbeat_interval_ms,
        election_timeout_ms_min: args.election_timeout_ms_min,
        election_timeout_ms_max: args.election_timeout_ms_max,
        snapshot_every_entries: args.snapshot_every_entries,
        snapshot_logs_kept: args.snapshot_logs_kept,
    })
}

pub async fn run(args: ServerArgs) -> Result<(), CliError> {
    let mut stop = StopSignal::install();
    for name in &args.fault {
        let known = Fault::ALL.map(Fault::name).join(", ");
        let fault =
            Fault::parse(name).ok_or_else(|| CliError::Usage(format!("--fault {name}: unknown (one of {known})")))?;
        raftsched_server::fault::enable(fault).map_err(CliError::Usage)?;
    }
    let advertise = args.advertise.clone().unwrap_or_else(|| args.listen.to_string());
    let (initial_cluster, bootstrap) = match (&args.initial_cluster, &args.join) {
        (Some(text), _) => {
            (parse_initial_cluster(text).map_err(|e| CliError::Usage(format!("--initial-cluster: {e}")))?, true)
        }
        (None, Some(join)) => {
            raftsched_client::parse_cluster(join).map_err(|e| CliError::Usage(format!("--join: {e}")))?;
            tracing::info!(
                "to add this replica, run: raftsched cluster add --id {} --addr {advertise} --cluster {join}",
                args.id
            );
            (std::collections::BTreeMap::from([(args.id, advertise.clone())]), false)
        }
        (None, None) => return Err(CliError::Usage("give --initial-cluster or --join".into())),
    };
    if !initial_cluster.contains_key(&args.id) {
        return Err(CliError::Usage(format!("--initial-cluster does not list this replica's --id {}", args.id)));
    }
    if args.id == 0 {
        return Err(CliError::Usage("--id must be a positive integer".into()));
    }
    let config = ReplicaConfig {
        id: args.id,
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        initial_cluster,
        timing: timing(&args.timing)?,
        worker_heartbeat_timeout_ms: heartbeat_timeout_ms(&args.timing)?,
        worker_heartbeats_per_second_max: heartbeats_per_second_max(&args.timing)?,
        retain_finished: args.timing.retain_finished,
        tasks_pending_max: tasks_pending_max(&args.timing)?,
        clock_skew_ms_max: args.timing.clock_skew_ms_max,
        bootstrap,
        http: args.http,
        tls: crate::client_cmds::tls_files(&args.tls)?,
        token_file: args.token_file.clone(),
        cluster_secret_file: args.cluster_secret_file.clone(),
        accept_unauthenticated_peers: args.accept_unauthenticated_peers,
        insecure: args.insecure,
    };
    let running = raftsched_server::start(config).await.map_err(|e| CliError::Failed(e.to_string()))?;
    let fatal = tokio::select! {
        _ = stop.recv() => None,
        // Raft stops by itself only on a fatal error: exit non-zero so a supervisor restarts the
        // replica from its data dir.
        fatal = running.raft_stopped() => Some(fatal),
    };
    // Whatever state the Raft core is in, the process ends within SHUTDOWN_DEADLINE of the
    // signal (a second signal ends it at once): a supervisor's SIGTERM must never be ignored.
    tokio::select! {
        _ = running.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_DEADLINE) => {
            tracing::error!("shutdown did not finish within {SHUTDOWN_DEADLINE:?}; exiting anyway");
        }
        _ = stop.recv() => tracing::warn!("second signal: exiting without waiting for shutdown"),
    }
    if let Some(fatal) = fatal {
        let why = fatal.unwrap_or_else(|| "see the log above".to_string());
        return Err(CliError::Failed(format!("replica {} stopped on a fatal error: {why}", args.id)));
    }
    tracing::info!("stopped on signal");
    Ok(())
}

/// How long a stopping replica waits for a clean shutdown before it exits regardless; below the
/// 10 s that supervisors (systemd, Kubernetes) commonly allow before SIGKILL.
const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(8);

pub fn heartbeat_timeout_ms(args: &TimingArgs) -> Result<u64, CliError> {
    if !(100..=600_000).contains(&args.heartbeat_timeout_ms) {
        return Err(CliError::Usage("--heartbeat-timeout-ms must be 100..=600000".into()));
    }
    Ok(args.heartbeat_timeout_ms)
}

/// `--heartbeats-per-second-max`: 0 (no cap) or at least 100, so that even a full registry's
/// scaled timeout stays bounded (10,000 workers at 100 a second: 200 x the timeout).
pub fn heartbeats_per_second_max(args: &TimingArgs) -> Result<u64, CliError> {
    let n = args.heartbeats_per_second_max;
    if n != 0 && !(100..=1_000_000).contains(&n) {
        return Err(CliError::Usage("--heartbeats-per-second-max must be 0 (no cap) or 100..=1000000".into()));
    }
    Ok(n)
}

pub async fn recover(args: RecoverArgs) -> Result<(), CliError> {
    if !args.force_new_cluster {
        return Err(CliError::Usage(
            "recover rewrites the data dir into a new one-replica cluster: pass --force-new-cluster".into(),
        ));
    }
    let failed = |e: raftsched_store::OpenError| CliError::Failed(e.to_string());
    let id = raftsched_store::replica_id_of(&args.data_dir)
        .map_err(failed)?
        .ok_or_else(|| CliError::Failed(format!("{} is not a raftsched data dir", args.data_dir.display())))?;
    let done = raftsched_store::force_new_cluster(&args.data_dir, id, args.advertise.clone()).await.map_err(failed)?;
    outln!(
        "replica {id} at {} is now a one-replica cluster: {} tasks, last log index {}, {} log entries replayed",
        done.addr,
        done.n_tasks,
        done.last_log_id.map_or(0, |l| l.index),
        done.n_entries_replayed
    );
    outln!("start it as before; add the others back, each with an empty data dir: server --join, then cluster add");
    Ok(())
}
