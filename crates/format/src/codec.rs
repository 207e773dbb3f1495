//! The payload encoding: bincode 1 with fixed-width integers, little-endian, as format 0 wrote it
//! (`bincode::serialize`), but always with a byte limit and no trailing bytes.
//!
//! Why bounded this way: bincode checks every length prefix against the limit before it allocates
//! a string or byte buffer, and serde preallocates at most about 1 MiB for a sequence whatever its
//! prefix claims, so decoding allocates in proportion to the input actually present, never to what
//! a prefix says. Depth is bounded by the record types (`records.rs`): none of them can contain
//! itself.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};

use crate::envelope;
use crate::{FormatError, Kind, Version};

fn options(limit: usize) -> impl Options {
    bincode::DefaultOptions::new().with_fixint_encoding().with_little_endian().with_limit(limit as u64)
}

/// Encodes `value` as a `kind` record of format `version` (0: a bare payload, as commit cde735c
/// wrote; 1+: enveloped).
pub(crate) fn write<T: Serialize>(kind: Kind, version: Version, value: &T) -> Result<Vec<u8>, FormatError> {
    let malformed = |e: bincode::Error| FormatError::Malformed { kind, reason: e.to_string() };
    if version == 0 {
        if !kind.has_v0_form() {
            return Err(FormatError::NoSuchForm { kind, version });
        }
        return options(kind.v0_bytes_max()).serialize(value).map_err(|e| match *e {
            bincode::ErrorKind::SizeLimit => FormatError::TooLarge { kind, len: usize::MAX, max: kind.v0_bytes_max() },
            _ => malformed(e),
        });
    }
    assert!(version <= crate::FORMAT_VERSION_MAX, "this build cannot write format {version}");
    // Sized first (as `bincode::serialize` does), so a large message is written without regrowing.
    let len = options(kind.bytes_max()).serialized_size(value).map_err(|e| match *e {
        bincode::ErrorKind::SizeLimit => FormatError::TooLarge { kind, len: usize::MAX, max: kind.bytes_max() },
        _ => malformed(e),
    })?;
    let mut out = Vec::with_capacity(envelope::HEADER_LEN + len as usize);
    envelope::begin(&mut out, kind, version);
    options(kind.bytes_max()).serialize_into(&mut out, value).map_err(|e| match *e {
        bincode::ErrorKind::SizeLimit => FormatError::TooLarge { kind, len: usize::MAX, max: kind.bytes_max() },
        _ => malformed(e),
    })?;
    envelope::seal(&mut out, kind)?;
    Ok(out)
}

/// Checks a `kind` record of any version this build reads and returns its version and payload.
pub(crate) fn open(bytes: &[u8], kind: Kind) -> Result<(Version, &[u8]), FormatError> {
    if envelope::is_enveloped(bytes) {
        return envelope::open(bytes, kind);
    }
    if !kind.has_v0_form() {
        return Err(FormatError::Malformed { kind, reason: "no record header".into() });
    }
    if bytes.len() > kind.v0_bytes_max() {
        return Err(FormatError::TooLarge { kind, len: bytes.len(), max: kind.v0_bytes_max() });
    }
    Ok((0, bytes))
}

/// Decodes a payload `open` returned as a `T`; every byte must be used.
pub(crate) fn read<T: DeserializeOwned>(kind: Kind, payload: &[u8]) -> Result<T, FormatError> {
    options(payload.len()).deserialize(payload).map_err(|e| FormatError::Malformed { kind, reason: e.to_string() })
}
