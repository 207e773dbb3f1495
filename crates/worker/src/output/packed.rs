//! The records of packed segments: small ended streams of many attempts in one file.
//!
//! While a stream is under `OUTPUT_INLINE_BYTES_MAX`, each write of it is appended as a record
//! (the bytes and where in the stream they go) to the newest segment `packed-N.out`, so a small
//! stream never gets a file of its own. Creating and later removing a file per attempt was most of
//! what keeping output cost short tasks (on ext4 it halved dispatch throughput); a segment is one
//! file for thousands of attempts. A stream written in several pieces is written again whole
//! (one record at offset 0) when its attempt ends, so an ended stream is one record.
//!
//! Record layout, packed format 1 (integers little-endian):
//!
//! ```text
//! 0..4    magic b"RSOP"
//! 4..6    packed format version, u16 (1)
//! 6       stream: 0 stdout, 1 stderr
//! 7       kind: 0 bytes of the stream; 1 "moved": the stream's earlier records are not its
//!         bytes any more (it moved to a file of its own); offset and length 0
//! 8..16   task id, u64
//! 16..20  attempt, u32
//! 20..24  offset in the stream of the first byte, u32
//! 24..28  data length in bytes, u32 (1 or more for bytes; offset + length at most
//!         `OUTPUT_INLINE_BYTES_MAX`)
//! 28..32  CRC-32 (IEEE) of bytes 0..28 followed by the data
//! 32..    data
//! ```
//!
//! A segment is read back only when a worker restarts: every byte is untrusted (a crash tears the
//! last record; a disk damages any). [`decode`] checks length, then checksum, then what the header
//! says, and [`scan`] stops at the first record that is not whole and valid. Replayed in order, a
//! record at offset 0 starts its stream over (a whole stream, or the first piece of a later run
//! of the same attempt), one at the stream's length extends it, and a "moved" one clears it.

use super::{AttemptKey, OUTPUT_INLINE_BYTES_MAX};

/// The packed format this build writes and reads.
pub const PACKED_FORMAT: u16 = 1;
pub const RECORD_HEADER_LEN: usize = 32;
/// The longest record.
pub const RECORD_BYTES_MAX: usize = RECORD_HEADER_LEN + OUTPUT_INLINE_BYTES_MAX;
const MAGIC: [u8; 4] = *b"RSOP";

/// One stream of one attempt, as packed.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub key: AttemptKey,
    pub stderr: bool,
    /// Where in the stream `data` starts.
    pub offset: u32,
    pub data: &'a [u8],
    /// The stream moved to a file of its own: its earlier records are not its bytes (no data).
    pub moved: bool,
}

impl<'a> Record<'a> {
    /// Bytes of the stream at `offset`.
    pub fn bytes(key: AttemptKey, stderr: bool, offset: u32, data: &'a [u8]) -> Record<'a> {
        Record { key, stderr, offset, data, moved: false }
    }

    /// The stream moved to a file of its own.
    pub fn moved(key: AttemptKey, stderr: bool) -> Record<'static> {
        Record { key, stderr, offset: 0, data: &[], moved: true }
    }
}

/// Why a segment was not read past a record.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("a record is cut short: {len} bytes of {need}")]
    Truncated { len: usize, need: usize },
    #[error("not a packed output record (no magic)")]
    NoMagic,
    #[error("a record fails its checksum (damaged)")]
    Checksum,
    #[error("written by packed output format {found}; this build reads up to {PACKED_FORMAT}")]
    Newer { found: u16 },
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}

/// Appends `record` to `out`.
pub fn encode(out: &mut Vec<u8>, record: &Record<'_>) {
    assert_eq!(record.data.is_empty(), record.moved, "bytes, or a move without any");
    assert!(record.offset as usize + record.data.len() <= OUTPUT_INLINE_BYTES_MAX, "only small streams are packed");
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PACKED_FORMAT.to_le_bytes());
    out.push(u8::from(record.stderr));
    out.push(u8::from(record.moved));
    out.extend_from_slice(&record.key.task_id.to_le_bytes());
    out.extend_from_slice(&record.key.attempt.to_le_bytes());
    out.extend_from_slice(&record.offset.to_le_bytes());
    out.extend_from_slice(&(record.data.len() as u32).to_le_bytes());
    let crc = checksum(&out[start..start + 28], record.data);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(record.data);
}

fn checksum(header: &[u8], data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(data);
    hasher.finalize()
}

fn le<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes[at..at + N].try_into().expect("within the checked header")
}

