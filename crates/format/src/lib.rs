//! The byte layer of raftsched: the only code that knows how anything a replica writes to disk or
//! sends to another replica is laid out.
//!
//! Code map:
//! - `envelope.rs`: the 16-byte header (magic, version, kind, length, checksum) of every
//!   format-1+ record, and the order it is checked in.
//! - `codec.rs`: the payload encoding (bincode 1, fixed-width, always byte-limited).
//! - `records.rs`: the record types, which the state crate's and openraft's types convert to and
//!   from; none can contain itself.
//! - this file: record kinds and their limits, versions, and the typed encode/decode functions the
//!   store and the server call.
//!
//! Architecture invariants:
//! - Every decoder takes untrusted bytes and returns a value or a `FormatError`: it never panics,
//!   never recurses deeper than the record types allow (two levels of batch), and never allocates
//!   more than a small multiple of the input's length. `tests/hostile.rs` feeds each decoder random,
//!   truncated, oversized and nested input.
//! - A record of a version this build does not read is refused as `FormatError::Newer` ("written
//!   by raftsched format N+1; this build reads up to N"), never reported as damage.
//! - An encoded record never changes for a given version: `testdata/` holds one file per kind and
//!   version, and `tests/fixtures.rs` fails when today's encoder writes different bytes.
//! - Format 0 is what commit cde735c wrote: bare bincode payloads with the same layouts. This build
//!   reads it always and writes it while the cluster version is 0 (a mixed cluster with cde735c
//!   replicas, or a data dir a downgrade must still read).

mod codec;
mod envelope;
mod records;

