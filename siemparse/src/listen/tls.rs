//! `tls://` listeners (RFC 5425): the rustls server configuration from
//! `[listen] tls_cert`, `tls_key` and, to require client certificates,
//! `tls_client_ca`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::RootCertStore;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use siemstress_common::config::listen::Listen;
use tokio_rustls::TlsAcceptor;

/// The acceptor of every `tls://` listener; errors name the key and file.
pub fn acceptor(listen: &Listen) -> anyhow::Result<TlsAcceptor> {
    let (Some(cert_path), Some(key_path)) = (&listen.tls_cert, &listen.tls_key) else {
        bail!("a tls:// listener needs [listen] tls_cert and tls_key in the config");
    };
    let certs = certificates(cert_path).context("[listen] tls_cert")?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))
        .context("[listen] tls_key: no PEM private key")?;
    // ring, as sqlx's rustls feature uses: one provider in the build, and
    // no C toolchain step (aws-lc-rs, which rustls now prefers for its
    // post-quantum key exchange, needs one).
    #[allow(deprecated)]
    let provider = Arc::new(ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &listen.tls_client_ca {
        Some(ca_path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca_path).context("[listen] tls_client_ca")? {
                roots
                    .add(cert)
                    .with_context(|| format!("[listen] tls_client_ca {}", ca_path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("[listen] tls_client_ca")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .context("[listen] tls_cert and tls_key do not make a usable certificate")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Every certificate of a PEM file (at least one).
fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no PEM certificate", path.display());
    }
    Ok(certs)
}
