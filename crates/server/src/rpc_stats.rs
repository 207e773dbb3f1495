//! Per-RPC request latency, measured by a tower layer around the whole gRPC server: from the
//! request's arrival to its response (for unary calls, the handler's completion). Rendered on
//! `/metrics` as `raftsched_request_duration_seconds{rpc="Service/Method"}`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;

/// Bucket upper bounds, in microseconds (100 µs .. 10 s).
pub const RPC_BUCKETS_US: [u64; 14] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 2_500_000, 10_000_000];
/// Distinct RPC names tracked; the paths of the services served are far fewer. Anything beyond
/// (a client probing made-up paths) is counted as `other`, so the label set stays bounded.
pub const RPC_NAMES_MAX: usize = 64;

#[derive(Default)]
pub struct Histogram {
    pub buckets: [AtomicU64; RPC_BUCKETS_US.len()],
    pub count: AtomicU64,
    pub sum_us: AtomicU64,
}

impl Histogram {
    fn record(&self, us: u64) {
        if let Some(i) = RPC_BUCKETS_US.iter().position(|&b| us <= b) {
            // Cumulative, as Prometheus wants: every bucket at or above the value.
            for b in &self.buckets[i..] {
                b.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }
}

#[derive(Default)]
pub struct RpcStats {
    by_rpc: Mutex<BTreeMap<String, Arc<Histogram>>>,
}

impl RpcStats {
    fn histogram(&self, path: &str) -> Arc<Histogram> {
        // "/raftsched.v1.Scheduler/Submit" -> "Scheduler/Submit"
        let name = path.trim_start_matches('/');
        let name = match name.split_once('/') {
            Some((service, method)) => format!("{}/{method}", service.rsplit('.').next().unwrap_or(service)),
            None => "other".to_string(),
        };
        let mut map = self.by_rpc.lock().unwrap_or_else(|p| p.into_inner());
        let key = if map.contains_key(&name) || map.len() < RPC_NAMES_MAX { name } else { "other".to_string() };
        map.entry(key).or_default().clone()
    }

    /// (rpc name, histogram) for every RPC seen, in name order.
    pub fn snapshot(&self) -> Vec<(String, Arc<Histogram>)> {
        self.by_rpc.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// The tower layer that records into an [`RpcStats`].
#[derive(Clone)]
pub struct LatencyLayer(pub Arc<RpcStats>);

impl<S> tower::Layer<S> for LatencyLayer {
    type Service = Latency<S>;

    fn layer(&self, inner: S) -> Latency<S> {
        Latency { inner, stats: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct Latency<S> {
    inner: S,
    stats: Arc<RpcStats>,
}

impl<S, B> tower::Service<http::Request<B>> for Latency<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let histogram = self.stats.histogram(request.uri().path());
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            histogram.record(started.elapsed().as_micros() as u64);
            result
        })
    }
}
