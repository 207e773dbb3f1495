//! Who may call what. With TLS on, every request must come over a connection whose client
//! presented a certificate signed by the cluster CA; with a token file, every request must carry a
//! known bearer token, whose role decides the services it may use:
//!
//! | role | Scheduler (clients) | Worker | Raft (replica to replica) | membership, drain |
//! |---|---|---|---|---|
//! | `client` | yes | no | no | no |
//! | `worker` | no | yes | no | no |
//! | `admin` | yes | yes | no | yes |
//! | `replica` | yes | yes | yes | yes |
//!
//! The Raft service also needs proof that the caller is a replica: with a cluster secret
//! (`--cluster-secret-file`), a `raftsched-peer` header naming the replica id with an HMAC of it
//! under the secret; `raft_service.rs` then checks that id against the message and the membership.
//! Missing or unknown credentials are `UNAUTHENTICATED`; known ones of the wrong role are
//! `PERMISSION_DENIED`; every refusal is counted by service and reason, and logged at most once
//! per caller address per minute. Tokens and secrets are compared in constant time, never logged.
//! `grpc.health.v1` and reflection stay open (load balancers and probes have no token).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftsched_api::security::{
    read_bounded, ClusterSecret, SecurityError, AUTHORIZATION, PEER_HEADER, TOKEN_FILE_BYTES_MAX,
};
use tonic::{Request, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Worker,
    Admin,
    Replica,
}

impl Role {
    fn parse(text: &str) -> Option<Role> {
        match text {
            "client" => Some(Role::Client),
            "worker" => Some(Role::Worker),
            "admin" => Some(Role::Admin),
            "replica" => Some(Role::Replica),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Worker => "worker",
            Role::Admin => "admin",
            Role::Replica => "replica",
        }
    }
}

/// Tokens with their roles, from a token file: one `ROLE TOKEN` per line, `#` comments.
pub struct Tokens {
    entries: Vec<(Role, Vec<u8>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} entries, values hidden)", self.entries.len())
    }
}

/// Shortest token accepted, in bytes: guessing must be hopeless.
pub const TOKEN_BYTES_MIN: usize = 16;

impl Tokens {
    pub fn from_file(path: &Path) -> Result<Tokens, SecurityError> {
        let shown = path.display().to_string();
        let bad =
            |line: usize, why: &str| SecurityError::Bad { path: shown.clone(), why: format!("line {line}: {why}") };
        let text = String::from_utf8(read_bounded(path, TOKEN_FILE_BYTES_MAX)?)
            .map_err(|_| SecurityError::Bad { path: shown.clone(), why: "not UTF-8".into() })?;
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(role), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(n, "expected `ROLE TOKEN` (role: client, worker, admin, replica)"));
            };
            let role = Role::parse(role).ok_or_else(|| bad(n, "role must be client, worker, admin or replica"))?;
            if token.len() < TOKEN_BYTES_MIN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad(n, &format!("a token is at least {TOKEN_BYTES_MIN} printable characters")));
            }
            entries.push((role, token.as_bytes().to_vec()));
        }
        if entries.is_empty() {
            return Err(SecurityError::Bad { path: shown, why: "no tokens in it".into() });
        }
        Ok(Tokens { entries })
    }

    /// The token this replica sends to its peers: the first `replica` line.
    pub fn replica_token(&self) -> Option<String> {
        self.entries.iter().find(|(r, _)| *r == Role::Replica).map(|(_, t)| String::from_utf8_lossy(t).into_owned())
    }

    /// The role of `token`, comparing against every entry in constant time.
    fn role_of(&self, token: &[u8]) -> Option<Role> {
        let mut found = None;
        for (role, known) in &self.entries {
            if constant_time_eq(known, token) && found.is_none() {
                found = Some(*role);
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The services a guard protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Scheduler,
    Worker,
    Raft,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Scheduler, Service::Worker, Service::Raft];

    pub fn label(self) -> &'static str {
        match self {
            Service::Scheduler => "scheduler",
            Service::Worker => "worker",
            Service::Raft => "raft",
        }
    }

    fn described(self) -> &'static str {
        match self {
            Service::Scheduler => "the client API (raftsched.v1.Scheduler)",
            Service::Worker => "the worker API (raftsched.v1.Worker)",
            Service::Raft => "replica-to-replica calls (raftsched.v1.Raft)",
        }
    }
}

