//! The envelope every format-1+ record travels in: a fixed 16-byte header, then the payload.
//!
//! ```text
//! 0..4    magic b"RSCH"
//! 4..6    format version, u16 little-endian (>= 1)
//! 6       record kind (`Kind`)
//! 7       flags, 0 (a non-zero value is a layout this build does not know)
//! 8..12   payload length in bytes, u32 little-endian
//! 12..16  CRC-32 (IEEE) of bytes 0..12 followed by the payload
//! 16..    payload
//! ```
//!
//! Invariant: this header layout is the same in every format version, so any build can tell
//! damage (checksum) from a newer version (a valid header with a version above its own) from a
//! format-0 record (no magic). Format 0 (commit cde735c and before) wrote bare payloads; no
//! format-0 record starts with the magic: each starts with a Raft term, an `Option` tag or a
//! length, and reading the magic as one of those needs a term or length above 10^9.

use crate::{FormatError, Kind, Version};

pub(crate) const MAGIC: [u8; 4] = *b"RSCH";
pub(crate) const HEADER_LEN: usize = 16;

/// Whether `bytes` start like an enveloped (format 1+) record.
pub(crate) fn is_enveloped(bytes: &[u8]) -> bool {
    bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] == MAGIC
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..12]);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends the header for a payload of `payload_len` bytes to an empty `out`, which the caller
/// then fills with the payload and passes to [`seal`].
pub(crate) fn begin(out: &mut Vec<u8>, kind: Kind, version: Version) {
    assert!(out.is_empty());
    assert!(version >= 1, "format 0 has no envelope");
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(version as u16).to_le_bytes());
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(&[0; 8]);
}

/// Writes the payload length and checksum into a record `begin` started.
pub(crate) fn seal(out: &mut [u8], kind: Kind) -> Result<(), FormatError> {
    let payload_len = out.len() - HEADER_LEN;
    if payload_len > kind.bytes_max() {
        return Err(FormatError::TooLarge { kind, len: payload_len, max: kind.bytes_max() });
    }
    out[8..12].copy_from_slice(&(payload_len as u32).to_le_bytes());
    let crc = checksum(&out[..HEADER_LEN], &out[HEADER_LEN..]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Checks an enveloped record of `kind` and returns its version and payload. Checks run in an
/// order that never trusts an unchecked byte: length, checksum, then what the header says.
pub(crate) fn open(bytes: &[u8], kind: Kind) -> Result<(Version, &[u8]), FormatError> {
    if bytes.len() < HEADER_LEN {
        return Err(FormatError::Truncated { kind, len: bytes.len(), need: HEADER_LEN });
    }
    let (header, payload) = bytes.split_at(HEADER_LEN);
    let claimed = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
    if claimed > kind.bytes_max() {
        return Err(FormatError::TooLarge { kind, len: claimed, max: kind.bytes_max() });
    }
    if payload.len() < claimed {
        return Err(FormatError::Truncated { kind, len: bytes.len(), need: HEADER_LEN + claimed });
    }
    if payload.len() > claimed {
        return Err(FormatError::TrailingBytes { kind, n: payload.len() - claimed });
    }
    let crc = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    if crc != checksum(header, payload) {
        return Err(FormatError::Checksum { kind });
    }
    let version = Version::from(u16::from_le_bytes(header[4..6].try_into().expect("2 bytes")));
    if version > crate::FORMAT_VERSION_MAX {
        return Err(FormatError::Newer { found: version, max: crate::FORMAT_VERSION_MAX });
    }
    if version == 0 || header[7] != 0 {
        return Err(FormatError::Malformed { kind, reason: "invalid header (version 0 or unknown flags)".into() });
    }
    if header[6] != kind as u8 {
        return Err(FormatError::WrongKind { expected: kind, found: header[6] });
    }
    Ok((version, payload))
}
