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
//! Identities: a TLS certificate may name its holder with a `raftsched://ROLE/ID` URI (what `certs
//! generate` writes: `raftsched://replica/2`, `raftsched://worker/w1`), and a token file line may
//! bind a token to one (`worker:w1 TOKEN`). Where both are present they must agree; a worker
//! bound to an id may act only as that worker (`check_worker`), a replica certificate or token
//! with an id proves that replica on the Raft service as the cluster secret does.
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

/// Tokens with their roles, from a token file: one `ROLE TOKEN` or `ROLE:ID TOKEN` per line
/// (`#` comments). A token with an id belongs to that identity only: `worker:w1` may act as
/// worker `w1` and no other, `replica:2` is replica 2.
pub struct Tokens {
    entries: Vec<(Identity, Vec<u8>)>,
}

/// Who a caller is, as its credentials name it: a role, and the id within it when the credential
/// names one (a certificate's `raftsched://ROLE/ID` URI, or a token file's `ROLE:ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub role: Role,
    pub id: Option<String>,
}

/// Longest identity id, in bytes.
pub const IDENTITY_ID_BYTES_MAX: usize = 64;

/// Whether `id` may name an identity: 1 to `IDENTITY_ID_BYTES_MAX` letters, digits, `.`, `_`, `-`.
pub fn valid_identity_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= IDENTITY_ID_BYTES_MAX
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Identity {
    /// Parses `ROLE` or `ROLE:ID` (token files) or `ROLE/ID` (certificate URIs, after the scheme).
    fn parse(text: &str, separator: char) -> Option<Identity> {
        let (role, id) = match text.split_once(separator) {
            Some((role, id)) => (role, Some(id)),
            None => (text, None),
        };
        let role = Role::parse(role)?;
        if let Some(id) = id {
            if !valid_identity_id(id) || (role == Role::Replica && id.parse::<u64>().is_err()) {
                return None;
            }
        }
        Some(Identity { role, id: id.map(str::to_string) })
    }

    fn describe(&self) -> String {
        match &self.id {
            Some(id) => format!("{} {id}", self.role.name()),
            None => format!("a {}", self.role.name()),
        }
    }
}

pub use raftsched_api::security::IDENTITY_URI_PREFIX;

/// The identity the TLS client certificate of `request` names, if any.
fn certificate_identity<T>(request: &Request<T>) -> Option<Identity> {
    Identity::parse(&raftsched_api::security::certificate_identity_uri(request)?, '/')
}

/// The worker a request's credentials bind it to (a request extension set by the guard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundWorker(pub String);

