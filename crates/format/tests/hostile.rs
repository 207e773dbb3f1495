//! Every decoder fed untrusted bytes: random, truncated, bit-flipped, oversized, deeply nested.
//! None may panic, overflow the stack or allocate what a length prefix claims.

mod samples;

use proptest::prelude::*;
use raftsched_format::*;
use samples::*;

/// Runs every decoder on `bytes`; each must return (Ok or Err), never panic.
fn decode_all(bytes: &[u8]) {
    let _ = decode_entry(bytes);
    let _ = decode_vote(bytes);
    let _ = decode_committed(bytes);
    let _ = decode_purged(bytes);
    let _ = decode_snapshot_meta(bytes);
    let _ = decode_snapshot_body(bytes);
    let _ = decode_watermark(bytes);
    let _ = decode_snapshot_file(bytes);
    let _ = decode_append_entries(bytes);
    let _ = decode_vote_request(bytes);
    let _ = decode_install_snapshot(bytes);
    let _ = decode_forward(bytes);
    let _ = decode_forward_reply(bytes);
    let _ = decode_reply::<openraft::raft::AppendEntriesResponse<NodeId>, openraft::error::Infallible>(bytes);
    let _ = decode_reply::<openraft::raft::VoteResponse<NodeId>, openraft::error::Infallible>(bytes);
    let _ =
        decode_reply::<openraft::raft::InstallSnapshotResponse<NodeId>, openraft::error::InstallSnapshotError>(bytes);
}

/// Valid records of every kind in every version, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for v in FORMAT_VERSION_MIN..=FORMAT_VERSION_MAX {
        out.push(encode_entry(&entry_normal(), v).unwrap());
        out.push(encode_entry(&entry_membership(), v).unwrap());
        out.push(encode_append_entries(&append_entries(), v).unwrap());
        out.push(encode_snapshot_body(&state(0), v).unwrap());
        out.push(encode_snapshot_meta(&snapshot_meta(), v).unwrap());
        out.push(encode_forward(&ops(), v).unwrap());
        out.push(encode_forward_reply(&forward_outcomes(), v).unwrap());
        out.push(encode_reply(&install_snapshot_reply(), v).unwrap());
        out.push(encode_install_snapshot(&install_snapshot(), v).unwrap());
    }
    out.push(encode_watermark(&watermark()).unwrap());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_header(version in 0u16..3, kind in 0u8..20, body in proptest::collection::vec(any::<u8>(), 0..256)) {
        // A valid envelope around random payloads: the checksum passes, the payload is garbage.
        let mut bytes = b"RSCH".to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&[kind, 0]);
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&bytes);
        h.update(&body);
        bytes.extend_from_slice(&h.finalize().to_le_bytes());
        bytes.extend_from_slice(&body);
        decode_all(&bytes);
    }

    #[test]
    fn mutated_records(seed in 0usize..19, at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let seeds = seeds();
        let good = &seeds[seed % seeds.len()];
        let mut flipped = good.clone();
        let i = at.index(flipped.len());
        flipped[i] ^= byte | 1;
        decode_all(&flipped);
        decode_all(&good[..cut.index(good.len())]);
        let mut longer = good.clone();
        longer.push(byte);
        decode_all(&longer);
    }
}

/// Format 0 bytes of `depth` nested batches (`Op::Batch` is variant 8; a Vec is a u64 length).
fn nested_forward_v0(depth: usize) -> Vec<u8> {
    let mut bytes = 1u64.to_le_bytes().to_vec(); // one op
    for _ in 0..depth {
        bytes.extend_from_slice(&8u32.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
    }
    bytes.extend_from_slice(&13u32.to_le_bytes()); // ReleaseDue at the bottom
    bytes
}

#[test]
fn a_batch_nested_100000_deep_is_refused_not_a_stack_overflow() {
    let bytes = nested_forward_v0(100_000);
    let e = decode_forward(&bytes).unwrap_err();
    assert!(e.to_string().contains("batch"), "{e}");
    // The same inside an append-entries request: vote, prev_log_id, one entry whose command nests.
    let run = |depth| {
        let mut b = Vec::new();
        b.extend_from_slice(&7u64.to_le_bytes()); // vote.leader_id.term
        b.extend_from_slice(&2u64.to_le_bytes()); // vote.leader_id.node_id
        b.push(1); // committed
        b.push(0); // prev_log_id: None
        b.extend_from_slice(&1u64.to_le_bytes()); // one entry
        b.extend_from_slice(&3u64.to_le_bytes()); // log_id.leader_id.term
        b.extend_from_slice(&2u64.to_le_bytes()); // log_id.leader_id.node_id
        b.extend_from_slice(&41u64.to_le_bytes()); // log_id.index
        b.extend_from_slice(&1u32.to_le_bytes()); // EntryPayload::Normal
        b.extend_from_slice(&0u64.to_le_bytes()); // now_ms
        b.extend_from_slice(&nested_forward_v0(depth)[8..]);
        b.push(0); // leader_commit: None
        decode_append_entries(&b)
    };
    assert!(run(100_000).is_err());
    assert!(run(2).is_err(), "a batch in a batch is refused");
    assert!(run(1).is_ok(), "one level of batch is what the leader writes");
    let flat = run(0);
    assert!(flat.is_ok(), "a plain command decodes: {flat:?}");
}

#[test]
fn a_length_prefix_claiming_terabytes_allocates_nothing() {
    let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0; 64]);
    assert!(decode_forward(&bytes).is_err());
    assert!(decode_snapshot_body(&bytes).is_err());
    // A string claiming 2^60 bytes in an otherwise valid submit.
    let mut submit = 1u64.to_le_bytes().to_vec();
    submit.extend_from_slice(&0u32.to_le_bytes());
    submit.extend_from_slice(&(1u64 << 60).to_le_bytes());
    submit.extend_from_slice(b"abc");
    assert!(decode_forward(&submit).is_err());
}

#[test]
fn an_oversized_record_is_refused_by_its_header() {
    let mut bytes = encode_vote(&vote(), 1).unwrap();
    bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = decode_vote(&bytes).unwrap_err();
    assert!(matches!(e, FormatError::TooLarge { .. }), "{e}");
}
