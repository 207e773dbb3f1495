//! Snapshot bodies as files of their own, in `<data dir>/snapshots/`.
//!
//! Why not a record in the database beside the log: a body is the whole state (hundreds of
//! megabytes for a state of 500,000 tasks), and writing it through sled made every log append's
//! flush wait behind it: followers missed heartbeats for over a second and campaigned against a
//! live leader on a healthy, loaded trio (docs/benchmarks.md, the no-fault soak). A file is
//! written beside the database, synced on its own, and only then named in the database by a small
//! record (`raftsched_format::SnapshotFile`: name, length, CRC-32) in the same batch as the meta.
//!
//! Invariants:
//! - A body file is complete and synced, and its directory entry is synced, before any record
//!   names it (write to `*.tmp`, fsync, rename, fsync the directory).
//! - A file no durable record names is garbage: removed after the record that replaced it is
//!   durable, and at open (a crash between the rename and the record leaves one).
//! - Nothing is read from a file before its length matches the record's (so a damaged record
//!   cannot make this allocate what it claims) and nothing is used before its CRC matches.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use raftsched_format::{Kind, SnapshotFile};

pub(crate) const DIR: &str = "snapshots";
const SUFFIX: &str = ".snapshot";
/// Longest file name this build writes or accepts from a record.
const NAME_LEN_MAX: usize = 64;

pub(crate) struct BodyFiles {
    dir: PathBuf,
    /// Makes names unique within this data dir: one past the highest sequence number found.
    next_seq: AtomicU64,
}

/// `<one past the last index, 20 digits>-<sequence>.snapshot`: sorts by index; the sequence tells apart two
/// bodies at the same index (offline recovery rewrites the snapshot at its own log id).
fn name_of(index: Option<u64>, seq: u64) -> String {
    format!("{:020}-{seq:06}{SUFFIX}", index.map_or(0, |i| i + 1))
}

/// The sequence number in a name this build writes; `None` for anything else.
fn seq_of(name: &str) -> Option<u64> {
    if name.len() > NAME_LEN_MAX {
        return None;
    }
    let (index, seq) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(index) && digits(seq)).then(|| seq.parse().ok()).flatten()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl BodyFiles {
    /// Opens (creating it if needed) `snapshots/` under `data_dir`.
    pub(crate) fn open(data_dir: &Path) -> io::Result<BodyFiles> {
        let dir = data_dir.join(DIR);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir)?;
            sync_dir(data_dir)?;
        }
        let mut next_seq = 1;
        for entry in std::fs::read_dir(&dir)? {
            if let Some(seq) = entry?.file_name().to_str().and_then(seq_of) {
                next_seq = next_seq.max(seq.saturating_add(1));
            }
        }
        Ok(BodyFiles { dir, next_seq: AtomicU64::new(next_seq) })
    }

    /// Writes `data` as a new body file, durably, and returns the record that names it.
    pub(crate) fn write(&self, index: Option<u64>, data: &[u8]) -> io::Result<SnapshotFile> {
        let name = name_of(index, self.next_seq.fetch_add(1, Ordering::Relaxed));
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, self.dir.join(&name))?;
        sync_dir(&self.dir)?;
        Ok(SnapshotFile { name, len: data.len() as u64, crc32: crc32fast::hash(data) })
    }

    /// Reads the body `record` names; the error says what is wrong with it (damage).
    pub(crate) fn read(&self, record: &SnapshotFile) -> Result<Vec<u8>, String> {
        if seq_of(&record.name).is_none() {
            return Err(format!("the snapshot file record names {:?}, not a snapshot file", record.name));
        }
        let path = self.dir.join(&record.name);
        let cannot = |e: io::Error| format!("cannot read the snapshot body {}: {e}", path.display());
        let mut file = std::fs::File::open(&path).map_err(cannot)?;
        let len = file.metadata().map_err(cannot)?.len();
        // The envelope's header plus the largest body: a record claiming more is damaged.
        let len_max = Kind::SnapshotBody.bytes_max() as u64 + 16;
        if len != record.len || len > len_max {
            return Err(format!(
                "the snapshot body {} is {len} bytes; its record says {} (at most {len_max})",
                path.display(),
                record.len
            ));
        }
        let mut data = Vec::with_capacity(len as usize);
        file.read_to_end(&mut data).map_err(cannot)?;
        if data.len() as u64 != len || crc32fast::hash(&data) != record.crc32 {
            return Err(format!("the snapshot body {} fails its checksum (damaged)", path.display()));
        }
        Ok(data)
    }

    /// Removes every file here but `keep` (bodies no durable record names, and unfinished writes).
    pub(crate) fn remove_all_but(&self, keep: Option<&str>) -> io::Result<()> {
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if keep.is_some_and(|k| entry.file_name() == k) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_index_and_only_ours_parse() {
        assert_eq!(name_of(Some(41), 7), "00000000000000000042-000007.snapshot");
        assert_eq!(seq_of(&name_of(Some(41), 7)), Some(7));
        for bad in ["../x.snapshot", "1-2.snapshot.tmp", "-1.snapshot", "1-.snapshot", "a-1.snapshot", "1-1/..snapshot"]
        {
            assert_eq!(seq_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_body_reads_back_and_damage_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let files = BodyFiles::open(tmp.path()).unwrap();
        let record = files.write(Some(9), b"the state").unwrap();
        assert_eq!(files.read(&record).unwrap(), b"the state");
        let wrong_len = SnapshotFile { len: u64::MAX, ..record.clone() };
        assert!(files.read(&wrong_len).unwrap_err().contains("its record says"));
        std::fs::write(tmp.path().join(DIR).join(&record.name), b"the stale").unwrap();
        assert!(files.read(&record).unwrap_err().contains("checksum"));
        let outside = SnapshotFile { name: "../raftsched-replica-id".into(), ..record.clone() };
        assert!(files.read(&outside).unwrap_err().contains("not a snapshot file"));
        // A reopened dir never reuses a name.
        let again = BodyFiles::open(tmp.path()).unwrap().write(Some(9), b"x").unwrap();
        assert_ne!(again.name, record.name);
        files.remove_all_but(Some(&again.name)).unwrap();
        assert_eq!(std::fs::read_dir(tmp.path().join(DIR)).unwrap().count(), 1);
    }
}
