//! Opening a replica's data dir: one sled database, checked to belong to this replica.

use std::path::{Path, PathBuf};

use crate::disk::DiskSync;
use crate::log_store::LogStore;
use crate::state_machine::SmStore;
use crate::watermark::WatermarkFile;
use raftsched_format::Watermark;

/// Why a data dir could not be opened. Every case is an operator error or a damaged disk, so the
/// message names the dir and what to do; the replica exits non-zero instead of guessing.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open data dir {dir}: {source}")]
    Sled { dir: PathBuf, source: sled::Error },
    #[error("data dir {dir} is damaged: the storage engine failed while opening it ({why})")]
    Panicked { dir: PathBuf, why: String },
    #[error("data dir {dir} belongs to replica {found}, not to replica {expected}")]
    WrongReplica { dir: PathBuf, expected: u64, found: u64 },
    #[error("data dir {dir} is damaged: {what}")]
    Corrupt { dir: PathBuf, what: String },
    /// Damage to data this replica had made durable: it must not take part with what is left.
    #[error(
        "data dir {dir} is damaged: {what}; this replica must not rejoin with it: move the dir away and add the \
         replica back with an empty one (docs/operations.md, \"A damaged data dir\")"
    )]
    Damaged { dir: PathBuf, what: String },
    #[error("data dir {dir} was {what}; upgrade this replica's binary")]
    Newer { dir: PathBuf, what: String },
    #[error(
        "BUG: data dir {dir}: {what}. Its records are whole (checksums good), so this is a bug in raftsched, \
         not disk damage: keep the data dir and report it"
    )]
    Bug { dir: PathBuf, what: String },
    #[error("cannot start the log flush thread: {0}")]
    Thread(std::io::Error),
}

