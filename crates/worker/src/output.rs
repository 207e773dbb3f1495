//! Each attempt's whole stdout and stderr, kept on the worker's disk for `raftsched logs`.
//!
//! Beside the bounded tail that a result records through Raft, a worker keeps each stream of each
//! attempt and serves it to replicas (`output_server.rs`). Where a stream's bytes are (`Kept`):
//! - while it is under `OUTPUT_INLINE_BYTES_MAX`: in records of a shared segment,
//!   `DIR/packed-N.out` (`packed.rs`), one per write, and in memory while its attempt runs; so a
//!   short task costs no file of its own (creating and removing two files per attempt halved
//!   dispatch throughput on ext4);
//! - once it passes that: in a file of its own, `DIR/TASK-ATTEMPT.stdout` or `.stderr`.
//!
//! Bounds, all named:
//! - a stream keeps its first `attempt_bytes_max` bytes; past that it is cut (the result's tail
//!   has its end);
//! - all kept files together stay under `total_bytes_max`, and at most `OUTPUT_ATTEMPTS_KEPT_MAX`
//!   attempts are kept: the oldest ended attempts are removed first. Segments go oldest first,
//!   once none of their records is kept, so a record superseding earlier ones (a "moved" record,
//!   a stream written whole, a later run's marker) outlives them and a restart never replays them
//!   alone; a new segment takes the running streams' records along, so a quiet running stream
//!   holds no old segment. An attempt still running is never removed, so the worker refuses to
//!   start unless the total leaves room for every slot.
//!
//! Kept output is best effort: never fsynced (the result recorded through Raft is the durable
//! record), and a write error stops keeping that stream (logged once). A worker that restarts
//! finds its earlier files and segments and serves them as ended: no attempt outlives its worker
//! process. Every write reaches the file system before readers see it, so a killed worker loses
//! nothing it served (a machine crash can lose what the kernel had not written back).

mod packed;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use packed::{Record, RECORD_BYTES_MAX};

/// Bytes of one stream of one attempt kept at most (`worker --output-attempt-bytes-max`).
pub const OUTPUT_ATTEMPT_BYTES_MAX_DEFAULT: u64 = 64 << 20;
/// Bytes of all kept output at most (`worker --output-bytes-max`).
pub const OUTPUT_BYTES_MAX_DEFAULT: u64 = 1 << 30;
/// Attempts whose output is kept at most, whatever their size (bounds the files and the index).
pub const OUTPUT_ATTEMPTS_KEPT_MAX: usize = 100_000;
/// Bytes in one chunk served.
pub const OUTPUT_CHUNK_BYTES_MAX: usize = 64 << 10;
/// Bytes of a stream kept in segments (and in memory while its attempt runs), at most: past it
/// the stream moves to a file of its own. Half the result's tail, so both streams of an attempt
/// under it are whole in the tail that Raft records.
pub const OUTPUT_INLINE_BYTES_MAX: usize = raftsched_state::limits::OUTPUT_TAIL_BYTES_MAX / 2;
/// Bytes of one segment at most (less when the total is small: see `segment_bytes_max`).
pub const OUTPUT_SEGMENT_BYTES_MAX: u64 = 4 << 20;
/// The highest segment number read back (far above what a worker writes in its life).
const SEGMENT_NUMBER_MAX: u64 = u32::MAX as u64;

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
    fn bytes_mut(&mut self, stderr: bool) -> &mut u64 {
        if stderr {
            &mut self.stderr_bytes
        } else {
            &mut self.stdout_bytes
        }
    }
}

/// Where one record of a segment keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Extent {
    segment: u64,
    offset: u64,
    len: u64,
}

/// Where one stream's kept bytes are.
#[derive(Debug)]
enum Kept {
    /// Small so far, its attempt running: in memory, and in `records` (one per write, in order)
    /// so that a worker that dies keeps it.
    Inline { buf: Vec<u8>, records: Vec<Extent> },
    /// In the stream's own file, open while the attempt runs in this process.
    Own { file: Option<Arc<File>>, len: u64 },
    /// Ended small: the records that hold it, in order (one, unless its worker died while it ran;
    /// none when it has no byte).
    Packed { records: Vec<Extent>, len: u64 },
}

impl Kept {
    fn len(&self) -> u64 {
        match self {
            Kept::Inline { buf, .. } => buf.len() as u64,
            Kept::Own { len, .. } | Kept::Packed { len, .. } => *len,
        }
    }

    fn records(&self) -> &[Extent] {
        match self {
            Kept::Inline { records, .. } | Kept::Packed { records, .. } => records,
            Kept::Own { .. } => &[],
        }
    }

    /// The records of a stream kept in segments (an own file has none).
    fn records_mut(&mut self) -> &mut Vec<Extent> {
        match self {
            Kept::Inline { records, .. } | Kept::Packed { records, .. } => records,
            Kept::Own { .. } => unreachable!("only a stream kept in segments is rewritten"),
        }
    }
}

struct Entry {
    /// Order of creation: the smallest is removed first.
    seq: u64,
    /// stdout, then stderr.
    streams: [Kept; 2],
    /// Set while the attempt runs in this process.
    live: Option<watch::Receiver<Progress>>,
}

