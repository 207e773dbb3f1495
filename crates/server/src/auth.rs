//! Who may call what. With TLS on, every request must come over a connection whose client
//! presented a certificate signed by the cluster CA; with a token file, every request must carry a
//! known bearer token, whose role decides the services it may use:
//!
//! | role | Scheduler (clients) | Worker | Raft (replica to replica) | membership, drain |
//! |---|---|---|---|---|
//! | `client` | yes | no | no | no |
//! | `worker` | no | yes | no | no |
//! | `admin` | yes | yes | yes | yes |
//! | `replica` | yes | yes | yes | yes |
//!
//! Missing or unknown credentials are `UNAUTHENTICATED`; a known token of the wrong role is
//! `PERMISSION_DENIED`. Tokens are compared in constant time and never logged.
//! `grpc.health.v1` and reflection stay open (load balancers and probes have no token).

use std::path::Path;
use std::sync::Arc;

use raftsched_api::security::{read_bounded, SecurityError, AUTHORIZATION, TOKEN_FILE_BYTES_MAX};
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

/// The checks every request goes through.
#[derive(Debug, Default)]
pub struct Auth {
    /// TLS is on: a client certificate is required.
    pub tls: bool,
    pub tokens: Option<Tokens>,
}

impl Auth {
    pub fn is_open(&self) -> bool {
        !self.tls && self.tokens.is_none()
    }

    fn check(&self, request: &Request<()>, service: Service) -> Result<Option<Role>, Status> {
        if self.tls && request.peer_certs().is_none_or(|certs| certs.is_empty()) {
            return Err(Status::unauthenticated("a client certificate signed by the cluster CA is required"));
        }
        let Some(tokens) = &self.tokens else { return Ok(None) };
        let header = request
            .metadata()
            .get(AUTHORIZATION)
            .ok_or_else(|| Status::unauthenticated("missing bearer token (authorization: Bearer TOKEN)"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("the authorization header is not `Bearer TOKEN`"))?;
        let role = tokens.role_of(token.as_bytes()).ok_or_else(|| Status::unauthenticated("unknown bearer token"))?;
        let allowed = match service {
            Service::Scheduler => matches!(role, Role::Client | Role::Admin | Role::Replica),
            Service::Worker => matches!(role, Role::Worker | Role::Admin | Role::Replica),
            Service::Raft => matches!(role, Role::Admin | Role::Replica),
        };
        if !allowed {
            let name = match service {
                Service::Scheduler => "the client API (raftsched.v1.Scheduler)",
                Service::Worker => "the worker API (raftsched.v1.Worker)",
                Service::Raft => "replica-to-replica calls (raftsched.v1.Raft)",
            };
            return Err(Status::permission_denied(format!("a {} token may not use {name}", role.name())));
        }
        Ok(Some(role))
    }
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
        if let Some(role) = self.auth.check(&request, self.service)? {
            request.extensions_mut().insert(role);
        }
        Ok(request)
    }
}
