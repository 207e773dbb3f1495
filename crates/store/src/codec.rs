//! How the store names its failures and keys its log. Every byte layout is `raftsched_format`'s.

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError};

use crate::NodeId;

pub(crate) fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError<NodeId> {
    StorageError::IO { source: openraft::StorageIOError::new(subject, verb, AnyError::new(&e)) }
}

/// A record that failed to decode (read) or encode (write).
pub(crate) fn format_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
) -> impl FnOnce(raftsched_format::FormatError) -> StorageError<NodeId> {
    move |e| io_err(subject, verb, e)
}

/// Log keys are big-endian so sled's byte order is index order.
pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(crate) fn key_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}
