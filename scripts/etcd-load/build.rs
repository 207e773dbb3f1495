//! Compiles proto/etcd_kv.proto with protox (pure Rust): no system protoc.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto");
    let file = proto_dir.join("etcd_kv.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&proto_dir])?;
    tonic_prost_build::configure().build_server(false).compile_fds(fds)?;
    Ok(())
}
