//! Bad input gets a clear error and loses nothing: the right gRPC code, a one-line CLI message,
//! exit 2 for usage and 1 for a refused request; a replica never panics on it.

mod common;

use std::process::Command;

use common::*;
use raftsched_client::api;
use raftsched_state::limits;
use tonic::Code;

fn assert_one_line(text: &str) {
    assert_eq!(text.lines().count(), 1, "expected one line on stderr, got:\n{text}");
    assert!(text.starts_with("raftsched: error: "), "{text}");
    assert!(!text.contains("panicked") && !text.contains("backtrace"), "{text}");
}

#[test]
fn version_and_completions_need_no_cluster() {
    let out = std::process::Command::new(BIN).args(["version", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["format_max"].as_u64() >= v["format_min"].as_u64(), "{v}");
    let out = std::process::Command::new(BIN).arg("version").output().unwrap();
    assert!(stdout(&out).starts_with("raftsched ") && stdout(&out).contains("commit"), "{}", stdout(&out));
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef raftsched"), ("fish", "complete -c raftsched")] {
        let out = std::process::Command::new(BIN).args(["completions", shell]).output().unwrap();
        assert!(out.status.success() && stdout(&out).contains(marker), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("submit"), "{shell}");
    }
    let out = std::process::Command::new(BIN).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Goal: every server flag also comes from RAFTSCHED_* and from `--config FILE` (TOML), a flag
/// winning over the environment and the environment over the file; a bad file is one line naming
/// what is wrong. Method: settings whose effect shows before the replica serves (a heartbeat cap
/// too low is refused naming its flag; a taken port, naming the address).
#[test]
fn server_settings_come_from_flags_env_and_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let config = dir.path().join("server.toml");
    let data_dir = path_str(&dir.path().join("data"));
    let settings = format!(
        "id = 1\nlisten = \"{addr}\"\ndata_dir = \"{data_dir}\"\ninitial-cluster = \"1={addr}\"\ninsecure = true\nheartbeats-per-second-max = 5\n"
    );
    std::fs::write(&config, settings).unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        Command::new(BIN)
            .arg("server")
            .args(args)
            .envs(env.iter().copied())
            .env("RAFTSCHED_LOG", "error")
            .output()
            .unwrap()
    };
    let config = path_str(&config);
    // The file alone: the cap it sets is refused, naming the flag.
    let out = run(&["--config", &config], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--heartbeats-per-second-max"), "{}", stderr(&out));
    assert_one_line(&stderr(&out));
    // The environment wins over the file, a flag over both: with the cap lifted the replica gets
    // as far as its port, which is taken.
    for (args, env) in [
        (vec!["--config", &config], vec![("RAFTSCHED_HEARTBEATS_PER_SECOND_MAX", "0")]),
        (
            vec!["--config", &config, "--heartbeats-per-second-max", "0"],
            vec![("RAFTSCHED_HEARTBEATS_PER_SECOND_MAX", "5")],
        ),
    ] {
        let out = run(&args, &env);
        assert_eq!(out.status.code(), Some(1), "{args:?} {env:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(&addr), "{}", stderr(&out));
    }
    // The file from RAFTSCHED_CONFIG; a key that names no flag is refused, naming it.
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "heartbeat-timout-ms = 3000\n").unwrap();
    let out = run(&[], &[("RAFTSCHED_CONFIG", &path_str(&typo))]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("heartbeat-timout-ms"), "{}", stderr(&out));
    assert_one_line(&stderr(&out));
    std::fs::write(&typo, "id = [\n").unwrap();
    let out = run(&["--config", &path_str(&typo)], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_one_line(&stderr(&out));
    drop(taken);
}

#[test]
fn usage_errors_exit_2_without_a_cluster() {
    // Nothing listens on port 1; none of these get as far as the network.
    let nowhere = "127.0.0.1:1";
    for args in [
        vec!["submit", "--builtin", "nope:1"],
        vec!["submit", "--builtin", "sleep:soon"],
        vec!["submit"],
        vec!["submit", "--key", "", "--builtin", "echo:x"],
        vec!["get", "abc"],
        vec!["get", "0"],
        vec!["cancel", "-5"],
        vec!["list", "--state", "sleeping"],
    ] {
        let out = cli(nowhere, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_one_line(&stderr(&out));
    }
    let long_key = "k".repeat(limits::KEY_BYTES_MAX + 1);
    let out = cli(nowhere, &["submit", "--key", &long_key, "--builtin", "echo:x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("key_bytes_max"), "{}", stderr(&out));
    // clap's own usage errors exit 2 as well, on one line that names what is missing.
    let out = cli(nowhere, &["submit", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli(nowhere, &["get"]);
    assert_eq!(out.status.code(), Some(2));
    assert_one_line(&stderr(&out));
    assert!(stderr(&out).contains("<ID>"), "{}", stderr(&out));
    // A bad cluster list is a usage error too.
    let out = cli("not-an-address", &["get", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Nobody answering is a failure (exit 1) after the timeout, with one line.
    let out = cli(nowhere, &["get", "--timeout", "300ms", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_one_line(&stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_get_the_right_code_and_change_nothing() {
    let mut cluster = Cluster::start(1, &[]);
    cluster.leader().await;
    let addr = cluster.cluster_arg();
    let client = cluster.client();
    let first = client.submit("k", echo("one")).await.unwrap();

    // CLI: refused requests exit 1 with one line naming the code.
    let out = cli(&addr, &["get", "999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert_one_line(&stderr(&out));
    assert!(stderr(&out).contains("NOT_FOUND"));
    let out = cli(&addr, &["submit", "--key", "k", "--builtin", "echo:two"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("ALREADY_EXISTS"), "{}", stderr(&out));
    let out = cli(&addr, &["cancel", "999999"]);
    assert_eq!(out.status.code(), Some(1));

    // Library: every bound answers INVALID_ARGUMENT naming the limit, before anything is proposed.
    let code_and_message = |e: raftsched_client::ClientError| (e.code(), e.to_string());
    let (code, msg) =
        code_and_message(client.submit(&"k".repeat(limits::KEY_BYTES_MAX + 1), echo("x")).await.unwrap_err());
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("key_bytes_max"), "{msg}");
    let (code, msg) = code_and_message(client.submit("", echo("x")).await.unwrap_err());
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    let big = raftsched_client::builtin("echo", &"x".repeat(limits::SPEC_BYTES_MAX + 1));
    let (code, msg) = code_and_message(client.submit("big", big).await.unwrap_err());
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("spec_bytes_max"), "{msg}");
    let many = raftsched_client::command(vec!["a".to_string(); limits::ARGV_COUNT_MAX + 1]);
    let (code, msg) = code_and_message(client.submit("many", many).await.unwrap_err());
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("argv_count_max"), "{msg}");
    let (code, _) = code_and_message(client.submit("empty", api::TaskSpec::default()).await.unwrap_err());
    assert_eq!(code, Code::InvalidArgument);
    let too_big_page = api::ListTasksRequest { limit: limits::LIST_PAGE_SIZE_MAX as u32 + 1, ..Default::default() };
    let (code, msg) = code_and_message(client.list_page(too_big_page).await.unwrap_err());
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("list_page_size_max"), "{msg}");
    let bad_state = api::ListTasksRequest { state: "sleeping".into(), ..Default::default() };
    assert_eq!(client.list_page(bad_state).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(client.get(0, false).await.unwrap_err().code(), Code::InvalidArgument);
    // Worker reports: an empty batch is refused whole; a report on a task nobody holds is refused
    // on its own (FAILED_PRECONDITION for the stale token), next to the batch's other answers.
    let (code, msg) = code_and_message(client.report_many(Vec::new()).await.unwrap_err());
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("report_batch_len_max"), "{msg}");
    let stale = api::ReportRequest { task_id: first.id, token: 12345, finished: true, ..Default::default() };
    let missing = api::ReportRequest { task_id: 424242, token: 1, ..Default::default() };
    let outcomes = client.report_many(vec![stale, missing]).await.unwrap().outcomes;
    assert_eq!(outcomes.len(), 2);
    assert_eq!(Code::from(outcomes[0].code), Code::FailedPrecondition, "{outcomes:?}");
    assert_eq!(Code::from(outcomes[1].code), Code::NotFound, "{outcomes:?}");
    assert_eq!(client.get(424242, false).await.unwrap_err().code(), Code::NotFound);

    // Garbage on the replica-to-replica service is refused without reaching Raft.
    let mut raft = cluster.raft_client(1, Some(1)).await;
    for _ in 0..3 {
        let status = raft.append_entries(api::RaftBytes { data: vec![0xff; 64] }).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let status = raft.forward(api::RaftBytes { data: b"not an op".to_vec() }).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        // A well-formed but empty batch of forwarded writes (bincode: a zero length).
        let status = raft.forward(api::RaftBytes { data: vec![0; 8] }).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("forward_batch_len_max"), "{}", status.message());
    }

    // Nothing was lost or added by any of it.
    let tasks = list_all(&client, false).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].id, first.id);
    assert!(cluster.is_running(1));
}

fn server(id: &str, listen: &str, data_dir: &str, initial: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["server", "--id", id, "--listen", listen, "--data-dir", data_dir, "--initial-cluster", initial])
        .arg("--insecure")
        .env("RAFTSCHED_LOG", "error")
        .output()
        .expect("run raftsched server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_dirs_and_flags_stop_the_replica_with_a_clear_error() {
    let mut cluster = Cluster::start(1, &[]);
    cluster.leader().await;
    let reply = cluster.client().submit("keep-me", echo("x")).await.unwrap();
    // SIGTERM is a clean shutdown: exit 0.
    assert!(cluster.terminate(1).success(), "{}", cluster.logs());

    let data_dir = path_str(&cluster.replicas[&1].data_dir);
    let port = free_ports(1)[0];
    let listen = format!("127.0.0.1:{port}");
    // The data dir of replica 1 started as replica 2: refused, nothing touched.
    let out = server("2", &listen, &data_dir, &format!("2={listen}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("belongs to replica 1"), "{}", stderr(&out));

    // Bad flags: exit 2.
    let out = server("1", &listen, &data_dir, "1=nohost");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = server("3", &listen, &data_dir, &format!("1={listen}"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A heartbeat cap too low to bound the scaled timeout: one line naming the flag.
    let out = Command::new(BIN)
        .args(["server", "--id", "1", "--listen", &listen, "--data-dir", &data_dir])
        .args(["--initial-cluster", &format!("1={listen}"), "--insecure", "--heartbeats-per-second-max", "5"])
        .output()
        .expect("run raftsched server");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--heartbeats-per-second-max"), "{}", stderr(&out));
    assert_one_line(&stderr(&out));

    // A port that is taken: exit 1 naming the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let other_dir = cluster.dir.path().join("other");
    let out = server("1", &taken_addr, &path_str(&other_dir), &format!("1={taken_addr}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&taken_addr), "{}", stderr(&out));
    drop(taken);

    // The original replica still has its task.
    cluster.start_replica(1);
    cluster.leader().await;
    assert_eq!(cluster.client().get(reply.id, false).await.unwrap().key, "keep-me");
    assert!(cluster.terminate(1).success(), "{}", cluster.logs());

    // A damaged data dir: every file of the store overwritten with garbage. The replica must
    // refuse to start with one line naming the dir, not crash with a panic.
    let sled_dir = cluster.replicas[&1].data_dir.join("sled");
    let mut n_damaged = 0;
    for entry in walk(&sled_dir) {
        std::fs::write(&entry, b"this is not a sled database").unwrap();
        n_damaged += 1;
    }
    assert!(n_damaged > 0);
    let out = server("1", &listen, &data_dir, &format!("1={listen}"));
    assert_ne!(out.status.code(), Some(0), "started on a damaged data dir");
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("raftsched: error: ") && last.contains(&data_dir), "{err}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
