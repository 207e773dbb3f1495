//! Client subcommands: submit, get, list, cancel, watch, cluster status.

use std::collections::HashMap;
use std::time::Duration;

use raftsched_client::rules::{limits, TaskSpec as StateSpec};
use raftsched_client::{api, parse_cluster, Client};

use crate::cli::{
    CancelArgs, ClusterArgs, GetArgs, ListArgs, MemberAddArgs, MemberRemoveArgs, StatusArgs, SubmitArgs, TaskArgs,
    TransferArgs, WatchArgs,
};
use crate::error::CliError;
use crate::output;

pub fn connect(args: &ClusterArgs) -> Result<Client, CliError> {
    connect_with_timeout(args, args.timeout)
}

/// A client as `args` says (TLS, token), with its own timeout.
pub fn connect_with_timeout(args: &ClusterArgs, timeout: Duration) -> Result<Client, CliError> {
    let addrs = parse_cluster(&args.cluster)?;
    Ok(Client::with_dialer(addrs, timeout, &dialer(args)?)?)
}

/// How to dial the cluster: TLS files and token from the flags.
pub fn dialer(args: &ClusterArgs) -> Result<raftsched_client::Dialer, CliError> {
    let tls = tls_files(&args.tls)?;
    let mut dialer = raftsched_client::Dialer::new(tls.as_ref(), None).map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(path) = &args.token_file {
        dialer.token = raftsched_client::BearerToken::from_file(path).map_err(|e| CliError::Usage(e.to_string()))?;
    }
    Ok(dialer)
}

pub fn tls_files(args: &crate::cli::TlsArgs) -> Result<Option<raftsched_client::TlsFiles>, CliError> {
    raftsched_client::TlsFiles::from_flags(args.tls_ca.as_deref(), args.tls_cert.as_deref(), args.tls_key.as_deref())
        .map_err(|e| CliError::Usage(e.to_string()))
}

pub fn parse_id(text: &str) -> Result<u64, CliError> {
    match text.parse::<u64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(CliError::Usage(format!("{text:?} is not a task id (a positive integer)"))),
    }
}

/// A fresh idempotency key: unique per CLI invocation, reused by that invocation's own retries.
pub fn new_key() -> String {
    format!("cli-{:032x}", rand::random::<u128>())
}

/// The wire spec of a task from its flags.
pub fn build_spec(args: &TaskArgs) -> Result<api::TaskSpec, CliError> {
    let mut spec = match (&args.builtin, args.argv.is_empty()) {
        (Some(b), true) => {
            // Validated here for a clear usage error before any network call.
            StateSpec::parse_builtin(b).map_err(|e| CliError::Usage(e.to_string()))?;
            let (name, arg) = b.split_once(':').unwrap_or((b.as_str(), ""));
            raftsched_client::builtin(name, arg)
        }
        (None, false) => raftsched_client::command(args.argv.clone()),
        (Some(_), false) => {
            return Err(CliError::Usage("give either --builtin or a command after --, not both".into()))
        }
        (None, true) => {
            return Err(CliError::Usage("nothing to run: give --builtin NAME:ARG or a command after --".into()))
        }
    };
    spec.priority = args.priority;
    let mut constraints = HashMap::new();
    for c in &args.constraints {
        let (k, v) = c.split_once('=').ok_or_else(|| CliError::Usage(format!("constraint {c:?} is not k=v")))?;
        constraints.insert(k.to_string(), v.to_string());
    }
    spec.constraints = constraints;
    for e in &args.env {
        let (k, v) = e.split_once('=').ok_or_else(|| CliError::Usage(format!("--env {e:?} is not K=V")))?;
        spec.env.insert(k.to_string(), v.to_string());
    }
    spec.cwd = args.cwd.clone().unwrap_or_default();
    spec.timeout_ms = args.timeout_ms;
    if args.max_attempts == 0 || args.max_attempts > limits::ATTEMPTS_MAX {
        return Err(CliError::Usage(format!("--max-attempts must be 1..={}", limits::ATTEMPTS_MAX)));
    }
    spec.max_attempts = args.max_attempts;
    Ok(spec)
}

/// `--at`: RFC 3339, or `+DURATION` from now (this machine's clock), as Unix milliseconds.
pub fn parse_at(text: &str) -> Result<u64, CliError> {
    let ms = if let Some(rel) = text.strip_prefix('+') {
        let delta =
            raftsched_client::rules::parse_duration_ms(rel).map_err(|e| CliError::Usage(format!("--at: {e}")))?;
        crate::unix_now_ms().saturating_add(delta)
    } else {
        let at = chrono::DateTime::parse_from_rfc3339(text).map_err(|e| {
            CliError::Usage(format!("--at {text:?} is neither RFC 3339 (2026-11-25T03:00:00Z) nor +DURATION: {e}"))
        })?;
        u64::try_from(at.timestamp_millis()).map_err(|_| CliError::Usage(format!("--at {text:?} is before 1970")))?
    };
    Ok(ms.max(1))
}

