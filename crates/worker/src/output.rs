//! Each attempt's whole stdout and stderr, kept on the worker's disk for `raftsched logs`.
//!
//! Beside the bounded tail that a result records through Raft, a worker writes each stream of each
//! attempt to `DIR/TASK-ATTEMPT.stdout` and `.stderr`, and serves them to replicas
//! (`output_server.rs`). Bounds, all named:
//! - a stream keeps its first `attempt_bytes_max` bytes; past that it is cut (the result's tail
//!   has its end);
//! - all kept files together stay under `total_bytes_max`, and at most `OUTPUT_ATTEMPTS_KEPT_MAX`
//!   attempts are kept: the oldest ended attempts are removed first. An attempt still running is
//!   never removed, so the worker refuses to start unless the total leaves room for every slot.
//!
//! Kept output is best effort: never fsynced (the result recorded through Raft is the durable
//! record), and a write error stops keeping that stream (logged once). A worker that restarts
//! finds its earlier files and serves them as ended: no attempt outlives its worker process.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Bytes of one stream of one attempt kept at most (`worker --output-attempt-bytes-max`).
pub const OUTPUT_ATTEMPT_BYTES_MAX_DEFAULT: u64 = 64 << 20;
/// Bytes of all kept output at most (`worker --output-bytes-max`).
pub const OUTPUT_BYTES_MAX_DEFAULT: u64 = 1 << 30;
/// Attempts whose output is kept at most, whatever their size (bounds the files and the index).
pub const OUTPUT_ATTEMPTS_KEPT_MAX: usize = 100_000;
/// Bytes in one chunk served.
pub const OUTPUT_CHUNK_BYTES_MAX: usize = 64 << 10;

#[derive(Clone, Debug)]
pub struct OutputConfig {
    pub dir: PathBuf,
    pub attempt_bytes_max: u64,
    pub total_bytes_max: u64,
}

impl OutputConfig {
    /// The bounds for `slots` attempts at once: the total must hold both streams of every slot
    /// (running attempts are never removed), so a per-stream bound too large for it is lowered to
    /// a fair share, `total / (2 x slots)`, and said so. Refuses only bounds of zero.
    pub fn fit(mut self, slots: u32) -> Result<OutputConfig, String> {
        if self.attempt_bytes_max == 0 || self.total_bytes_max == 0 {
            return Err("--output-attempt-bytes-max and --output-bytes-max must be above 0".to_string());
        }
        let share = self.total_bytes_max / (2 * u64::from(slots.max(1)));
        if self.attempt_bytes_max > share {
            tracing::info!(
                output_attempt_bytes_max = share,
                asked = self.attempt_bytes_max,
                slots,
                "each stream of an attempt keeps at most its share of --output-bytes-max"
            );
            self.attempt_bytes_max = share.max(1);
        }
        Ok(self)
    }
}

/// One attempt of one task: 1 for the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptKey {
    pub task_id: u64,
    pub attempt: u32,
}

impl AttemptKey {
    fn file_name(self, stderr: bool) -> String {
        format!("{}-{}.{}", self.task_id, self.attempt, if stderr { "stderr" } else { "stdout" })
    }

    /// The attempt and stream a file name written by [`AttemptKey::file_name`] stands for.
    fn parse(name: &str) -> Option<(AttemptKey, bool)> {
        let (stem, stream) = name.rsplit_once('.')?;
        let stderr = match stream {
            "stdout" => false,
            "stderr" => true,
            _ => return None,
        };
        let (task, attempt) = stem.split_once('-')?;
        Some((AttemptKey { task_id: task.parse().ok()?, attempt: attempt.parse().ok()? }, stderr))
    }
}

/// How far an attempt's streams have been written, and whether it is over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub ended: bool,
}

impl Progress {
    fn bytes(&self, stderr: bool) -> u64 {
        if stderr {
            self.stderr_bytes
        } else {
            self.stdout_bytes
        }
    }
}

struct Entry {
    /// Kept bytes, both streams.
    bytes: u64,
    /// Order of creation: the smallest is removed first.
    seq: u64,
    /// Set while the attempt runs in this process.
    live: Option<watch::Receiver<Progress>>,
}

#[derive(Default)]
struct Index {
    entries: HashMap<AttemptKey, Entry>,
    by_age: BTreeMap<u64, AttemptKey>,
    total_bytes: u64,
    next_seq: u64,
}

/// The kept output of this worker's attempts.
pub struct OutputStore {
    config: OutputConfig,
    index: Mutex<Index>,
}