impl Entry {
    fn new(live: Option<watch::Receiver<Progress>>) -> Entry {
        let empty = || Kept::Inline { buf: Vec::new(), records: Vec::new() };
        Entry { seq: 0, streams: [empty(), empty()], live }
    }
}

/// The segments' files: how many records each still has kept, and its bytes on disk.
#[derive(Default)]
struct Segments {
    files: BTreeMap<u64, SegmentFile>,
    /// The newest segment, open for appending (none yet in this process, or just closed).
    open: Option<(u64, File)>,
    next: u64,
}

struct SegmentFile {
    records: usize,
    bytes: u64,
}

#[derive(Default)]
struct Index {
    entries: HashMap<AttemptKey, Entry>,
    by_age: BTreeMap<u64, AttemptKey>,
    /// Bytes of the own files and segments on disk.
    disk_bytes: u64,
    next_seq: u64,
    segments: Segments,
    /// The attempts running in this process (their entries have `live`).
    running: HashSet<AttemptKey>,
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

/// What an earlier process left of one attempt.
#[derive(Default)]
struct Found {
    streams: [Option<Kept>; 2],
    modified: Option<SystemTime>,
}

impl Found {
    /// Replays one record: at offset 0 it starts the stream over, at the stream's length it
    /// extends it, and a move clears it; any other piece does not follow what is kept (a lost
    /// write) and is left out. An own file holds the whole stream: records of it are left out.
    fn replay(&mut self, record: &Record<'_>, at: Extent, modified: SystemTime) {
        let offset = u64::from(record.offset);
        let stream = &mut self.streams[usize::from(record.stderr)];
        match stream {
            Some(Kept::Own { .. }) => return,
            _ if record.moved => *stream = None,
            _ if offset == 0 => *stream = Some(Kept::Packed { records: vec![at], len: at.len }),
            Some(Kept::Packed { records, len }) if offset == *len => {
                records.push(at);
                *len += at.len;
            }
            _ => return,
        }
        self.modified = self.modified.max(Some(modified));
    }
}

impl OutputStore {
    /// Opens `config.dir` (created, mode 0700), indexing what an earlier process left, oldest
    /// first, and removing what exceeds the bounds.
    pub fn open(config: OutputConfig) -> std::io::Result<Arc<OutputStore>> {
        std::fs::create_dir_all(&config.dir)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config.dir, std::fs::Permissions::from_mode(0o700))?;
        let mut found: HashMap<AttemptKey, Found> = HashMap::new();
        let mut segments = Vec::new();
        for entry in std::fs::read_dir(&config.dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let meta = entry.metadata()?;
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            // Only names this build writes: `07-1.stdout` or `packed-+7.out` would alias another.
            if let Some((key, stderr)) = AttemptKey::parse(&name).filter(|(k, e)| k.file_name(*e) == name) {
                let slot = found.entry(key).or_default();
                slot.streams[usize::from(stderr)] = Some(Kept::Own { file: None, len: meta.len() });
                slot.modified = slot.modified.max(Some(modified));
            } else if let Some(n) = packed::parse_segment_name(&name).filter(|n| packed::segment_name(*n) == name) {
                // A number near the top would leave no room for new segments: not one of ours.
                if n <= SEGMENT_NUMBER_MAX {
                    segments.push((n, meta.len(), modified));
                }
            }
        }
        let store = OutputStore { config, index: Mutex::default() };
        let mut index = store.lock();
        segments.sort_unstable();
        for (n, bytes, modified) in segments {
            index.segments.next = n + 1; // past every name there, read or not
            if let Err(e) = store.read_segment(n, modified, &mut found) {
                tracing::warn!(segment = n, error = %e, "kept output: a segment that cannot be read is left alone");
                continue;
            }
            index.segments.files.insert(n, SegmentFile { records: 0, bytes });
            index.disk_bytes += bytes;
        }
        let mut found: Vec<_> = found.into_iter().collect();
        found.sort_by_key(|(key, f)| (f.modified, *key));
        for (key, f) in found {
            if f.streams.iter().all(Option::is_none) {
                continue; // only pieces that follow nothing, or moves: nothing kept
            }
            let mut entry = Entry::new(None);
            for (kept, stream) in entry.streams.iter_mut().zip(f.streams) {
                *kept = stream.unwrap_or(Kept::Packed { records: Vec::new(), len: 0 });
                index.count(kept);
            }
            index.insert(key, entry);
        }
        store.release(&mut index, &[]); // the oldest segments that keep nothing
        store.trim(&mut index);
        drop(index);
        Ok(Arc::new(store))
    }

