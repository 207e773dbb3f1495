//! Goal: standard gRPC tooling works against any replica: `grpc.health.v1` answers SERVING for the
//! server and its services, server reflection lists raftsched's services (what grpcurl needs), and
//! `--http` serves Prometheus metrics that follow what the replica does.

mod common;

use common::*;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_on_every_replica() {
    let mut cluster = Cluster::start(1, &[]);
    cluster.leader().await;
    let url = format!("http://{}", cluster.addr(1));
    let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    // The services turn SERVING once the replica's first read index completes (`health.rs`).
    let started = std::time::Instant::now();
    for service in ["", "raftsched.v1.Scheduler", "raftsched.v1.Worker"] {
        loop {
            let reply = health.check(HealthCheckRequest { service: service.to_string() }).await.unwrap().into_inner();
            if reply.status == ServingStatus::Serving as i32 {
                break;
            }
            assert!(started.elapsed() < DEADLINE, "service {service:?}: {reply:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let reply = replies.message().await.unwrap().expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply: {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["raftsched.v1.Scheduler", "raftsched.v1.Worker", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    reflection_v1alpha_answers_like_grpcurl_needs(&cluster.addr(1)).await;
}

/// grpcurl 1.8 and Python's grpcio-reflection speak v1alpha: what `grpcurl list` and `grpcurl
/// describe` ask, on one stream, where an unknown symbol gets an error *response* and the stream
/// goes on answering.
async fn reflection_v1alpha_answers_like_grpcurl_needs(addr: &str) {
    use prost::Message;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as Ask;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as Reply;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let ask = |m: Ask| ServerReflectionRequest { host: String::new(), message_request: Some(m) };
    let requests = vec![
        ask(Ask::ListServices(String::new())),
        ask(Ask::FileContainingSymbol("raftsched.v1.NoSuchService".into())),
        ask(Ask::FileContainingSymbol("raftsched.v1.Scheduler".into())),
        ask(Ask::AllExtensionNumbersOfType("raftsched.v1.Task".into())),
    ];
    let mut client = ServerReflectionClient::new(channel);
    let mut replies = client.server_reflection_info(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(replies.message().await.unwrap().expect("a reply").message_response.expect("a message"));
    }
    let mut answers = answers.into_iter();
    let mut next = || std::future::ready(answers.next().unwrap());
    let Reply::ListServicesResponse(list) = next().await else { panic!("list") };
    assert!(list.service.iter().any(|s| s.name == "raftsched.v1.Scheduler"), "{list:?}");
    let Reply::ErrorResponse(error) = next().await else { panic!("an unknown symbol should get an error response") };
    assert_eq!(error.error_code, tonic::Code::NotFound as i32, "{error:?}");
    let Reply::FileDescriptorResponse(files) = next().await else { panic!("the stream should go on after an error") };
    let file = prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice()).unwrap();
    assert!(file.service.iter().any(|s| s.name() == "Scheduler"), "{file:?}");
    assert!(file.options.unwrap_or_default().go_package().ends_with(";raftschedv1"));
    let Reply::AllExtensionNumbersResponse(numbers) = next().await else { panic!("extension numbers") };
    assert!(numbers.extension_number.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_replica() {
    let http = format!("127.0.0.1:{}", free_ports(1)[0]);
    let mut cluster = Cluster::start(1, &["--http", &http]);
    cluster.leader().await;
    let m1 = cluster.client().submit("m1", echo("x")).await.unwrap();
    cluster.client().submit("m2", echo("y")).await.unwrap();
    cluster.client().cancel(m1.id).await.unwrap();
    let response = http_get(&http, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    for expected in [
        "raftsched_raft_term 1",
        "raftsched_raft_role{role=\"leader\"} 1",
        "raftsched_tasks{state=\"pending\"} 1",
        "raftsched_workers{state=\"ready\"} 0",
        "# TYPE raftsched_disk_sync_seconds histogram",
        "raftsched_disk_sync_seconds_bucket{le=\"+Inf\"}",
        "# TYPE raftsched_snapshot_age_seconds gauge",
        "raftsched_raft_log_entries ",
        "raftsched_raft_commit_index ",
        "# TYPE raftsched_request_duration_seconds histogram",
        "raftsched_request_duration_seconds_count{rpc=\"Scheduler/Submit\",code=\"OK\"} 2",
        "raftsched_request_duration_seconds_bucket{rpc=\"Scheduler/Submit\",code=\"OK\",le=\"+Inf\"} 2",
        "raftsched_build_info{version=\"",
        "raftsched_has_leader 1",
        "# TYPE raftsched_leader_changes_total counter",
        "# TYPE process_cpu_seconds_total counter",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
        "raftsched_tasks_ended_total{state=\"cancelled\"} 1",
        "raftsched_tasks_ended_total{state=\"succeeded\"} 0",
        "raftsched_task_attempts_ended_total{outcome=\"lost\"} 0",
        "# TYPE raftsched_task_queue_wait_seconds histogram",
        "raftsched_task_queue_wait_seconds_count 0",
    ] {
        assert!(response.contains(expected), "{expected:?} missing from:\n{response}");
    }
    let body = response.split_once("\r\n\r\n").map_or(response.as_str(), |(_, b)| b);
    promtool_check("a replica", body);
    let proposals: u64 = response
        .lines()
        .find_map(|l| l.strip_prefix("raftsched_proposals_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(proposals >= 1);
    let syncs: u64 = response
        .lines()
        .find_map(|l| l.strip_prefix("raftsched_disk_sync_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(syncs >= 1, "a submit was acknowledged without a recorded sync");
}
