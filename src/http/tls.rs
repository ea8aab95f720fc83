//! TLS for the front door: rustls with a PEM certificate chain and key.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Builds an acceptor from PEM files; errors name the file.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = {
        let data = std::fs::read(cert)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", cert.display()))?;
        rustls_pemfile::certs(&mut data.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("bad certificate PEM in {}: {e}", cert.display()))?
    };
    if certs.is_empty() {
        anyhow::bail!("no certificate found in {}", cert.display());
    }
    let key: PrivateKeyDer<'static> = {
        let data = std::fs::read(key)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", key.display()))?;
        rustls_pemfile::private_key(&mut data.as_slice())
            .map_err(|e| anyhow::anyhow!("bad key PEM in {}: {e}", key.display()))?
            .ok_or_else(|| anyhow::anyhow!("no private key found in {}", key.display()))?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