impl std::fmt::Debug for OutputStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputStore").field("dir", &self.config.dir).finish()
    }
}

impl OutputStore {
    /// Opens `config.dir` (created, mode 0700), indexing what an earlier process left, oldest
    /// first, and removing what exceeds the bounds.
    pub fn open(config: OutputConfig) -> std::io::Result<Arc<OutputStore>> {
        std::fs::create_dir_all(&config.dir)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config.dir, std::fs::Permissions::from_mode(0o700))?;
        let mut found: HashMap<AttemptKey, (u64, std::time::SystemTime)> = HashMap::new();
        for entry in std::fs::read_dir(&config.dir)? {
            let entry = entry?;
            let Some((key, _)) = entry.file_name().to_str().and_then(AttemptKey::parse) else { continue };
            let meta = entry.metadata()?;
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            let slot = found.entry(key).or_insert((0, modified));
            slot.0 += meta.len();
            slot.1 = slot.1.max(modified);
        }
        let mut found: Vec<_> = found.into_iter().collect();
        found.sort_by_key(|(key, (_, modified))| (*modified, *key));
        let store = OutputStore { config, index: Mutex::default() };
        {
            let mut index = store.lock();
            for (key, (bytes, _)) in found {
                index.insert(key, bytes, None);
            }
            store.trim(&mut index);
        }
        Ok(Arc::new(store))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts keeping the output of `key` (a second run of the same attempt starts it over).
    pub fn begin(self: &Arc<Self>, key: AttemptKey) -> AttemptOutput {
        let (progress, rx) = watch::channel(Progress::default());
        let mut index = self.lock();
        if let Some(old) = index.remove(key) {
            tracing::debug!(?key, bytes = old, "output of an earlier run of this attempt replaced");
        }
        let seq = index.insert(key, 0, Some(rx));
        self.trim(&mut index);
        drop(index);
        let open = |stderr| self.create(key, stderr);
        AttemptOutput {
            store: self.clone(),
            key,
            seq,
            progress: Arc::new(progress),
            files: [Mutex::new(open(false)), Mutex::new(open(true))],
        }
    }

    fn path(&self, key: AttemptKey, stderr: bool) -> PathBuf {
        self.config.dir.join(key.file_name(stderr))
    }

    fn create(&self, key: AttemptKey, stderr: bool) -> Option<File> {
        match File::create(self.path(key, stderr)) {
            Ok(file) => Some(file),
            Err(e) => {
                tracing::warn!(?key, stderr, error = %e, "cannot keep this attempt's output");
                None
            }
        }
    }

    /// Removes the oldest ended attempts until the bounds hold (running ones are never removed).
    fn trim(&self, index: &mut Index) {
        let mut ages = index.by_age.iter();
        let mut doomed = Vec::new();
        let mut total = index.total_bytes;
        let mut count = index.entries.len();
        while total > self.config.total_bytes_max || count > OUTPUT_ATTEMPTS_KEPT_MAX {
            let Some((_, key)) = ages.next() else { break };
            let entry = &index.entries[key];
            if entry.live.is_none() {
                total -= entry.bytes;
                count -= 1;
                doomed.push(*key);
            }
        }
        for key in doomed {
            index.remove(key);
            for stderr in [false, true] {
                let _ = std::fs::remove_file(self.path(key, stderr));
            }
        }
    }

    /// A reader of `key`'s `stderr` or stdout. NOT_FOUND-like errors say why there is none.
    pub fn reader(&self, key: AttemptKey, stderr: bool) -> Result<OutputReader, String> {
        let live = match self.lock().entries.get(&key) {
            Some(entry) => entry.live.clone(),
            None => return Err(format!(
                "no output kept for task {} attempt {} on this worker (never run here, or removed to stay under output_bytes_max)",
                key.task_id, key.attempt
            )),
        };
        let file = File::open(self.path(key, stderr))
            .map_err(|e| format!("task {} attempt {}: {e}", key.task_id, key.attempt))?;
        Ok(OutputReader { file, live, attempt_bytes_max: self.config.attempt_bytes_max })
    }
}

impl Index {
    fn insert(&mut self, key: AttemptKey, bytes: u64, live: Option<watch::Receiver<Progress>>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.total_bytes += bytes;
        self.by_age.insert(seq, key);
        self.entries.insert(key, Entry { bytes, seq, live });
        seq
    }

