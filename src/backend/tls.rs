//! TLS client configuration shared by IMAP and SMTP.
//!
//! Trust anchors: the system bundle (`$SSL_CERT_FILE`, else
//! `/etc/ssl/certs/ca-certificates.crt`) when it exists and holds at least one
//! certificate, otherwise the Mozilla roots compiled in via `webpki-roots`.
//! The system bundle comes first because the mail server is usually the
//! operator's own, often with a private CA that the operator installs with
//! `update-ca-certificates`; the compiled-in roots keep minimal containers
//! (no ca-certificates package) working against public servers. Certificates
//! and host names are always verified.

use std::io::BufReader;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::ServerName;
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

fn load_roots() -> (RootCertStore, RootSource) {
    let path = std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| SYSTEM_BUNDLE.to_string());
    let mut store = RootCertStore::empty();
    if let Ok(file) = std::fs::File::open(&path) {
        let mut reader = BufReader::new(file);
        let certs: Vec<_> = rustls_pemfile::certs(&mut reader)
            .filter_map(Result::ok)
            .collect();
        let (added, _ignored) = store.add_parsable_certificates(certs);
        if added > 0 {
            return (store, RootSource::SystemBundle(path));
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
