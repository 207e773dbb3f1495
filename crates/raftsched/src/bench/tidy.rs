//! What `bench submit|get|dispatch` shows while it runs and leaves behind.
//!
//! - **Progress**: on a terminal, a bar on stderr redrawn four times a second (elapsed of total,
//!   operations and errors so far); elsewhere nothing until the summary line, so logs stay clean.
//! - **Its tasks**: every key starts `bench-RUN-` (RUN: 16 hex digits, new per run). Unless
//!   `--keep`, the run's tasks still pending at the end are cancelled, so no worker runs them
//!   later (a submit benchmark without workers otherwise leaves its whole load queued); cancelled
//!   tasks go with the other finished ones under retention. What was already assigned or ended is
//!   left, and the summary on stderr says how many of each.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftsched_client::{api, Client};

use crate::error::CliError;

/// How often the bar is redrawn.
const PROGRESS_REDRAW_MS: u64 = 250;
/// Cancels in flight at once during clean-up.
const CANCELS_IN_FLIGHT_MAX: usize = 64;

/// Operations and errors so far, bumped by the load loops.
#[derive(Default)]
pub struct Counts {
    pub ops: AtomicU64,
    pub errors: AtomicU64,
}

/// Draws the bar until dropped (on a terminal only).
pub struct Progress {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub fn start(counts: Arc<Counts>, total: Duration) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { stop: None, task: None };
        }
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(PROGRESS_REDRAW_MS));
            loop {
                tokio::select! {
                    _ = tick.tick() => eprint!("\r{}", bar(started.elapsed(), total, &counts)),
                    _ = &mut stopped => break,
                }
            }
            eprintln!("\r{}", bar(started.elapsed().min(total), total, &counts));
        });
        Progress { stop: Some(stop), task: Some(task) }
    }

    pub async fn finish(mut self) {
        if let (Some(stop), Some(task)) = (self.stop.take(), self.task.take()) {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}

fn bar(elapsed: Duration, total: Duration, counts: &Counts) -> String {
    let total_s = total.as_secs().max(1);
    let s = elapsed.as_secs().min(total_s);
    let (ops, errors) = (counts.ops.load(Relaxed), counts.errors.load(Relaxed));
    format!("{} {s}/{total_s} s  ops {ops}  errors {errors}", raftsched_client::progress_bar(s, total_s))
}

/// What clean-up found among the run's tasks.
#[derive(Debug, Default)]
pub struct Tidied {
    pub cancelled: u64,
    /// Assigned, running or ended: left as they are.
    pub left: u64,
}

/// Cancels the tasks of run `prefix` (`bench-RUN-`) still pending; counts the others.
pub async fn cancel_pending(client: &Arc<Client>, prefix: &str) -> Result<Tidied, CliError> {
    let mut tidied = Tidied::default();
    let mut pending = Vec::new();
    let mut after_id = 0;
    loop {
        let req = api::ListTasksRequest { state: String::new(), after_id, limit: 0, stale: false };
        let page = client.list_page(req).await?;
        for t in page.tasks.iter().filter(|t| t.key.starts_with(prefix)) {
            if t.state == "pending" || t.state == "scheduled" {
                pending.push(t.id);
            } else {
                tidied.left += 1;
            }
        }
        if page.next_after == 0 {
            break;
        }
        after_id = page.next_after;
    }
    let gate = Arc::new(tokio::sync::Semaphore::new(CANCELS_IN_FLIGHT_MAX));
    let mut cancels = Vec::with_capacity(pending.len());
    for id in pending {
        let (client, gate) = (client.clone(), gate.clone());
        cancels.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            client.cancel(id).await.ok()
        }));
    }
    for c in cancels {
        match c.await {
            Ok(Some(_)) => tidied.cancelled += 1,
            // Assigned meanwhile (FAILED_PRECONDITION), or the cluster did not answer.
            _ => tidied.left += 1,
        }
    }
    Ok(tidied)
}