/// Why a request was refused, for the `raftsched_requests_refused_auth_total` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// TLS is on and the connection presented no client certificate.
    NoCertificate,
    /// A token file is in force and the request carried no (well-formed) token.
    NoToken,
    UnknownToken,
    /// A known token of a role the service does not serve.
    WrongRole,
    /// A Raft call without a `raftsched-peer` proof where a cluster secret is required.
    NoPeerProof,
    /// A `raftsched-peer` proof that is malformed or does not match the cluster secret.
    BadPeerProof,
    /// A replica outside the current configuration (`raft_service.rs`).
    NotMember,
    /// A message that claims to come from another replica than the one its proof names.
    SenderMismatch,
}

impl Refusal {
    pub const ALL: [Refusal; 8] = [
        Refusal::NoCertificate,
        Refusal::NoToken,
        Refusal::UnknownToken,
        Refusal::WrongRole,
        Refusal::NoPeerProof,
        Refusal::BadPeerProof,
        Refusal::NotMember,
        Refusal::SenderMismatch,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::NoCertificate => "no_certificate",
            Refusal::NoToken => "no_token",
            Refusal::UnknownToken => "unknown_token",
            Refusal::WrongRole => "wrong_role",
            Refusal::NoPeerProof => "no_peer_proof",
            Refusal::BadPeerProof => "bad_peer_proof",
            Refusal::NotMember => "not_member",
            Refusal::SenderMismatch => "sender_mismatch",
        }
    }
}

/// A refusal on the way out: counted and (rate-limited) logged by [`Refusals::refuse`].
pub struct Refused {
    pub reason: Refusal,
    pub status: Status,
}

pub fn refused(reason: Refusal, status: Status) -> Refused {
    Refused { reason, status }
}

/// Callers remembered for log rate limiting; past it the memory starts over (a flood of
/// addresses costs one log line each per minute at worst, never memory).
const REFUSAL_LOG_CALLERS_MAX: usize = 4096;
/// One log line per caller address per this long.
const REFUSAL_LOG_INTERVAL_MS: u64 = 60_000;

/// Counts of refused requests by service and reason, and when each caller was last logged.
#[derive(Default)]
pub struct Refusals {
    counts: [[AtomicU64; Refusal::ALL.len()]; Service::ALL.len()],
    logged: Mutex<HashMap<Option<IpAddr>, Instant>>,
}

impl Refusals {
    /// Counts a refusal, logs it unless this caller was logged within the last minute, and
    /// returns the status to answer.
    pub fn refuse(&self, service: Service, caller: Option<IpAddr>, refusal: Refused) -> Status {
        self.counts[service as usize][refusal.reason as usize].fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        let due = logged
            .get(&caller)
            .is_none_or(|t| now.duration_since(*t) >= Duration::from_millis(REFUSAL_LOG_INTERVAL_MS));
        if due {
            if logged.len() >= REFUSAL_LOG_CALLERS_MAX {
                logged.clear();
            }
            logged.insert(caller, now);
            tracing::warn!(
                service = service.label(),
                reason = refusal.reason.label(),
                caller = ?caller,
                "refused a request: {} (further refusals of this caller are counted, not logged, for a minute)",
                refusal.status.message()
            );
        }
        refusal.status
    }

    pub fn count(&self, service: Service, reason: Refusal) -> u64 {
        self.counts[service as usize][reason as usize].load(Ordering::Relaxed)
    }
}

/// The replica a Raft call proved it comes from (a request extension set by the guard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerId(pub u64);

/// The checks every request goes through.
#[derive(Debug, Default)]
pub struct Auth {
    /// TLS is on: a client certificate is required.
    pub tls: bool,
    pub tokens: Option<Tokens>,
    /// Raft callers must prove they hold it (`--cluster-secret-file`).
    pub secret: Option<ClusterSecret>,
    /// While a running cluster moves to a cluster secret: Raft calls with no proof at all are let
    /// through (a wrong proof is still refused). `--accept-unauthenticated-peers`.
    pub accept_unauthenticated_peers: bool,
    /// Started with `--insecure`: missing credentials were allowed at start.
    pub insecure: bool,
    pub refusals: Refusals,
    /// Raft calls let through without any proof (`accept_unauthenticated_peers`).
    pub unauthenticated_peer_calls: AtomicU64,
}

impl std::fmt::Debug for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Refusals")
    }
}

impl Auth {
    pub fn is_open(&self) -> bool {
        !self.tls && self.tokens.is_none()
    }

    /// Whether replica-to-replica calls need proof (TLS with a replica token, or a secret).
    pub fn peers_authenticated(&self) -> bool {
        self.secret.is_some() || (self.tls && self.tokens.is_some())
    }

