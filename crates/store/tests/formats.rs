//! Data dirs of every format open and read in full: one written by commit cde735c's binary
//! (format 0, `testdata/v0-datadir`), one by the first format-1 build (`testdata/v1-datadir`,
//! cluster version 1) and one by the first format-2 build (`testdata/v2-datadir`, cluster version
//! 2, reports that name their worker in its log), each holding 14 tasks, a cancel, a worker, a schedule, a snapshot and log
//! entries behind it. And damage below the durability watermark is refused while a torn tail is
//! not.

use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader};
use raftsched_state::{Command, Op, TaskState};
use raftsched_store::{open, OpenError, Opened, TypeConfig};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Opens `dir` once the previous opener's flusher has let go of sled's file lock.
async fn reopen(dir: &Path, id: u64) -> Result<Opened, OpenError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match open(dir, id) {
            Err(OpenError::Sled { source, .. })
                if source.to_string().contains("lock") && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            other => return other,
        }
    }
}

#[tokio::test]
async fn a_data_dir_of_every_format_opens_with_everything_in_it() {
    for (fixture, cluster_version) in [("v0-datadir", 0), ("v1-datadir", 1), ("v2-datadir", 2)] {
        open_fixture(fixture, cluster_version).await;
    }
}

async fn open_fixture(fixture: &str, cluster_version: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r1");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(fixture).join("r1"), &dir);
    std::fs::create_dir_all(dir.join("sled/blobs")).unwrap(); // git keeps no empty dirs
    let mut opened = open(&dir, 1).unwrap();
    assert!(!opened.pristine);
    let (applied, membership) = opened.sm_store.applied_state().await.unwrap();
    assert!(applied.is_some(), "the snapshot loads");
    assert_eq!(membership.membership().voter_ids().collect::<Vec<_>>(), vec![1]);
    let state = opened.log_store.get_log_state().await.unwrap();
    let last = state.last_log_id.unwrap().index;
    let from = state.last_purged_log_id.map_or(0, |l| l.index + 1);
    let entries = opened.log_store.try_get_log_entries(from..=last).await.unwrap();
    assert_eq!(entries.len() as u64, last + 1 - from, "every log entry behind the snapshot decodes");
    // Replaying the log over the snapshot gives the state cde735c served: 14 tasks, task 3
    // cancelled, the rest succeeded or pending, the schedule there.
    opened.sm_store.apply(entries.into_iter().filter(|e| Some(e.log_id) > applied)).await.unwrap();
    let handle = opened.sm_store.handle();
    handle.read(|sm| {
        let tasks: Vec<_> = (1..=14).map(|id| sm.get(id).unwrap_or_else(|| panic!("task {id}"))).collect();
        assert_eq!(tasks[2].state, TaskState::Cancelled);
        assert!(tasks[..12].iter().enumerate().all(|(i, t)| i == 2 || t.state == TaskState::Succeeded));
        assert_eq!(tasks[13].key, "fix-14");
        assert!(sm.schedule("nightly").is_some());
        assert_eq!(sm.cluster_version(), cluster_version, "{fixture}");
    });
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn submit(index: u64) -> Entry<TypeConfig> {
    let spec = raftsched_state::TaskSpec::builtin("echo", "x");
    let cmd = Command { now_ms: 1_000 + index, op: Op::Submit { key: format!("k{index}"), spec } };
    Entry { log_id: log_id(index), payload: EntryPayload::Normal(cmd) }
}

/// Appends entries 0..n through the group-commit path and waits for each flush.
async fn append(opened: &mut Opened, range: std::ops::Range<u64>) {
    use openraft::storage::RaftLogStorageExt;
    for i in range {
        opened.log_store.blocking_append(vec![submit(i)]).await.unwrap();
    }
}

/// Waits until the watermark file says entries below `end` were durable.
async fn watermark_reaches(dir: &Path, end: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let bytes = std::fs::read(dir.join("raftsched-watermark")).unwrap_or_default();
        let reached = bytes.chunks(64).take(2).any(|slot| {
            let len = slot.get(8..12).map_or(0, |l| u32::from_le_bytes(l.try_into().unwrap()) as usize);
            slot.get(..16 + len)
                .and_then(|r| raftsched_format::decode_watermark(r).ok())
                .is_some_and(|w| w.log_end_durable >= end)
        });
        if reached {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "watermark never reached {end}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn entries_lost_below_the_watermark_are_damage_a_torn_tail_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let mut opened = open(dir, 1).unwrap();
        append(&mut opened, 0..20).await;
        watermark_reaches(dir, 20).await;
    }
    // Entries written after the last flush the watermark saw, then lost (a crash mid-write):
    // a torn tail, accepted.
    with_log_tree(dir, |log| {
        for i in 20..25u64 {
            log.insert(i.to_be_bytes(), raftsched_format::encode_entry(&submit(i), 1).unwrap()).unwrap();
        }
    })
    .await;
    with_log_tree(dir, |log| {
        for i in 22..25u64 {
            log.remove(i.to_be_bytes()).unwrap();
        }
    })
    .await;
    let mut opened = reopen(dir, 1).await.unwrap();
    let last = opened.log_store.get_log_state().await.unwrap().last_log_id.unwrap().index;
    assert_eq!(last, 21);
    drop(opened);
    // Entries the watermark covers vanish (what a truncated `db` file did): refused, saying why.
    with_log_tree(dir, |log| {
        for i in 15..22u64 {
            log.remove(i.to_be_bytes()).unwrap();
        }
    })
    .await;
    match reopen(dir, 1).await {
        Err(e @ OpenError::Damaged { .. }) => {
            let text = e.to_string();
            assert!(text.contains("ends at index 14") && text.contains("up to index 19"), "{text}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a log shorter than its watermark opened"),
    }
}

/// Changes the log tree of the (closed) store in `dir` directly, as damage or a crash would.
async fn with_log_tree(dir: &Path, change: impl FnOnce(&sled::Tree)) {
    let db = loop {
        match sled::open(dir.join("sled")) {
            Ok(db) => break db,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    };
    let log = db.open_tree("log").unwrap();
    change(&log);
    db.flush().unwrap();
}