use std::io::Cursor;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use openraft::error::{Fatal, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{AnyError, BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, SnapshotMeta, Vote};
use raftsched_state::{After, Concurrency, Op, Response, StateMachine, Streams, TaskId};
use serde::{Deserialize, Serialize};

use crate::records::{
    depth, AppendEntriesRecord, EntryPayloadRecord, EntryRecord, ForwardOutcomeRecord, RaftErrorRecord, TopOp,
};

openraft::declare_raft_types!(
    /// openraft's type configuration for raftsched: the state crate's commands and responses.
    pub TypeConfig:
        D = raftsched_state::Command,
        R = raftsched_state::Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type NodeId = u64;

/// A record format version. 0 is commit cde735c's (no envelope); 1 adds the envelope and the
/// cluster version; 2 adds `Op::ReportFrom` and `Rejection::NotHolder` (reports that name their
/// worker), written only once every member reads format 2; 3 adds the state's time beside the
/// state in snapshot bodies (`StateMachine::clock_ms`, which `apply` uses from cluster version 3);
/// 4 changes no record's bytes but the data dir's layout: the snapshot body is a file of its own,
/// named by a `SnapshotFile` record (written only from cluster version 4, so a build of format 3
/// still opens a data dir until the cluster is finalized); 5 adds `ReportEvent::EndedApart`
/// (stdout and stderr apart, proposed only from cluster version 5) and, beside the state in
/// snapshot bodies, each result's `Streams`; 6 adds `Op::SubmitAfter`, the task states `waiting`
/// and `skipped` and, beside the state in snapshot bodies, each task's `After` (dependencies,
/// proposed only from cluster version 6); 7 adds `Op::SubmitWith` (a submit with options:
/// dependencies and a concurrency key) and, beside the state in snapshot bodies, each task's
/// `Concurrency` (proposed only from cluster version 7); 8 adds `Op::SubmitFlow` (a graph of tasks
/// in one entry, proposed only from cluster version 8; the snapshot body is format 7's); 9 adds
/// `Op::CreateScheduleWith` (a schedule whose tasks get a concurrency key) and, beside the state
/// in snapshot bodies, each schedule's `Concurrency` (proposed only from cluster version 9).
pub type Version = u32;
/// The oldest format this build reads.
pub const FORMAT_VERSION_MIN: Version = 0;
/// The newest format this build reads and writes.
pub const FORMAT_VERSION_MAX: Version = 9;
/// The first format whose data dirs keep the snapshot body in a file (`SnapshotFile`).
pub const BODY_FILE_FORMAT: Version = 4;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// What a record is. The discriminant is the kind byte in the envelope: never reuse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    LogEntry = 1,
    Vote = 2,
    Committed = 3,
    Purged = 4,
    SnapshotMeta = 5,
    SnapshotBody = 6,
    AppendEntries = 7,
    AppendEntriesReply = 8,
    VoteRequest = 9,
    VoteReply = 10,
    InstallSnapshot = 11,
    InstallSnapshotReply = 12,
    Forward = 13,
    ForwardReply = 14,
    Watermark = 15,
    SnapshotFile = 16,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::LogEntry => "log entry",
            Kind::Vote => "vote",
            Kind::Committed => "committed log id",
            Kind::Purged => "purged log id",
            Kind::SnapshotMeta => "snapshot meta",
            Kind::SnapshotBody => "snapshot body",
            Kind::AppendEntries => "append-entries request",
            Kind::AppendEntriesReply => "append-entries reply",
            Kind::VoteRequest => "vote request",
            Kind::VoteReply => "vote reply",
            Kind::InstallSnapshot => "install-snapshot request",
            Kind::InstallSnapshotReply => "install-snapshot reply",
            Kind::Forward => "forwarded ops",
            Kind::ForwardReply => "forward reply",
            Kind::Watermark => "durability watermark",
            Kind::SnapshotFile => "snapshot file record",
        }
    }

    /// Largest payload of this kind, in bytes. A log entry holds at most `BATCH_LEN_MAX` ops of at
    /// most a 64 KiB spec each; a message at most the server's 64 MiB message limit; a snapshot
    /// body at most 2 GiB (the state's own limits keep it far below).
    pub fn bytes_max(self) -> usize {
        match self {
            Kind::LogEntry => 80 * MIB,
            Kind::Vote | Kind::Committed | Kind::Purged | Kind::VoteRequest | Kind::Watermark | Kind::SnapshotFile => {
                KIB
            }
            Kind::SnapshotMeta => MIB,
            Kind::SnapshotBody => 2048 * MIB,
            Kind::AppendEntries | Kind::InstallSnapshot => 64 * MIB,
            Kind::Forward => 32 * MIB,
            Kind::ForwardReply => 4 * MIB,
            Kind::AppendEntriesReply | Kind::VoteReply | Kind::InstallSnapshotReply => 64 * KIB,
        }
    }

    /// Largest format-0 payload read. Format 0 replies carry openraft's error type, whose source
    /// chain nests one level per ~20 bytes; 4 KiB keeps that depth harmless (its errors are short).
    fn v0_bytes_max(self) -> usize {
        match self {
            Kind::AppendEntriesReply | Kind::VoteReply | Kind::InstallSnapshotReply => 4 * KIB,
            other => other.bytes_max(),
        }
    }

    fn has_v0_form(self) -> bool {
        !matches!(self, Kind::Watermark | Kind::SnapshotFile)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why bytes were refused (or a value could not be written).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{kind} of {len} bytes is over its limit of {max} bytes")]
    TooLarge { kind: Kind, len: usize, max: usize },
    #[error("{kind} is truncated: {len} bytes of {need}")]
    Truncated { kind: Kind, len: usize, need: usize },
    #[error("{kind} has {n} bytes past its end")]
    TrailingBytes { kind: Kind, n: usize },
    #[error("{kind} fails its checksum (damaged)")]
    Checksum { kind: Kind },
    #[error("written by raftsched format {found}; this build reads up to {max}")]
    Newer { found: Version, max: Version },
    #[error("expected a {expected} record, found record kind {found}")]
    WrongKind { expected: Kind, found: u8 },
    #[error("malformed {kind}: {reason}")]
    Malformed { kind: Kind, reason: String },
    #[error("{kind} has no format-{version} form")]
    NoSuchForm { kind: Kind, version: Version },
    #[error("cannot encode {what}")]
    NotRepresentable { what: String },
}

impl FormatError {
    /// True when the bytes come from a newer build rather than from damage or a bad peer.
    pub fn is_newer(&self) -> bool {
        matches!(self, FormatError::Newer { .. })
    }
}

