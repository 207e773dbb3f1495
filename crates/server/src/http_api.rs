//! The HTTP/JSON API on the `--http` port, for curl, scripts and webhooks: the client API's task
//! calls with the JSON shapes of [`raftsched_api::json`].
//!
//! | method and path | gRPC call | success |
//! |---|---|---|
//! | `POST /v1/tasks` (`Idempotency-Key` header or `"key"`) | `Submit` | 201 created, 200 when the key already named it |
//! | `GET /v1/tasks/{id}` | `GetTask` | 200 |
//! | `GET /v1/tasks?state=S&after=ID&limit=N` | `ListTasks` | 200, `next_after` to page on |
//! | `POST /v1/tasks/{id}/cancel` | `Cancel` | 200 |
//! | `GET /v1/tasks/{id}/wait?after_version=V&wait_ms=MS&until_ended=true` | `WaitTask` | 200 |
//! | `GET /v1/tasks/{id}/output?attempt=N&stream=stderr&offset=N&follow=true` | `ReadOutput` | 200, the bytes (`text/plain`) |
//!
//! Each request runs the very code of the gRPC call, behind the same guard (`auth::Guard`: a
//! bearer token in `Authorization` when the replica has a token file) and the same admission
//! limits; refusals keep their gRPC code, mapped to the usual HTTP status, in a body
//! `{"error": {"code": "RESOURCE_EXHAUSTED", "message": "...", "limit": "tasks_pending_max"}}`
//! (`limit` only on RESOURCE_EXHAUSTED).
//!
//! Never weaker than gRPC: the HTTP port has no TLS, so it cannot see a client certificate, and a
//! replica that requires them (`--tls`) refuses every call here; a replica without a token file
//! answers only when `--http` is on loopback (as its gRPC client API must be).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use raftsched_api as api;
use raftsched_api::json::{spec_from_json, task_json};
use raftsched_api::scheduler_server::Scheduler;
use serde_json::{json, Value};
use tonic::service::Interceptor;

use crate::auth::{Auth, Guard, Service};
use crate::replica::Replica;
use crate::scheduler_service::SchedulerService;

/// The header that carries a submit's idempotency key (as Stripe's and the IETF draft's).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Clone)]
struct Api {
    service: Arc<SchedulerService>,
    auth: Arc<Auth>,
    /// Why every call is refused on this port, if it is (see the module documentation).
    closed: Option<&'static str>,
}

/// The API's routes, ready to merge into the router of the HTTP port listening on `listen`.
pub fn router(replica: Arc<Replica>, auth: Arc<Auth>, listen: std::net::SocketAddr) -> axum::Router {
    let closed = if auth.tls {
        Some("this replica requires client certificates (--tls) and the HTTP port has no TLS: use the gRPC API")
    } else if auth.tokens.is_none() && !listen.ip().is_loopback() {
        Some("this replica has no token file and --http is not on loopback: the HTTP API is off (give the replicas --token-file, or use gRPC)")
    } else {
        None
    };
    let api = Api { service: Arc::new(SchedulerService { replica }), auth, closed };
    axum::Router::new()
        .route("/v1/tasks", post(submit).get(list))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/tasks/{id}/cancel", post(cancel))
        .route("/v1/tasks/{id}/wait", get(wait))
        .route("/v1/tasks/{id}/output", get(output))
        .route("/v1/flows", post(submit_flow))
        .route("/v1/flows/{key}", get(get_flow))
        .layer(axum::extract::DefaultBodyLimit::max(crate::limits::CLIENT_MESSAGE_BYTES_MAX))
        .with_state(api)
}

/// A refusal: the gRPC status it would have been.
pub(crate) struct Refusal(tonic::Status);

impl Refusal {
    /// What was wrong, in one line.
    pub(crate) fn message(&self) -> &str {
        self.0.message()
    }
}

impl From<tonic::Status> for Refusal {
    fn from(status: tonic::Status) -> Refusal {
        Refusal(status)
    }
}