    fn check(&self, request: &Request<()>, service: Service) -> Result<(Option<Role>, Option<PeerId>), Refused> {
        if self.tls && request.peer_certs().is_none_or(|certs| certs.is_empty()) {
            return Err(refused(
                Refusal::NoCertificate,
                Status::unauthenticated("a client certificate signed by the cluster CA is required"),
            ));
        }
        let role = self.check_token(request, service)?;
        let peer = if service == Service::Raft { self.check_peer(request)? } else { None };
        Ok((role, peer))
    }

    fn check_token(&self, request: &Request<()>, service: Service) -> Result<Option<Role>, Refused> {
        let Some(tokens) = &self.tokens else { return Ok(None) };
        let no_token = |why: &str| refused(Refusal::NoToken, Status::unauthenticated(why.to_string()));
        let header = request
            .metadata()
            .get(AUTHORIZATION)
            .ok_or_else(|| no_token("missing bearer token (authorization: Bearer TOKEN)"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| no_token("the authorization header is not `Bearer TOKEN`"))?;
        let role = tokens
            .role_of(token.as_bytes())
            .ok_or_else(|| refused(Refusal::UnknownToken, Status::unauthenticated("unknown bearer token")))?;
        let allowed = match service {
            Service::Scheduler => matches!(role, Role::Client | Role::Admin | Role::Replica),
            Service::Worker => matches!(role, Role::Worker | Role::Admin | Role::Replica),
            Service::Raft => role == Role::Replica,
        };
        if !allowed {
            let message = format!("a {} token may not use {}", role.name(), service.described());
            return Err(refused(Refusal::WrongRole, Status::permission_denied(message)));
        }
        Ok(Some(role))
    }

    fn check_peer(&self, request: &Request<()>) -> Result<Option<PeerId>, Refused> {
        let Some(secret) = &self.secret else { return Ok(None) };
        let Some(value) = request.metadata().get(PEER_HEADER) else {
            if self.accept_unauthenticated_peers {
                self.unauthenticated_peer_calls.fetch_add(1, Ordering::Relaxed);
                return Ok(None);
            }
            return Err(refused(
                Refusal::NoPeerProof,
                Status::unauthenticated(
                    "replica-to-replica calls need the cluster secret's proof (raftsched-peer); only replicas may call this service",
                ),
            ));
        };
        let bad = |e: &dyn std::fmt::Display| refused(Refusal::BadPeerProof, Status::unauthenticated(e.to_string()));
        let value = value.to_str().map_err(|_| bad(&"the raftsched-peer header is not ASCII"))?;
        let id = secret.verify(value).map_err(|e| bad(&e))?;
        Ok(Some(PeerId(id)))
    }
}

/// What `auth` leaves open to anyone who reaches `listen`, in one line; `None` when nothing is.
/// Replica-to-replica calls need TLS with replica tokens or a cluster secret; the client and worker
/// APIs need TLS with tokens unless they listen on loopback only.
pub fn insecure_summary(auth: &Auth, listen: std::net::SocketAddr) -> Option<String> {
    let mut open = Vec::new();
    if !auth.peers_authenticated() {
        open.push("replica-to-replica calls (Raft) are open to anyone who reaches this port".to_string());
    }
    let clients_authenticated = auth.tls && auth.tokens.is_some();
    if !listen.ip().is_loopback() && !clients_authenticated {
        open.push(format!(
            "the client and worker APIs on {listen} (not loopback) take requests without TLS and tokens"
        ));
    }
    (!open.is_empty()).then(|| open.join("; "))
}

/// A request's caller may change the cluster (membership, drain): an admin or replica token, or
/// no token file at all.
pub fn require_admin<T>(request: &Request<T>) -> Result<(), Status> {
    match request.extensions().get::<Role>() {
        None | Some(Role::Admin | Role::Replica) => Ok(()),
        Some(role) => Err(Status::permission_denied(format!(
            "a {} token may not change the cluster; use an admin token",
            role.name()
        ))),
    }
}

/// The interceptor in front of one service.
#[derive(Clone)]
pub struct Guard {
    pub auth: Arc<Auth>,
    pub service: Service,
}

impl tonic::service::Interceptor for Guard {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let (role, peer) = self.auth.check(&request, self.service).map_err(|refusal| {
            self.auth.refusals.refuse(self.service, request.remote_addr().map(|a| a.ip()), refusal)
        })?;
        if let Some(role) = role {
            request.extensions_mut().insert(role);
        }
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer);
        }
        Ok(request)
    }
}