/// The format this replica writes and sends now: the cluster version, clamped to what this build
/// writes. Shared by the store and the network; raised when a `SetClusterVersion` applies.
#[derive(Clone, Debug, Default)]
pub struct ActiveVersion(Arc<AtomicU32>);

impl ActiveVersion {
    pub fn get(&self) -> Version {
        self.0.load(Ordering::Acquire)
    }
    /// Raises (never lowers) the active version to `cluster_version` (at most this build's).
    pub fn raise(&self, cluster_version: Version) {
        self.0.fetch_max(cluster_version.min(FORMAT_VERSION_MAX), Ordering::AcqRel);
    }
}

type Result<T> = std::result::Result<T, FormatError>;

/// Checks that `entry` fits the records (the encoder writes it as it is).
fn check_entry(entry: &Entry<TypeConfig>) -> Result<()> {
    match &entry.payload {
        EntryPayload::Normal(cmd) => depth::check_op(&cmd.op),
        EntryPayload::Blank | EntryPayload::Membership(_) => Ok(()),
    }
}

fn entry_of(record: EntryRecord) -> Entry<TypeConfig> {
    let payload = match record.payload {
        EntryPayloadRecord::Blank => EntryPayload::Blank,
        EntryPayloadRecord::Normal(cmd) => EntryPayload::Normal(cmd.into_command()),
        EntryPayloadRecord::Membership(m) => EntryPayload::Membership(m),
    };
    Entry { log_id: record.log_id, payload }
}

/// Decodes a record whose payload has one layout in every version.
fn decode_plain<T: serde::de::DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<(Version, T)> {
    let (version, payload) = codec::open(bytes, kind)?;
    Ok((version, codec::read(kind, payload)?))
}

// ---- disk ----

pub fn encode_entry(entry: &Entry<TypeConfig>, version: Version) -> Result<Vec<u8>> {
    check_entry(entry)?;
    codec::write(Kind::LogEntry, version, entry)
}

pub fn decode_entry(bytes: &[u8]) -> Result<Entry<TypeConfig>> {
    decode_plain(Kind::LogEntry, bytes).map(|(_, r)| entry_of(r))
}

pub fn encode_vote(vote: &Vote<NodeId>, version: Version) -> Result<Vec<u8>> {
    codec::write(Kind::Vote, version, vote)
}

pub fn decode_vote(bytes: &[u8]) -> Result<Vote<NodeId>> {
    decode_plain(Kind::Vote, bytes).map(|(_, v)| v)
}

pub fn encode_committed(committed: &Option<LogId<NodeId>>, version: Version) -> Result<Vec<u8>> {
    codec::write(Kind::Committed, version, committed)
}

pub fn decode_committed(bytes: &[u8]) -> Result<Option<LogId<NodeId>>> {
    decode_plain(Kind::Committed, bytes).map(|(_, v)| v)
}

pub fn encode_purged(purged: &LogId<NodeId>, version: Version) -> Result<Vec<u8>> {
    codec::write(Kind::Purged, version, purged)
}

pub fn decode_purged(bytes: &[u8]) -> Result<LogId<NodeId>> {
    decode_plain(Kind::Purged, bytes).map(|(_, v)| v)
}

pub type Meta = SnapshotMeta<NodeId, BasicNode>;

pub fn encode_snapshot_meta(meta: &Meta, version: Version) -> Result<Vec<u8>> {
    codec::write(Kind::SnapshotMeta, version, meta)
}

pub fn decode_snapshot_meta(bytes: &[u8]) -> Result<Meta> {
    decode_plain(Kind::SnapshotMeta, bytes).map(|(_, v)| v)
}

/// Format 1's snapshot body: the cluster version beside the state (format 0's body is the state
/// alone, and its cluster version is 0).
#[derive(Serialize)]
struct SnapshotBodyRef<'a> {
    cluster_version: Version,
    state: &'a StateMachine,
}

#[derive(Deserialize)]
struct SnapshotBodyRecord {
    cluster_version: Version,
    state: StateMachine,
}

/// Format 3's snapshot body: the state's time too (0 in the formats before it).
#[derive(Serialize)]
struct SnapshotBodyRef3<'a> {
    cluster_version: Version,
    clock_ms: u64,
    state: &'a StateMachine,
}

