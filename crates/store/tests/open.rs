//! Opening a data dir: a reopen finds what was durably written, and a dir that belongs to another
//! replica or lost its records is refused with an error instead of being served as empty.

use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, LogId, Vote};
use raftsched_store::{open, OpenError, Opened};

/// Opens `dir` once the previous opener's background flusher has let go of sled's file lock
/// (it exits when the dropped log store's channel closes, a moment after the drop).
async fn reopen(dir: &std::path::Path, id: u64) -> Result<Opened, OpenError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match open(dir, id) {
            Err(OpenError::Sled { source, .. })
                if source.to_string().contains("lock") && std::time::Instant::now() < deadline =>
            {
                tokio::task::yield_now().await;
            }
            other => return other,
        }
    }
}

#[tokio::test]
async fn reopen_keeps_the_vote_and_refuses_other_replicas() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut opened = open(dir.path(), 7).unwrap();
        assert!(opened.pristine);
        opened.log_store.save_vote(&Vote::new(3, 7)).await.unwrap();
        let committed = LogId::new(CommittedLeaderId::new(3, 7), 12);
        opened.log_store.save_committed(Some(committed)).await.unwrap();
    }
    let mut opened = reopen(dir.path(), 7).await.unwrap();
    assert!(!opened.pristine);
    assert_eq!(opened.log_store.read_vote().await.unwrap(), Some(Vote::new(3, 7)));
    drop(opened);
    match reopen(dir.path(), 8).await {
        Err(OpenError::WrongReplica { expected: 8, found: 7, .. }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened replica 7's dir as replica 8"),
    }
}

fn garble_all_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            n += garble_all_files(&path);
        } else {
            std::fs::write(&path, b"garbage").unwrap();
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn a_damaged_database_is_refused_not_served_empty() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut opened = open(dir.path(), 1).unwrap();
        opened.log_store.save_vote(&Vote::new(1, 1)).await.unwrap();
    }
    assert!(garble_all_files(&dir.path().join("sled")) > 0);
    match reopen(dir.path(), 1).await {
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains(&dir.path().display().to_string()), "{text}");
        }
        Ok(_) => panic!("a damaged data dir opened as if it were fine"),
    }
    // Deleting the database entirely is caught the same way.
    std::fs::remove_dir_all(dir.path().join("sled")).unwrap();
    assert!(matches!(open(dir.path(), 1), Err(OpenError::Corrupt { .. })));
}
