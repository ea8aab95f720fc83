//! TLS for the front door: rustls with a PEM certificate chain and key, replaceable while the
//! gateway runs (SIGHUP): new handshakes get the new certificate, open connections keep theirs.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

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
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<CertStore> {
        Ok(CertStore {
            current: RwLock::new(Arc::new(certified_key(cert, key)?)),
        })
    }

    /// Reads the files again and, when they hold a certificate and its key, hands them to the
    /// handshakes from now on; otherwise the current certificate stays and the error is returned.
    pub fn reload(&self, cert: &Path, key: &Path) -> anyhow::Result<()> {
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

fn certified_key(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let data =
        std::fs::read(cert).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", cert.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("bad certificate PEM in {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate found in {}", cert.display());
    }
    let data =
        std::fs::read(key).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", key.display()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&data).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            anyhow::anyhow!("no private key found in {}", key.display())
        }
        e => anyhow::anyhow!("bad key PEM in {}: {e}", key.display()),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    // Also checks that the key belongs to the certificate.
    CertifiedKey::from_der(certs, key_der, &provider).map_err(|e| {
        anyhow::anyhow!(
            "the key in {} does not fit the certificate in {}: {e}",
            key.display(),
            cert.display()
        )
    })
}

/// An acceptor whose certificate comes from `store`.
pub fn acceptor_with(store: Arc<CertStore>) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Builds an acceptor from PEM files; errors name the file.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    acceptor_with(Arc::new(CertStore::load(cert, key)?))
}