#[derive(Deserialize)]
struct SnapshotBodyRecord3 {
    cluster_version: Version,
    clock_ms: u64,
    state: StateMachine,
}

/// Format 5's snapshot body: each result's output streams too (none in the formats before it).
#[derive(Serialize)]
struct SnapshotBodyRef5<'a> {
    cluster_version: Version,
    clock_ms: u64,
    state: &'a StateMachine,
    streams: Vec<(TaskId, &'a Streams)>,
}

#[derive(Deserialize)]
struct SnapshotBodyRecord5 {
    cluster_version: Version,
    clock_ms: u64,
    state: StateMachine,
    streams: Vec<(TaskId, Streams)>,
}

/// Format 6's snapshot body: each task's dependencies too (none in the formats before it).
#[derive(Serialize)]
struct SnapshotBodyRef6<'a> {
    body: SnapshotBodyRef5<'a>,
    after: Vec<(TaskId, &'a After)>,
}

#[derive(Deserialize)]
struct SnapshotBodyRecord6 {
    body: SnapshotBodyRecord5,
    after: Vec<(TaskId, After)>,
}

/// Format 7's snapshot body: each task's concurrency key too (none in the formats before it).
#[derive(Serialize)]
struct SnapshotBodyRef7<'a> {
    body: SnapshotBodyRef6<'a>,
    concurrency: Vec<(TaskId, &'a Concurrency)>,
}

#[derive(Deserialize)]
struct SnapshotBodyRecord7 {
    body: SnapshotBodyRecord6,
    concurrency: Vec<(TaskId, Concurrency)>,
}

/// Format 9's snapshot body: each schedule's concurrency key too (none in the formats before it).
#[derive(Serialize)]
struct SnapshotBodyRef9<'a> {
    body: SnapshotBodyRef7<'a>,
    schedule_concurrency: Vec<(&'a str, &'a Concurrency)>,
}

#[derive(Deserialize)]
struct SnapshotBodyRecord9 {
    body: SnapshotBodyRecord7,
    schedule_concurrency: Vec<(String, Concurrency)>,
}

/// The first format whose snapshot body carries the state's time.
const CLOCK_FORMAT: Version = 3;
/// The first format whose snapshot body carries results' output streams.
const STREAMS_FORMAT: Version = 5;
/// The first format whose snapshot body carries tasks' dependencies.
const AFTER_FORMAT: Version = 6;
/// The first format whose snapshot body carries tasks' concurrency keys.
const CONCURRENCY_FORMAT: Version = 7;
/// The first format whose snapshot body carries schedules' concurrency keys.
const SCHEDULE_CONCURRENCY_FORMAT: Version = 9;

pub fn encode_snapshot_body(state: &StateMachine, version: Version) -> Result<Vec<u8>> {
    let cluster_version = state.cluster_version();
    let refuse = |what: String| Err(FormatError::NotRepresentable { what });
    let body5 = || SnapshotBodyRef5 {
        cluster_version,
        clock_ms: state.clock_ms(),
        state,
        streams: state.result_streams().collect(),
    };
    let body6 = || SnapshotBodyRef6 { body: body5(), after: state.after_entries().collect() };
    let body7 = || SnapshotBodyRef7 { body: body6(), concurrency: state.concurrency_entries().collect() };
    if version >= SCHEDULE_CONCURRENCY_FORMAT {
        let body =
            SnapshotBodyRef9 { body: body7(), schedule_concurrency: state.schedule_concurrency_entries().collect() };
        return codec::write(Kind::SnapshotBody, version, &body);
    }
    if state.schedule_concurrency_entries().next().is_some() {
        return refuse(format!("schedules with concurrency keys in format {version}"));
    }
    if version >= CONCURRENCY_FORMAT {
        return codec::write(Kind::SnapshotBody, version, &body7());
    }
    if state.concurrency_entries().next().is_some() {
        return refuse(format!("tasks with concurrency keys in format {version}"));
    }
    if version >= AFTER_FORMAT {
        return codec::write(Kind::SnapshotBody, version, &body6());
    }
    if state.after_entries().next().is_some() {
        return refuse(format!("tasks with dependencies in format {version}"));
    }
    if version >= STREAMS_FORMAT {
        return codec::write(Kind::SnapshotBody, version, &body5());
    }
    if state.result_streams().next().is_some() {
        return refuse(format!("results with output streams apart in format {version}"));
    }
    if version >= CLOCK_FORMAT {
        let body = SnapshotBodyRef3 { cluster_version, clock_ms: state.clock_ms(), state };
        return codec::write(Kind::SnapshotBody, version, &body);
    }
    if state.clock_ms() > 0 {
        return refuse(format!("a state with its own time (cluster version {cluster_version}) in format {version}"));
    }
    if version > 0 {
        return codec::write(Kind::SnapshotBody, version, &SnapshotBodyRef { cluster_version, state });
    }
    if cluster_version > 0 {
        return refuse(format!("a state at cluster version {cluster_version} in format 0"));
    }
    codec::write(Kind::SnapshotBody, 0, state)
}

