//! The proto is ready for Go: Debian's `protoc-gen-go` (APIv2) and `protoc-gen-go-grpc` generate
//! stubs from it in both of their path modes (the default mode needs `go_package`, which a proto
//! without it fails with "unable to determine Go import path").
//!
//! Needs `protoc`, `protoc-gen-go` and `protoc-gen-go-grpc` on PATH (`.ci/run` installs Debian's
//! `protobuf-compiler protoc-gen-go protoc-gen-go-grpc` as root); without them the test says it
//! skipped. The build itself never uses a system `protoc` (protox compiles the proto).

use std::path::{Path, PathBuf};
use std::process::Command;

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn proto_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto")
}

#[test]
fn go_stubs_generate_in_both_path_modes() {
    let tools = ["protoc", "protoc-gen-go", "protoc-gen-go-grpc"];
    if let Some(missing) = tools.iter().find(|t| !on_path(t)) {
        eprintln!("skipped: {missing} is not installed (Debian: protobuf-compiler protoc-gen-go protoc-gen-go-grpc)");
        return;
    }
    for opts in [&[][..], &["--go_opt=paths=source_relative", "--go-grpc_opt=paths=source_relative"][..]] {
        let out = tempfile::tempdir().unwrap();
        let status = Command::new("protoc")
            .arg("-I")
            .arg(proto_dir())
            .arg(format!("--go_out={}", out.path().display()))
            .arg(format!("--go-grpc_out={}", out.path().display()))
            .args(opts)
            .arg(proto_dir().join("raftsched.proto"))
            .output()
            .expect("run protoc");
        let stderr = String::from_utf8_lossy(&status.stderr);
        assert!(status.status.success(), "protoc {opts:?}: {stderr}");
        let files: Vec<PathBuf> = walk(out.path());
        let message = files.iter().find(|f| f.ends_with("raftsched.pb.go")).expect("raftsched.pb.go");
        let service = files.iter().find(|f| f.ends_with("raftsched_grpc.pb.go")).expect("raftsched_grpc.pb.go");
        let text = std::fs::read_to_string(message).unwrap();
        assert!(text.contains("package raftschedv1"), "{}", message.display());
        assert!(std::fs::read_to_string(service).unwrap().contains("SchedulerClient"));
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
