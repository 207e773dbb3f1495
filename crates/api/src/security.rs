//! Transport security shared by replicas, workers and clients: TLS files (mutual TLS: every side
//! presents a certificate signed by the cluster's CA) and bearer tokens in the `authorization`
//! metadata. Token values are never logged: [`BearerToken`]'s `Debug` hides them.

use std::path::{Path, PathBuf};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// The metadata key a bearer token travels in.
pub const AUTHORIZATION: &str = "authorization";
/// Largest token file read, in bytes.
pub const TOKEN_FILE_BYTES_MAX: u64 = 64 * 1024;
/// Largest PEM file read, in bytes.
pub const PEM_FILE_BYTES_MAX: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {why}")]
    Bad { path: String, why: String },
    #[error("{0}")]
    Config(String),
}

/// Reads a small file, refusing one over `max` bytes.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, SecurityError> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|source| SecurityError::Read { path: path.display().to_string(), source })?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| SecurityError::Read { path: path.display().to_string(), source })?;
    if bytes.len() as u64 > max {
        return Err(SecurityError::Bad { path: path.display().to_string(), why: format!("larger than {max} bytes") });
    }
    Ok(bytes)
}

fn pem(path: &Path) -> Result<Vec<u8>, SecurityError> {
    let bytes = read_bounded(path, PEM_FILE_BYTES_MAX)?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
        return Err(SecurityError::Bad { path: path.display().to_string(), why: "not a PEM file".into() });
    }
    Ok(bytes)
}

/// The TLS files of one process: the cluster CA, and this process's certificate and key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// From the three optional flags: all or none.
    pub fn from_flags(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<TlsFiles>, SecurityError> {
        match (ca, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => {
                Ok(Some(TlsFiles { ca: ca.to_path_buf(), cert: cert.to_path_buf(), key: key.to_path_buf() }))
            }
            _ => Err(SecurityError::Config("--tls-ca, --tls-cert and --tls-key go together".into())),
        }
    }

    fn identity(&self) -> Result<Identity, SecurityError> {
        Ok(Identity::from_pem(pem(&self.cert)?, pem(&self.key)?))
    }

    /// Dialing out: verify the server against the CA, present this process's certificate.
    pub fn client_config(&self) -> Result<ClientTlsConfig, SecurityError> {
        Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem(&self.ca)?)).identity(self.identity()?))
    }

    /// Serving: present this process's certificate; accept client certificates signed by the
    /// CA. A connection without one is let through so that its requests can be answered
    /// `UNAUTHENTICATED` (a clear error) instead of failing the handshake; every service checks.
    pub fn server_config(&self) -> Result<ServerTlsConfig, SecurityError> {
        Ok(ServerTlsConfig::new()
            .identity(self.identity()?)
            .client_ca_root(Certificate::from_pem(pem(&self.ca)?))
            .client_auth_optional(true))
    }
}

/// The URI scheme a certificate names its holder with: `raftsched://replica/2`,
/// `raftsched://worker/w1` (what `raftsched certs generate` writes).
pub const IDENTITY_URI_PREFIX: &str = "raftsched://";

/// What the TLS client certificate of `request` names after [`IDENTITY_URI_PREFIX`]
/// (`replica/2`), if it has such a URI.
pub fn certificate_identity_uri<T>(request: &tonic::Request<T>) -> Option<String> {
    let certs = request.peer_certs()?;
    let leaf = webpki::EndEntityCert::try_from(certs.first()?).ok()?;
    let uri = leaf.valid_uri_names().find_map(|u| u.strip_prefix(IDENTITY_URI_PREFIX).map(str::to_string));
    uri
}

/// Dialing a worker (a replica fetching task output): the cluster's TLS settings, with the name
/// every worker certificate carries (`raftsched certs generate` writes it), since workers are
/// reached by address.
pub const WORKER_TLS_NAME: &str = "raftsched-worker";

/// How a process dials: TLS or not, and the bearer token it sends, if any.
#[derive(Clone, Default)]
pub struct Dialer {
    pub tls: Option<ClientTlsConfig>,
    pub token: BearerToken,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer").field("tls", &self.tls.is_some()).field("token", &self.token).finish()
    }
}

impl Dialer {
    pub fn new(tls: Option<&TlsFiles>, token: Option<&str>) -> Result<Dialer, SecurityError> {
        Ok(Dialer { tls: tls.map(TlsFiles::client_config).transpose()?, token: BearerToken::new(token)? })
    }

    /// For dialing workers: the same TLS, verifying the worker under [`WORKER_TLS_NAME`], and no
    /// bearer token or peer proof (a worker has no use for them, and must never be handed a
    /// replica's proof).
    pub fn for_workers(&self) -> Dialer {
        Dialer { tls: self.tls.clone().map(|t| t.domain_name(WORKER_TLS_NAME)), token: BearerToken::default() }
    }

    /// An endpoint for `addr` (`HOST:PORT`), `https` with this dialer's TLS config if it has one.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}")).map_err(|e| e.to_string())?;
        match &self.tls {
            Some(tls) => endpoint.tls_config(tls.clone()).map_err(|e| e.to_string()),
            None => Ok(endpoint),
        }
    }
}

/// Adds `authorization: Bearer TOKEN` to every request (nothing when there is no token), and a
/// replica's `raftsched-peer` proof when it has one.
#[derive(Clone, Default)]
pub struct BearerToken {
    token: Option<MetadataValue<Ascii>>,
    peer: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.token.is_some() { "BearerToken(<hidden>" } else { "BearerToken(none" })?;
        f.write_str(if self.peer.is_some() { ", peer proof <hidden>)" } else { ")" })
    }
}

