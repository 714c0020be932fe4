//! `dida certs`: a development CA and one certificate per node and client, each
//! naming its role, for running a cluster over mutual TLS (docs/security.md).
//!
//! Every certificate is valid as server and as client (nodes are both), for the
//! hosts given (loopback by default), and carries its identity as the URI name
//! `spiffe://dida/<role>/<name>`, which is what servers authorise calls by. Keys are
//! ECDSA P-256 and written readable by their owner only. For production, issue
//! certificates of the same shape from your own CA.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use dida_core::membership::check_node_id;
use dida_proto::security::{identity_uri, Role};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Flags of `dida certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write `ca.pem` and `NAME.pem` / `NAME.key` for every name into
    /// (created if missing; refused if it already holds a CA).
    #[arg(long)]
    out: PathBuf,
    /// Storage nodes' ids: s1,s2,…
    #[arg(long, value_delimiter = ',')]
    storage: Vec<String>,
    /// Workers' ids: w1,w2,…
    #[arg(long, value_delimiter = ',')]
    workers: Vec<String>,
    /// The scheduler's id (its --id; `scheduler` by default).
    #[arg(long, value_delimiter = ',', default_value = "scheduler")]
    scheduler: Vec<String>,
    /// PCS names: what each `dida pcs` is given as --tls-name (`pcs` by default).
    #[arg(long, value_delimiter = ',', default_value = "pcs")]
    pcs: Vec<String>,
    /// Clients: people and programs (the CLI, the PuppetMaster) that use the
    /// cluster. `client` is the name they present by default.
    #[arg(long, value_delimiter = ',', default_value = "client")]
    clients: Vec<String>,
    /// Host names and IP addresses the nodes are reached at (every certificate is
    /// valid for all of them).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost,::1")]
    hosts: Vec<String>,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 365)]
    days: u32,
}

/// Makes the CA and every certificate, and prints where they are.
pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    let identities = identities(&args)?;
    if args.days == 0 || args.days > 3650 {
        bail!("--days must be from 1 to 3650");
    }
    if args.out.join("ca.pem").exists() {
        bail!(
            "{} already holds a CA (ca.pem); choose another --out or remove it",
            args.out.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;

    // Valid from an hour ago (clocks of machines differ a little) for --days.
    let now = time::OffsetDateTime::now_utc();
    let validity = |params: &mut CertificateParams| {
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(i64::from(args.days));
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dida development CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca_params);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)
        .context("cannot make the CA")?;
    write(&args.out.join("ca.pem"), ca.pem().as_bytes(), false)?;

    for (role, name) in &identities {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, name.as_str());
        params.subject_alt_names = host_names(&args.hosts)?;
        params.subject_alt_names.push(SanType::URI(
            identity_uri(*role, name)
                .try_into()
                .context("identity URI")?,
        ));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params
            .signed_by(&key, &ca)
            .with_context(|| format!("cannot sign the certificate of {name}"))?;
        write(
            &args.out.join(format!("{name}.pem")),
            cert.pem().as_bytes(),
            false,
        )?;
        write(
            &args.out.join(format!("{name}.key")),
            key.serialize_pem().as_bytes(),
            true,
        )?;
    }
    println!(
        "wrote a CA and {} certificates to {}: {}",
        identities.len(),
        args.out.display(),
        identities
            .iter()
            .map(|(role, name)| format!("{name} ({role})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Every (role, name) to certify, checked: valid ids, each name once.
fn identities(args: &CertsArgs) -> anyhow::Result<Vec<(Role, String)>> {
    let by_role = [
        (Role::Storage, &args.storage),
        (Role::Worker, &args.workers),
        (Role::Scheduler, &args.scheduler),
        (Role::Pcs, &args.pcs),
        (Role::Client, &args.clients),
    ];
    let mut seen = BTreeSet::new();
    let mut identities = Vec::new();
    for (role, names) in by_role {
        for name in names.iter().filter(|n| !n.is_empty()) {
            check_node_id(name).with_context(|| format!("invalid {role} name {name:?}"))?;
            if !seen.insert(name.clone()) {
                bail!("{name:?} is named twice: every certificate needs its own name");
            }
            identities.push((role, name.clone()));
        }
    }
    Ok(identities)
}

/// The hosts as DNS or IP names.
fn host_names(hosts: &[String]) -> anyhow::Result<Vec<SanType>> {
    hosts
        .iter()
        .filter(|h| !h.is_empty())
        .map(|host| {
            Ok(match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    host.as_str()
                        .try_into()
                        .with_context(|| format!("invalid host name {host:?}"))?,
                ),
            })
        })
        .collect()
}

/// Writes a new file (never over an existing one), private to its owner if `secret`.
fn write(path: &Path, contents: &[u8], secret: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("cannot write {}", path.display()))
}
