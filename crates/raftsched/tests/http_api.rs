//! Goal: the HTTP/JSON API on `--http` serves what curl users need — submit with an
//! `Idempotency-Key`, get, list with filters and paging, wait, cancel — through any replica, with
//! the gRPC API's codes as HTTP statuses and its authentication (bearer tokens).

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Instant;

/// One HTTP/1.1 request (no client library): the status code and the body as JSON.
async fn call(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> (u16, Value) {
    let (status, _, text) = call_raw(addr, method, path, headers, body).await;
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
    (status, json)
}

/// One HTTP/1.1 request: the status code, the head (lowercase) and the body as text.
async fn call_raw(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The port opens once the replica has started: wait for it.
    let started = Instant::now();
    let mut stream = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => break stream,
            Err(e) => assert!(started.elapsed() < DEADLINE, "{addr}: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status: u16 = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{response}"));
    let (head, text) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let head = head.to_ascii_lowercase();
    let text = if head.contains("transfer-encoding: chunked") { unchunk(text) } else { text.to_string() };
    (status, head, text)
}

fn unchunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        text = &rest[n + 2..];
    }
    out
}

/// Polls until `ok` accepts what `path` answers.
async fn until(addr: &str, path: &str, headers: &[(&str, &str)], ok: impl Fn(u16, &Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = call(addr, "GET", path, headers, None).await;
        if ok(status, &body) {
            return body;
        }
        assert!(started.elapsed() < DEADLINE, "GET {path}: still {status} {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_users_submit_wait_list_and_cancel_through_a_follower() {
    let mut cluster = Cluster::start_with_http(3, &[]);
    let leader = cluster.wait_converged().await;
    let worker_http = format!("127.0.0.1:{}", free_ports(1)[0]);
    cluster.start_worker("w1", &["--http", &worker_http]);
    cluster.wait_workers_ready(1).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let http = cluster.http(follower);
    cluster.wait_cluster_version(raftsched_format::FORMAT_VERSION_MAX).await;

    let spec = json!({"command": ["echo", "hello"]});
    let (status, first) =
        call(&http, "POST", "/v1/tasks", &[("Idempotency-Key", "curl-1")], Some(&json!({"spec": spec}))).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["created"], json!(true));
    let id = first["id"].as_u64().unwrap();
    // The same key again is the same task: 200, not a second one.
    let (status, again) =
        call(&http, "POST", "/v1/tasks", &[("Idempotency-Key", "curl-1")], Some(&json!({"spec": spec}))).await;
    assert_eq!((status, again["id"].as_u64(), again["created"].clone()), (200, Some(id), json!(false)), "{again}");

    let done = until(&http, &format!("/v1/tasks/{id}/wait?until_ended=true&wait_ms=5000"), &[], |s, t| {
        s == 200 && t["state"] == "succeeded"
    })
    .await;
    assert_eq!(done["result"]["exit_code"], json!(0), "{done}");
    assert!(done["result"]["output_tail"].as_str().unwrap().contains("hello"), "{done}");
    assert_eq!(done["attempts"][0]["worker_id"], json!("w1"), "{done}");
    let (status, got) = call(&http, "GET", &format!("/v1/tasks/{id}"), &[], None).await;
    assert_eq!((status, got["key"].clone()), (200, json!("curl-1")));
    // Its whole output, relayed from the worker, and whose it is.
    let (status, head, text) = call_raw(&http, "GET", &format!("/v1/tasks/{id}/output"), &[], None).await;
    assert_eq!((status, text.as_str()), (200, "hello\n"), "{head}");
    assert!(head.contains("raftsched-worker: w1") && head.contains("raftsched-attempt: 1"), "{head}");
    let (status, _, text) = call_raw(&http, "GET", &format!("/v1/tasks/{id}/output?offset=3"), &[], None).await;
    assert_eq!((status, text.as_str()), (200, "lo\n"));

    // Submit and wait in one call; the key may also go in the body.
    let body = json!({"spec": {"builtin": {"name": "fail", "arg": "3"}}, "key": "curl-2", "wait_ms": 10000});
    let (status, waited) = call(&http, "POST", "/v1/tasks", &[], Some(&body)).await;
    assert_eq!(status, 201, "{waited}");
    // A task waiting for its time (an hour from now) can be cancelled.
    let in_an_hour =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64 + 3_600_000;
    let later = json!({"spec": {"command": ["true"], "run_at_ms": in_an_hour}});
    let (status, scheduled) = call(&http, "POST", "/v1/tasks", &[("Idempotency-Key", "curl-3")], Some(&later)).await;
    assert_eq!(status, 201, "{scheduled}");
    let sid = scheduled["id"].as_u64().unwrap();
    let (status, cancelled) = call(&http, "POST", &format!("/v1/tasks/{sid}/cancel"), &[], None).await;
    assert_eq!((status, cancelled["id"].as_u64()), (200, Some(sid)), "{cancelled}");

    // Listing: filtered by state, one per page, `next_after` to go on.
    let (status, page) = call(&http, "GET", "/v1/tasks?limit=1", &[], None).await;
    assert_eq!((status, page["tasks"].as_array().unwrap().len()), (200, 1), "{page}");
    let after = page["next_after"].as_u64().expect("more pages");
    let (_, rest) = call(&http, "GET", &format!("/v1/tasks?after={after}&limit=10"), &[], None).await;
    assert_eq!(rest["tasks"].as_array().unwrap().len(), 2, "{rest}");
    let (_, cancelled_only) = call(&http, "GET", "/v1/tasks?state=cancelled", &[], None).await;
    let ids: Vec<u64> = cancelled_only["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![sid]);

    // Errors: the gRPC code as an HTTP status, and a body that names it.
    let bad = [
        ("GET", "/v1/tasks/999999".to_string(), None, 404, "NOT_FOUND"),
        ("GET", "/v1/tasks/abc".into(), None, 400, "INVALID_ARGUMENT"),
        ("GET", format!("/v1/tasks/{id}/output?stream=both"), None, 400, "INVALID_ARGUMENT"),
        ("GET", format!("/v1/tasks/{id}/output?attempt=2"), None, 404, "NOT_FOUND"),
        ("GET", format!("/v1/tasks/{sid}/output"), None, 404, "NOT_FOUND"),
        ("GET", "/v1/tasks?state=nope".into(), None, 400, "INVALID_ARGUMENT"),
        ("GET", "/v1/tasks?color=red".into(), None, 400, "INVALID_ARGUMENT"),
        ("POST", "/v1/tasks".into(), Some(json!({"spec": {"command": ["true"]}})), 400, "INVALID_ARGUMENT"),
        ("POST", "/v1/tasks".into(), Some(json!({"spec": {"comand": ["true"]}, "key": "k"})), 400, "INVALID_ARGUMENT"),
        ("POST", format!("/v1/tasks/{id}/cancel"), None, 409, "FAILED_PRECONDITION"),
        ("GET", format!("/v1/tasks/{id}/wait?wait_ms=60000"), None, 400, "INVALID_ARGUMENT"),
        (
            "POST",
            "/v1/tasks".into(),
            Some(json!({"spec": {"command": ["true"]}, "key": "d", "after": "1"})),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "POST",
            "/v1/tasks".into(),
            Some(json!({"spec": {"command": ["true"]}, "key": "d", "after": [999999]})),
            404,
            "NOT_FOUND",
        ),
    ];
    for (method, path, body, want, code) in bad {
        let (status, answer) = call(&http, method, &path, &[], body.as_ref()).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (want, Some(code)), "{method} {path}: {answer}");
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }
    // Dependencies, as on gRPC: by id or key, with a policy; the task shows them.
    let after =
        json!({"spec": {"command": ["true"]}, "after": [id], "after_keys": ["curl-1"], "after_policy": "finished"});
    let (status, dependent) = call(&http, "POST", "/v1/tasks", &[("Idempotency-Key", "after-1")], Some(&after)).await;
    assert_eq!(status, 201, "{dependent}");
    let dependent_id = dependent["id"].as_u64().unwrap();
    let (_, got) = call(&http, "GET", &format!("/v1/tasks/{dependent_id}"), &[], None).await;
    assert_eq!((got["after"].clone(), got["after_policy"].as_str()), (json!([id]), Some("finished")), "{got}");
    // Flows, as on gRPC: created whole under the Idempotency-Key, read back by key.
    let flow = json!({"tasks": [
        {"name": "a", "spec": {"command": ["true"]}},
        {"name": "b", "spec": {"command": ["true"]}, "after": ["a"], "concurrency_key": "http", "concurrency_limit": 1}
    ]});
    let (status, made) = call(&http, "POST", "/v1/flows", &[("Idempotency-Key", "flow-1")], Some(&flow)).await;
    assert_eq!(
        (status, made["created"].clone(), made["ids"].as_array().map(Vec::len)),
        (201, json!(true), Some(2)),
        "{made}"
    );
    let (status, got) = call(&http, "GET", "/v1/flows/flow-1", &[], None).await;
    assert_eq!((status, got["tasks"][1]["key"].as_str()), (200, Some("flow-1/b")), "{got}");
    assert_eq!(got["tasks"][1]["concurrency_key"], json!("http"), "{got}");
    let cycle = json!({"tasks": [{"name": "a", "spec": {"command": ["true"]}, "after": ["a"]}]});
    let (status, refused) = call(&http, "POST", "/v1/flows", &[("Idempotency-Key", "flow-2")], Some(&cycle)).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{refused}");
    // The same key with another spec is a conflict, as on gRPC.
    let other = json!({"spec": {"command": ["echo", "other"]}});
    let (status, answer) = call(&http, "POST", "/v1/tasks", &[("Idempotency-Key", "curl-1")], Some(&other)).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("ALREADY_EXISTS")), "{answer}");
    // The worker's own /metrics: what it ran and reported, its lease renewals; promtool-clean.
    let (body, value) = metrics(&worker_http, "a worker").await;
    assert!(value("raftsched_worker_attempts_started_total{worker=\"w1\"}") >= 2, "{body}");
    assert!(value("raftsched_worker_reports_acknowledged_total{worker=\"w1\"}") >= 2, "{body}");
    assert!(value("raftsched_worker_lease_renewals_total{worker=\"w1\"}") >= 1, "{body}");
    assert_eq!(value("raftsched_worker_registrations_total{worker=\"w1\"}"), 1, "{body}");
    // The replica's task outcomes and queue waits, as applied: the tasks above ran and ended.
    let (body, value) = metrics(&http, "a replica").await;
    assert!(value("raftsched_tasks_ended_total{state=\"succeeded\"}") >= 1, "{body}");
    assert!(value("raftsched_task_attempts_ended_total{outcome=\"succeeded\"}") >= 1, "{body}");
    assert!(value("raftsched_task_queue_wait_seconds_count") >= 2, "{body}");
    assert!(value("raftsched_task_queue_wait_seconds_bucket{le=\"+Inf\"}") >= 2, "{body}");
    // Logs written to a file (not a terminal) carry no colour codes.
    assert!(!cluster.logs().contains('\u{1b}'), "ANSI escape codes in the replicas' log files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_asks_for_the_same_tokens_as_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let (client, worker) = ("client-token-0123456789abcdef", "worker-token-0123456789abcdef");
    std::fs::write(&tokens, format!("client {client}\nworker {worker}\nreplica replica-token-0123456789abcdef\n"))
        .unwrap();
    let cluster = Cluster::start_with_http(1, &["--token-file", &path_str(&tokens)]);
    let http = cluster.http(1);
    let bearer = format!("Bearer {client}");
    let as_client = [("Authorization", bearer.as_str())];
    until(&http, "/v1/tasks", &as_client, |s, _| s == 200).await;
    let (status, answer) = call(&http, "GET", "/v1/tasks", &[], None).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("UNAUTHENTICATED")), "{answer}");
    let wrong = format!("Bearer {worker}");
    let (status, answer) = call(&http, "GET", "/v1/tasks", &[("Authorization", wrong.as_str())], None).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("PERMISSION_DENIED")), "{answer}");
    let body = json!({"spec": {"command": ["true"]}});
    let (status, answer) =
        call(&http, "POST", "/v1/tasks", &[as_client[0], ("Idempotency-Key", "t1")], Some(&body)).await;
    assert_eq!(status, 201, "{answer}");
}

/// `/metrics` of `addr` (`what` names it), checked by promtool: the body, and a reader of one
/// series' value.
async fn metrics(addr: &str, what: &str) -> (String, impl Fn(&str) -> u64) {
    let response = http_get(addr, "/metrics").await;
    let body = response.split_once("\r\n\r\n").map_or(response.as_str(), |(_, b)| b).to_string();
    promtool_check(what, &body);
    let lines = body.clone();
    let value = move |series: &str| -> u64 {
        lines
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} in\n{lines}"))
    };
    (body, value)
}
