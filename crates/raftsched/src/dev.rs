//! `raftsched dev`: a local trio in one process, for trying raftsched out with no setup.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use raftsched_server::ReplicaConfig;

use crate::cli::DevArgs;
use crate::error::CliError;
use crate::server_cmd::timing;
use crate::signals::StopSignal;

const N_REPLICAS: u16 = 3;

/// Like `println!`, but a closed stdout (`raftsched dev | head`) must not panic the cluster.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
const LEADER_WAIT: Duration = Duration::from_secs(30);

pub async fn run(args: DevArgs) -> Result<(), CliError> {
    let mut stop = StopSignal::install();
    check_ports(&args)?;
    let http_base_port = http_base_port_free(args.http_base_port);
    // A temp dir lives until this function returns, then is removed with the data.
    let (_temp, root) = data_root(&args)?;
    let members: BTreeMap<u64, String> =
        (0..N_REPLICAS).map(|i| (u64::from(i) + 1, format!("127.0.0.1:{}", args.base_port + i))).collect();
    let running = start_replicas(&args, &root, &members, http_base_port).await?;
    let leader = running[0].wait_for_leader(LEADER_WAIT).await;
    let cluster: Vec<String> = members.values().cloned().collect();
    crate::worker_cmds::use_self_as_supervisor();
    let (workers_stop, workers_stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for i in 1..=args.workers {
        workers.push(start_worker(i, &cluster, &root, workers_stop_rx.clone()).await?);
    }
    say!("raftsched dev: 3 replicas on {}, {} workers (4 slots each)", cluster.join(", "), args.workers);
    say!("  data: {}{}", root.display(), if args.data_dir.is_none() { " (removed on exit)" } else { "" });
    match leader {
        Some(id) => say!("  leader: replica {id}"),
        _ => say!("  leader: not elected yet"),
    }
    print_tips(http_addr(http_base_port, 1));
    stop.recv().await;
    say!("stopping...");
    workers_stop.send_replace(true);
    for w in workers {
        let _ = w.await;
    }
    for r in running {
        r.shutdown().await;
    }
    Ok(())
}

/// Both port ranges must fit below 65536 (and the replicas' must not start at 0).
fn check_ports(args: &DevArgs) -> Result<(), CliError> {
    if args.base_port.checked_add(N_REPLICAS - 1).is_none() || args.base_port == 0 {
        return Err(CliError::Usage(format!("--base-port {} leaves no room for {N_REPLICAS} ports", args.base_port)));
    }
    if args.http_base_port.checked_add(N_REPLICAS - 1).is_none() {
        let port = args.http_base_port;
        return Err(CliError::Usage(format!("--http-base-port {port} leaves no room for {N_REPLICAS} ports")));
    }
    Ok(())
}

/// `--data-dir`, or a temp dir that is removed when the returned guard drops.
fn data_root(args: &DevArgs) -> Result<(Option<tempfile::TempDir>, PathBuf), CliError> {
    let (temp, root) = match &args.data_dir {
        Some(dir) => (None, dir.clone()),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("raftsched-dev-")
                .tempdir()
                .map_err(|e| CliError::Failed(format!("cannot create a temp dir: {e}")))?;
            let path = temp.path().to_path_buf();
            (Some(temp), path)
        }
    };
    std::fs::create_dir_all(&root).map_err(|e| CliError::Failed(format!("{}: {e}", root.display())))?;
    Ok((temp, root))
}

/// Starts the trio in this process, its data under `root`; on a failure, stops those started.
async fn start_replicas(
    args: &DevArgs,
    root: &Path,
    members: &BTreeMap<u64, String>,
    http_base_port: u16,
) -> Result<Vec<raftsched_server::RunningReplica>, CliError> {
    let timing = timing(&args.timing)?;
    let secret = crate::certs::local_secret(root)?;
    let mut running = Vec::new();
    for (id, addr) in members {
        let listen: SocketAddr = addr.parse().map_err(|e| CliError::Usage(format!("{addr}: {e}")))?;
        let config = ReplicaConfig {
            id: *id,
            listen,
            data_dir: root.join(format!("replica-{id}")),
            initial_cluster: members.clone(),
            timing: timing.clone(),
            worker_heartbeat_timeout_ms: crate::server_cmd::heartbeat_timeout_ms(&args.timing)?,
            worker_heartbeats_per_second_max: crate::server_cmd::heartbeats_per_second_max(&args.timing)?,
            retain_finished: args.timing.retain_finished,
            tasks_pending_max: crate::server_cmd::tasks_pending_max(&args.timing)?,
            clock_skew_ms_max: args.timing.clock_skew_ms_max,
            bootstrap: true,
            http: http_addr(http_base_port, *id),
            tls: None,
            token_file: None,
            cluster_secret_file: Some(secret.clone()),
            accept_unauthenticated_peers: false,
            insecure: false,
        };
        match raftsched_server::start(config).await {
            Ok(r) => running.push(r),
            Err(e) => {
                for r in running {
                    r.shutdown().await;
                }
                return Err(CliError::Failed(format!("replica {id}: {e}")));
            }
        }
    }
    Ok(running)
}