/// Decodes a snapshot body. The caller still checks the state's invariants.
pub fn decode_snapshot_body(bytes: &[u8]) -> Result<StateMachine> {
    let kind = Kind::SnapshotBody;
    let (version, payload) = codec::open(bytes, kind)?;
    let (mut after, mut concurrency, mut schedule_concurrency) = (None, None, None);
    let (mut state, cluster_version, clock_ms, streams) = match version {
        0 => return codec::read(kind, payload),
        v if v >= SCHEDULE_CONCURRENCY_FORMAT => {
            let r: SnapshotBodyRecord9 = codec::read(kind, payload)?;
            schedule_concurrency = Some(r.schedule_concurrency);
            (after, concurrency) = (Some(r.body.body.after), Some(r.body.concurrency));
            let b = r.body.body.body;
            (b.state, b.cluster_version, b.clock_ms, b.streams)
        }
        v if v >= CONCURRENCY_FORMAT => {
            let r: SnapshotBodyRecord7 = codec::read(kind, payload)?;
            (after, concurrency) = (Some(r.body.after), Some(r.concurrency));
            let b = r.body.body;
            (b.state, b.cluster_version, b.clock_ms, b.streams)
        }
        v if v >= AFTER_FORMAT => {
            let r: SnapshotBodyRecord6 = codec::read(kind, payload)?;
            after = Some(r.after);
            (r.body.state, r.body.cluster_version, r.body.clock_ms, r.body.streams)
        }
        v if v >= STREAMS_FORMAT => {
            let r: SnapshotBodyRecord5 = codec::read(kind, payload)?;
            (r.state, r.cluster_version, r.clock_ms, r.streams)
        }
        v if v >= CLOCK_FORMAT => {
            let r: SnapshotBodyRecord3 = codec::read(kind, payload)?;
            (r.state, r.cluster_version, r.clock_ms, Vec::new())
        }
        _ => {
            let r: SnapshotBodyRecord = codec::read(kind, payload)?;
            (r.state, r.cluster_version, 0, Vec::new())
        }
    };
    state.restore_cluster_version(cluster_version);
    state.restore_clock_ms(clock_ms);
    let malformed = |reason| FormatError::Malformed { kind, reason };
    for (id, s) in streams {
        state.restore_result_streams(id, s).map_err(malformed)?;
    }
    if let Some(after) = after {
        state.restore_after(after).map_err(malformed)?;
    }
    if let Some(concurrency) = concurrency {
        state.restore_concurrency(concurrency).map_err(malformed)?;
    }
    if let Some(entries) = schedule_concurrency {
        state.restore_schedule_concurrency(entries).map_err(malformed)?;
    }
    Ok(state)
}

/// What a replica keeps outside its database so that damage to the database cannot also erase it:
/// the highest log index it has made durable (and so may have acknowledged) and its vote's term.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// Increases with every write; of two copies the valid one with the higher `seq` is current.
    pub seq: u64,
    /// Every log entry below this index was durable at some point (0: none).
    pub log_end_durable: u64,
    /// The term of the last vote made durable.
    pub vote_term: u64,
}