pub async fn submit(args: SubmitArgs) -> Result<(), CliError> {
    let mut spec = build_spec(&args.task)?;
    // Computed once, so this invocation's own retries carry the same time (and spec).
    if let Some(at) = &args.at {
        spec.run_at_ms = parse_at(at)?;
    }
    let key = match &args.key {
        Some(k) if k.is_empty() => return Err(CliError::Usage("--key must not be empty".into())),
        Some(k) if k.len() > limits::KEY_BYTES_MAX => {
            return Err(CliError::Usage(format!(
                "--key is {} bytes, over key_bytes_max {}",
                k.len(),
                limits::KEY_BYTES_MAX
            )))
        }
        Some(k) => k.clone(),
        None => new_key(),
    };
    let client = connect(&args.cluster)?;
    let dependent = !args.after.is_empty() || !args.after_keys.is_empty();
    let request = api::SubmitRequest {
        key,
        spec: Some(spec),
        after: args.after.clone(),
        after_keys: args.after_keys.clone(),
        after_policy: if dependent { args.after_policy.clone() } else { String::new() },
        concurrency_key: args.concurrency.concurrency_key.clone().unwrap_or_default(),
        concurrency_limit: args.concurrency.concurrency_limit.unwrap_or(0),
        ..Default::default()
    };
    let reply = client.submit_request(request).await?;
    if !args.wait {
        outln!("{}", reply.id);
        return Ok(());
    }
    eprintln!("task {}", reply.id);
    // Waiting may take long: each long poll gets its own time budget, not the whole wait.
    let waiter = connect_with_timeout(&args.cluster, args.cluster.timeout.max(WAIT_POLL * 2))?;
    let task = wait_for_end(&waiter, reply.id).await?;
    // Stdout's tail to stdout and stderr's to stderr (results before format 5 hold both in one).
    out!("{}", task.output_tail);
    // Stderr lost to a closed pipe is nothing to stop for (stdout's errors are handled by `out!`).
    let _ = std::io::Write::write_all(&mut std::io::stderr(), task.stderr_tail.as_bytes());
    for cut in raftsched_api::json::output_cuts(&task) {
        eprintln!("raftsched: {cut}");
    }
    match task.state.as_str() {
        "succeeded" => Ok(()),
        "cancelled" => Err(CliError::Failed(format!("task {} was cancelled", task.id))),
        "skipped" => Err(CliError::Failed(format!(
            "task {} was skipped: task {} did not succeed (--after-policy success)",
            task.id, task.skipped_by
        ))),
        _ => Err(CliError::Exit(if (1..=255).contains(&task.exit_code) { task.exit_code } else { 1 })),
    }
}

pub async fn get(args: GetArgs) -> Result<(), CliError> {
    let id = parse_id(&args.id)?;
    let client = connect(&args.read.cluster)?;
    let task = client.get(id, args.read.stale).await?;
    if args.read.json {
        outln!("{}", output::task_json(&task));
    } else {
        outln!("{}", output::task_text(&task));
    }
    Ok(())
}

pub async fn list(args: ListArgs) -> Result<(), CliError> {
    if let Some(s) = &args.state {
        if raftsched_client::rules::TaskState::parse(s).is_none() {
            let known: Vec<&str> = raftsched_client::rules::TaskState::ALL.iter().map(|s| s.as_str()).collect();
            return Err(CliError::Usage(format!("unknown state {s:?} (one of {})", known.join(", "))));
        }
    }
    let client = connect(&args.cluster)?;
    let mut tasks = Vec::new();
    let mut after_id = args.after;
    // Where the next page starts, if the limit cut the list short.
    let mut more = None;
    while tasks.len() < args.limit {
        let page_size = (args.limit - tasks.len()).min(limits::LIST_PAGE_SIZE_MAX) as u32;
        let req = api::ListTasksRequest {
            state: args.state.clone().unwrap_or_default(),
            after_id,
            limit: page_size,
            stale: args.stale,
        };
        let page = client.list_page(req).await?;
        tasks.extend(page.tasks);
        if page.next_after == 0 {
            more = None;
            break;
        }
        after_id = page.next_after;
        more = Some(after_id);
    }
    if args.json {
        let values: Vec<_> = tasks.iter().map(output::task_json).collect();
        outln!("{}", serde_json::Value::Array(values));
    } else {
        outln!("{:<10} {:<10} {:<24} spec", "id", "state", "key");
        for t in &tasks {
            outln!("{:<10} {:<10} {:<24} {}", t.id, t.state, t.key, output::spec_text(t.spec.as_ref()));
        }
    }
    if let Some(after) = more {
        // On stderr, so that what stdout carries stays a clean list (or JSON array).
        eprintln!("raftsched: the first {} tasks shown; the next page: raftsched list --after {after}", tasks.len());
    }
    Ok(())
}