/// Starts `dev-worker-I` in this process (4 slots, its output kept under `root` and served on
/// loopback); it runs until `stop`.
async fn start_worker(
    i: u32,
    cluster: &[String],
    root: &Path,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<Result<(), raftsched_worker::WorkerError>>, CliError> {
    let mut config = raftsched_worker::WorkerConfig {
        id: format!("dev-worker-{i}"),
        addr: format!("pull:dev-worker-{i}"),
        cluster: cluster.to_vec(),
        slots: 4,
        labels: Default::default(),
        heartbeat_interval_ms: raftsched_worker::HEARTBEAT_INTERVAL_MS_DEFAULT,
        lease_ms: raftsched_worker::LEASE_MS_DEFAULT,
        register_timeout_ms: raftsched_worker::REGISTER_TIMEOUT_MS_DEFAULT,
        dialer: Default::default(),
        stats: Default::default(),
        output: None,
    };
    let serving = raftsched_worker::output_server::OutputServing {
        output: raftsched_worker::output::OutputConfig {
            dir: root.join(format!("dev-worker-{i}-output")),
            attempt_bytes_max: raftsched_worker::output::OUTPUT_ATTEMPT_BYTES_MAX_DEFAULT,
            total_bytes_max: raftsched_worker::output::OUTPUT_BYTES_MAX_DEFAULT,
        },
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        advertise: None,
        tls: None,
        insecure: false,
    };
    raftsched_worker::output_server::start(&mut config, serving, stop.clone())
        .await
        .map_err(|e| CliError::Failed(format!("dev-worker-{i}: {e}")))?;
    Ok(tokio::spawn(raftsched_worker::run(config, stop)))
}

/// What to try next, with the status page's address when there is one.
fn print_tips(http: Option<SocketAddr>) {
    if let Some(http) = http {
        say!("  status page: http://{http}/ (and /metrics; replicas 2 and 3 on the next ports)");
    }
    say!("Try, in another terminal:");
    say!("  raftsched submit --builtin echo:hi");
    say!("  raftsched submit --wait -- echo hi");
    say!("  raftsched logs --follow $(raftsched submit -- sh -c 'for i in 1 2 3; do echo $i; sleep 1; done')");
    say!("  raftsched list");
    say!("(through cargo: cargo run -p raftsched -- submit --builtin echo:hi)");
    if let Some(http) = http {
        say!("  curl -sS -X POST http://{http}/v1/tasks -H 'Idempotency-Key: k1' -d '{{\"spec\": {{\"command\": [\"echo\", \"hi\"]}}}}'");
    }
    say!("Ctrl-C stops the cluster.");
}

/// Replica `id`'s HTTP address on loopback, from the first HTTP port (0: none).
fn http_addr(base: u16, id: u64) -> Option<SocketAddr> {
    let port = base.checked_add(u16::try_from(id - 1).ok()?)?;
    (base != 0).then(|| SocketAddr::from(([127, 0, 0, 1], port)))
}

/// `base` if its HTTP ports are free, else 0 (no HTTP) with a note: the HTTP side is a
/// convenience, and a port some other program holds (8001 is a common one) must not keep the trio
/// from starting.
fn http_base_port_free(base: u16) -> u16 {
    if base == 0 {
        return 0;
    }
    let taken = (0..N_REPLICAS).find(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_err());
    match taken {
        None => base,
        Some(i) => {
            eprintln!(
                "raftsched dev: port {} is taken: no status page or HTTP API (pick free ports with --http-base-port)",
                base + i
            );
            0
        }
    }
}
