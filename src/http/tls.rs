//! TLS for the front door: rustls with a PEM certificate chain and key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why the TLS acceptor could not be built; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error("bad certificate PEM in {}", .0.display())]
    BadCertificate(PathBuf, #[source] std::io::Error),
    #[error("no certificate found in {}", .0.display())]
    NoCertificate(PathBuf),
    #[error("bad key PEM in {}", .0.display())]
    BadKey(PathBuf, #[source] std::io::Error),
    #[error("no private key found in {}", .0.display())]
    NoKey(PathBuf),
    #[error("TLS configuration refused")]
    Config(#[from] rustls::Error),
}

/// Builds an acceptor from PEM files; errors name the file.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = {
        let data = std::fs::read(cert).map_err(|e| TlsError::Read(cert.to_path_buf(), e))?;
        rustls_pemfile::certs(&mut data.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::BadCertificate(cert.to_path_buf(), e))?
    };
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let key: PrivateKeyDer<'static> = {
        let data = std::fs::read(key).map_err(|e| TlsError::Read(key.to_path_buf(), e))?;
        rustls_pemfile::private_key(&mut data.as_slice())
            .map_err(|e| TlsError::BadKey(key.to_path_buf(), e))?
            .ok_or_else(|| TlsError::NoKey(key.to_path_buf()))?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
