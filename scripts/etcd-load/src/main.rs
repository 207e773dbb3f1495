//! etcd-load: puts of fixed-size values to distinct keys, or linearizable gets of one key, at a
//! fixed concurrency over a fixed number of gRPC connections, spread over the endpoints. Prints
//! throughput and p50/p99/max latency (one JSON object with `--json`, the same fields as
//! `raftsched bench submit --json`).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use tonic::transport::Endpoint;

pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;

/// Bounds on the tool's own inputs.
const CONCURRENCY_MAX: usize = 4096;
const CONNECTIONS_MAX: usize = 256;
const DURATION_S_MAX: u64 = 3600;
const PAYLOAD_BYTES_MAX: usize = 1 << 20;
/// One request's time budget; a slower one counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(name = "etcd-load", about = "Load an etcd cluster like `raftsched bench` loads raftsched")]
struct Args {
    /// put (distinct keys) or get (linearizable range of one key).
    #[arg(value_parser = ["put", "get"])]
    op: String,
    /// Client URLs, comma-separated (host:port).
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// gRPC connections the requests share (spread over the endpoints round-robin).
    #[arg(long, default_value_t = 12)]
    connections: usize,
    #[arg(long, default_value_t = 15)]
    duration_s: u64,
    #[arg(long, default_value_t = 256)]
    payload_bytes: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("etcd-load: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.concurrency == 0 || args.concurrency > CONCURRENCY_MAX {
        bail!("--concurrency must be 1..={CONCURRENCY_MAX}");
    }
    if args.connections == 0 || args.connections > CONNECTIONS_MAX {
        bail!("--connections must be 1..={CONNECTIONS_MAX}");
    }
    if args.duration_s == 0 || args.duration_s > DURATION_S_MAX {
        bail!("--duration-s must be 1..={DURATION_S_MAX}");
    }
    if args.payload_bytes > PAYLOAD_BYTES_MAX {
        bail!("--payload-bytes must be at most {PAYLOAD_BYTES_MAX}");
    }
    let mut channels = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let endpoint = &args.endpoints[i % args.endpoints.len()];
        let channel = Endpoint::from_shared(format!("http://{endpoint}"))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("connect to {endpoint}"))?;
        channels.push(channel);
    }
    let value = vec![b'x'; args.payload_bytes];
    let read_key = b"etcd-load-read".to_vec();
    if args.op == "get" {
        let mut client = KvClient::new(channels[0].clone());
        client.put(pb::PutRequest { key: read_key.clone(), value: value.clone(), lease: 0 }).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(args.duration_s);
    let started = Instant::now();
    let mut loops = Vec::with_capacity(args.concurrency);
    for l in 0..args.concurrency {
        let mut client = KvClient::new(channels[l % channels.len()].clone());
        let (op, value, read_key) = (args.op.clone(), value.clone(), read_key.clone());
        loops.push(tokio::spawn(async move {
            let mut latencies_us: Vec<u64> = Vec::new();
            let mut errors = 0u64;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let result = if op == "put" {
                    let key = format!("etcd-load/{l}/{n}").into_bytes();
                    let req = pb::PutRequest { key, value: value.clone(), lease: 0 };
                    tokio::time::timeout(REQUEST_TIMEOUT, client.put(req)).await.map(|r| r.map(|_| ()))
                } else {
                    let req = pb::RangeRequest { key: read_key.clone(), ..Default::default() };
                    tokio::time::timeout(REQUEST_TIMEOUT, client.range(req)).await.map(|r| r.map(|_| ()))
                };
                n += 1;
                match result {
                    Ok(Ok(())) => latencies_us.push(t0.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
            }
            (latencies_us, errors)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for l in loops {
        let (lat, err) = l.await?;
        latencies_us.extend(lat);
        errors += err;
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    let pct = |q: f64| -> f64 {
        if latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((latencies_us.len() as f64 * q).ceil() as usize).clamp(1, latencies_us.len()) - 1;
        latencies_us[i] as f64 / 1000.0
    };
    let ops_per_s = latencies_us.len() as f64 / elapsed_s;
    if args.json {
        let out = serde_json::json!({
            "op": args.op, "concurrency": args.concurrency, "connections": args.connections,
            "ops": latencies_us.len(), "errors": errors, "ops_per_s": ops_per_s,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0),
        });
        println!("{out}");
    } else {
        println!(
            "{} x{}: {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
            args.op,
            args.concurrency,
            ops_per_s,
            pct(0.5),
            pct(0.99),
            pct(1.0),
            errors
        );
    }
    Ok(())
}