fn bad_request(message: impl Into<String>) -> Refusal {
    Refusal(tonic::Status::invalid_argument(message))
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let code = self.0.code();
        let mut body = json!({ "error": { "code": raftsched_api::code_name(code), "message": self.0.message() } });
        if code == tonic::Code::ResourceExhausted {
            // As gRPC's ErrorInfo detail (`limits::overloaded`): the limit reached, by name.
            body["error"]["limit"] = json!(crate::rpc_stats::overload_reason(self.0.message()));
        }
        let mut response = (http_status(code), body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if matches!(code, tonic::Code::ResourceExhausted | tonic::Code::Unavailable) {
            headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    let mut response = (status, format!("{body}\n")).into_response();
    response.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// What every handler starts from: the port's state, the call's headers (its credentials) and
/// its query string.
struct Call {
    api: Api,
    headers: HeaderMap,
    query: Option<String>,
}

impl axum::extract::FromRequestParts<Api> for Call {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, api: &Api) -> Result<Call, Self::Rejection> {
        Ok(Call { api: api.clone(), headers: parts.headers.clone(), query: parts.uri.query().map(str::to_string) })
    }
}

impl Call {
    /// The query string's parameters, each one of `known`.
    fn query(&self, known: &[&str]) -> Result<Query, Refusal> {
        Query::parse(self.query.as_deref(), known)
    }

    /// The gRPC request for `message`, after the gRPC guard accepted the HTTP request's
    /// credentials (and recorded who the caller is, as it does for gRPC).
    fn request<T>(&self, message: T) -> Result<tonic::Request<T>, Refusal> {
        if let Some(why) = self.api.closed {
            return Err(Refusal(tonic::Status::unauthenticated(why)));
        }
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Some(v) = self.headers.get(axum::http::header::AUTHORIZATION) {
            if let Ok(v) = tonic::metadata::MetadataValue::try_from(v.as_bytes()) {
                metadata.insert(raftsched_api::security::AUTHORIZATION, v);
            }
        }
        let bare = tonic::Request::from_parts(metadata, Default::default(), ());
        let mut guard = Guard { auth: self.api.auth.clone(), service: Service::Scheduler };
        let (metadata, extensions, ()) = guard.call(bare)?.into_parts();
        Ok(tonic::Request::from_parts(metadata, extensions, message))
    }
}

async fn submit(call: Call, body: Bytes) -> Result<Response, Refusal> {
    let body: Value = serde_json::from_slice(&body).map_err(|e| bad_request(format!("the body is not JSON: {e}")))?;
    let Value::Object(mut fields) = body else {
        return Err(bad_request(r#"the body must be an object: {"spec": {...}, "key": "...", "wait_ms": N}"#));
    };
    let spec = spec_from_json(fields.remove("spec").unwrap_or(Value::Null)).map_err(bad_request)?;
    let in_body = match fields.remove("key") {
        None => None,
        Some(Value::String(k)) => Some(k),
        Some(other) => return Err(bad_request(format!("\"key\" must be a string, not {other}"))),
    };
    let wait_ms = match fields.remove("wait_ms") {
        None => 0,
        Some(v) => v
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| bad_request("\"wait_ms\" must be a whole number of milliseconds"))?,
    };
    let mut submit = api::SubmitRequest { spec: Some(spec), wait_ms, ..Default::default() };
    options_fields(&mut fields, &mut submit)?;
    if let Some(unknown) = fields.keys().next() {
        return Err(bad_request(format!(
            "unknown field {unknown:?} (the body has spec, key, wait_ms, after, after_keys, after_policy, \
             concurrency_key, concurrency_limit)"
        )));
    }
    check_wait(u64::from(wait_ms))?;
    submit.key = idempotency_key(&call.headers, in_body)?;
    let request = call.request(submit)?;
    let answer = call.api.service.submit(request).await?.into_inner();
    let status = if answer.created { StatusCode::CREATED } else { StatusCode::OK };
    let task = answer.task.as_ref().map_or(Value::Null, task_json);
    Ok(reply(status, json!({ "id": answer.id, "created": answer.created, "task": task })))
}

/// The idempotency key: the `Idempotency-Key` header, or `in_body` ("key"); both must agree.
fn idempotency_key(headers: &HeaderMap, in_body: Option<String>) -> Result<String, Refusal> {
    let in_header = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| bad_request("the Idempotency-Key header is not ASCII"))?.to_string()),
    };
    match (in_header, in_body) {
        (Some(h), Some(b)) if h != b => Err(bad_request("the Idempotency-Key header and \"key\" differ")),
        (Some(k), _) | (None, Some(k)) => Ok(k),
        (None, None) => Err(bad_request("an idempotency key is required: the Idempotency-Key header (or \"key\")")),
    }
}

/// `POST /v1/flows`: a flow (`flow_from_json`'s shape), its key in `Idempotency-Key` or "key".
async fn submit_flow(call: Call, body: Bytes) -> Result<Response, Refusal> {
    let body: Value = serde_json::from_slice(&body).map_err(|e| bad_request(format!("the body is not JSON: {e}")))?;
    let in_body = body.get("key").and_then(Value::as_str).map(str::to_string);
    let mut flow = raftsched_api::json::flow_from_json(body).map_err(bad_request)?;
    flow.key = idempotency_key(&call.headers, in_body)?;
    let request = call.request(flow)?;
    let answer = call.api.service.submit_flow(request).await?.into_inner();
    let status = if answer.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(reply(status, json!({ "ids": answer.ids, "created": answer.created })))
}

