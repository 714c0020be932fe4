//! RESP over mutual TLS, with the node's own certificate: when the cluster runs
//! with TLS, a Redis client connects with `--tls` and a certificate the cluster's
//! CA signed (`dida certs`), exactly as a gRPC client must.

use std::sync::Arc;

use anyhow::Context;
use dida_proto::security::TlsIdentity;
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The acceptor of the node's identity `tls`: it presents the node's certificate
/// and requires a client certificate signed by the cluster's CA.
pub(super) fn acceptor(tls: &TlsIdentity) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(default_provider());
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&tls.ca_pem) {
        roots
            .add(ca.context("read the CA certificate")?)
            .context("trust the CA certificate")?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("verify clients against the CA")?;
    let chain = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("read the node's certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).context("read the node's key")?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choose TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("use the node's certificate")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