/// The format a watermark is written in: the first that has it. A replica's own file, never
/// sent; pinned so that a build of the previous format can still start on the data dir before
/// the cluster version is raised (a downgrade before finalization).
const WATERMARK_VERSION: Version = 1;

pub fn encode_watermark(w: &Watermark) -> Result<Vec<u8>> {
    codec::write(Kind::Watermark, WATERMARK_VERSION, w)
}

pub fn decode_watermark(bytes: &[u8]) -> Result<Watermark> {
    decode_plain(Kind::Watermark, bytes).map(|(_, v)| v)
}

/// Where the snapshot body is when it is a file of its own (`snapshots/` in the data dir) rather
/// than a record in the database: the file's name, length and CRC-32. A format-0 body has no
/// checksum of its own, so this one covers every body, and the length is checked against the file
/// before a byte of it is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub name: String,
    pub len: u64,
    pub crc32: u32,
}

/// Pinned, like the watermark's: a replica's own record, never sent.
const SNAPSHOT_FILE_VERSION: Version = 1;

pub fn encode_snapshot_file(f: &SnapshotFile) -> Result<Vec<u8>> {
    codec::write(Kind::SnapshotFile, SNAPSHOT_FILE_VERSION, f)
}

pub fn decode_snapshot_file(bytes: &[u8]) -> Result<SnapshotFile> {
    decode_plain(Kind::SnapshotFile, bytes).map(|(_, v)| v)
}

/// The envelope version of [`snapshot_body_moved`]: never a real format.
pub const MOVED_VERSION: u16 = u16::MAX;

/// What a data dir keeps where the snapshot body used to be once the body is a file: an empty
/// snapshot-body record of format 65535. A build from before snapshot files refuses it as "written
/// by a newer format; upgrade this replica's binary" instead of starting with no state over a log
/// purged behind the snapshot it cannot see. This build never decodes it.
pub fn snapshot_body_moved() -> Vec<u8> {
    let mut out = Vec::new();
    envelope::begin(&mut out, Kind::SnapshotBody, MOVED_VERSION as Version);
    envelope::seal(&mut out, Kind::SnapshotBody).expect("an empty payload is within every limit");
    out
}

// ---- replica to replica ----

pub type AppendEntries = AppendEntriesRequest<TypeConfig>;
pub type InstallSnapshot = InstallSnapshotRequest<TypeConfig>;

pub fn encode_append_entries(rpc: &AppendEntries, version: Version) -> Result<Vec<u8>> {
    rpc.entries.iter().try_for_each(check_entry)?;
    codec::write(Kind::AppendEntries, version, rpc)
}

pub fn decode_append_entries(bytes: &[u8]) -> Result<(Version, AppendEntries)> {
    let (version, r): (Version, AppendEntriesRecord) = decode_plain(Kind::AppendEntries, bytes)?;
    let entries = r.entries.into_iter().map(entry_of).collect();
    Ok((
        version,
        AppendEntriesRequest { vote: r.vote, prev_log_id: r.prev_log_id, entries, leader_commit: r.leader_commit },
    ))
}

pub fn encode_vote_request(rpc: &VoteRequest<NodeId>, version: Version) -> Result<Vec<u8>> {
    codec::write(Kind::VoteRequest, version, rpc)
}

pub fn decode_vote_request(bytes: &[u8]) -> Result<(Version, VoteRequest<NodeId>)> {
    decode_plain(Kind::VoteRequest, bytes)
}

pub fn encode_install_snapshot(rpc: &InstallSnapshot, version: Version) -> Result<Vec<u8>> {
    codec::write(Kind::InstallSnapshot, version, rpc)
}

pub fn decode_install_snapshot(bytes: &[u8]) -> Result<(Version, InstallSnapshot)> {
    decode_plain(Kind::InstallSnapshot, bytes)
}

/// A Raft RPC's answer: openraft's reply or its error.
pub type RaftReply<T, E> = std::result::Result<T, RaftError<NodeId, E>>;

/// The three Raft replies, each with its kind. Sealed: only these decode through `decode_reply`.
pub trait ReplyKind: Serialize + serde::de::DeserializeOwned + private::Sealed {
    const KIND: Kind;
}

