//! raftsched's gRPC types and services, generated at build time from `proto/raftsched.proto`.
//!
//! API boundary: these types are the wire format. Internal crates convert to and from them at the
//! edge (`raftsched-server::convert`), so nothing inside depends on prost's representation.

#![allow(clippy::all)]

pub mod v1 {
    tonic::include_proto!("raftsched.v1");
}

pub use v1::*;

/// The encoded `FileDescriptorSet` of `proto/raftsched.proto`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/raftsched_descriptor.bin"));