pub async fn cancel(args: CancelArgs) -> Result<(), CliError> {
    let id = parse_id(&args.id)?;
    let client = connect(&args.cluster)?;
    let reply = client.cancel(id).await?;
    outln!("{}", reply.id);
    Ok(())
}

pub async fn cluster_status(args: StatusArgs) -> Result<(), CliError> {
    let client = connect(&args.cluster)?;
    let status = client.cluster_status().await?;
    if args.json {
        outln!("{}", output::status_json(&status));
    } else {
        outln!("{}", output::status_text(&status));
    }
    if !status.has_leader {
        // Printed in full, and exit 3 (docs/operations.md): scripts and probes tell "no leader"
        // from "could not ask" (1).
        eprintln!("raftsched: no leader: no quorum of the replicas is in touch (see the members above)");
        return Err(CliError::Exit(NO_LEADER_EXIT));
    }
    Ok(())
}

/// `cluster status`'s exit code when the cluster has no leader.
pub const NO_LEADER_EXIT: i32 = 3;

fn print_membership(reply: &api::MembershipResponse) {
    let voters: Vec<String> = reply.voters.iter().map(u64::to_string).collect();
    outln!("{} voters: {}", if reply.changed { "changed;" } else { "unchanged;" }, voters.join(","));
}

pub async fn member_add(args: MemberAddArgs) -> Result<(), CliError> {
    if args.id == 0 {
        return Err(CliError::Usage("--id must be a positive integer".into()));
    }
    if !raftsched_api::is_host_port(&args.addr) {
        return Err(CliError::Usage(format!("--addr {:?} is not HOST:PORT", args.addr)));
    }
    // Catching up a new replica may take a while: allow for it.
    let mut cluster = args.cluster.clone();
    cluster.timeout = cluster.timeout.max(std::time::Duration::from_secs(120));
    let reply = connect(&cluster)?.add_member(args.id, &args.addr).await?;
    print_membership(&reply);
    Ok(())
}

pub async fn member_remove(args: MemberRemoveArgs) -> Result<(), CliError> {
    let reply = connect(&args.cluster)?.remove_member(args.id).await?;
    print_membership(&reply);
    Ok(())
}

pub async fn transfer_leader(args: TransferArgs) -> Result<(), CliError> {
    let reply = connect(&args.cluster)?.transfer_leader(args.to).await?;
    outln!("leader: {} (term {})", reply.leader, reply.term);
    Ok(())
}

/// The states a task ends in.
const TERMINAL: [&str; 4] = ["succeeded", "failed", "cancelled", "skipped"];
/// One long poll of a waiting CLI command; it polls again until the task ends.
pub const WAIT_POLL: Duration = Duration::from_secs(10);

/// Waits until task `id` has ended: one long poll per `WAIT_POLL`, answered only at the end.
pub async fn wait_for_end(client: &Client, id: u64) -> Result<api::Task, CliError> {
    loop {
        let task = client.wait_task_ended(id, WAIT_POLL).await?;
        if TERMINAL.contains(&task.state.as_str()) {
            return Ok(task);
        }
    }
}

/// Follows task `id` until it ends, calling `on_change` with each new version.
pub async fn wait_until_ended(
    client: &Client,
    id: u64,
    mut on_change: impl FnMut(&api::Task),
) -> Result<api::Task, CliError> {
    let mut version = 0;
    loop {
        let task = client.wait_task(id, version, WAIT_POLL).await?;
        if task.version > version {
            version = task.version;
            on_change(&task);
        }
        if TERMINAL.contains(&task.state.as_str()) {
            return Ok(task);
        }
    }
}

pub async fn watch(args: WatchArgs) -> Result<(), CliError> {
    let id = parse_id(&args.id)?;
    // Watching may take long: each poll has its own timeout, not the whole watch.
    let client = connect_with_timeout(&args.cluster, args.cluster.timeout.max(WAIT_POLL * 2))?;
    let json = args.json;
    wait_until_ended(&client, id, |t| {
        if json {
            outln!("{}", output::task_json(t));
        } else {
            let worker = if t.worker_id.is_empty() { String::new() } else { format!(" on {}", t.worker_id) };
            outln!("{} {} attempt {}{}", t.id, t.state, t.attempt, worker);
        }
    })
    .await?;
    Ok(())
}
