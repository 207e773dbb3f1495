//! `raftsched certs generate`: a development CA, certificates and bearer tokens, so that mutual
//! TLS and tokens can be tried (and tested) without any other tool. For production, use your own
//! PKI: the servers only need PEM files (`--tls-ca`, `--tls-cert`, `--tls-key`).

use std::io::Write;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

use crate::error::CliError;

/// Names in every replica certificate.
const DEFAULT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

fn failed(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Failed(format!("{what}: {e}"))
}

/// Writes `text` to `dir/name`; private files (keys, tokens) readable by the owner only.
fn write(dir: &Path, name: &str, text: &str, private: bool, force: bool) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(if private { 0o600 } else { 0o644 });
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::Usage(format!("{} exists; pass --force to overwrite", path.display()))
        } else {
            failed(&path.display().to_string(), e)
        }
    })?;
    file.write_all(text.as_bytes()).map_err(|e| failed(&path.display().to_string(), e))?;
    Ok(())
}

fn token() -> String {
    (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// One leaf certificate to issue.
struct Leaf {
    stem: String,
    common_name: String,
    sans: Vec<String>,
    /// `raftsched://ROLE[/ID]`: who the certificate's holder is (`auth.rs` reads it).
    identity: String,
    serves: bool,
}

fn issue(dir: &Path, leaf: &Leaf, ca: &rcgen::Certificate, ca_key: &KeyPair, force: bool) -> Result<(), CliError> {
    let stem = leaf.stem.as_str();
    let key = KeyPair::generate().map_err(|e| failed(stem, e))?;
    let mut params = CertificateParams::new(leaf.sans.clone()).map_err(|e| failed(stem, e))?;
    let uri = leaf.identity.clone().try_into().map_err(|e| failed(stem, e))?;
    params.subject_alt_names.push(rcgen::SanType::URI(uri));
    params.distinguished_name.push(DnType::CommonName, leaf.common_name.as_str());
    params.extended_key_usages = if leaf.serves {
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&key, ca, ca_key).map_err(|e| failed(stem, e))?;
    write(dir, &format!("{stem}.pem"), &cert.pem(), false, force)?;
    write(dir, &format!("{stem}-key.pem"), &key.serialize_pem(), true, force)
}

/// The certificates `certs generate` issues: one per replica id and per worker id (each naming
/// its holder), and the role-wide `replica`, `worker` and `client` ones.
fn leaves(args: &crate::cli::CertsArgs) -> Vec<Leaf> {
    let mut hosts: Vec<String> = DEFAULT_HOSTS.iter().map(|h| h.to_string()).collect();
    hosts.extend(args.hosts.iter().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()));
    let leaf = |stem: String, cn: String, sans: Vec<String>, identity: String, serves| Leaf {
        stem,
        common_name: cn,
        sans,
        identity: format!("{}{identity}", raftsched_server::auth::IDENTITY_URI_PREFIX),
        serves,
    };
    let mut out = vec![
        leaf("replica".into(), "raftsched replica".into(), hosts.clone(), "replica".into(), true),
        leaf("worker".into(), "raftsched worker".into(), vec!["raftsched-worker".into()], "worker".into(), true),
        leaf("client".into(), "raftsched client".into(), vec!["raftsched-client".into()], "client".into(), false),
    ];
    for id in &args.replicas {
        out.push(leaf(
            format!("replica-{id}"),
            format!("raftsched replica {id}"),
            hosts.clone(),
            format!("replica/{id}"),
            true,
        ));
    }
    for id in &args.workers {
        let sans = vec!["raftsched-worker".into()];
        out.push(leaf(format!("worker-{id}"), format!("raftsched worker {id}"), sans, format!("worker/{id}"), true));
    }
    out
}

pub fn generate(args: &crate::cli::CertsArgs) -> Result<(), CliError> {
    for id in &args.workers {
        if !raftsched_server::auth::valid_identity_id(id) {
            return Err(CliError::Usage(format!("--workers: {id:?} is not a worker id (letters, digits, . _ -)")));
        }
    }
    std::fs::create_dir_all(&args.out).map_err(|e| failed(&args.out.display().to_string(), e))?;
    let ca_key = KeyPair::generate().map_err(|e| failed("CA key", e))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| failed("CA", e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "raftsched development CA");
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = ca_params.self_signed(&ca_key).map_err(|e| failed("CA", e))?;
    write(&args.out, "ca.pem", &ca.pem(), false, args.force)?;
    write(&args.out, "ca-key.pem", &ca_key.serialize_pem(), true, args.force)?;
    let leaves = leaves(args);
    for leaf in &leaves {
        issue(&args.out, leaf, &ca, &ca_key, args.force)?;
    }
    write_tokens(args)?;
    let secret = raftsched_api::security::ClusterSecret::generate_text().map_err(|e| failed("cluster secret", e))?;
    write(&args.out, "cluster-secret", &format!("{secret}\n"), true, args.force)?;
    let dir = args.out.display();
    outln!("wrote a CA, certificates, tokens and a cluster secret to {dir}:");
    outln!("  replica N: --tls-ca {dir}/ca.pem --tls-cert {dir}/replica-N.pem --tls-key {dir}/replica-N-key.pem --token-file {dir}/tokens --cluster-secret-file {dir}/cluster-secret");
    outln!("  worker ID: --tls-ca {dir}/ca.pem --tls-cert {dir}/worker-ID.pem --tls-key {dir}/worker-ID-key.pem --token-file {dir}/worker-ID.token");
    outln!("  clients:   --tls-ca {dir}/ca.pem --tls-cert {dir}/client.pem --tls-key {dir}/client-key.pem --token-file {dir}/client.token");
    outln!("  (admin.token for cluster add/remove/transfer-leader and worker drain; replica.pem and worker.pem");
    outln!("   with worker.token serve any replica or worker id)");
    outln!("The replica certificates are valid for: {}", leaves[0].sans.join(", "));
    Ok(())
}

/// The server's token file (`tokens`: every role, each replica and worker id bound) and one file
/// per caller.
fn write_tokens(args: &crate::cli::CertsArgs) -> Result<(), CliError> {
    let (admin, client, worker, replica) = (token(), token(), token(), token());
    let mut tokens = format!(
        "# raftsched server --token-file: ROLE TOKEN or ROLE:ID TOKEN per line (client, worker, admin, replica)\n\
         admin {admin}\nclient {client}\nworker {worker}\nreplica {replica}\n"
    );
    for id in &args.replicas {
        tokens.push_str(&format!("replica:{id} {}\n", token()));
    }
    let mut per_file = vec![("admin".to_string(), admin), ("client".into(), client), ("worker".into(), worker)];
    for id in &args.workers {
        let t = token();
        tokens.push_str(&format!("worker:{id} {t}\n"));
        per_file.push((format!("worker-{id}"), t));
    }
    write(&args.out, "tokens", &tokens, true, args.force)?;
    for (name, value) in per_file {
        write(&args.out, &format!("{name}.token"), &format!("{value}\n"), true, args.force)?;
    }
    Ok(())
}

/// `raftsched secret generate --out FILE`: a new cluster secret, readable by its owner only.
pub fn generate_secret(args: &crate::cli::SecretArgs) -> Result<(), CliError> {
    write_secret(&args.out, args.force)?;
    outln!("wrote a cluster secret to {}: give every replica --cluster-secret-file {0}", args.out.display());
    Ok(())
}

/// Writes a new cluster secret to `path` (mode 0600); refuses to overwrite unless `force`.
pub fn write_secret(path: &Path, force: bool) -> Result<(), CliError> {
    let secret = raftsched_api::security::ClusterSecret::generate_text().map_err(|e| failed("cluster secret", e))?;
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => (if dir.as_os_str().is_empty() { Path::new(".") } else { dir }, name),
        _ => return Err(CliError::Usage(format!("{} is not a file path", path.display()))),
    };
    let text =
        format!("# raftsched cluster secret: the same file on every replica (--cluster-secret-file)\n{secret}\n");
    write(dir, &name.to_string_lossy(), &text, true, force)
}

/// The cluster secret of a local cluster under `dir` (`raftsched dev`, benchmarks): made on first
/// use, reused after (a restarted replica must prove the same secret).
pub fn local_secret(dir: &Path) -> Result<std::path::PathBuf, CliError> {
    let path = dir.join("cluster-secret");
    if !path.exists() {
        write_secret(&path, false)?;
    }
    Ok(path)
}
