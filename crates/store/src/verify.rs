//! The checks a data dir passes before a replica may use it: every log record decodes and passes
//! its checksum, the log has no gap, and neither the log nor the vote is behind what the
//! durability watermark (`watermark.rs`) says this replica made durable.
//!
//! A torn tail and damage, told apart: a crash mid-write can only lose entries whose flush had
//! not completed. Those were never acknowledged to Raft, so they are above the watermark (which
//! only rises after a flush). Entries missing at or below the watermark, a gap, or a record that
//! fails its checksum cannot come from a crash: that is damage, and the replica refuses to start
//! rather than vote and acknowledge without data it once had.

use raftsched_format::Watermark;

use crate::codec::key_index;

/// What the log in sled holds.
pub(crate) struct LogShape {
    /// One past the last index the log (or the snapshot it was purged behind) covers.
    pub end: u64,
    pub vote_term: u64,
}

/// Why a data dir was refused.
pub(crate) enum Refusal {
    /// The dir holds a record of a newer format (the message says which).
    Newer(String),
    Damage(String),
    /// Records that are whole (their checksums are good) but describe an impossible state: a
    /// bug in the build that wrote them or in this one, not disk damage.
    Bug(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Newer(what) | Refusal::Damage(what) | Refusal::Bug(what) => f.write_str(what),
        }
    }
}

impl From<String> for Refusal {
    fn from(what: String) -> Refusal {
        Refusal::Damage(what)
    }
}

pub(crate) fn record_err(what: String) -> impl FnOnce(raftsched_format::FormatError) -> Refusal {
    move |e| match e.is_newer() {
        true => Refusal::Newer(format!("{what}: {e}")),
        false => Refusal::Damage(format!("{what}: {e}")),
    }
}

/// Reads every record of the log and the vote; the refusal names the first problem.
pub(crate) fn scan(log: &sled::Tree, meta: &sled::Tree, snapshot_end: u64) -> Result<LogShape, Refusal> {
    let purged_end = match meta.get(b"last_purged").map_err(|e| format!("cannot read the log state: {e}"))? {
        Some(bytes) => {
            raftsched_format::decode_purged(&bytes).map_err(record_err("log state record".into()))?.index + 1
        }
        None => 0,
    };
    // Everything below `floor` is covered by the snapshot or was purged behind one.
    let floor = purged_end.max(snapshot_end);
    let mut end = floor;
    let mut first = true;
    for item in log.iter() {
        let (key, bytes) = item.map_err(|e| format!("cannot read the log: {e}"))?;
        let index = key_index(&key).ok_or_else(|| Refusal::Damage(format!("a log key of {} bytes", key.len())))?;
        let entry = raftsched_format::decode_entry(&bytes).map_err(record_err(format!("log entry {index}")))?;
        if entry.log_id.index != index {
            return Err(Refusal::Damage(format!(
                "log entry under index {index} says it is entry {}",
                entry.log_id.index
            )));
        }
        if index < purged_end {
            continue; // left by a purge that a crash interrupted (`last_purged` is written first)
        }
        // The first entry may start anywhere the snapshot covers; after it, no index is skipped.
        if (first && index > floor) || (!first && index != end) {
            return Err(Refusal::Damage(format!(
                "the log has a gap: entries {}..{} are missing (neither the log nor the snapshot holds them)",
                end,
                index - 1
            )));
        }
        first = false;
        end = index + 1;
    }
    let vote_term = match meta.get(b"vote").map_err(|e| format!("cannot read the vote: {e}"))? {
        Some(bytes) => {
            raftsched_format::decode_vote(&bytes).map_err(record_err("vote record".into()))?.leader_id().term
        }
        None => 0,
    };
    Ok(LogShape { end, vote_term })
}

/// Compares what is there with what the watermark says was durable.
pub(crate) fn against_watermark(shape: &LogShape, watermark: &Watermark) -> Result<(), String> {
    if shape.end < watermark.log_end_durable {
        return Err(format!(
            "its log ends at index {} but entries up to index {} were durable before (lost acknowledged entries: \
             the database file was truncated, damaged or restored from an older copy)",
            shape.end as i64 - 1,
            watermark.log_end_durable - 1
        ));
    }
    if shape.vote_term < watermark.vote_term {
        return Err(format!(
            "its vote is for term {} but a vote for term {} was durable before (the vote record was lost)",
            shape.vote_term, watermark.vote_term
        ));
    }
    Ok(())
}