/// The record at the start of `bytes`, and its length in all.
pub fn decode(bytes: &[u8]) -> Result<(Record<'_>, usize), RecordError> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Err(RecordError::Truncated { len: bytes.len(), need: RECORD_HEADER_LEN });
    }
    if bytes[..4] != MAGIC {
        return Err(RecordError::NoMagic);
    }
    let offset = u32::from_le_bytes(le(bytes, 20));
    let len = u32::from_le_bytes(le(bytes, 24)) as usize;
    if (offset as usize).saturating_add(len) > OUTPUT_INLINE_BYTES_MAX {
        return Err(RecordError::Malformed("past where a packed stream can reach"));
    }
    let need = RECORD_HEADER_LEN + len;
    if bytes.len() < need {
        return Err(RecordError::Truncated { len: bytes.len(), need });
    }
    let data = &bytes[RECORD_HEADER_LEN..need];
    if u32::from_le_bytes(le(bytes, 28)) != checksum(&bytes[..28], data) {
        return Err(RecordError::Checksum);
    }
    let version = u16::from_le_bytes(le(bytes, 4));
    if version > PACKED_FORMAT {
        return Err(RecordError::Newer { found: version });
    }
    if version == 0 {
        return Err(RecordError::Malformed("version 0"));
    }
    let moved = match bytes[7] {
        0 if len > 0 => false,
        1 if len == 0 && offset == 0 => true,
        _ => return Err(RecordError::Malformed("unknown kind, or bytes that do not fit it")),
    };
    let stderr = match bytes[6] {
        0 => false,
        1 => true,
        _ => return Err(RecordError::Malformed("stream is neither stdout nor stderr")),
    };
    let key = AttemptKey { task_id: u64::from_le_bytes(le(bytes, 8)), attempt: u32::from_le_bytes(le(bytes, 16)) };
    Ok((Record { key, stderr, offset, data, moved }, need))
}

/// What [`scan`] found: each record with the offset of its data in the segment, and, if it
/// stopped before the end, where and why.
pub type Scanned<'a> = (Vec<(u64, Record<'a>)>, Option<(usize, RecordError)>);

/// Every whole, valid record of a segment, in order, up to the first that is not.
pub fn scan(segment: &[u8]) -> Scanned<'_> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < segment.len() {
        match decode(&segment[at..]) {
            Ok((record, len)) => {
                records.push(((at + RECORD_HEADER_LEN) as u64, record));
                at += len;
            }
            Err(e) => return (records, Some((at, e))),
        }
    }
    (records, None)
}

/// The name of segment `n`.
pub fn segment_name(n: u64) -> String {
    format!("packed-{n}.out")
}

/// The segment a file name written by [`segment_name`] stands for.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_prefix("packed-")?.strip_suffix(".out")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(task_id: u64, attempt: u32) -> AttemptKey {
        AttemptKey { task_id, attempt }
    }

    fn sample_records() -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, &Record::bytes(key(7, 2), false, 0, b"hello\n"));
        encode(&mut out, &Record::bytes(key(7, 2), true, 3, b"oops"));
        encode(&mut out, &Record::moved(key(7, 2), true));
        out
    }

    /// The committed bytes of packed format 1: a format change needs a new version and fixture.
    #[test]
    fn format_1_fixture_reads_and_writes_the_same() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/output-packed-v1.out");
        if std::env::var_os("RAFTSCHED_WRITE_FIXTURES").is_some() && !std::path::Path::new(path).exists() {
            std::fs::write(path, sample_records()).unwrap();
        }
        let fixture = std::fs::read(path).expect("the committed packed-format-1 fixture");
        assert_eq!(fixture, sample_records(), "today's encoder writes format 1 as committed");
        let (records, stop) = scan(&fixture);
        assert_eq!(stop, None);
        assert_eq!(records[0], (32, Record::bytes(key(7, 2), false, 0, b"hello\n")));
        assert_eq!(records[1], (70, Record::bytes(key(7, 2), true, 3, b"oops")));
        assert_eq!(records[2], (106, Record::moved(key(7, 2), true)));
    }

    #[test]
    fn a_scan_stops_at_the_first_damage_and_never_panics() {
        let good = sample_records();
        // Every cut: the whole records before it, then Truncated.
        for cut in 0..good.len() {
            let (records, stop) = scan(&good[..cut]);
            assert_eq!(records.len(), usize::from(cut >= 38) + usize::from(cut >= 74), "cut at {cut}");
            let whole = cut == 0 || cut == 38 || cut == 74;
            assert_eq!(stop.is_none(), whole, "cut at {cut}");
            assert!(whole || matches!(stop, Some((_, RecordError::Truncated { .. }))), "cut at {cut}");
        }
        // Every single flipped byte of the first record: nothing read past it.
        for at in 0..38 {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            let (records, stop) = scan(&bad);
            assert!(records.is_empty() && stop.is_some(), "flip at {at}");
        }
        // A length far past the bound is refused before anything is allocated or read.
        let mut long = good.clone();
        long[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        let past = RecordError::Malformed("past where a packed stream can reach");
        assert_eq!(decode(&long).unwrap_err(), past);
        long[24..28].copy_from_slice(&1u32.to_le_bytes());
        long[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&long).unwrap_err(), past, "an offset that would overflow");
        // A newer format is said to be one, not damage.
        let mut newer = Vec::new();
        encode(&mut newer, &Record::bytes(key(1, 1), false, 0, b"x"));
        newer[4] = 2;
        let crc = checksum(&newer[..28], &newer[32..]);
        newer[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&newer).unwrap_err(), RecordError::Newer { found: 2 });
        // Random bytes, some after a valid record: never a panic, never a record past damage.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..2_000 {
            let mut bytes = if round % 2 == 0 { Vec::new() } else { sample_records() };
            for _ in 0..(round % 97) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            let (records, _) = scan(&bytes);
            assert!(records.len() <= 3);
        }
        assert_eq!(parse_segment_name(&segment_name(12)), Some(12));
        assert_eq!(parse_segment_name("packed-x.out"), None);
    }
}