mod private {
    pub trait Sealed {}
}

macro_rules! reply_kind {
    ($t:ty, $kind:expr) => {
        impl private::Sealed for $t {}
        impl ReplyKind for $t {
            const KIND: Kind = $kind;
        }
    };
}
reply_kind!(AppendEntriesResponse<NodeId>, Kind::AppendEntriesReply);
reply_kind!(VoteResponse<NodeId>, Kind::VoteReply);
reply_kind!(InstallSnapshotResponse<NodeId>, Kind::InstallSnapshotReply);

/// The API errors a Raft reply may carry (`Infallible`, `InstallSnapshotError`): non-nesting.
pub trait ApiError: Serialize + serde::de::DeserializeOwned + std::error::Error {}
impl ApiError for openraft::error::Infallible {}
impl ApiError for openraft::error::InstallSnapshotError {}

pub fn encode_reply<T: ReplyKind, E: ApiError>(reply: &RaftReply<T, E>, version: Version) -> Result<Vec<u8>> {
    if version == 0 {
        return codec::write(T::KIND, 0, reply);
    }
    let record: std::result::Result<&T, RaftErrorRecord<&E>> = match reply {
        Ok(t) => Ok(t),
        Err(RaftError::APIError(e)) => Err(RaftErrorRecord::Api(e)),
        Err(RaftError::Fatal(f)) => Err(RaftErrorRecord::Fatal { reason: f.to_string() }),
    };
    codec::write(T::KIND, version, &record)
}

pub fn decode_reply<T: ReplyKind, E: ApiError>(bytes: &[u8]) -> Result<RaftReply<T, E>> {
    let (version, payload) = codec::open(bytes, T::KIND)?;
    if version == 0 {
        return codec::read(T::KIND, payload);
    }
    let record: std::result::Result<T, RaftErrorRecord<E>> = codec::read(T::KIND, payload)?;
    Ok(record.map_err(|e| match e {
        RaftErrorRecord::Api(e) => RaftError::APIError(e),
        RaftErrorRecord::Fatal { reason } => {
            let source = openraft::StorageIOError::new(ErrorSubject::Store, ErrorVerb::Read, AnyError::error(reason));
            RaftError::Fatal(Fatal::StorageError(openraft::StorageError::IO { source }))
        }
    }))
}

/// The leader's answer to one forwarded op. (Serialize writes the layout `ForwardOutcomeRecord`
/// reads.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ForwardOutcome {
    Applied(Response),
    /// A final error (bad input, conflict, overload): the client's answer.
    Refused {
        code: i32,
        message: String,
    },
    /// The replica asked does not lead (any more): look for the leader again.
    NotLeader,
}

pub fn encode_forward(ops: &[Op], version: Version) -> Result<Vec<u8>> {
    ops.iter().try_for_each(depth::check_op)?;
    codec::write(Kind::Forward, version, &ops)
}

pub fn decode_forward(bytes: &[u8]) -> Result<(Version, Vec<Op>)> {
    let (version, records): (Version, Vec<TopOp>) = decode_plain(Kind::Forward, bytes)?;
    Ok((version, records.into_iter().map(TopOp::into_op).collect()))
}

pub fn encode_forward_reply(outcomes: &[ForwardOutcome], version: Version) -> Result<Vec<u8>> {
    for outcome in outcomes {
        if let ForwardOutcome::Applied(r) = outcome {
            depth::check_response(r)?;
        }
    }
    codec::write(Kind::ForwardReply, version, &outcomes)
}

pub fn decode_forward_reply(bytes: &[u8]) -> Result<Vec<ForwardOutcome>> {
    let (_, records): (Version, Vec<ForwardOutcomeRecord>) = decode_plain(Kind::ForwardReply, bytes)?;
    Ok(records
        .into_iter()
        .map(|r| match r {
            ForwardOutcomeRecord::Applied(r) => ForwardOutcome::Applied(r.into_response()),
            ForwardOutcomeRecord::Refused { code, message } => ForwardOutcome::Refused { code, message },
            ForwardOutcomeRecord::NotLeader => ForwardOutcome::NotLeader,
        })
        .collect())
}
