//! raftsched's gRPC types and services, generated at build time from `proto/raftsched.proto`.
//!
//! API boundary: these types are the wire format. Internal crates convert to and from them at the
//! edge (`raftsched-server::convert`), so nothing inside depends on prost's representation.

#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("raftsched.v1");
}

pub use v1::*;

pub mod security;

/// The encoded `FileDescriptorSet` of `proto/raftsched.proto`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/raftsched_descriptor.bin"));

/// Response metadata a follower adds to its answer to a write: the leader's address
/// (`HOST:PORT`), so a client can send its next writes straight there.
pub const LEADER_HINT_KEY: &str = "raftsched-leader";

/// Whether `addr` has the `HOST:PORT` shape every replica and worker address on the wire takes.
pub fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}
