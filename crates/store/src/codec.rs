//! Encoding of what the store writes. bincode: compact, and every type involved is plain serde.
//! Decoding never panics: a corrupt record becomes a `StorageError` naming what failed.

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError};
use serde::{de::DeserializeOwned, Serialize};

use crate::NodeId;

pub(crate) fn encode<T: Serialize>(value: &T, subject: ErrorSubject<NodeId>) -> Result<Vec<u8>, StorageError<NodeId>> {
    bincode::serialize(value).map_err(|e| StorageError::IO {
        source: openraft::StorageIOError::new(subject, ErrorVerb::Write, AnyError::new(&e)),
    })
}

pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    subject: ErrorSubject<NodeId>,
) -> Result<T, StorageError<NodeId>> {
    bincode::deserialize(bytes).map_err(|e| StorageError::IO {
        source: openraft::StorageIOError::new(subject, ErrorVerb::Read, AnyError::new(&e)),
    })
}

pub(crate) fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError<NodeId> {
    StorageError::IO { source: openraft::StorageIOError::new(subject, verb, AnyError::new(&e)) }
}

/// Log keys are big-endian so sled's byte order is index order.
pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(crate) fn key_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}
