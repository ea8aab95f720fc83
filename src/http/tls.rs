//! TLS for the front door: rustls with a PEM certificate chain and key, replaceable while the
//! gateway runs (SIGHUP): new handshakes get the new certificate, open connections keep theirs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// Why the certificate could not be loaded or the acceptor built; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    #[error("bad certificate PEM in {}", .0.display())]
    BadCertificate(PathBuf, #[source] rustls::pki_types::pem::Error),
    #[error("no certificate found in {}", .0.display())]
    NoCertificate(PathBuf),
    #[error("bad key PEM in {}", .0.display())]
    BadKey(PathBuf, #[source] rustls::pki_types::pem::Error),
    #[error("no private key found in {}", .0.display())]
    NoKey(PathBuf),
    #[error("the key in {} does not fit the certificate in {}", .0.display(), .1.display())]
    KeyMismatch(PathBuf, PathBuf, #[source] rustls::Error),
    #[error("TLS configuration refused")]
    Config(#[from] rustls::Error),
}

/// The certificate handed to every new handshake, swapped whole by [`CertStore::reload`].
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertStore")
    }
}

impl CertStore {
    /// Reads the PEM files; errors name the file.
    pub fn load(cert: &Path, key: &Path) -> Result<CertStore, TlsError> {
        Ok(CertStore {
            current: RwLock::new(Arc::new(certified_key(cert, key)?)),
        })
    }

    /// Reads the files again and, when they hold a certificate and its key, hands them to the
    /// handshakes from now on; otherwise the current certificate stays and the error is returned.
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<(), TlsError> {
        let new = Arc::new(certified_key(cert, key)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let data = std::fs::read(cert).map_err(|e| TlsError::Read(cert.to_path_buf(), e))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate(cert.to_path_buf(), e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let data = std::fs::read(key).map_err(|e| TlsError::Read(key.to_path_buf(), e))?;
    let key_der = PrivateKeyDer::from_pem_slice(&data).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(key.to_path_buf()),
        e => TlsError::BadKey(key.to_path_buf(), e),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    // Also checks that the key belongs to the certificate.
    CertifiedKey::from_der(certs, key_der, &provider)
        .map_err(|e| TlsError::KeyMismatch(key.to_path_buf(), cert.to_path_buf(), e))
}

/// An acceptor whose certificate comes from `store`.
pub fn acceptor_with(store: Arc<CertStore>) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Builds an acceptor from PEM files; errors name the file.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    acceptor_with(Arc::new(CertStore::load(cert, key)?))
}
