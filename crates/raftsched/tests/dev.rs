//! Goal: the new user's path. `raftsched dev` starts a trio with no setup, `submit` and `list`
//! work against it, and Ctrl-C stops it cleanly and removes its temp data.
//! Method: run the real binary on three consecutive free ports (the default 7001-7003 may be taken
//! on a shared machine; the defaults themselves are covered by the client's unit tests).

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use common::*;

/// A base port with the two after it free as well.
fn three_free_ports() -> u16 {
    for _ in 0..100 {
        let base = free_ports(1)[0];
        if base > 65_000 {
            continue;
        }
        let held: Vec<_> = (0..3).filter_map(|i| TcpListener::bind(("127.0.0.1", base + i)).ok()).collect();
        if held.len() == 3 {
            return base;
        }
    }
    panic!("no three consecutive free ports");
}

#[test]
fn dev_trio_serves_submit_and_list_and_stops_on_ctrl_c() {
    let base = three_free_ports();
    let http_base = loop {
        let p = three_free_ports();
        if p.abs_diff(base) >= 3 {
            break p;
        }
    };
    let mut dev = Command::new(BIN)
        .args(["dev", "--base-port", &base.to_string(), "--http-base-port", &http_base.to_string()])
        .env("RAFTSCHED_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dev_stdout = dev.stdout.take().unwrap();
    let mut dev = KillOnDrop(dev);
    // Wait for the banner's last line: the trio is up and has a leader (or says it has none yet).
    let mut banner = Vec::new();
    for line in BufReader::new(dev_stdout).lines() {
        let line = line.unwrap();
        banner.push(line.clone());
        if line.contains("Ctrl-C stops") {
            break;
        }
    }
    let banner = banner.join("\n");
    assert!(banner.contains("raftsched submit --builtin echo:hi"), "{banner}");
    let data_dir =
        banner.lines().find_map(|l| l.trim().strip_prefix("data: ")).unwrap().split(' ').next().unwrap().to_string();
    assert!(std::path::Path::new(&data_dir).exists());

    let cluster = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect::<Vec<_>>().join(",");
    let out = cli(&cluster, &["submit", "--builtin", "echo:hi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out);
    // The dev workers run what is submitted: `--wait` prints the output of a real process.
    let out = cli(&cluster, &["submit", "--wait", "--", "echo", "hi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi");
    let out = cli(&cluster, &["submit", "--wait", "--builtin", "fail:3", "--max-attempts", "1"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = cli(&cluster, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).lines().any(|l| l.starts_with(&id) && l.contains("echo:hi")), "{}", stdout(&out));

    // The banner's curl line works: the HTTP/JSON API on the first replica's HTTP port.
    assert!(banner.contains(&format!("curl -sS -X POST http://127.0.0.1:{http_base}/v1/tasks")), "{banner}");
    let body = r#"{"spec": {"command": ["echo", "from-curl"]}, "wait_ms": 20000}"#;
    let response = http_post(&format!("127.0.0.1:{http_base}"), "/v1/tasks", "curl-1", body);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.contains(r#""state":"succeeded""#) && response.contains("from-curl"), "{response}");

    unsafe {
        libc::kill(dev.0.id() as i32, libc::SIGINT);
    }
    let status = dev.0.wait().unwrap();
    assert!(status.success(), "dev exited with {status}");
    assert!(!std::path::Path::new(&data_dir).exists(), "temp data dir {data_dir} left behind");
}

/// A plain HTTP/1.1 POST with an `Idempotency-Key`, as curl sends it: the whole response.
fn http_post(addr: &str, path: &str, key: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nIdempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}
