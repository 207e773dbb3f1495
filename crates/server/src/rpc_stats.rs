//! Per-RPC request latency, measured by a tower layer around the whole gRPC server: from the
//! request's arrival to its response (for unary calls, the handler's completion), by RPC and
//! answer code. Rendered on `/metrics` as
//! `raftsched_request_duration_seconds{rpc="Service/Method",code="OK"}` (its `_count` counts the
//! requests by RPC and code). The same layer counts
//! every `RESOURCE_EXHAUSTED` answer by the limit its message names
//! (`raftsched_requests_rejected_overload_total{reason="in_flight_requests_max"}`): every such
//! message names its limit, so one place counts them all, whichever path refused.

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

/// (RPC name, gRPC code name) → its histogram.
type ByRpc = BTreeMap<(String, &'static str), Arc<Histogram>>;

#[derive(Default)]
pub struct RpcStats {
    by_rpc: Mutex<ByRpc>,
    overload: Mutex<BTreeMap<String, u64>>,
}

/// Distinct overload reasons tracked (limit names are few); beyond it, `other`.
pub const OVERLOAD_REASONS_MAX: usize = 32;

/// The limit a RESOURCE_EXHAUSTED message names: its first word ending in `_max`, else `other`.
/// `message` may be the raw `grpc-message` header, percent-encoded (`%20` between words).
pub fn overload_reason(message: &str) -> String {
    let decoded = percent_decode(message);
    decoded
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .find(|w| w.ends_with("_max") && w.len() > 4)
        .unwrap_or("other")
        .to_string()
}

/// `%XX` escapes decoded (as in `grpc-message` and URL query strings); a bad escape stays as it
/// is, and bytes that are not UTF-8 become U+FFFD.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl RpcStats {
    fn histogram(&self, path: &str, code: &'static str) -> Arc<Histogram> {
        // "/raftsched.v1.Scheduler/Submit" -> "Scheduler/Submit"
        let name = path.trim_start_matches('/');
        let name = match name.split_once('/') {
            Some((service, method)) => format!("{}/{method}", service.rsplit('.').next().unwrap_or(service)),
            None => "other".to_string(),
        };
        let mut map = self.by_rpc.lock().unwrap_or_else(|p| p.into_inner());
        let known = map.keys().any(|(n, _)| *n == name);
        let names = map.keys().map(|(n, _)| n).collect::<std::collections::BTreeSet<_>>().len();
        let name = if known || names < RPC_NAMES_MAX { name } else { "other".to_string() };
        map.entry((name, code)).or_default().clone()
    }

    /// Counts one RESOURCE_EXHAUSTED answer.
    pub fn overloaded(&self, message: &str) {
        let reason = overload_reason(message);
        let mut map = self.overload.lock().unwrap_or_else(|p| p.into_inner());
        let key = if map.contains_key(&reason) || map.len() < OVERLOAD_REASONS_MAX { reason } else { "other".into() };
        *map.entry(key).or_default() += 1;
    }

    /// (reason, count) of the RESOURCE_EXHAUSTED answers so far, in reason order.
    pub fn overload_counts(&self) -> Vec<(String, u64)> {
        self.overload.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// (rpc name, code name, histogram) for every RPC and code seen, in that order.
    pub fn snapshot(&self) -> Vec<(String, &'static str, Arc<Histogram>)> {
        let map = self.by_rpc.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|((rpc, code), h)| (rpc.clone(), *code, h.clone())).collect()
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

impl<S, B, RB> tower::Service<http::Request<B>> for Latency<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        let stats = self.stats.clone();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            let elapsed_us = started.elapsed().as_micros() as u64;
            // An error answer is trailers-only: its status is in the headers. A response with a
            // message carries its status in the trailers, after the body: OK for a unary answer.
            let status = result.as_ref().ok().and_then(|r| r.headers().get("grpc-status"));
            let code = status.and_then(|v| std::str::from_utf8(v.as_bytes()).ok()?.parse::<i32>().ok());
            let code = code.map_or(tonic::Code::Ok, tonic::Code::from_i32);
            stats.histogram(&path, raftsched_api::code_name(code)).record(elapsed_us);
            if code == tonic::Code::ResourceExhausted {
                let headers = result.as_ref().ok().map(|r| r.headers());
                stats.overloaded(headers.and_then(|h| h.get("grpc-message")?.to_str().ok()).unwrap_or(""));
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_the_limit_named() {
        assert_eq!(overload_reason("replica 1 is at in_flight_requests_max 4096"), "in_flight_requests_max");
        assert_eq!(overload_reason("100000%20tasks%20pending,%20at%20tasks_pending_max%20100000"), "tasks_pending_max");
        assert_eq!(overload_reason("busy"), "other");
        assert_eq!(overload_reason("_max"), "other");
    }
}