    /// Replays segment `n`'s records into `found`. Reads at most a segment's bound: past a torn
    /// or damaged record nothing more of it is kept.
    fn read_segment(
        &self,
        n: u64,
        modified: SystemTime,
        found: &mut HashMap<AttemptKey, Found>,
    ) -> std::io::Result<()> {
        use std::io::Read;
        let path = self.config.dir.join(packed::segment_name(n));
        let mut bytes = Vec::new();
        File::open(&path)?.take(OUTPUT_SEGMENT_BYTES_MAX + RECORD_BYTES_MAX as u64).read_to_end(&mut bytes)?;
        let (records, stop) = packed::scan(&bytes);
        if let Some((at, error)) = stop {
            tracing::warn!(segment = %path.display(), at, %error, "kept output: the rest of this segment is not read");
        }
        for (offset, record) in records {
            let extent = Extent { segment: n, offset, len: record.data.len() as u64 };
            found.entry(record.key).or_default().replay(&record, extent, modified);
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts keeping the output of `key`. A second run of the same attempt starts it over, and
    /// marks both streams moved so a restart does not replay the first run's records as its own.
    pub fn begin(self: &Arc<Self>, key: AttemptKey) -> AttemptOutput {
        let (progress, rx) = watch::channel(Progress::default());
        let mut index = self.lock();
        if self.forget(&mut index, key) {
            // So that a restart does not replay the earlier run's records as this one's.
            let moved = self.pack(&mut index, &[Record::moved(key, false), Record::moved(key, true)]);
            moved.map(|extents| self.release(&mut index, &extents)).unwrap_or_else(|e| {
                tracing::warn!(?key, error = %e, "cannot mark an earlier run's output replaced");
            });
        }
        let seq = index.insert(key, Entry::new(Some(rx)));
        index.running.insert(key);
        self.trim(&mut index);
        drop(index);
        AttemptOutput { store: self.clone(), key, seq, progress: Arc::new(progress), stopped: Default::default() }
    }

    fn path(&self, key: AttemptKey, stderr: bool) -> PathBuf {
        self.config.dir.join(key.file_name(stderr))
    }

    /// Removes `key`'s entry, its own files and its records (a segment's file once it keeps none);
    /// whether there was one.
    fn forget(&self, index: &mut Index, key: AttemptKey) -> bool {
        let Some(entry) = index.remove(key) else { return false };
        index.running.remove(&key);
        for (stderr, kept) in [false, true].into_iter().zip(&entry.streams) {
            if let Kept::Own { len, .. } = kept {
                let _ = std::fs::remove_file(self.path(key, stderr));
                index.disk_bytes -= len;
            }
            self.release(index, kept.records());
        }
        true
    }

    /// `records` are no longer kept. Segments go oldest first, once none of their records is
    /// kept: so a later record that supersedes earlier ones (a move, a whole stream, a later run)
    /// is on disk for as long as they are, and a restart never replays them alone.
    fn release(&self, index: &mut Index, records: &[Extent]) {
        for record in records {
            let file = index.segments.files.get_mut(&record.segment).expect("a kept record's segment is indexed");
            file.records -= 1;
        }
        while let Some((&n, file)) = index.segments.files.first_key_value() {
            if file.records > 0 {
                break;
            }
            self.remove_segment(index, n);
        }
    }

    fn remove_segment(&self, index: &mut Index, n: u64) {
        if let Some(file) = index.segments.files.remove(&n) {
            index.disk_bytes -= file.bytes;
            if index.segments.open.as_ref().is_some_and(|(open, _)| *open == n) {
                index.segments.open = None;
            }
            let _ = std::fs::remove_file(self.config.dir.join(packed::segment_name(n)));
        }
    }

    /// A segment's bound: at most a sixteenth of the total, since a segment's bytes are freed only
    /// when none of its records (nor an older segment's) is kept: trimming frees whole segments.
    fn segment_bytes_max(&self) -> u64 {
        (self.config.total_bytes_max / 16).min(OUTPUT_SEGMENT_BYTES_MAX)
    }

    /// Appends `records` (at least one) to the newest segment in one write, or to a new one when
    /// it would pass its bound; where each record's data is, counted as kept.
    fn pack(&self, index: &mut Index, records: &[Record<'_>]) -> std::io::Result<Vec<Extent>> {
        self.make_room(index, records.iter().map(|r| r.data.len()))?;
        self.write_records(index, records)
    }

    /// Packs `data` as the next piece of a running small stream.
    fn pack_piece(
        &self,
        index: &mut Index,
        key: AttemptKey,
        seq: u64,
        stderr: bool,
        data: &[u8],
    ) -> std::io::Result<Extent> {
        self.make_room(index, [data.len()])?;
        // After `make_room`: a roll moves this stream's earlier records, not its length.
        let at = index.stream(key, seq, stderr).len() as u32;
        Ok(self.write_records(index, &[Record::bytes(key, stderr, at, data)])?[0])
    }

    /// Rolls to a new segment unless the open one has room for records of these data lengths.
    fn make_room(&self, index: &mut Index, data_lens: impl IntoIterator<Item = usize>) -> std::io::Result<()> {
        let len: u64 = data_lens.into_iter().map(|n| (packed::RECORD_HEADER_LEN + n) as u64).sum();
        let fits = |n: &u64| index.segments.files[n].bytes + len <= self.segment_bytes_max();
        if index.segments.open.as_ref().is_some_and(|(n, _)| fits(n)) {
            return Ok(());
        }
        self.roll(index)
    }

    /// Starts a new segment, and moves every running stream's records there (each whole, under
    /// 2 KiB), so an older segment never waits on an attempt that runs on.
    fn roll(&self, index: &mut Index) -> std::io::Result<()> {
        let n = index.segments.next;
        index.segments.next = n + 1; // a name that fails is not tried again
        let file = File::options().append(true).create_new(true).open(self.config.dir.join(packed::segment_name(n)))?;
        index.segments.files.insert(n, SegmentFile { records: 0, bytes: 0 });
        index.segments.open = Some((n, file));
        let mut moving = Vec::new();
        for key in &index.running {
            let entry = &index.entries[key];
            for (stderr, kept) in [false, true].into_iter().zip(&entry.streams) {
                if let Kept::Inline { buf, records } = kept {
                    if !records.is_empty() {
                        moving.push((*key, entry.seq, stderr, buf.clone()));
                    }
                }
            }
        }
        self.rewrite_whole(index, &moving)
    }

    /// Writes each small stream (attempt, run, stderr, its bytes) again whole, as one record in
    /// the open segment, in place of its records.
    fn rewrite_whole(&self, index: &mut Index, streams: &[(AttemptKey, u64, bool, Vec<u8>)]) -> std::io::Result<()> {
        if streams.is_empty() {
            return Ok(());
        }
        let whole: Vec<Record<'_>> =
            streams.iter().map(|(key, _, stderr, buf)| Record::bytes(*key, *stderr, 0, buf)).collect();
        let extents = self.write_records(index, &whole)?;
        for ((key, seq, stderr, _), extent) in streams.iter().zip(extents) {
            let was = std::mem::replace(index.stream(*key, *seq, *stderr).records_mut(), vec![extent]);
            self.release(index, &was);
        }
        Ok(())
    }

    /// Writes `records` to the open segment in one write, counted as kept.
    fn write_records(&self, index: &mut Index, records: &[Record<'_>]) -> std::io::Result<Vec<Extent>> {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for record in records {
            packed::encode(&mut bytes, record);
            starts.push(((bytes.len() - record.data.len()) as u64, record.data.len() as u64));
        }
        let (segment, file) = index.segments.open.as_mut().expect("the caller opened one");
        let segment = *segment;
        if let Err(e) = std::io::Write::write_all(file, &bytes) {
            // Part of it may be there: later records go to a new segment, not after the torn one.
            index.segments.open = None;
            return Err(e);
        }
        let file = index.segments.files.get_mut(&segment).expect("the open segment is indexed");
        let base = file.bytes;
        file.bytes += bytes.len() as u64;
        file.records += records.len();
        index.disk_bytes += bytes.len() as u64;
        Ok(starts.into_iter().map(|(start, len)| Extent { segment, offset: base + start, len }).collect())
    }

    /// Removes the oldest ended attempts until the bounds hold (running ones are never removed).
    fn trim(&self, index: &mut Index) {
        while index.disk_bytes > self.config.total_bytes_max || index.entries.len() > OUTPUT_ATTEMPTS_KEPT_MAX {
            let oldest_ended = index.by_age.values().find(|key| index.entries[*key].live.is_none()).copied();
            let Some(key) = oldest_ended else { break };
            self.forget(index, key);
        }
    }

    /// A reader of `key`'s `stderr` or stdout. NOT_FOUND-like errors say why there is none.
    pub fn reader(self: &Arc<Self>, key: AttemptKey, stderr: bool) -> Result<OutputReader, String> {
        let index = self.lock();
        let Some(entry) = index.entries.get(&key) else {
            return Err(format!(
                "no output kept for task {} attempt {} on this worker (never run here, or removed to stay under output_bytes_max)",
                key.task_id, key.attempt
            ));
        };
        Ok(OutputReader { store: self.clone(), key, seq: entry.seq, stderr, live: entry.live.clone(), opened: None })
    }
}

impl Index {
    /// Adds `entry` for `key` as the newest (its `seq` is set here and returned).
    fn insert(&mut self, key: AttemptKey, mut entry: Entry) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        entry.seq = seq;
        self.by_age.insert(seq, key);
        self.entries.insert(key, entry);
        seq
    }

    /// The entry of `key` if it is still the one created as `seq` (a later run of the same
    /// attempt replaces it).
    fn current(&mut self, key: AttemptKey, seq: u64) -> Option<&mut Entry> {
        self.entries.get_mut(&key).filter(|e| e.seq == seq)
    }

    /// Counts what `kept` holds on disk (an entry found on disk).
    fn count(&mut self, kept: &Kept) {
        if let Kept::Own { len, .. } = kept {
            self.disk_bytes += len;
        }
        for record in kept.records() {
            self.segments.files.get_mut(&record.segment).expect("replayed from it").records += 1;
        }
    }

    /// The stream of a running attempt, which the caller knows is there.
    fn stream(&mut self, key: AttemptKey, seq: u64, stderr: bool) -> &mut Kept {
        &mut self.current(key, seq).expect("held under the lock").streams[usize::from(stderr)]
    }

    fn remove(&mut self, key: AttemptKey) -> Option<Entry> {
        let entry = self.entries.remove(&key)?;
        self.by_age.remove(&entry.seq);
        Some(entry)
    }
}

/// The output of one running attempt, being written. Dropping it marks the attempt ended.
pub struct AttemptOutput {
    store: Arc<OutputStore>,
    key: AttemptKey,
    seq: u64,
    progress: Arc<watch::Sender<Progress>>,
    /// Per stream: no more of it is kept (a write failed).
    stopped: [std::sync::atomic::AtomicBool; 2],
}

/// Where a write goes, decided under the index's lock.
enum Sink {
    /// Kept (in memory and a segment's record), or not to be kept: done.
    Done,
    /// To the stream's own file at this offset, outside the lock.
    File(Arc<File>, u64),
}

impl AttemptOutput {
    /// Appends `data` to the stream, up to `attempt_bytes_max` (the rest is dropped: cut).
    pub fn write(&self, stderr: bool, data: &[u8]) {
        use std::sync::atomic::Ordering;
        let s = usize::from(stderr);
        if data.is_empty() || self.stopped[s].load(Ordering::Relaxed) {
            return;
        }
        let outcome = {
            let mut index = self.store.lock();
            let Some(entry) = index.current(self.key, self.seq) else { return };
            let kept = &mut entry.streams[s];
            let room = self.store.config.attempt_bytes_max.saturating_sub(kept.len());
            let data = &data[..data.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
            if data.is_empty() {
                return;
            }
            self.store.append(&mut index, self.key, self.seq, stderr, data).map(|sink| (sink, data.len()))
        };
        let written = outcome.and_then(|(sink, n)| match sink {
            Sink::Done => Ok(n),
            Sink::File(file, at) => file.write_all_at(&data[..n], at).map(|()| {
                let mut index = self.store.lock();
                if let Some(Kept::Own { len, .. }) = index.current(self.key, self.seq).map(|e| &mut e.streams[s]) {
                    *len += n as u64;
                    index.disk_bytes += n as u64;
                }
                self.store.trim(&mut index);
                n
            }),
        });
        match written {
            Ok(n) => self.progress.send_modify(|p| *p.bytes_mut(stderr) += n as u64),
            Err(e) => {
                tracing::warn!(key = ?self.key, stderr, error = %e, "cannot keep more of this attempt's output");
                self.stopped[s].store(true, Ordering::Relaxed);
            }
        }
    }
}

impl OutputStore {
    /// Takes `data` into a running stream: in memory and a record while it stays small, else to
    /// its own file (created here with what memory held, under the lock, so a reader never sees it
    /// half-made; the caller writes `data` there).
    fn append(&self, index: &mut Index, key: AttemptKey, seq: u64, stderr: bool, data: &[u8]) -> std::io::Result<Sink> {
        match index.stream(key, seq, stderr) {
            Kept::Own { file: Some(file), len } => return Ok(Sink::File(file.clone(), *len)),
            Kept::Own { file: None, .. } | Kept::Packed { .. } => return Ok(Sink::Done),
            Kept::Inline { buf, .. } if buf.len() + data.len() > OUTPUT_INLINE_BYTES_MAX => {
                return self.spill(index, key, seq, stderr);
            }
            Kept::Inline { .. } => {}
        }
        let extent = self.pack_piece(index, key, seq, stderr, data)?;
        let Kept::Inline { buf, records } = index.stream(key, seq, stderr) else { unreachable!("matched above") };
        buf.extend_from_slice(data);
        records.push(extent);
        self.trim(index);
        Ok(Sink::Done)
    }

    /// Moves a stream grown past memory's bound to a file of its own, then records the move, so a
    /// restart never replays its records once the file is gone (an error undoes the file).
    fn spill(&self, index: &mut Index, key: AttemptKey, seq: u64, stderr: bool) -> std::io::Result<Sink> {
        let Kept::Inline { buf, .. } = index.stream(key, seq, stderr) else {
            unreachable!("only a small stream spills")
        };
        let buf = buf.clone();
        let path = self.path(key, stderr);
        let file = File::options().read(true).write(true).create(true).truncate(true).open(&path)?;
        let moved = file.write_all_at(&buf, 0).and_then(|()| self.pack(index, &[Record::moved(key, stderr)]));
        let moved = match moved {
            Ok(extents) => extents,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        // The move is not a byte of the stream: nothing keeps its record.
        self.release(index, &moved);
        let (file, at) = (Arc::new(file), buf.len() as u64);
        let was = std::mem::replace(index.stream(key, seq, stderr), Kept::Own { file: Some(file.clone()), len: at });
        index.disk_bytes += at;
        self.release(index, was.records());
        Ok(Sink::File(file, at))
    }

    /// The attempt `key` (run `seq`) ended: a small stream written in pieces is packed again
    /// whole (both streams in one write), and its own files are closed.
    fn end(&self, key: AttemptKey, seq: u64) {
        let mut index = self.lock();
        let Some(entry) = index.current(key, seq) else { return };
        entry.live = None;
        let mut pieces = Vec::new();
        for (stderr, kept) in [false, true].into_iter().zip(entry.streams.iter_mut()) {
            match kept {
                Kept::Inline { buf, records } => {
                    let (buf, records) = (std::mem::take(buf), std::mem::take(records));
                    *kept = Kept::Packed { len: buf.len() as u64, records };
                    if kept.records().len() > 1 {
                        pieces.push((key, seq, stderr, buf));
                    }
                }
                Kept::Own { file, .. } => *file = None,
                Kept::Packed { .. } => {}
            }
        }
        index.running.remove(&key);
        let lens = pieces.iter().map(|(_, _, _, buf)| buf.len());
        let packed = self.make_room(&mut index, lens).and_then(|()| self.rewrite_whole(&mut index, &pieces));
        if let Err(e) = packed {
            // Still whole, in its pieces.
            tracing::warn!(?key, error = %e, "cannot pack this attempt's output whole");
        }
        self.trim(&mut index);
    }
}

impl Drop for AttemptOutput {
    fn drop(&mut self) {
        self.store.end(self.key, self.seq);
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

/// Where a reader reads from now.
enum Source {
    /// What it copied from memory.
    Memory(Vec<u8>),
    /// The stream's own file (open, or by its path).
    Own { file: Option<Arc<File>>, path: PathBuf },
    /// Records, in order: a small stream, read whole.
    Pieces(Vec<Extent>),
}

/// Reads one kept stream from any offset, waiting for more while the attempt runs.
pub struct OutputReader {
    store: Arc<OutputStore>,
    key: AttemptKey,
    seq: u64,
    stderr: bool,
    live: Option<watch::Receiver<Progress>>,
    /// The last file opened by path, kept while the stream stays there.
    opened: Option<(PathBuf, Arc<File>)>,
}

impl OutputReader {
    /// The next chunk at `offset`: what is there now (at most `OUTPUT_CHUNK_BYTES_MAX`), or, when
    /// nothing is and `follow` is set and the attempt runs, what comes next. An empty chunk that
    /// has not `ended` means: nothing more now (without `follow`).
    pub async fn next(&mut self, offset: u64, follow: bool) -> std::io::Result<Chunk> {
        loop {
            let progress = self.live.as_mut().map(|rx| *rx.borrow_and_update());
            let ended = progress.is_none_or(|p| p.ended);
            let (data, len) = self.read_at(offset)?;
            let at_end = offset.saturating_add(data.len() as u64) >= len;
            if !data.is_empty() || ended || !follow {
                let cut = len >= self.store.config.attempt_bytes_max;
                return Ok(Chunk { data, ended: ended && at_end, cut: cut && at_end });
            }
            let changed = self.live.as_mut().expect("live while not ended").changed().await;
            if changed.is_err() {
                // The writer is gone: the attempt has ended.
                self.live = None;
            }
        }
    }

    /// Up to a chunk from `offset`, and the stream's length now.
    fn read_at(&mut self, offset: u64) -> std::io::Result<(Vec<u8>, u64)> {
        let (source, len) = self.locate(offset)?;
        let want = len.saturating_sub(offset).min(OUTPUT_CHUNK_BYTES_MAX as u64) as usize;
        let (file, path) = match source {
            Source::Memory(data) => return Ok((data, len)),
            _ if want == 0 => return Ok((Vec::new(), len)),
            Source::Pieces(records) => return Ok((self.read_pieces(&records, offset, want)?, len)),
            Source::Own { file, path } => (file, path),
        };
        let file = match file {
            Some(file) => file,
            None => self.open(path)?,
        };
        let mut data = vec![0; want];
        let mut filled = 0;
        while filled < want {
            match file.read_at(&mut data[filled..], offset + filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        data.truncate(filled);
        Ok((data, len))
    }

    /// `want` bytes from `offset` of a stream kept in `records` (under 2 KiB in all).
    fn read_pieces(&mut self, records: &[Extent], offset: u64, want: usize) -> std::io::Result<Vec<u8>> {
        let mut whole = Vec::new();
        for record in records {
            let file = self.open(self.store.config.dir.join(packed::segment_name(record.segment)))?;
            let start = whole.len();
            whole.resize(start + record.len as usize, 0);
            file.read_exact_at(&mut whole[start..], record.offset)?;
        }
        Ok(whole.into_iter().skip(offset as usize).take(want).collect())
    }

    /// Where the stream is now (it moves from memory to a file or a segment), under the lock.
    fn locate(&self, offset: u64) -> std::io::Result<(Source, u64)> {
        let mut index = self.store.lock();
        let Some(entry) = index.current(self.key, self.seq) else { return Err(removed_while_read()) };
        let kept = &entry.streams[usize::from(self.stderr)];
        let source = match kept {
            Kept::Inline { buf, .. } => {
                let from = usize::try_from(offset).unwrap_or(usize::MAX).min(buf.len());
                Source::Memory(buf[from..].iter().take(OUTPUT_CHUNK_BYTES_MAX).copied().collect())
            }
            Kept::Own { file, .. } => Source::Own { file: file.clone(), path: self.store.path(self.key, self.stderr) },
            Kept::Packed { records, .. } => Source::Pieces(records.clone()),
        };
        Ok((source, kept.len()))
    }

    /// Opens `path` (outside the lock), then checks the attempt's run is still the one read: a
    /// later run removes the entry before it removes or makes the file again, so the file opened
    /// is this run's.
    fn open(&mut self, path: PathBuf) -> std::io::Result<Arc<File>> {
        if let Some((opened, file)) = &self.opened {
            if *opened == path {
                return Ok(file.clone());
            }
        }
        let file = Arc::new(File::open(&path)?);
        if self.store.lock().current(self.key, self.seq).is_none() {
            return Err(removed_while_read());
        }
        self.opened = Some((path, file.clone()));
        Ok(file)
    }
}

fn removed_while_read() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "removed while being read, to stay under output_bytes_max (or run again)",
    )
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

    async fn read_all(store: &Arc<OutputStore>, k: AttemptKey, stderr: bool) -> (Vec<u8>, Chunk) {
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

    /// More than memory holds: the stream gets a file of its own.
    const BIG: usize = OUTPUT_INLINE_BYTES_MAX + 1;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn the_oldest_ended_attempts_go_first_and_running_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let total = 4 * BIG as u64 + 512; // room for four big streams and the empty ones' records
        let s = store(dir.path(), 10_000, total);
        let running = s.begin(key(1, 1));
        running.write(false, &[b'a'; BIG]);
        for task in 2..=4 {
            let out = s.begin(key(task, 1));
            out.write(false, &[b'b'; BIG]);
        }
        // 4 big streams fill the total; a fifth removes the oldest ended (task 2), not task 1.
        s.begin(key(5, 1)).write(false, &[b'c'; BIG]);
        assert!(s.reader(key(2, 1), false).err().unwrap().contains("removed"));
        assert!(s.reader(key(1, 1), false).is_ok() && s.reader(key(5, 1), false).is_ok());
        let own: Vec<String> = files(dir.path()).into_iter().filter(|f| !f.starts_with("packed-")).collect();
        assert_eq!(own, ["1-1.stdout", "3-1.stdout", "4-1.stdout", "5-1.stdout"]);
        assert!(s.lock().disk_bytes <= total);
        // Small ended streams share segments, removed once none of their records is kept.
        for task in 6..=40 {
            s.begin(key(task, 1)).write(true, b"small");
        }
        let index = s.lock();
        assert!(index.disk_bytes <= total, "{}", index.disk_bytes);
        let live_records: usize = index.segments.files.values().map(|f| f.records).sum();
        let kept: usize = index.entries.values().flat_map(|e| &e.streams).map(|k| k.records().len()).sum();
        assert_eq!(live_records, kept);
        assert!(index.entries.contains_key(&key(40, 1)) && index.entries.contains_key(&key(1, 1)));
    }

    #[tokio::test]
    async fn a_restarted_worker_serves_what_it_kept_as_ended() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = store(dir.path(), 10_000, 100_000);
            s.begin(key(2, 1)).write(false, b"small, ended\n");
            let out = s.begin(key(3, 1));
            out.write(false, &[b'x'; BIG]);
            std::mem::forget(out); // the process dies: nothing marks the attempt ended
            let small = s.begin(key(4, 1));
            small.write(false, b"small, ");
            small.write(false, b"running");
            std::mem::forget(small);
        }
        std::fs::write(dir.path().join("not-ours.txt"), b"x").unwrap();
        let s = store(dir.path(), 10_000, 100_000);
        let (data, chunk) = read_all(&s, key(3, 1), false).await;
        assert_eq!(data, [b'x'; BIG]);
        assert!(chunk.ended);
        let (data, chunk) = read_all(&s, key(2, 1), false).await;
        assert_eq!(data, b"small, ended\n");
        assert!(chunk.ended);
        assert!(read_all(&s, key(2, 1), true).await.0.is_empty());
        let (data, chunk) = read_all(&s, key(4, 1), false).await;
        assert_eq!((data.as_slice(), chunk.ended), (&b"small, running"[..], true), "its pieces, ended");
        let mut reader = s.reader(key(3, 1), false).unwrap();
        let far = reader.next(u64::MAX, true).await.unwrap();
        assert!(far.data.is_empty() && far.ended, "an offset past the end ends at once");
    }

    #[tokio::test]
    async fn a_stream_moves_from_memory_to_its_file_or_a_segment_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 100_000, 1_000_000);
        let out = s.begin(key(5, 1));
        let mut reader = s.reader(key(5, 1), false).unwrap();
        assert_eq!(reader.next(0, false).await.unwrap(), Chunk::default(), "running, nothing yet");
        let follower = tokio::spawn(async move { reader.next(0, true).await.unwrap() });
        tokio::task::yield_now().await;
        out.write(false, b"first");
        assert_eq!(follower.await.unwrap().data, b"first", "a follower wakes on a write to memory");
        let mut reader = s.reader(key(5, 1), false).unwrap();
        out.write(false, &[b'-'; OUTPUT_INLINE_BYTES_MAX]);
        assert!(dir.path().join("5-1.stdout").exists(), "past memory's bound: its own file");
        assert_eq!(reader.next(0, false).await.unwrap().data.len(), 5 + OUTPUT_INLINE_BYTES_MAX);
        out.write(true, b"e");
        out.write(true, b"rr");
        drop(out);
        assert!(!dir.path().join("5-1.stderr").exists(), "a small stream has no file");
        {
            let index = s.lock();
            let Kept::Packed { records, len: 3 } = &index.entries[&key(5, 1)].streams[1] else { panic!("packed") };
            assert_eq!(records.len(), 1, "its two pieces packed again whole");
            assert_eq!(index.segments.files.values().map(|f| f.records).sum::<usize>(), 1);
        }
        assert_eq!(read_all(&s, key(5, 1), true).await.0, b"err", "read from its segment");
        assert_eq!(read_all(&s, key(5, 1), false).await.0.len(), 5 + OUTPUT_INLINE_BYTES_MAX);

        // A second run of the same attempt starts over: the first run's file goes with it, and
        // its empty stdout replaces the first run's on a restart.
        let again = s.begin(key(5, 1));
        assert!(!dir.path().join("5-1.stdout").exists());
        again.write(true, b"second");
        drop(again);
        let restarted = store(dir.path(), 100_000, 1_000_000);
        let (stdout, chunk) = read_all(&restarted, key(5, 1), false).await;
        assert!(stdout.is_empty() && chunk.ended);
        assert_eq!(read_all(&restarted, key(5, 1), true).await.0, b"second");
    }

    #[tokio::test]
    async fn a_torn_or_damaged_segment_keeps_what_came_before_the_damage() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = store(dir.path(), 10_000, 100_000);
            for task in 1..=3 {
                s.begin(key(task, 1)).write(false, format!("task {task}\n").as_bytes());
            }
        }
        let segment = dir.path().join(packed::segment_name(0));
        let mut bytes = std::fs::read(&segment).unwrap();
        let record = bytes.len() / 3;
        bytes[record + packed::RECORD_HEADER_LEN] ^= 1; // task 2's data: its checksum fails
        bytes.truncate(bytes.len() - 1); // and task 3's record is torn
        std::fs::write(&segment, &bytes).unwrap();
        {
            let s = store(dir.path(), 10_000, 100_000);
            assert_eq!(read_all(&s, key(1, 1), false).await.0, b"task 1\n");
            assert!(s.reader(key(2, 1), false).is_err() && s.reader(key(3, 1), false).is_err());
            s.begin(key(4, 1)).write(false, b"after the damage\n");
        }
        let s = store(dir.path(), 10_000, 100_000);
        assert_eq!(read_all(&s, key(4, 1), false).await.0, b"after the damage\n", "in a new segment");
        assert_eq!(read_all(&s, key(1, 1), false).await.0, b"task 1\n");
    }

