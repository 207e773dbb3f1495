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
    let fixtures = [("v0-datadir", 0), ("v1-datadir", 1), ("v2-datadir", 2), ("v4-datadir", 4)];
    for (fixture, cluster_version) in fixtures {
        open_fixture(fixture, cluster_version).await;
    }
}

async fn open_fixture(fixture: &str, cluster_version: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r1");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(fixture).join("r1"), &dir);
    std::fs::create_dir_all(dir.join("sled/blobs")).unwrap(); // git keeps no empty dirs
    let mut opened = open(&dir, 1).unwrap();
    check_fixture_state(&mut opened, fixture, cluster_version).await;
}

/// The fixture's state, after replaying its log over its snapshot.
async fn check_fixture_state(opened: &mut Opened, fixture: &str, cluster_version: u32) {
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

/// Before cluster version 4 a snapshot's body stays in the database (a build of format 3 still
/// opens the dir); from it the body is a file beside the database (`snapshots/`), named by a
/// record in it, and the old body record becomes a marker that builds before it refuse as newer.
/// A body file that is damaged or missing is refused as damage. `RAFTSCHED_WRITE_FIXTURES=1`
/// writes the data dir this makes from `v2-datadir` as the fixture `v4-datadir`.
#[tokio::test]
async fn a_snapshot_body_is_a_file_from_format_4_and_damage_to_it_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r1");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/v2-datadir/r1"), &dir);
    std::fs::create_dir_all(dir.join("sled/blobs")).unwrap();
    let bodies = || std::fs::read_dir(dir.join("snapshots")).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>();
    let built = {
        let mut opened = open(&dir, 1).unwrap();
        check_fixture_state(&mut opened, "v2-datadir", 2).await;
        build_snapshot(&mut opened).await;
        assert!(bodies().is_empty(), "at cluster version 2 the body stays in the database");
        raise_cluster_version(&mut opened, 4).await;
        let built = build_snapshot(&mut opened).await;
        assert_eq!(bodies().len(), 1, "one body file, none left behind");
        built
    };
    let mut opened = reopen(&dir, 1).await.unwrap();
    assert_eq!(opened.sm_store.applied_state().await.unwrap().0, built, "the snapshot in the file loads");
    check_fixture_state(&mut opened, "the snapshot file", 4).await;
    drop(opened);
    if std::env::var_os("RAFTSCHED_WRITE_FIXTURES").is_some() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/v4-datadir/r1");
        if !fixture.exists() {
            drop(reopen(&dir, 1).await.unwrap()); // waits for the last opener's lock to go
            copy_dir(&dir, &fixture);
        }
    }
    let body = bodies().remove(0);
    let mut bytes = std::fs::read(&body).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&body, &bytes).unwrap();
    let refused = |e: Result<Opened, OpenError>, what: &str| match e {
        Err(e @ OpenError::Damaged { .. }) => assert!(e.to_string().contains(what), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a damaged snapshot body opened"),
    };
    refused(reopen(&dir, 1).await, "fails its checksum");
    std::fs::remove_file(&body).unwrap();
    refused(reopen(&dir, 1).await, "cannot read the snapshot body");
}

async fn build_snapshot(opened: &mut Opened) -> Option<LogId<u64>> {
    use openraft::RaftSnapshotBuilder;
    opened.sm_store.get_snapshot_builder().await.build_snapshot().await.unwrap().meta.last_log_id
}

/// Appends and applies a `SetClusterVersion` entry after the last one.
async fn raise_cluster_version(opened: &mut Opened, version: u32) {
    use openraft::storage::RaftLogStorageExt;
    let last = opened.log_store.get_log_state().await.unwrap().last_log_id.unwrap();
    let cmd = Command { now_ms: 2_000_000_000_000, op: Op::SetClusterVersion { version } };
    let entry = Entry { log_id: LogId::new(last.leader_id, last.index + 1), payload: EntryPayload::Normal(cmd) };
    opened.log_store.blocking_append(vec![entry.clone()]).await.unwrap();
    opened.sm_store.apply(vec![entry]).await.unwrap();
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
