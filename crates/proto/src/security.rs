//! Who a dida process is, and how it proves it: mutual TLS with a role in every
//! certificate, or (for development on one machine) a shared cluster token.
//!
//! Without either, anyone who can reach a node's port could declare its peers
//! failed, push forged records, report forged outcomes or make a worker send a
//! request anywhere. With TLS on ([`TlsIdentity`]), every connection is mutually
//! authenticated against the cluster's CA, and every call is authorised by the
//! caller's role (see [`crate::authorize`]): only storage nodes replicate, only
//! workers and the scheduler hand executions on, clients use the storage API and
//! submit work. With only a cluster token, calls between nodes must carry the
//! token; clients need none. The token is [`Security::cluster_token`] when given
//! (`--cluster-token`), else the per-user [`Security::cookie`] (see
//! [`crate::cookie`]): nodes of one user on one machine authenticate one another
//! with no flag at all, and only `--insecure` runs without.
//!
//! A process has one identity, installed once at start-up by the `dida` binary
//! ([`install`]) and used by every channel it opens and every server it runs
//! ([`crate::transport`]). Processes that install nothing (in-process test clusters)
//! run with none of them, on loopback.
//!
//! The threat model and how to run a secured cluster are in docs/security.md.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context};
use x509_parser::extensions::GeneralName;

/// What a node or client is allowed to do, as its certificate states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A storage node: replicates records, probes its peers.
    Storage,
    /// A worker: runs operators, hands executions on.
    Worker,
    /// The scheduler: places executions on workers.
    Scheduler,
    /// A process creation service: starts nodes for a PuppetMaster.
    Pcs,
    /// A person or program using the cluster: the CLI, the PuppetMaster, tests.
    Client,
}

impl Role {
    /// Every role, in the order `dida certs` lists them.
    pub const ALL: [Role; 5] = [
        Role::Storage,
        Role::Worker,
        Role::Scheduler,
        Role::Pcs,
        Role::Client,
    ];

    /// The role's name in certificates and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Storage => "storage",
            Role::Worker => "worker",
            Role::Scheduler => "scheduler",
            Role::Pcs => "pcs",
            Role::Client => "client",
        }
    }

    /// The role named `name`, if any.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Prefix of the URI name every dida certificate carries, in the SPIFFE form
/// `spiffe://dida/<role>/<name>`: a standard place for a workload's identity that
/// TLS libraries verify as part of the certificate, unlike a free-form subject.
pub const IDENTITY_URI_PREFIX: &str = "spiffe://dida/";

/// The URI name of `name` in `role`.
pub fn identity_uri(role: Role, name: &str) -> String {
    format!("{IDENTITY_URI_PREFIX}{role}/{name}")
}

/// The role and name of a dida identity URI.
pub fn parse_identity_uri(uri: &str) -> Option<(Role, String)> {
    let (role, name) = uri.strip_prefix(IDENTITY_URI_PREFIX)?.split_once('/')?;
    Some((Role::parse(role)?, name.to_string()))
}

/// The dida identity (role and name) a DER certificate carries, if any.
pub fn identity_of_certificate(der: &[u8]) -> Option<(Role, String)> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let names = certificate.subject_alternative_name().ok()??;
    names
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            GeneralName::URI(uri) => parse_identity_uri(uri),
            _ => None,
        })
}

/// Whether a shared secret a caller gave is the expected one, compared in constant
/// time so that the time to refuse tells nothing about the secret (the cluster token,
/// a PCS's token).
pub fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The gRPC metadata entry that carries the cluster token on calls between nodes.
pub const CLUSTER_TOKEN_HEADER: &str = "x-dida-cluster-token";

/// This process's certificate and key, and the CA it trusts, in PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    /// The cluster's CA certificate: the only issuer this process trusts.
    pub ca_pem: Vec<u8>,
    /// This process's certificate, presented as server and as client.
    pub cert_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
    /// The role the certificate states.
    pub role: Role,
    /// The name the certificate states.
    pub name: String,
}

impl fmt::Debug for TlsIdentity {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("role", &self.role)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Where the three PEM files of an identity are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// This process's certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files `dida certs --out DIR` wrote for `name`: `DIR/ca.pem`,
    /// `DIR/NAME.pem` and `DIR/NAME.key`.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        }
    }
}

impl TlsIdentity {
    /// Reads an identity, checking that the certificate names a dida role.
    pub fn load(files: &TlsFiles) -> anyhow::Result<Self> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path)
                .with_context(|| format!("cannot read the {what} {}", path.display()))
        };
        let ca_pem = read(&files.ca, "CA certificate")?;
        let cert_pem = read(&files.cert, "certificate")?;
        let key_pem = read(&files.key, "private key")?;
        let der = first_pem_block(&cert_pem)
            .with_context(|| format!("{} holds no PEM certificate", files.cert.display()))?;
        let (role, name) = identity_of_certificate(&der).with_context(|| {
            format!(
                "{} names no dida role (a URI name {IDENTITY_URI_PREFIX}<role>/<name>); \
                 make certificates with `dida certs`",
                files.cert.display()
            )
        })?;
        Ok(Self {
            ca_pem,
            cert_pem,
            key_pem,
            role,
            name,
        })
    }
}

/// The DER bytes of the first PEM block of `pem`.
fn first_pem_block(pem: &[u8]) -> Option<Vec<u8>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    Some(block.contents)
}

