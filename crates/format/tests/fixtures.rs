//! Golden fixtures: every record kind, in every format version this build writes, is committed
//! under `testdata/v{N}/`; this test fails when today's encoder writes other bytes for a version
//! that already has fixtures, or when today's decoder reads them differently.
//!
//! A change that alters an encoding needs a new format version (`FORMAT_VERSION_MAX`) and its own
//! fixtures. To write the fixtures of a new version (never to overwrite existing ones):
//! `RAFTSCHED_WRITE_FIXTURES=1 cargo test -p raftsched-format --test fixtures`.

mod samples;

use std::path::PathBuf;

use raftsched_format::*;
use samples::*;

type Encode = Box<dyn Fn(Version) -> Result<Vec<u8>, FormatError>>;
type Decode = Box<dyn Fn(&[u8]) -> Result<String, FormatError>>;

struct Sample {
    name: &'static str,
    /// The first version that has this record (a `SetClusterVersion` entry exists from format 0
    /// on, but only a format-1 build ever writes one).
    since: Version,
    expected: String,
    encode: Encode,
    decode: Decode,
}

macro_rules! sample {
    ($name:expr, $since:expr, $value:expr, $enc:expr, $dec:expr) => {{
        let value = $value;
        Sample {
            name: $name,
            since: $since,
            expected: format!("{:?}", value),
            encode: Box::new(move |v| $enc(&value, v)),
            decode: Box::new(move |bytes: &[u8]| $dec(bytes).map(|d| format!("{:?}", d))),
        }
    }};
}

fn samples() -> Vec<Sample> {
    let ae = |b: &[u8]| decode_append_entries(b).map(|(_, r)| r);
    let vr = |b: &[u8]| decode_vote_request(b).map(|(_, r)| r);
    let is = |b: &[u8]| decode_install_snapshot(b).map(|(_, r)| r);
    let fw = |b: &[u8]| decode_forward(b).map(|(_, r)| r);
    let ae_reply =
        |b: &[u8]| decode_reply::<openraft::raft::AppendEntriesResponse<NodeId>, openraft::error::Infallible>(b);
    let v_reply = |b: &[u8]| decode_reply::<openraft::raft::VoteResponse<NodeId>, openraft::error::Infallible>(b);
    let is_reply = |b: &[u8]| {
        decode_reply::<openraft::raft::InstallSnapshotResponse<NodeId>, openraft::error::InstallSnapshotError>(b)
    };
    vec![
        sample!("entry_normal", 0, entry_normal(), encode_entry, decode_entry),
        sample!("entry_membership", 0, entry_membership(), encode_entry, decode_entry),
        sample!("entry_blank", 0, entry_blank(), encode_entry, decode_entry),
        sample!("entry_schedule", 0, entry_schedule(), encode_entry, decode_entry),
        sample!("entry_set_cluster_version", 0, entry_set_cluster_version(), encode_entry, decode_entry),
        sample!("entry_report_from", 2, entry_report_from(), encode_entry, decode_entry),
        sample!("entry_report_apart", 5, entry_report_apart(), encode_entry, decode_entry),
        sample!("entry_submit_after", 6, entry_submit_after(), encode_entry, decode_entry),
        sample!("entry_submit_with", 7, entry_submit_with(), encode_entry, decode_entry),
        sample!("entry_submit_flow", 8, entry_submit_flow(), encode_entry, decode_entry),
        sample!("entry_create_schedule_with", 9, entry_create_schedule_with(), encode_entry, decode_entry),
        sample!("vote", 0, vote(), encode_vote, decode_vote),
        sample!("committed", 0, Some(log_id(3, 2, 39)), encode_committed, decode_committed),
        sample!("purged", 0, log_id(2, 1, 20), encode_purged, decode_purged),
        sample!("snapshot_meta", 0, snapshot_meta(), encode_snapshot_meta, decode_snapshot_meta),
        sample!("snapshot_body", 0, state(0), encode_snapshot_body, decode_snapshot_body),
        sample!("snapshot_body_cv1", 1, state(1), encode_snapshot_body, decode_snapshot_body),
        sample!("snapshot_body_cv3", 3, state(3), encode_snapshot_body, decode_snapshot_body),
        sample!("snapshot_body_cv5", 5, state(5), encode_snapshot_body, decode_snapshot_body),
        sample!("snapshot_body_cv6", 6, state(6), encode_snapshot_body, decode_snapshot_body),
        sample!("snapshot_body_cv7", 7, state(7), encode_snapshot_body, decode_snapshot_body),
        sample!("snapshot_body_cv9", 9, state(9), encode_snapshot_body, decode_snapshot_body),
        sample!("append_entries", 0, append_entries(), encode_append_entries, ae),
        sample!("append_entries_reply", 0, append_entries_reply(), encode_reply, ae_reply),
        sample!("vote_request", 0, vote_request(), encode_vote_request, vr),
        sample!("vote_reply", 0, vote_reply(), encode_reply, v_reply),
        sample!("install_snapshot", 0, install_snapshot(), encode_install_snapshot, is),
        sample!("install_snapshot_reply", 0, install_snapshot_reply(), encode_reply, is_reply),
        sample!("forward", 0, ops(), |o: &Vec<_>, v| encode_forward(o, v), fw),
        sample!(
            "forward_reply",
            0,
            forward_outcomes(),
            |o: &Vec<_>, v| encode_forward_reply(o, v),
            decode_forward_reply
        ),
        sample!(
            "forward_reply_not_holder",
            2,
            forward_outcomes_v2(),
            |o: &Vec<_>, v| encode_forward_reply(o, v),
            decode_forward_reply
        ),
        sample!("watermark", 1, watermark(), |w, _| encode_watermark(w), decode_watermark),
        sample!("snapshot_file", 4, snapshot_file(), |f, _| encode_snapshot_file(f), decode_snapshot_file),
    ]
}