/// Refuses a worker request that acts as `worker_id` when its credentials belong to another.
pub fn check_worker<T>(request: &Request<T>, worker_id: &str) -> Result<(), Status> {
    match request.extensions().get::<BoundWorker>() {
        Some(BoundWorker(bound)) if bound != worker_id => Err(Status::permission_denied(format!(
            "these credentials belong to worker {bound:?}; they may not act as worker {worker_id:?}"
        ))),
        _ => Ok(()),
    }
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
                return Err(bad(n, "expected `ROLE TOKEN` or `ROLE:ID TOKEN` (role: client, worker, admin, replica)"));
            };
            let identity = Identity::parse(role, ':').ok_or_else(|| {
                bad(n, "role must be client, worker, admin or replica, optionally with :ID (a replica id is a number)")
            })?;
            if token.len() < TOKEN_BYTES_MIN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad(n, &format!("a token is at least {TOKEN_BYTES_MIN} printable characters")));
            }
            entries.push((identity, token.as_bytes().to_vec()));
        }
        if entries.is_empty() {
            return Err(SecurityError::Bad { path: shown, why: "no tokens in it".into() });
        }
        Ok(Tokens { entries })
    }

    /// The token replica `id` sends to its peers: its own `replica:ID` line, else the first
    /// `replica` line without an id.
    pub fn replica_token(&self, id: u64) -> Option<String> {
        let own = |i: &Identity| i.role == Role::Replica && i.id.as_deref() == Some(id.to_string().as_str());
        let any = |i: &Identity| i.role == Role::Replica && i.id.is_none();
        let found = self.entries.iter().find(|(i, _)| own(i)).or_else(|| self.entries.iter().find(|(i, _)| any(i)));
        found.map(|(_, t)| String::from_utf8_lossy(t).into_owned())
    }

    /// The identity of `token`, comparing against every entry in constant time.
    fn identity_of(&self, token: &[u8]) -> Option<Identity> {
        let mut found = None;
        for (identity, known) in &self.entries {
            if constant_time_eq(known, token) && found.is_none() {
                found = Some(identity.clone());
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
    /// A certificate and a token that name different identities.
    IdentityMismatch,
}

impl Refusal {
    pub const ALL: [Refusal; 9] = [
        Refusal::NoCertificate,
        Refusal::NoToken,
        Refusal::UnknownToken,
        Refusal::WrongRole,
        Refusal::NoPeerProof,
        Refusal::BadPeerProof,
        Refusal::NotMember,
        Refusal::SenderMismatch,
        Refusal::IdentityMismatch,
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
            Refusal::IdentityMismatch => "identity_mismatch",
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

impl std::fmt::Debug for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Refusals")
    }
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

impl Auth {
    /// Whether replica-to-replica calls need proof (TLS with a replica token, or a secret).
    pub fn peers_authenticated(&self) -> bool {
        self.secret.is_some() || (self.tls && self.tokens.is_some())
    }

    /// Checks `request`'s credentials for `service`: returns who the caller is (when a certificate
    /// or a token says) and, on the Raft service, the replica it proved to be.
    fn check(&self, request: &Request<()>, service: Service) -> Result<(Option<Identity>, Option<PeerId>), Refused> {
        if self.tls && request.peer_certs().is_none_or(|certs| certs.is_empty()) {
            return Err(refused(
                Refusal::NoCertificate,
                Status::unauthenticated("a client certificate signed by the cluster CA is required"),
            ));
        }
        let certified = if self.tls { certificate_identity(request) } else { None };
        let token = self.check_token(request)?;
        let identity = agree(certified, token)?;
        if let Some(identity) = &identity {
            let role = identity.role;
            let allowed = match service {
                Service::Scheduler => matches!(role, Role::Client | Role::Admin | Role::Replica),
                Service::Worker => matches!(role, Role::Worker | Role::Admin | Role::Replica),
                Service::Raft => role == Role::Replica,
            };
            if !allowed {
                let message = format!("{} may not use {}", identity.describe(), service.described());
                return Err(refused(Refusal::WrongRole, Status::permission_denied(message)));
            }
        }
        let mut peer = if service == Service::Raft { self.check_peer(request)? } else { None };
        // A replica certificate or token that names its id proves it as well as the secret does.
        let named = identity.as_ref().filter(|i| i.role == Role::Replica).and_then(|i| i.id.as_ref()?.parse().ok());
        if let (Some(named), true) = (named, service == Service::Raft) {
            match peer {
                Some(PeerId(proven)) if proven != named => {
                    let message = format!("the credentials name replica {named}; the peer proof, replica {proven}");
                    return Err(refused(Refusal::SenderMismatch, Status::permission_denied(message)));
                }
                _ => peer = Some(PeerId(named)),
            }
        }
        Ok((identity, peer))
    }

    /// The identity of the request's bearer token, when a token file is in force.
    fn check_token(&self, request: &Request<()>) -> Result<Option<Identity>, Refused> {
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
        let identity = tokens
            .identity_of(token.as_bytes())
            .ok_or_else(|| refused(Refusal::UnknownToken, Status::unauthenticated("unknown bearer token")))?;
        Ok(Some(identity))
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

/// One identity from a certificate's and a token's: they must name the same role (a client
/// certificate may carry an admin token) and, where both name an id, the same id. A role never
/// comes from the token alone when the certificate says otherwise.
fn agree(certified: Option<Identity>, token: Option<Identity>) -> Result<Option<Identity>, Refused> {
    let (cert, token) = match (certified, token) {
        (None, token) => return Ok(token),
        (cert, None) => return Ok(cert),
        (Some(cert), Some(token)) => (cert, token),
    };
    let roles_agree = cert.role == token.role || (cert.role == Role::Client && token.role == Role::Admin);
    let ids_agree = match (&cert.id, &token.id) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    if !roles_agree || !ids_agree {
        let message = format!("the certificate names {}; the token belongs to {}", cert.describe(), token.describe());
        return Err(refused(Refusal::IdentityMismatch, Status::permission_denied(message)));
    }
    Ok(Some(Identity { role: token.role, id: token.id.or(cert.id) }))
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
        let (identity, peer) = self.auth.check(&request, self.service).map_err(|refusal| {
            self.auth.refusals.refuse(self.service, request.remote_addr().map(|a| a.ip()), refusal)
        })?;
        if let Some(identity) = identity {
            if let (Role::Worker, Some(id)) = (identity.role, &identity.id) {
                request.extensions_mut().insert(BoundWorker(id.clone()));
            }
            request.extensions_mut().insert(identity.role);
        }
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer);
        }
        Ok(request)
    }
}