fn sensitive(text: &str, what: &str) -> Result<MetadataValue<Ascii>, SecurityError> {
    let mut value: MetadataValue<Ascii> =
        text.parse().map_err(|_| SecurityError::Config(format!("{what} must be printable ASCII")))?;
    value.set_sensitive(true);
    Ok(value)
}

impl BearerToken {
    pub fn new(token: Option<&str>) -> Result<BearerToken, SecurityError> {
        let token = token.map(|t| sensitive(&format!("Bearer {t}"), "a token")).transpose()?;
        Ok(BearerToken { token, peer: None })
    }

    /// Also sends replica `id`'s proof of holding the cluster secret.
    pub fn with_peer_proof(mut self, secret: &ClusterSecret, id: u64) -> Result<BearerToken, SecurityError> {
        self.peer = Some(sensitive(&secret.proof(id), "a peer proof")?);
        Ok(self)
    }

    /// Reads a token file holding one token (the first non-empty, non-comment line).
    pub fn from_file(path: &Path) -> Result<BearerToken, SecurityError> {
        let text = String::from_utf8(read_bounded(path, TOKEN_FILE_BYTES_MAX)?)
            .map_err(|_| SecurityError::Bad { path: path.display().to_string(), why: "not UTF-8".into() })?;
        let token = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| SecurityError::Bad { path: path.display().to_string(), why: "no token in it".into() })?;
        // A server token file line ("client TOKEN") given to a client: take the token.
        let token = token.split_whitespace().last().unwrap_or(token);
        BearerToken::new(Some(token))
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.token {
            request.metadata_mut().insert(AUTHORIZATION, value.clone());
        }
        if let Some(value) = &self.peer {
            request.metadata_mut().insert(PEER_HEADER, value.clone());
        }
        Ok(request)
    }
}

/// A channel that sends the dialer's token with every request.
pub type AuthChannel = InterceptedService<Channel, BearerToken>;

/// The metadata key of a replica's proof of membership: `ID.HEX`, where HEX is the HMAC-SHA256 of
/// `raftsched-peer-v1:ID` under the cluster secret. The secret itself never travels.
pub const PEER_HEADER: &str = "raftsched-peer";
/// Shortest cluster secret accepted, in bytes of entropy (hex characters / 2).
pub const CLUSTER_SECRET_BYTES_MIN: usize = 32;
/// Largest cluster secret file read, in bytes.
pub const CLUSTER_SECRET_FILE_BYTES_MAX: u64 = 4 * 1024;

/// The secret every replica of a cluster shares (`--cluster-secret-file`): proof that a caller of
/// the Raft service is a replica when there is no TLS to say so. `Debug` hides it.
#[derive(Clone)]
pub struct ClusterSecret {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(<hidden>)")
    }
}

impl ClusterSecret {
    /// Reads a secret file: one line of at least 64 hex characters (`raftsched secret generate`),
    /// `#` comments allowed. The file should be readable by its owner only.
    pub fn from_file(path: &Path) -> Result<ClusterSecret, SecurityError> {
        let bad = |why: String| SecurityError::Bad { path: path.display().to_string(), why };
        let text = String::from_utf8(read_bounded(path, CLUSTER_SECRET_FILE_BYTES_MAX)?)
            .map_err(|_| bad("not UTF-8".into()))?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| bad("no secret in it (make one with `raftsched secret generate --out FILE`)".into()))?;
        if line.len() < CLUSTER_SECRET_BYTES_MIN * 2 || !line.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!(
                "a cluster secret is at least {} hex characters (make one with `raftsched secret generate --out FILE`)",
                CLUSTER_SECRET_BYTES_MIN * 2
            )));
        }
        Ok(ClusterSecret::from_text(line))
    }

    fn from_text(text: &str) -> ClusterSecret {
        ClusterSecret { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, text.as_bytes()) }
    }

    /// A new secret's text: 32 random bytes as 64 hex characters.
    pub fn generate_text() -> Result<String, SecurityError> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; CLUSTER_SECRET_BYTES_MIN];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SecurityError::Config("the system random number generator failed".into()))?;
        Ok(hex(&bytes))
    }

    fn message(id: u64) -> String {
        format!("raftsched-peer-v1:{id}")
    }

    /// The `raftsched-peer` header value replica `id` sends.
    pub fn proof(&self, id: u64) -> String {
        let tag = ring::hmac::sign(&self.key, Self::message(id).as_bytes());
        format!("{id}.{}", hex(tag.as_ref()))
    }

    /// The replica id a `raftsched-peer` header value proves, checked in constant time.
    pub fn verify(&self, value: &str) -> Result<u64, PeerProofError> {
        let (id, tag) = value.split_once('.').ok_or(PeerProofError::Malformed)?;
        let id: u64 = id.parse().map_err(|_| PeerProofError::Malformed)?;
        let tag = unhex(tag).ok_or(PeerProofError::Malformed)?;
        ring::hmac::verify(&self.key, Self::message(id).as_bytes(), &tag).map_err(|_| PeerProofError::Wrong)?;
        Ok(id)
    }
}

/// Why a `raftsched-peer` header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeerProofError {
    #[error("the raftsched-peer header is not ID.HEX")]
    Malformed,
    #[error("the raftsched-peer proof does not match this cluster's secret")]
    Wrong,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}
