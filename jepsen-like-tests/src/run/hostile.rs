//! The `hostile` nemesis: while it holds, a fake peer without the cluster secret sends forged
//! replica traffic to every replica (votes at far terms, heartbeats and a forged entry from a
//! made-up leader, forwarded submits and a purge), and a rogue worker reports on running tasks
//! it does not hold, with tokens around the real one. Anything a replica accepts is recorded; the
//! final checks require that nothing was.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use raftsched_client::{api, Client};
use raftsched_state::{Command, Op, TaskSpec};

/// Messages the cluster accepted from an attacker (empty in a correct run).
pub type Accepted = Arc<Mutex<Vec<String>>>;

/// A running attack; stopped by `stop` (when the nemesis heals).
pub struct Attack {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Attack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attack")
    }
}

impl Attack {
    /// Starts attacking `addrs` (every replica); `Handle::current()` must be a tokio runtime.
    pub fn start(addrs: Vec<String>, accepted: Accepted) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::runtime::Handle::current().spawn(async move {
            let mut round = 0u64;
            while !flag.load(Ordering::Relaxed) {
                for addr in &addrs {
                    fake_peer(addr, round, &accepted).await;
                }
                rogue_worker(&addrs, &accepted).await;
                round += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Attack { stop, task }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

fn record(accepted: &Accepted, what: String) {
    accepted.lock().unwrap_or_else(|p| p.into_inner()).push(what);
}

const CALL_TIMEOUT: Duration = Duration::from_millis(1_000);

/// One round of forged replica traffic at `addr`; every answer but a refusal is recorded.
async fn fake_peer(addr: &str, round: u64, accepted: &Accepted) {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else { return };
    let Ok(Ok(channel)) = tokio::time::timeout(CALL_TIMEOUT, endpoint.connect()).await else { return };
    let mut raft = api::raft_client::RaftClient::new(channel);
    let term = (1 << 30) + round;
    let forged_log_id = |index| LogId::new(CommittedLeaderId::new(term, 1), index);
    let vote = VoteRequest { vote: Vote::new(term, 1), last_log_id: Some(forged_log_id(1 << 40)) };
    let entry = Entry {
        log_id: forged_log_id(1 << 20),
        payload: EntryPayload::Normal(Command { now_ms: 0, op: submit(&format!("hostile-entry-{round}")) }),
    };
    let append = AppendEntriesRequest {
        vote: Vote::new_committed(term, 1),
        prev_log_id: Some(forged_log_id((1 << 20) - 1)),
        entries: vec![entry],
        leader_commit: Some(forged_log_id(1 << 20)),
    };
    let messages = [
        ("vote", raftsched_format::encode_vote_request(&vote, 1)),
        ("append", raftsched_format::encode_append_entries(&append, 1)),
        ("forward", raftsched_format::encode_forward(&[submit(&format!("hostile-{round}"))], 1)),
        ("purge", raftsched_format::encode_forward(&[Op::PurgeFinished { keep: 0 }], 1)),
    ];
    for (what, data) in messages {
        let Ok(data) = data else { continue };
        let data = api::RaftBytes { data };
        let answer = match what {
            "vote" => tokio::time::timeout(CALL_TIMEOUT, raft.vote(data)).await,
            "append" => tokio::time::timeout(CALL_TIMEOUT, raft.append_entries(data)).await,
            _ => tokio::time::timeout(CALL_TIMEOUT, raft.forward(data)).await,
        };
        if let Ok(Ok(_)) = answer {
            record(accepted, format!("{addr} answered a forged {what} from an outsider"));
        }
    }
}

fn submit(key: &str) -> Op {
    Op::Submit { key: key.into(), spec: TaskSpec::command(vec!["echo".into(), "hostile".into()]) }
}

/// Reports on running tasks as worker `rogue`, with tokens around each task's own.
async fn rogue_worker(addrs: &[String], accepted: &Accepted) {
    let Ok(client) = Client::new(addrs.to_vec(), CALL_TIMEOUT) else { return };
    // Before every member applies reports that name their worker (cluster version 2), a report
    // is fenced by its token alone: nothing to attack yet.
    match client.cluster_status().await {
        Ok(status) if status.cluster_version >= 2 => {}
        _ => return,
    }
    let request = api::ListTasksRequest { state: "running".into(), after_id: 0, limit: 20, stale: true };
    let Ok(page) = client.list_page(request).await else { return };
    let reports: Vec<api::ReportRequest> = page
        .tasks
        .iter()
        .filter(|t| t.token > 0)
        .flat_map(|t| (t.token.saturating_sub(2)..=t.token + 2).map(move |token| (t.id, token)))
        .take(256)
        .map(|(task_id, token)| api::ReportRequest {
            task_id,
            token,
            finished: true,
            exit_code: 0,
            output_tail: "hostile".into(),
            worker_id: "rogue".into(),
            instance: 1,
            ..Default::default()
        })
        .collect();
    if reports.is_empty() {
        return;
    }
    let Ok(answer) = client.report_many(reports.clone()).await else { return };
    for (report, outcome) in reports.iter().zip(answer.outcomes) {
        if outcome.code == tonic::Code::Ok as i32 {
            record(accepted, format!("a rogue worker's report on task {} was accepted", report.task_id));
        }
    }
}
