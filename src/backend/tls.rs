//! TLS client configuration shared by IMAP and SMTP, and the one loader of trust anchors: the
//! system bundle (`$SSL_CERT_FILE`, else `/etc/ssl/certs/ca-certificates.crt`, where
//! operators install a private CA) when it holds a certificate, else the compiled-in
//! `webpki-roots`. Certificates and host names are always verified.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::BackendError;

const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where the trust anchors came from (for diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    SystemBundle(String),
    WebpkiRoots,
}

/// The system CA bundle, read once: its path and the certificates in it (unreadable PEM
/// sections skipped); `None` when the file is missing or holds no certificate. The one loader
/// of trust anchors for IMAP and SMTP.
pub(crate) fn system_bundle() -> Option<&'static (String, Vec<CertificateDer<'static>>)> {
    static BUNDLE: OnceLock<Option<(String, Vec<CertificateDer<'static>>)>> = OnceLock::new();
    BUNDLE
        .get_or_init(|| {
            let path = std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| SYSTEM_BUNDLE.to_string());
            let certs: Vec<_> = CertificateDer::pem_file_iter(&path)
                .ok()?
                .filter_map(Result::ok)
                .collect();
            (!certs.is_empty()).then_some((path, certs))
        })
        .as_ref()
}

fn load_roots() -> (RootCertStore, RootSource) {
    let mut store = RootCertStore::empty();
    if let Some((path, certs)) = system_bundle() {
        let (added, _ignored) = store.add_parsable_certificates(certs.iter().cloned());
        if added > 0 {
            return (store, RootSource::SystemBundle(path.clone()));
        }
    }
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    (store, RootSource::WebpkiRoots)
}

static CONFIG: OnceLock<(Arc<ClientConfig>, RootSource)> = OnceLock::new();

fn config() -> Result<&'static (Arc<ClientConfig>, RootSource), BackendError> {
    if let Some(c) = CONFIG.get() {
        return Ok(c);
    }
    let (roots, source) = load_roots();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BackendError::Protocol(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| (Arc::new(config), source)))
}

/// Where the trust anchors in use came from.
pub fn root_source() -> Result<RootSource, BackendError> {
    config().map(|c| c.1.clone())
}

/// Run the TLS handshake over an established TCP connection.
/// Failures are [`BackendError::Unavailable`] (the server's certificate or TLS
/// setup is wrong; nothing the client can fix).
pub async fn connect(host: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>, BackendError> {
    let (config, _) = config()?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| BackendError::Unavailable(format!("invalid TLS server name {host:?}")))?;
    TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
        .map_err(|e| BackendError::Unavailable(format!("TLS handshake with {host} failed: {e}")))
}

/// [`connect`] within `timeout`.
pub async fn connect_within(
    host: &str,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, BackendError> {
    match tokio::time::timeout(timeout, connect(host, tcp)).await {
        Ok(r) => r,
        Err(_) => Err(BackendError::Unavailable(format!(
            "TLS handshake with {host} timed out after {timeout:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_builds_with_some_roots() {
        let source = root_source().unwrap();
        match source {
            RootSource::SystemBundle(p) => assert!(!p.is_empty()),
            RootSource::WebpkiRoots => {}
        }
    }

    #[test]
    fn bundle_certificates_are_read_from_pem() {
        let pem = "junk before\n-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n\
                   -----BEGIN PRIVATE KEY-----\nBAU=\n-----END PRIVATE KEY-----\n\
                   -----BEGIN CERTIFICATE-----\nBgc=\n-----END CERTIFICATE-----\n";
        let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .filter_map(Result::ok)
            .collect();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].as_ref(), &[1, 2, 3]);
        assert_eq!(certs[1].as_ref(), &[6, 7]);
        if let Some((path, certs)) = system_bundle() {
            assert!(!path.is_empty() && !certs.is_empty());
        }
    }

    #[tokio::test]
    async fn handshake_with_plaintext_server_is_unavailable() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"* OK plaintext IMAP, not TLS\r\n").await;
            }
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let err = connect("localhost", tcp).await.unwrap_err();
        assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    }
}