    #[tokio::test]
    async fn a_quiet_running_stream_holds_no_old_segment_and_a_moved_stream_never_comes_back_cut() {
        let dir = tempfile::tempdir().unwrap();
        // Segments of 16 KiB at most (a sixteenth of the total).
        let s = store(dir.path(), 100_000, 256 << 10);
        let quiet = s.begin(key(1, 1));
        quiet.write(false, b"one line, then a long silence\n");
        let moving = s.begin(key(2, 1));
        moving.write(false, &[b'a'; 1000]);
        for task in 10..200 {
            s.begin(key(task, 1)).write(false, &[b'x'; 500]);
        }
        {
            let index = s.lock();
            assert!(index.segments.files.len() < 20, "old segments went: {}", index.segments.files.len());
            let open = index.segments.open.as_ref().map(|(n, _)| *n);
            let streams = [&index.entries[&key(1, 1)].streams[0], &index.entries[&key(2, 1)].streams[0]];
            for kept in streams {
                assert!(kept.records().iter().all(|r| Some(r.segment) == open), "moved along: {kept:?}");
            }
        }
        assert_eq!(read_all(&s, key(1, 1), false).await.0, b"one line, then a long silence\n");
        // Task 2 grows past memory's bound: its own file; then a second run replaces it.
        moving.write(false, &[b'b'; 1000]);
        moving.write(false, &[b'c'; 100]);
        assert!(dir.path().join("2-1.stdout").exists());
        drop(moving);
        drop(s.begin(key(2, 1)));
        drop((quiet, s));
        let restarted = store(dir.path(), 100_000, 256 << 10);
        if let Ok(mut reader) = restarted.reader(key(2, 1), false) {
            let chunk = reader.next(0, false).await.unwrap();
            assert!(chunk.data.is_empty(), "the first run's pieces never come back as the stream");
        }
        assert_eq!(read_all(&restarted, key(1, 1), false).await.0, b"one line, then a long silence\n");
    }

    #[tokio::test]
    async fn names_it_did_not_write_and_unreadable_segments_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = store(dir.path(), 100_000, 1_000_000);
            s.begin(key(1, 1)).write(false, b"kept");
        }
        std::fs::copy(dir.path().join("packed-0.out"), dir.path().join("packed-00.out")).unwrap();
        std::fs::write(dir.path().join("01-1.stdout"), b"an alias").unwrap();
        std::fs::create_dir(dir.path().join("packed-7.out")).unwrap();
        std::fs::write(dir.path().join(format!("packed-{}.out", u64::MAX)), b"x").unwrap();
        let s = store(dir.path(), 100_000, 1_000_000);
        assert_eq!(read_all(&s, key(1, 1), false).await.0, b"kept");
        assert_eq!(s.lock().disk_bytes, std::fs::metadata(dir.path().join("packed-0.out")).unwrap().len());
        s.begin(key(2, 1)).write(false, b"new");
        assert!(dir.path().join("packed-8.out").exists(), "numbering goes on past every name there");
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