    /// The entry of `key` if it is still the one created as `seq` (a later run of the same
    /// attempt replaces it).
    fn current(&mut self, key: AttemptKey, seq: u64) -> Option<&mut Entry> {
        self.entries.get_mut(&key).filter(|e| e.seq == seq)
    }

    fn remove(&mut self, key: AttemptKey) -> Option<u64> {
        let entry = self.entries.remove(&key)?;
        self.by_age.remove(&entry.seq);
        self.total_bytes -= entry.bytes;
        Some(entry.bytes)
    }
}

/// The output of one running attempt, being written. Dropping it marks the attempt ended.
pub struct AttemptOutput {
    store: Arc<OutputStore>,
    key: AttemptKey,
    seq: u64,
    progress: Arc<watch::Sender<Progress>>,
    /// stdout's file, then stderr's (None once it cannot be written).
    files: [Mutex<Option<File>>; 2],
}

impl AttemptOutput {
    /// Appends `data` to the stream, up to `attempt_bytes_max` (the rest is dropped: cut).
    pub fn write(&self, stderr: bool, data: &[u8]) {
        let written = self.progress.borrow().bytes(stderr);
        let room = self.store.config.attempt_bytes_max.saturating_sub(written);
        let data = &data[..data.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
        if data.is_empty() {
            return;
        }
        let mut file = self.files[usize::from(stderr)].lock().unwrap_or_else(|p| p.into_inner());
        let Some(f) = file.as_mut() else { return };
        if let Err(e) = f.write_all(data) {
            tracing::warn!(key = ?self.key, stderr, error = %e, "cannot keep more of this attempt's output");
            *file = None;
            return;
        }
        drop(file);
        {
            let mut index = self.store.lock();
            if let Some(entry) = index.current(self.key, self.seq) {
                entry.bytes += data.len() as u64;
                index.total_bytes += data.len() as u64;
            }
            self.store.trim(&mut index);
        }
        self.progress.send_modify(|p| {
            if stderr {
                p.stderr_bytes += data.len() as u64
            } else {
                p.stdout_bytes += data.len() as u64
            }
        });
    }
}

impl Drop for AttemptOutput {
    fn drop(&mut self) {
        if let Some(entry) = self.store.lock().current(self.key, self.seq) {
            entry.live = None;
        }
        self.progress.send_modify(|p| p.ended = true);
    }
}

/// One chunk read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    pub data: Vec<u8>,
    /// The attempt is over and `data` reaches the end of what was kept.
    pub ended: bool,
    /// The stream reached `attempt_bytes_max`: what came after was not kept.
    pub cut: bool,
}

/// Reads one kept stream from any offset, waiting for more while the attempt runs.
pub struct OutputReader {
    file: File,
    live: Option<watch::Receiver<Progress>>,
    attempt_bytes_max: u64,
}

impl OutputReader {
    /// The next chunk at `offset`: what is there now (at most `OUTPUT_CHUNK_BYTES_MAX`), or, when
    /// nothing is and `follow` is set and the attempt runs, what comes next. An empty chunk that
    /// has not `ended` means: nothing more now (without `follow`).
    pub async fn next(&mut self, offset: u64, follow: bool) -> std::io::Result<Chunk> {
        loop {
            let progress = self.live.as_mut().map(|rx| *rx.borrow_and_update());
            let ended = progress.is_none_or(|p| p.ended);
            let len = self.file.metadata()?.len();
            let data = self.read_at(offset, len)?;
            let at_end = offset.saturating_add(data.len() as u64) >= len;
            if !data.is_empty() || ended || !follow {
                let cut = len >= self.attempt_bytes_max;
                return Ok(Chunk { data, ended: ended && at_end, cut: cut && at_end });
            }
            let changed = self.live.as_mut().expect("live while not ended").changed().await;
            if changed.is_err() {
                // The writer is gone: the attempt has ended.
                self.live = None;
            }
        }
    }

