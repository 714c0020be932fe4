//! The flags every subcommand that runs a node or talks to a cluster takes to
//! authenticate (docs/security.md): mutual TLS
//! from a `dida certs` directory or explicit files, or a cluster token, or — with
//! none of them — this user's cluster token file, created on first use; and the
//! one-time installation of the resulting identity for the whole process.
//!
//! The settings also travel to the processes this one starts (a PCS's nodes, a
//! PuppetMaster's local PCS, a local cluster's nodes) through the environment
//! variables the flags read, so a cluster started with `--tls-dir` runs over TLS
//! end to end without repeating the flag for every node.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use dida_proto::cookie;
use dida_proto::security::{self, Security, TlsFiles, TlsIdentity};

/// The environment variable of `--tls-dir`.
pub const TLS_DIR_ENV: &str = "DIDA_TLS_DIR";
/// The environment variable of `--cluster-token`.
pub const CLUSTER_TOKEN_ENV: &str = "DIDA_CLUSTER_TOKEN";
/// The environment variable of `--cluster-token-file`.
pub const CLUSTER_TOKEN_FILE_ENV: &str = "DIDA_CLUSTER_TOKEN_FILE";
/// The environment variable of `--insecure`.
pub const INSECURE_ENV: &str = "DIDA_INSECURE";

/// Authentication flags, accepted by every subcommand that runs a node or talks to
/// a cluster (not by the local `new`, `certs`, `completions` and `sim`).
#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// Use mutual TLS with the CA and certificates `dida certs` wrote to this
    /// directory: this process presents NAME.pem / NAME.key (see --tls-name).
    #[arg(long, global = true, env = TLS_DIR_ENV, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// Which certificate of --tls-dir to present: by default the node's --id
    /// (storage nodes, workers, the scheduler), `pcs` for a PCS, `client` for every
    /// other command.
    #[arg(long, global = true, value_name = "NAME")]
    tls_name: Option<String>,
    /// Use mutual TLS with this certificate (instead of --tls-dir).
    #[arg(long, global = true, requires_all = ["tls_key", "tls_ca"], conflicts_with = "tls_dir")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert.
    #[arg(long, global = true, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The CA certificate to trust, with --tls-cert.
    #[arg(long, global = true, requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// Without TLS: a shared secret every call between nodes must carry (clients
    /// need none). Better passed in the environment than on the command line.
    #[arg(long, global = true, env = CLUSTER_TOKEN_ENV, hide_env_values = true)]
    cluster_token: Option<String>,
    /// Without TLS or --cluster-token: the file holding this user's cluster token,
    /// created (readable by this user only) on first use. Every dida process of the
    /// user reads the same file, so its nodes authenticate one another with no
    /// flag. [default: ~/.dida/cluster-token]
    #[arg(long, global = true, env = CLUSTER_TOKEN_FILE_ENV, value_name = "FILE")]
    cluster_token_file: Option<PathBuf>,
    /// Run without any credentials: no TLS, no token, no token file. Calls between
    /// nodes are then not authenticated, and ports may listen beyond loopback.
    #[arg(long, global = true, env = INSECURE_ENV)]
    insecure: bool,
}

impl SecurityArgs {
    /// Loads the identity the flags name and installs it for this process, and
    /// exports the settings to the processes it will start. `default_name` is the
    /// certificate presented when --tls-name is not given.
    pub fn install(&self, default_name: &str) -> anyhow::Result<()> {
        let files = match (&self.tls_dir, &self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(dir), ..) => Some(TlsFiles::in_dir(
                dir,
                self.tls_name.as_deref().unwrap_or(default_name),
            )),
            (None, Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        let tls = files
            .as_ref()
            .map(TlsIdentity::load)
            .transpose()
            .context("cannot load this process's TLS identity")?;
        // Children find the directory (and pick their own name in it) and the token
        // in their environment. Set before any thread is started.
        if let Some(dir) = &self.tls_dir {
            std::env::set_var(TLS_DIR_ENV, dir);
        }
        if let Some(token) = &self.cluster_token {
            std::env::set_var(CLUSTER_TOKEN_ENV, token);
        }
        if let Some(file) = &self.cluster_token_file {
            std::env::set_var(CLUSTER_TOKEN_FILE_ENV, file);
        }
        if self.insecure {
            std::env::set_var(INSECURE_ENV, "true");
        }
        let cookie = match (&tls, &self.cluster_token, self.insecure) {
            (None, None, false) => Some(self.cookie()?),
            _ => None,
        };
        security::install(Security {
            tls,
            cluster_token: self.cluster_token.clone(),
            cookie,
            insecure: self.insecure,
        })
    }

    /// This user's cluster token, from --cluster-token-file or the default file,
    /// created there on first use.
    fn cookie(&self) -> anyhow::Result<String> {
        let path = match &self.cluster_token_file {
            Some(path) => path.clone(),
            None => cookie::default_path()?,
        };
        cookie::load_or_create(&path).with_context(|| {
            format!(
                "cannot use the cluster token file {} (or run with --tls-dir, \
                 --cluster-token, or --insecure)",
                path.display()
            )
        })
    }
}