/// `GET /v1/flows/{key}`: the flow's tasks.
async fn get_flow(call: Call, Path(key): Path<String>) -> Result<Response, Refusal> {
    let query = call.query(&["stale"])?;
    let request = call.request(api::GetFlowRequest { key, stale: query.flag("stale")? })?;
    let tasks = call.api.service.get_flow(request).await?.into_inner().tasks;
    Ok(reply(StatusCode::OK, json!({ "tasks": tasks.iter().map(task_json).collect::<Vec<_>>() })))
}

async fn get_task(call: Call, Path(id): Path<String>) -> Result<Response, Refusal> {
    let query = call.query(&["stale"])?;
    let request = call.request(api::GetTaskRequest { id: task_id(&id)?, stale: query.flag("stale")? })?;
    let task = call.api.service.get_task(request).await?.into_inner();
    Ok(reply(StatusCode::OK, task_json(&task)))
}

async fn list(call: Call) -> Result<Response, Refusal> {
    let query = call.query(&["state", "after", "limit", "stale"])?;
    let message = api::ListTasksRequest {
        state: query.get("state").unwrap_or_default().to_string(),
        after_id: query.number("after")?.unwrap_or(0),
        limit: query.number("limit")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(0),
        stale: query.flag("stale")?,
    };
    let answer = call.api.service.list_tasks(call.request(message)?).await?.into_inner();
    let tasks: Vec<Value> = answer.tasks.iter().map(task_json).collect();
    let next_after = if answer.next_after == 0 { Value::Null } else { json!(answer.next_after) };
    Ok(reply(StatusCode::OK, json!({ "tasks": tasks, "next_after": next_after })))
}

async fn cancel(call: Call, Path(id): Path<String>) -> Result<Response, Refusal> {
    let request = call.request(api::CancelRequest { id: task_id(&id)? })?;
    let answer = call.api.service.cancel(request).await?.into_inner();
    Ok(reply(StatusCode::OK, json!({ "id": answer.id })))
}

async fn wait(call: Call, Path(id): Path<String>) -> Result<Response, Refusal> {
    let query = call.query(&["after_version", "wait_ms", "until_ended"])?;
    let wait_ms = query.number("wait_ms")?.unwrap_or(crate::limits::LONG_POLL_MS_MAX);
    check_wait(wait_ms)?;
    let message = api::WaitTaskRequest {
        id: task_id(&id)?,
        after_version: query.number("after_version")?.unwrap_or(0),
        wait_ms: wait_ms as u32,
        until_ended: query.flag("until_ended")?,
    };
    let task = call.api.service.wait_task(call.request(message)?).await?.into_inner();
    Ok(reply(StatusCode::OK, task_json(&task)))
}

/// `GET /v1/tasks/{id}/output?attempt=N&stream=stdout|stderr&offset=N&follow=true`: the bytes
/// of an attempt's stream as the worker kept them (`text/plain`), relayed as `ReadOutput` does;
/// `Raftsched-Worker` and `Raftsched-Attempt` headers say whose. With `follow` the body grows
/// until the attempt ends; a body cut short (the worker went away) ends in a broken chunked
/// encoding, never as if complete.
async fn output(call: Call, Path(id): Path<String>) -> Result<Response, Refusal> {
    use futures::StreamExt;
    let query = call.query(&["attempt", "stream", "offset", "follow"])?;
    let stderr = match query.get("stream") {
        None | Some("stdout") => false,
        Some("stderr") => true,
        Some(other) => return Err(bad_request(format!("stream {other:?} is not stdout or stderr"))),
    };
    let attempt = query.number("attempt")?.unwrap_or(0);
    let message = api::ReadOutputRequest {
        task_id: task_id(&id)?,
        attempt: u32::try_from(attempt).map_err(|_| bad_request(format!("attempt {attempt} is too large")))?,
        stderr,
        offset: query.number("offset")?.unwrap_or(0),
        follow: query.flag("follow")?,
    };
    let mut chunks = call.api.service.read_output(call.request(message)?).await?.into_inner();
    // The first chunk (or refusal) comes before the headers, so a refusal keeps its status.
    let first = chunks.next().await.transpose()?;
    let (worker, attempt) = first.as_ref().map_or((String::new(), 0), |c| (c.worker_id.clone(), c.attempt));
    let body = futures::stream::iter(first.map(Ok)).chain(chunks).map(|chunk| match chunk {
        Ok(chunk) => Ok(Bytes::from(chunk.data)),
        Err(status) => Err(std::io::Error::other(status.message().to_string())),
    });
    let mut response = axum::body::Body::from_stream(body).into_response();
    let h = response.headers_mut();
    h.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if let Ok(worker) = HeaderValue::from_str(&worker) {
        h.insert("raftsched-worker", worker);
    }
    h.insert("raftsched-attempt", HeaderValue::from(attempt));
    Ok(response)
}