/// How this process authenticates itself and its peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    /// Mutual TLS, with this identity.
    pub tls: Option<TlsIdentity>,
    /// The shared secret calls between nodes carry when TLS is off, given
    /// explicitly (`--cluster-token`): a deployment's credential, which HTTP
    /// clients of the gateway are given too.
    pub cluster_token: Option<String>,
    /// The per-user secret ([`crate::cookie`]) calls between nodes carry when there
    /// is neither TLS nor an explicit token. It lives in a file of the user's home,
    /// so it authenticates the nodes of one user on one machine to one another; it
    /// is not a client credential and does not make a non-loopback port safe.
    pub cookie: Option<String>,
    /// Run with neither TLS, nor a token, nor the cookie, knowingly: calls between
    /// nodes are not authenticated, and ports may listen beyond loopback.
    pub insecure: bool,
}

impl Security {
    /// Whether calls are authenticated by a credential meant to cross machines
    /// (TLS or an explicit token), which makes a non-loopback port safe to open.
    pub fn is_authenticated(&self) -> bool {
        self.tls.is_some() || self.cluster_token.is_some()
    }

    /// The secret calls between nodes carry and servers demand when TLS is off:
    /// the explicit token, else the cookie. `None` with TLS (certificates
    /// authenticate) or `--insecure`.
    pub fn node_token(&self) -> Option<&str> {
        if self.tls.is_some() {
            return None;
        }
        self.cluster_token.as_deref().or(self.cookie.as_deref())
    }

    /// Refuses to serve on `host` when it is reachable from other machines and
    /// nothing authenticates calls, unless `--insecure` was given: an open port
    /// would let anyone fence nodes or rewrite data.
    pub fn check_exposure(&self, host: &str) -> anyhow::Result<()> {
        if self.is_authenticated() || self.insecure || is_loopback(host) {
            return Ok(());
        }
        bail!(
            "refusing to serve on {host}, which other machines can reach, without \
             authentication: give --tls-dir (mutual TLS, see `dida certs`) or \
             --cluster-token, or --insecure to serve unauthenticated anyway"
        )
    }
}

impl Security {
    /// Refuses an `https://` URL when this process has no TLS: it could neither
    /// call a node there nor be called there itself.
    pub fn check_scheme(&self, url: &str) -> anyhow::Result<()> {
        if self.tls.is_none() && url.starts_with("https://") {
            bail!(
                "{url} is an https:// URL, but this process has no TLS: give --tls-dir \
                 (or --tls-cert, --tls-key and --tls-ca), or write the URL with http://"
            );
        }
        Ok(())
    }
}

/// Whether `host` names this machine only.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

static INSTALLED: OnceLock<Security> = OnceLock::new();

/// Sets this process's security, once, before it opens any channel or serves.
/// Installing the same settings again is allowed (tests in one process); other
/// settings are refused, as channels already opened would keep the old ones.
pub fn install(security: Security) -> anyhow::Result<()> {
    if let Some(token) = security.node_token() {
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("the cluster token must be non-empty printable ASCII without spaces");
        }
    }
    let installed = INSTALLED.get_or_init(|| security.clone());
    if *installed != security {
        bail!("this process's security settings are already installed and differ");
    }
    Ok(())
}

/// This process's security: what [`install`] set, or nothing.
pub fn installed() -> &'static Security {
    static NONE: Security = Security {
        tls: None,
        cluster_token: None,
        cookie: None,
        insecure: false,
    };
    INSTALLED.get().unwrap_or(&NONE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uris_round_trip_and_reject_others() {
        for role in Role::ALL {
            let uri = identity_uri(role, "n1");
            assert_eq!(parse_identity_uri(&uri), Some((role, "n1".to_string())));
        }
        assert_eq!(parse_identity_uri("spiffe://dida/king/n1"), None);
        assert_eq!(parse_identity_uri("spiffe://other/storage/n1"), None);
        assert_eq!(parse_identity_uri("spiffe://dida/storage"), None);
    }

    #[test]
    fn only_loopback_may_serve_unauthenticated() {
        let open = Security::default();
        for host in ["127.0.0.1", "127.0.0.9", "localhost", "::1", "[::1]"] {
            assert!(open.check_exposure(host).is_ok(), "{host}");
        }
        for host in ["0.0.0.0", "10.0.0.1", "example.org", "::"] {
            let refused = open.check_exposure(host).unwrap_err().to_string();
            assert!(refused.contains("--insecure"), "{refused}");
        }
        let token = Security {
            cluster_token: Some("t".into()),
            ..Security::default()
        };
        assert!(token.check_exposure("0.0.0.0").is_ok());
        let insecure = Security {
            insecure: true,
            ..Security::default()
        };
        assert!(insecure.check_exposure("0.0.0.0").is_ok());
        // The cookie is one machine's credential: it authenticates nodes to one
        // another but opens no port to other machines.
        let cookie = Security {
            cookie: Some("c".into()),
            ..Security::default()
        };
        assert!(cookie.check_exposure("0.0.0.0").is_err());
        assert!(cookie.check_exposure("127.0.0.1").is_ok());
    }

    #[test]
    fn calls_between_nodes_carry_the_explicit_token_else_the_cookie() {
        let both = Security {
            cluster_token: Some("t".into()),
            cookie: Some("c".into()),
            ..Security::default()
        };
        assert_eq!(both.node_token(), Some("t"));
        let cookie = Security {
            cookie: Some("c".into()),
            ..Security::default()
        };
        assert_eq!(cookie.node_token(), Some("c"));
        assert_eq!(Security::default().node_token(), None);
    }
}
