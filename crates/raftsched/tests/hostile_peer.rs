//! A hostile or broken peer on the replica-to-replica service: deeply nested batches, wild
//! snapshot offsets, garbage snapshots, records of a newer format. Each is refused with
//! INVALID_ARGUMENT (or a Raft-level mismatch) before openraft acts on it; the trio keeps serving,
//! loses nothing, and every replica still stops within 10 s of SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::*;
use openraft::{SnapshotMeta, StoredMembership, Vote};
use raftsched_client::api;
use tonic::Code;

/// Format-0 bytes of `Vec<Op>` holding one `Op::Batch` nested `depth` deep.
fn nested_forward(depth: usize) -> Vec<u8> {
    let mut bytes = 1u64.to_le_bytes().to_vec();
    for _ in 0..depth {
        bytes.extend_from_slice(&8u32.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
    }
    bytes.extend_from_slice(&13u32.to_le_bytes()); // ReleaseDue
    bytes
}

/// An append-entries request (format 0) whose one entry carries the nested batch.
fn nested_append(depth: usize) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [1u64, 1] {
        b.extend_from_slice(&v.to_le_bytes()); // vote: term, node
    }
    b.push(0); // not committed
    b.push(0); // prev_log_id: None
    b.extend_from_slice(&1u64.to_le_bytes());
    for v in [1u64, 1, 1_000_000] {
        b.extend_from_slice(&v.to_le_bytes()); // log id: term, node, index
    }
    b.extend_from_slice(&1u32.to_le_bytes()); // Normal
    b.extend_from_slice(&0u64.to_le_bytes()); // now_ms
    b.extend_from_slice(&nested_forward(depth)[8..]);
    b.push(0);
    b
}

fn snapshot_chunk(offset: u64, data: Vec<u8>, done: bool) -> Vec<u8> {
    let meta =
        SnapshotMeta { last_log_id: None, last_membership: StoredMembership::default(), snapshot_id: "hostile".into() };
    let req = raftsched_format::InstallSnapshot { vote: Vote::new(1_000, 9), meta, offset, data, done };
    raftsched_format::encode_install_snapshot(&req, 1).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peer_messages_are_refused_and_the_trio_keeps_serving() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let client = cluster.client();
    let first = client.submit("before", echo("x")).await.unwrap();

    for id in cluster.ids() {
        // A replica that holds the secret but sends garbage (a bug, or a stolen secret).
        let mut raft = cluster.raft_client(id, Some(9)).await;
        let invalid = |r: Result<tonic::Response<api::RaftBytes>, tonic::Status>, what: &str| {
            let status = r.expect_err(what);
            assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
            status.message().to_string()
        };
        // 100,000 batches deep (1.2 MB): refused, not a stack overflow.
        let mut member = cluster.raft_client(id, Some(1)).await;
        let msg = invalid(member.forward(api::RaftBytes { data: nested_forward(100_000) }).await, "nested forward");
        assert!(msg.contains("batch"), "{msg}");
        invalid(raft.append_entries(api::RaftBytes { data: nested_append(100_000) }).await, "nested append");
        // A batch is not a client write, even one level deep.
        invalid(member.forward(api::RaftBytes { data: nested_forward(1) }).await, "a forwarded batch");
        // Snapshot chunks: a wild offset is a mismatch (the sender starts over), garbage is refused.
        let reply = raft.install_snapshot(api::RaftBytes { data: snapshot_chunk(1 << 62, vec![1; 16], false) }).await;
        let bytes = reply.expect("a mismatch is a Raft answer").into_inner().data;
        let answer = raftsched_format::decode_reply::<
            openraft::raft::InstallSnapshotResponse<u64>,
            openraft::error::InstallSnapshotError,
        >(&bytes)
        .unwrap();
        assert!(answer.is_err(), "a chunk at offset 2^62 was accepted");
        let garbage = snapshot_chunk(0, b"not a snapshot at all".to_vec(), true);
        let msg = invalid(raft.install_snapshot(api::RaftBytes { data: garbage }).await, "garbage snapshot");
        assert!(msg.contains("snapshot refused"), "{msg}");
        // A record of a newer format is named as such.
        let mut newer = raftsched_format::encode_forward(&[], 1).unwrap();
        newer[4..6].copy_from_slice(&2u16.to_le_bytes());
        let msg = invalid(member.forward(api::RaftBytes { data: newer }).await, "damaged header");
        assert!(msg.contains("checksum"), "a header changed without its checksum is damage: {msg}");
    }

    // The trio serves and lost nothing.
    let second = client.submit("after", echo("y")).await.unwrap();
    let tasks = list_all(&client, false).await;
    assert_eq!(tasks.iter().map(|t| t.id).collect::<Vec<_>>(), vec![first.id, second.id]);
    cluster.wait_converged().await;
    for id in cluster.ids() {
        assert!(cluster.is_running(id), "replica {id} died\n{}", cluster.logs());
        let started = Instant::now();
        let status = cluster.terminate(id);
        assert!(started.elapsed() < Duration::from_secs(10), "replica {id} took {:?} to stop", started.elapsed());
        assert!(status.success(), "replica {id}: {status}\n{}", cluster.logs());
    }
}