/// Everything a replica needs from its data dir.
pub struct Opened {
    pub log_store: LogStore,
    pub sm_store: SmStore,
    /// True when the dir held no Raft state before (first start).
    pub pristine: bool,
    /// Latency of every durable sync of this store.
    pub sync_stats: std::sync::Arc<crate::disk::SyncStats>,
    /// The commit index openraft last reported to this store (0 before any).
    pub committed_index: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

const REPLICA_ID_KEY: &[u8] = b"replica_id";
/// A file beside the database naming the replica that owns the dir. sled treats some damage
/// (a garbled config or database file) as an empty database; the marker tells a data dir that
/// lost its records from a new one, so a damaged replica refuses to start instead of rejoining
/// with an empty log and a forgotten vote.
const MARKER_FILE: &str = "raftsched-replica-id";

pub(crate) fn read_marker(dir: &Path) -> Result<Option<u64>, OpenError> {
    let path = dir.join(MARKER_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().map(Some).map_err(|_| OpenError::Corrupt {
            dir: dir.to_path_buf(),
            what: format!("{} does not hold a replica id", path.display()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(OpenError::Corrupt { dir: dir.to_path_buf(), what: format!("cannot read {}: {e}", path.display()) })
        }
    }
}

fn write_marker(dir: &Path, replica_id: u64) -> Result<(), OpenError> {
    let io = |e: std::io::Error| OpenError::Corrupt {
        dir: dir.to_path_buf(),
        what: format!("cannot write the replica marker: {e}"),
    };
    let tmp = dir.join(format!("{MARKER_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    std::io::Write::write_all(&mut file, format!("{replica_id}\n").as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, dir.join(MARKER_FILE)).map_err(io)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

/// Opens (or creates) the store of replica `replica_id` in `dir`, and starts the group-commit
/// flush thread.
pub fn open(dir: &Path, replica_id: u64) -> Result<Opened, OpenError> {
    let marker = read_marker(dir)?;
    if let Some(found) = marker {
        if found != replica_id {
            return Err(OpenError::WrongReplica { dir: dir.to_path_buf(), expected: replica_id, found });
        }
    }
    let sled_dir = dir.join("sled");
    // sled may panic on some kinds of on-disk damage; a panic must not be how the operator learns
    // that the disk is bad, so it is caught and turned into an error naming the dir.
    let opened = std::panic::catch_unwind(|| crate::disk::sled_config(&sled_dir).open());
    let db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(source)) => return Err(OpenError::Sled { dir: dir.to_path_buf(), source }),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".to_string());
            return Err(OpenError::Panicked { dir: dir.to_path_buf(), why });
        }
    };
    let sled_err = |source| OpenError::Sled { dir: dir.to_path_buf(), source };
    let meta = db.open_tree("meta").map_err(sled_err)?;
    let log = db.open_tree("log").map_err(sled_err)?;
    let snap = db.open_tree("snapshot").map_err(sled_err)?;

    let pristine = match meta.get(REPLICA_ID_KEY).map_err(sled_err)? {
        Some(bytes) => {
            let found = crate::codec::key_index(&bytes)
                .ok_or_else(|| OpenError::Corrupt { dir: dir.to_path_buf(), what: "replica id record".into() })?;
            if found != replica_id {
                return Err(OpenError::WrongReplica { dir: dir.to_path_buf(), expected: replica_id, found });
            }
            false
        }
        None if marker.is_some() => {
            return Err(OpenError::Corrupt {
                dir: dir.to_path_buf(),
                what: "the database lost its records (the replica marker is there, the data is not); \
                       restore the dir from a backup or replace this replica"
                    .to_string(),
            });
        }
        None => {
            meta.insert(REPLICA_ID_KEY, &crate::codec::index_key(replica_id)).map_err(sled_err)?;
            db.flush().map_err(sled_err)?;
            true
        }
    };
    if marker.is_none() {
        write_marker(dir, replica_id)?;
    }
    let trees = Trees { db, meta, log, snap };
    check_and_start(dir, &sled_dir, trees, pristine)
}

struct Trees {
    db: sled::Db,
    meta: sled::Tree,
    log: sled::Tree,
    snap: sled::Tree,
}

/// Set in `meta` once the dir has a watermark file: a dir without the file is then damaged, not
/// one from a build before the watermark.
const WATERMARK_KEY: &[u8] = b"watermark";

/// Loads the snapshot, checks the log against the watermark (`verify.rs`), and starts the flusher.
fn check_and_start(dir: &Path, sled_dir: &Path, t: Trees, pristine: bool) -> Result<Opened, OpenError> {
    let corrupt = |what: String| OpenError::Corrupt { dir: dir.to_path_buf(), what };
    let refused = |r: crate::verify::Refusal| match r {
        crate::verify::Refusal::Newer(what) => OpenError::Newer { dir: dir.to_path_buf(), what },
        crate::verify::Refusal::Damage(what) => OpenError::Damaged { dir: dir.to_path_buf(), what },
        crate::verify::Refusal::Bug(what) => OpenError::Bug { dir: dir.to_path_buf(), what },
    };
    let disk = DiskSync::new(t.db.clone(), sled_dir)
        .map_err(|e| corrupt(format!("cannot open the database file for syncing: {e}")))?;
    let sync_stats = disk.stats();
    let files = crate::body_files::BodyFiles::open(dir)
        .map_err(|e| corrupt(format!("cannot open its {} dir: {e}", crate::body_files::DIR)))?;
    let sm_store = SmStore::load(disk.clone(), t.snap, files).map_err(refused)?;
    let snapshot_end = sm_store.handle().last_applied_index_opt().map_or(0, |i| i + 1);
    let shape = crate::verify::scan(&t.log, &t.meta, snapshot_end).map_err(refused)?;
    let had_watermark = t.meta.get(WATERMARK_KEY).map_err(|e| corrupt(e.to_string()))?.is_some();
    let found = crate::watermark::read(dir).map_err(|e| OpenError::Damaged {
        dir: dir.to_path_buf(),
        what: format!("the durability watermark is unreadable: {e}"),
    })?;
    let watermark = match found {
        Some(w) => {
            crate::verify::against_watermark(&shape, &w).map_err(|what| refused(what.into()))?;
            w
        }
        None if had_watermark && !pristine => {
            return Err(refused("its durability watermark file is missing".to_string().into()));
        }
        None => Watermark { seq: 0, log_end_durable: shape.end, vote_term: shape.vote_term },
    };
    let watermark =
        WatermarkFile::open(dir, watermark).map_err(|e| corrupt(format!("cannot open the watermark: {e}")))?;
    if !had_watermark {
        t.meta.insert(WATERMARK_KEY, b"1").map_err(|e| corrupt(e.to_string()))?;
        t.db.flush().map_err(|e| corrupt(e.to_string()))?;
    }
    let log_store = LogStore::open(disk, t.meta, t.log, watermark, &sm_store).map_err(OpenError::Thread)?;
    let committed_index = log_store.committed_index();
    Ok(Opened { log_store, sm_store, pristine, sync_stats, committed_index })
}