fn path(version: Version, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("testdata/v{version}/{name}.bin"))
}

#[test]
fn every_version_reads_and_writes_its_fixtures() {
    let write_missing = std::env::var_os("RAFTSCHED_WRITE_FIXTURES").is_some();
    let mut problems = Vec::new();
    for version in FORMAT_VERSION_MIN..=FORMAT_VERSION_MAX {
        for s in samples().into_iter().filter(|s| s.since <= version) {
            let file = path(version, s.name);
            let encoded = (s.encode)(version).unwrap_or_else(|e| panic!("{} v{version}: {e}", s.name));
            let committed = match std::fs::read(&file) {
                Ok(bytes) => bytes,
                Err(_) if write_missing => {
                    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                    std::fs::write(&file, &encoded).unwrap();
                    encoded.clone()
                }
                Err(e) => {
                    problems.push(format!("{}: {e} (a new version needs its fixtures committed)", file.display()));
                    continue;
                }
            };
            if committed != encoded {
                problems.push(format!(
                    "{} v{version}: today's encoding differs from the committed fixture: an encoding change needs \
                     a new format version and fixtures",
                    s.name
                ));
            }
            match (s.decode)(&committed) {
                Ok(decoded) if decoded == s.expected => {}
                Ok(decoded) => problems.push(format!("{} v{version}: decodes as {decoded}", s.name)),
                Err(e) => problems.push(format!("{} v{version}: {e}", s.name)),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Format 0 is exactly what commit cde735c wrote: bincode 1 (`bincode::serialize`) of openraft's
/// and the state crate's own types. The records must keep producing those bytes.
#[test]
fn format_0_is_plain_bincode_of_the_old_types() {
    let same = |name: &str, ours: Vec<u8>, theirs: Vec<u8>| assert_eq!(ours, theirs, "{name}");
    same("entry", encode_entry(&entry_normal(), 0).unwrap(), bincode::serialize(&entry_normal()).unwrap());
    same("vote", encode_vote(&vote(), 0).unwrap(), bincode::serialize(&vote()).unwrap());
    same("meta", encode_snapshot_meta(&snapshot_meta(), 0).unwrap(), bincode::serialize(&snapshot_meta()).unwrap());
    same("state", encode_snapshot_body(&state(0), 0).unwrap(), bincode::serialize(&state(0)).unwrap());
    same(
        "append",
        encode_append_entries(&append_entries(), 0).unwrap(),
        bincode::serialize(&append_entries()).unwrap(),
    );
    same("forward", encode_forward(&ops(), 0).unwrap(), bincode::serialize(&ops()).unwrap());
    let reply = append_entries_reply();
    same("reply", encode_reply(&reply, 0).unwrap(), bincode::serialize(&reply).unwrap());
}

#[test]
fn a_newer_format_is_named_not_called_damage() {
    let mut bytes = encode_vote(&vote(), FORMAT_VERSION_MAX).unwrap();
    let newer = (FORMAT_VERSION_MAX + 1) as u16;
    bytes[4..6].copy_from_slice(&newer.to_le_bytes());
    // Recompute the checksum as a newer build would have written it.
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..12]);
    h.update(&bytes[16..]);
    let crc = h.finalize();
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    let e = decode_vote(&bytes).unwrap_err();
    assert!(e.is_newer(), "{e}");
    assert_eq!(
        e.to_string(),
        format!("written by raftsched format {}; this build reads up to {FORMAT_VERSION_MAX}", FORMAT_VERSION_MAX + 1)
    );
}

/// A data dir whose body moved to a file keeps a marker where the body was; a build from before
/// snapshot files reads it as a snapshot body from a newer build (never as damage or as no body).
#[test]
fn the_moved_body_marker_reads_as_newer() {
    let e = decode_snapshot_body(&snapshot_body_moved()).unwrap_err();
    assert!(e.is_newer(), "{e}");
    let file = path(BODY_FILE_FORMAT, "snapshot_body_moved");
    if std::env::var_os("RAFTSCHED_WRITE_FIXTURES").is_some() && !file.exists() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, snapshot_body_moved()).unwrap();
    }
    let committed = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_eq!(committed, snapshot_body_moved(), "the marker's bytes never change");
}

#[test]
fn a_flipped_byte_fails_the_checksum() {
    let good = encode_entry(&entry_normal(), 1).unwrap();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x10;
        assert!(decode_entry(&bad).is_err(), "flip at {i} went unnoticed");
    }
}
