//! The `check` command line: verdict lines, exit codes, artifacts, one-line errors.

use std::path::PathBuf;
use std::process::Command;

fn data(file: &str) -> PathBuf {
    jepsen_like_tests::bench::default_data_dir().join(file)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jepsen-like-tests")).args(args).output().expect("run the binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn verdict_lines_and_exit_codes() {
    let good = data("etcd/etcd_002.log");
    let bad = data("etcd/etcd_000.log");
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());
    let (code, stdout, _) = run(&["check", "--model", "register", good]);
    assert_eq!((code, stdout), (0, format!("{good}: linearizable\n")));

    let out_dir = std::env::temp_dir().join(format!("lincheck-cli-{}", std::process::id()));
    let (code, stdout, stderr) = run(&["check", "--model", "register", "--out", out_dir.to_str().unwrap(), good, bad]);
    assert_eq!(code, 1);
    assert_eq!(stdout, format!("{good}: linearizable\n{bad}: not linearizable\n"));
    // Either the search's "cannot be next" or the read check's "cannot be explained".
    assert!(stderr.contains("cannot be next") || stderr.contains("cannot be explained"), "{stderr}");
    let html = std::fs::read_to_string(out_dir.join("etcd_000.log.violation.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("</svg>"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("etcd_000.log.violation.json")).unwrap()).unwrap();
    assert!(!json["window"].as_array().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn bad_input_and_bad_usage_exit_2_with_one_line() {
    let (code, stdout, _) = run(&["check", "--model", "kv", data("etcd/etcd_000.log").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stdout.contains(": unknown (bad input: line 1: "), "{stdout}");
    let (code, _, stderr) = run(&["check", "--model", "nosuch", "x"]);
    assert_eq!((code, stderr.lines().count()), (2, 1), "{stderr}");
    let (code, _, stderr) = run(&["check", "--model", "register"]);
    assert_eq!((code, stderr.lines().count()), (2, 1), "{stderr}");
    // a time-out is unknown, exit 2, and a definite violation does not hide it. The history is
    // hopeless for any search: 40 concurrent indeterminate writes of distinct values and a read
    // of a value never written, so it times out on any machine.
    let mut text = String::new();
    for p in 0..40 {
        text.push_str(&format!("{{\"process\":{p},\"type\":\"invoke\",\"f\":\"write\",\"value\":{p}}}\n"));
    }
    text.push_str("{\"process\":99,\"type\":\"invoke\",\"f\":\"read\"}\n{\"process\":99,\"type\":\"ok\",\"f\":\"read\",\"value\":1000}\n");
    let slow = std::env::temp_dir().join(format!("lincheck-slow-{}.jsonl", std::process::id()));
    std::fs::write(&slow, text).unwrap();
    let (code, stdout, _) = run(&[
        "check",
        "--model",
        "register",
        "--timeout-ms",
        "50",
        slow.to_str().unwrap(),
        data("etcd/etcd_000.log").to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&slow);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains(": unknown (timed out in register)\n"), "{stdout}");
    assert!(stdout.contains("etcd_000.log: not linearizable\n"), "{stdout}");
}
