//! What a connection and a request may hold before anything checks who sent them: the transport
//! limits of `limits.rs`, enforced in two places.
//!
//! - [`accept`]: at most `connections_max` connections at once (the next is closed at once and
//!   counted as overload `connections_max`), and a connection that sends nothing within
//!   `connection_first_byte_ms_max` is closed.
//! - [`BodyBudgetLayer`]: tonic reserves a message's declared length as soon as its 5-byte gRPC
//!   prefix arrives, before the body does. The layer reads that prefix first and takes the
//!   declared bytes from two budgets, the connection's (`request_body_bytes_per_connection_max`)
//!   and the replica's (`request_body_bytes_max`), held until the message is decoded; over
//!   either, or when the body has not arrived within `request_body_ms_max`, the call is answered
//!   RESOURCE_EXHAUSTED (or DEADLINE_EXCEEDED) and its memory released. The Raft service is left
//!   out: its callers are authenticated before its body is read, and a snapshot chunk must never
//!   wait behind clients.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codegen::http;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use crate::limits;
use crate::rpc_stats::RpcStats;

/// One accepted connection: the stream, its slot in `connections_max`, and the deadline for its
/// first byte.
pub struct Conn {
    inner: TcpStream,
    _slot: Slot,
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
}

struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Admits an accepted stream, or closes it (by dropping it) when `open` connections are already
/// at `connections_max`, counting the refusal in `stats`.
pub fn accept(stream: TcpStream, open: &Arc<AtomicUsize>, stats: &RpcStats) -> Option<Conn> {
    if open.fetch_add(1, Ordering::Relaxed) >= limits::CONNECTIONS_MAX {
        open.fetch_sub(1, Ordering::Relaxed);
        stats.overloaded("connections_max");
        tracing::debug!(peer = ?stream.peer_addr().ok(), "closed a connection: at connections_max {}", limits::CONNECTIONS_MAX);
        return None;
    }
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY on an accepted connection: {e}");
    }
    let deadline = tokio::time::sleep(Duration::from_millis(limits::CONNECTION_FIRST_BYTE_MS_MAX));
    Some(Conn { inner: stream, _slot: Slot(open.clone()), first_byte: Some(Box::pin(deadline)) })
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        let Some(deadline) = self.first_byte.as_mut() else { return read };
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.first_byte = None,
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                let why = format!(
                    "nothing received within connection_first_byte_ms_max {}",
                    limits::CONNECTION_FIRST_BYTE_MS_MAX
                );
                return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, why)));
            }
            _ => {}
        }
        read
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

/// The replica's and each connection's budget of declared, not yet decoded request bytes.
pub struct BodyBudget {
    total: Arc<Semaphore>,
    by_connection: Mutex<HashMap<SocketAddr, usize>>,
}

impl Default for BodyBudget {
    fn default() -> Self {
        BodyBudget { total: Arc::new(Semaphore::new(limits::REQUEST_BODY_BYTES_MAX)), by_connection: Mutex::default() }
    }
}

/// Bytes held for one message: returned to both budgets on drop.
struct Held {
    budget: Arc<BodyBudget>,
    connection: Option<SocketAddr>,
    bytes: usize,
    _total: OwnedSemaphorePermit,
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(addr) = self.connection else { return };
        let mut map = self.budget.by_connection.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&addr) {
            *n = n.saturating_sub(self.bytes);
            if *n == 0 {
                map.remove(&addr);
            }
        }
    }
}

impl BodyBudget {
    fn take(self: &Arc<Self>, connection: Option<SocketAddr>, bytes: usize) -> Result<Held, Status> {
        let over = |limit: &str, max: usize| {
            crate::limits::overloaded(format!(
                "a {bytes}-byte message is over what unread requests may hold ({limit} {max} bytes); retry"
            ))
        };
        let permits =
            u32::try_from(bytes).map_err(|_| over("request_body_bytes_max", limits::REQUEST_BODY_BYTES_MAX))?;
        let total = self
            .total
            .clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| over("request_body_bytes_max", limits::REQUEST_BODY_BYTES_MAX))?;
        if let Some(addr) = connection {
            let mut map = self.by_connection.lock().unwrap_or_else(|p| p.into_inner());
            let held = map.entry(addr).or_default();
            if *held + bytes > limits::REQUEST_BODY_BYTES_PER_CONNECTION_MAX {
                if *held == 0 {
                    map.remove(&addr);
                }
                let max = limits::REQUEST_BODY_BYTES_PER_CONNECTION_MAX;
                return Err(over("request_body_bytes_per_connection_max", max));
            }
            *held += bytes;
        }
        Ok(Held { budget: self.clone(), connection, bytes, _total: total })
    }
}

/// The tower layer applying a [`BodyBudget`] to every request but the Raft service's.
#[derive(Clone, Default)]
pub struct BodyBudgetLayer(pub Arc<BodyBudget>);

impl<S> tower::Layer<S> for BodyBudgetLayer {
    type Service = Budgeted<S>;

    fn layer(&self, inner: S) -> Budgeted<S> {
        Budgeted { inner, budget: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct Budgeted<S> {
    inner: S,
    budget: Arc<BodyBudget>,
}

/// The gRPC service whose requests are not budgeted (see the module doc).
const RAFT_PATH_PREFIX: &str = "/raftsched.v1.Raft/";

impl<S> tower::Service<http::Request<tonic::body::Body>> for Budgeted<S>
where
    S: tower::Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path().starts_with(RAFT_PATH_PREFIX) {
            return self.inner.call(request);
        }
        let extensions = request.extensions();
        let connection = extensions
            .get::<TcpConnectInfo>()
            .and_then(|i| i.remote_addr())
            .or_else(|| extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|i| i.get_ref().remote_addr()));
        let budget = self.budget.clone();
        self.inner.call(request.map(|body| tonic::body::Body::new(BudgetedBody::new(body, budget, connection))))
    }
}

/// A request body that takes each message's declared length from the budget before passing it on.
struct BudgetedBody {
    inner: tonic::body::Body,
    budget: Arc<BodyBudget>,
    connection: Option<SocketAddr>,
    /// The gRPC prefix being read (flag + 4-byte length), or the bytes of a message still to come.
    prefix: Vec<u8>,
    remaining: usize,
    held: Vec<Held>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

/// gRPC's message prefix: a compressed flag and a big-endian u32 length.
const PREFIX_BYTES: usize = 5;

impl BudgetedBody {
    fn new(inner: tonic::body::Body, budget: Arc<BodyBudget>, connection: Option<SocketAddr>) -> BudgetedBody {
        let deadline = Box::pin(tokio::time::sleep(Duration::from_millis(limits::REQUEST_BODY_MS_MAX)));
        BudgetedBody { inner, budget, connection, prefix: Vec::new(), remaining: 0, held: Vec::new(), deadline }
    }

    /// Walks `data`'s message boundaries, taking budget for each message whose prefix completes.
    fn account(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                data = &data[n..];
                continue;
            }
            let n = (PREFIX_BYTES - self.prefix.len()).min(data.len());
            self.prefix.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.prefix.len() == PREFIX_BYTES {
                let len = u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]) as usize;
                self.prefix.clear();
                self.held.push(self.budget.take(self.connection, len)?);
                self.remaining = len;
            }
        }
        Ok(())
    }
}

impl Body for BudgetedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(status) = this.account(data.chunk()) {
                        this.held.clear();
                        return Poll::Ready(Some(Err(status)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.held.clear();
                    return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                        "the request body did not arrive within request_body_ms_max {}",
                        limits::REQUEST_BODY_MS_MAX
                    )))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