    fn read_at(&mut self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        if offset >= len {
            return Ok(Vec::new());
        }
        let want = (len - offset).min(OUTPUT_CHUNK_BYTES_MAX as u64) as usize;
        let mut data = vec![0; want];
        self.file.seek(SeekFrom::Start(offset))?;
        let mut filled = 0;
        while filled < want {
            match self.file.read(&mut data[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        data.truncate(filled);
        Ok(data)
    }
}

/// The default output directory of worker `id`: stable across its restarts, so a restarted
/// worker still serves what it kept.
pub fn default_dir(id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("raftsched-worker-{id}-output"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn store(dir: &Path, attempt: u64, total: u64) -> Arc<OutputStore> {
        OutputStore::open(OutputConfig { dir: dir.to_path_buf(), attempt_bytes_max: attempt, total_bytes_max: total })
            .unwrap()
    }

    fn key(task_id: u64, attempt: u32) -> AttemptKey {
        AttemptKey { task_id, attempt }
    }

    async fn read_all(store: &OutputStore, k: AttemptKey, stderr: bool) -> (Vec<u8>, Chunk) {
        let mut reader = store.reader(k, stderr).unwrap();
        let mut all = Vec::new();
        loop {
            let chunk = reader.next(all.len() as u64, false).await.unwrap();
            all.extend_from_slice(&chunk.data);
            if chunk.data.is_empty() {
                return (all, chunk);
            }
        }
    }

    #[tokio::test]
    async fn streams_are_kept_apart_and_cut_at_the_attempt_bound() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 10, 1_000);
        let out = s.begin(key(1, 1));
        out.write(false, b"hello ");
        out.write(true, b"oops");
        out.write(false, b"world, and more");
        let (stdout, chunk) = read_all(&s, key(1, 1), false).await;
        assert_eq!(stdout, b"hello worl");
        assert!(chunk.cut && !chunk.ended, "running, cut: {chunk:?}");
        drop(out);
        let (stderr, chunk) = read_all(&s, key(1, 1), true).await;
        assert_eq!(stderr, b"oops");
        assert!(chunk.ended && !chunk.cut);
    }

    #[tokio::test]
    async fn a_follower_wakes_on_each_write_and_ends_with_the_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 1_000, 10_000);
        let out = s.begin(key(7, 2));
        let mut reader = s.reader(key(7, 2), false).unwrap();
        let follower = tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let chunk = reader.next(seen.len() as u64, true).await.unwrap();
                seen.extend_from_slice(&chunk.data);
                if chunk.ended {
                    return seen;
                }
            }
        });
        out.write(false, b"one\n");
        tokio::task::yield_now().await;
        out.write(false, b"two\n");
        drop(out);
        assert_eq!(follower.await.unwrap(), b"one\ntwo\n");
    }

    #[tokio::test]
    async fn the_oldest_ended_attempts_go_first_and_running_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 100, 250);
        let running = s.begin(key(1, 1));
        running.write(false, &[b'a'; 100]);
        for task in 2..=4 {
            let out = s.begin(key(task, 1));
            out.write(false, &[b'b'; 60]);
        }
        // 100 + 3 x 60 = 280 > 250: task 2 (the oldest ended) went, task 1 runs on.
        assert!(s.reader(key(2, 1), false).err().unwrap().contains("removed"));
        assert!(s.reader(key(1, 1), false).is_ok() && s.reader(key(4, 1), false).is_ok());
        assert!(!dir.path().join("2-1.stdout").exists());
        assert!(s.lock().total_bytes <= 250);
    }

    #[tokio::test]
    async fn a_restarted_worker_serves_what_it_kept_as_ended() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = store(dir.path(), 100, 1_000);
            let out = s.begin(key(3, 1));
            out.write(false, b"before the crash\n");
            std::mem::forget(out); // the process dies: nothing marks the attempt ended
        }
        std::fs::write(dir.path().join("not-ours.txt"), b"x").unwrap();
        let s = store(dir.path(), 100, 1_000);
        let (data, chunk) = read_all(&s, key(3, 1), false).await;
        assert_eq!(data, b"before the crash\n");
        assert!(chunk.ended);
        let mut reader = s.reader(key(3, 1), false).unwrap();
        let far = reader.next(u64::MAX, true).await.unwrap();
        assert!(far.data.is_empty() && far.ended, "an offset past the end ends at once");
    }

    #[test]
    fn the_total_holds_every_slot() {
        let config = OutputConfig { dir: PathBuf::new(), attempt_bytes_max: 10, total_bytes_max: 80 };
        assert_eq!(config.clone().fit(4).unwrap().attempt_bytes_max, 10);
        assert_eq!(config.clone().fit(16).unwrap().attempt_bytes_max, 2, "a fair share of the total");
        assert!(OutputConfig { attempt_bytes_max: 0, ..config }.fit(4).is_err());
        assert_eq!(AttemptKey::parse("12-3.stderr"), Some((key(12, 3), true)));
        assert_eq!(AttemptKey::parse("12-3.txt"), None);
        assert_eq!(AttemptKey::parse("a-3.stdout"), None);
    }
}