/// A long poll asked for longer than a replica holds one is refused, not silently shortened.
fn check_wait(wait_ms: u64) -> Result<(), Refusal> {
    let max = crate::limits::LONG_POLL_MS_MAX;
    if wait_ms > max {
        return Err(bad_request(format!("wait_ms {wait_ms} is over long_poll_ms_max {max}; wait again for longer")));
    }
    Ok(())
}

fn task_id(text: &str) -> Result<u64, Refusal> {
    match text.parse::<u64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(bad_request(format!("{text:?} is not a task id (ids are whole numbers from 1)"))),
    }
}

/// A query string's `name=value` pairs; only the names a route knows, each at most once.
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>, known: &[&str]) -> Result<Query, Refusal> {
        let mut pairs = HashMap::new();
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !known.contains(&name) {
                return Err(bad_request(format!("unknown parameter {name:?} (known: {})", known.join(", "))));
            }
            let value = crate::rpc_stats::percent_decode(value);
            if pairs.insert(name.to_string(), value).is_some() {
                return Err(bad_request(format!("parameter {name:?} given twice")));
            }
        }
        Ok(Query(pairs))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(crate) fn number(&self, name: &str) -> Result<Option<u64>, Refusal> {
        self.get(name)
            .map(|v| v.parse::<u64>().map_err(|_| bad_request(format!("{name}={v:?} is not a whole number"))))
            .transpose()
    }

    fn flag(&self, name: &str) -> Result<bool, Refusal> {
        match self.get(name) {
            None | Some("false") | Some("0") => Ok(false),
            Some("" | "true" | "1") => Ok(true),
            Some(v) => Err(bad_request(format!("{name}={v:?} is not true or false"))),
        }
    }
}

/// The HTTP status for a gRPC code (the mapping of Google's HTTP/JSON transcoding).
fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code::*;
    match code {
        Ok => StatusCode::OK,
        Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        InvalidArgument | OutOfRange => StatusCode::BAD_REQUEST,
        FailedPrecondition => StatusCode::CONFLICT,
        DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        NotFound => StatusCode::NOT_FOUND,
        AlreadyExists | Aborted => StatusCode::CONFLICT,
        PermissionDenied => StatusCode::FORBIDDEN,
        Unauthenticated => StatusCode::UNAUTHORIZED,
        ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Unknown | Internal | DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A submit body's options into `submit`: `after` (task ids), `after_keys`, `after_policy`,
/// `concurrency_key`, `concurrency_limit`.
fn options_fields(fields: &mut serde_json::Map<String, Value>, submit: &mut api::SubmitRequest) -> Result<(), Refusal> {
    let list = |v: Value, what: &str| -> Result<Vec<Value>, Refusal> {
        match v {
            Value::Array(items) => Ok(items),
            _ => Err(bad_request(format!("\"{what}\" must be a list"))),
        }
    };
    if let Some(v) = fields.remove("after") {
        submit.after = list(v, "after")?
            .iter()
            .map(Value::as_u64)
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| bad_request("\"after\" must be a list of task ids"))?;
    }
    if let Some(v) = fields.remove("after_keys") {
        submit.after_keys = list(v, "after_keys")?
            .iter()
            .map(|k| k.as_str().map(str::to_string))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| bad_request("\"after_keys\" must be a list of idempotency keys"))?;
    }
    for (name, into) in [("after_policy", &mut submit.after_policy), ("concurrency_key", &mut submit.concurrency_key)] {
        match fields.remove(name) {
            None => {}
            Some(Value::String(text)) => *into = text,
            Some(other) => return Err(bad_request(format!("\"{name}\" must be a string, not {other}"))),
        }
    }
    if let Some(v) = fields.remove("concurrency_limit") {
        submit.concurrency_limit = v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad_request("\"concurrency_limit\" must be a whole number"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_strict_and_decoded() {
        let q = Query::parse(Some("state=failed&after=7&stale"), &["state", "after", "stale"]).ok().unwrap();
        assert_eq!(q.get("state"), Some("failed"));
        assert_eq!(q.number("after").ok().unwrap(), Some(7));
        assert!(q.flag("stale").ok().unwrap());
        assert!(Query::parse(Some("nope=1"), &["state"]).is_err());
        assert!(Query::parse(Some("state=a&state=b"), &["state"]).is_err());
        let q = Query::parse(Some("state=fail%65d"), &["state"]).ok().unwrap();
        assert_eq!(q.get("state"), Some("failed"));
        assert!(task_id("0").is_err() && task_id("x").is_err() && task_id("12").is_ok());
    }

    #[test]
    fn codes_map_to_http() {
        assert_eq!(http_status(tonic::Code::ResourceExhausted), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(http_status(tonic::Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(raftsched_api::code_name(tonic::Code::FailedPrecondition), "FAILED_PRECONDITION");
    }
}
