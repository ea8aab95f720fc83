//! TLS to the database: the libpq URL parameters `sslmode` and `sslrootcert`, over rustls.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | - |
//! | `prefer` | when the server offers it, else plain | not checked (as libpq) |
//! | `require` | always | not checked, unless `sslrootcert` is given: then as `verify-ca` (as libpq) |
//! | `verify-ca` | always | signed by a trusted CA; the host name is not checked |
//! | `verify-full` | always | signed by a trusted CA and issued for the host of the URL |
//!
//! Without `sslmode` the gateway asks for `verify-full`, unlike libpq (whose `prefer` lets
//! anyone on the path read the connection, password exchange included), except for a
//! loopback address (`localhost`, `127.0.0.0/8`, `::1`) or a Unix socket, where it is
//! `prefer`: no network between the two ends.
//!
//! Trusted CAs: those in the PEM file `sslrootcert`, or, without it (or with
//! `sslrootcert=system`), the system bundle (`$SSL_CERT_FILE`, else
//! `/etc/ssl/certs/ca-certificates.crt`) when it holds a certificate, else the compiled-in
//! `webpki-roots`, as for IMAP and SMTP.
//!
//! The other TLS parameters of libpq (`sslcert`, `sslkey`, `sslcrl`, ...) are not supported
//! and rejected, so that a URL never silently means less than it says.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::state::StoreError;

/// What `sslmode` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<TlsMode, StoreError> {
        Ok(match value {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            _ => {
                return Err(StoreError::Config(
                    "sslmode is one of disable, prefer, require, verify-ca, verify-full".into(),
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// A URL's TLS parameters, taken out of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsParams {
    /// `None`: not given (see [`default_mode`]).
    pub mode: Option<TlsMode>,
    /// `None`: not given; `Some("system")`: the default trust anchors.
    pub root_cert: Option<String>,
}

/// Splits `sslmode` and `sslrootcert` off a `postgres://` URL: the URL without them (for
/// tokio-postgres, which knows only some `sslmode` values) and their values. Errors never
/// repeat the URL.
pub fn split_url(url: &str) -> Result<(String, TlsParams), StoreError> {
    let mut params = TlsParams {
        mode: None,
        root_cert: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), params));
    };
    let mut rest = form_urlencoded::Serializer::new(String::new());
    let mut kept = 0;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "sslmode" => params.mode = Some(TlsMode::parse(&value)?),
            "sslrootcert" => params.root_cert = Some(value.into_owned()),
            "sslcert"
            | "sslkey"
            | "sslpassword"
            | "sslcrl"
            | "sslcrldir"
            | "sslsni"
            | "sslcompression"
            | "ssl_min_protocol_version"
            | "ssl_max_protocol_version" => {
                return Err(StoreError::Config(format!(
                    "the PostgreSQL URL parameter {key} is not supported (sslmode and \
                     sslrootcert are)"
                )))
            }
            _ => {
                rest.append_pair(&key, &value);
                kept += 1;
            }
        }
    }
    let url = if kept == 0 {
        base.to_string()
    } else {
        format!("{base}?{}", rest.finish())
    };
    Ok((url, params))
}

/// The mode without `sslmode`: `prefer` when every host is a loopback address or a Unix
/// socket, else `verify-full`.
pub fn default_mode(config: &tokio_postgres::Config) -> TlsMode {
    let local = |host: &Host| match host {
        Host::Tcp(name) => {
            let name = name.trim_start_matches('[').trim_end_matches(']');
            name.eq_ignore_ascii_case("localhost")
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    };
    let hosts = config.get_hosts();
    let hostaddrs = config.get_hostaddrs();
    // No host at all: tokio-postgres connects to localhost.
    if hosts.iter().all(local) && hostaddrs.iter().all(|ip| ip.is_loopback()) {
        TlsMode::Prefer
    } else {
        TlsMode::VerifyFull
    }
}

/// Sets `config`'s TLS mode for `params` and builds the connector that every connection of
/// the store (the pool's and the listening one) uses. Returns the mode in force.
pub fn connector(
    config: &mut tokio_postgres::Config,
    params: &TlsParams,
) -> Result<(MakeRustlsConnect, TlsMode), StoreError> {
    let mode = params.mode.unwrap_or_else(|| default_mode(config));
    config.ssl_mode(match mode {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Config(format!("PostgreSQL TLS setup: {e}")))?;
    let explicit_roots = params.root_cert.as_deref().filter(|p| *p != "system");
    let check = match mode {
        TlsMode::Disable | TlsMode::Prefer => Check::Nothing,
        TlsMode::Require if explicit_roots.is_none() => Check::Nothing,
        TlsMode::Require | TlsMode::VerifyCa => Check::Chain,
        TlsMode::VerifyFull => Check::ChainAndName,
    };
    let tls = match check {
        Check::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth(),
        Check::Chain | Check::ChainAndName => {
            let roots = Arc::new(roots(explicit_roots)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| StoreError::Config(format!("PostgreSQL TLS setup: {e}")))?;
            if check == Check::Chain {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                    .with_no_client_auth()
            } else {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            }
        }
    };
    Ok((MakeRustlsConnect::new(tls), mode))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// The CAs of the PEM file at `path`, or the default trust anchors.
fn roots(path: Option<&str>) -> Result<RootCertStore, StoreError> {
    let mut store = RootCertStore::empty();
    let Some(path) = path else {
        if let Some((_, certs)) = crate::backend::tls::system_bundle() {
            store.add_parsable_certificates(certs.iter().cloned());
        }
        if store.is_empty() {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        return Ok(store);
    };
    let unreadable =
        |e: &dyn std::fmt::Display| StoreError::Config(format!("sslrootcert {path}: {e}"));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(unreadable(&"no usable CA certificate in the file"));
    }
    Ok(store)
}

/// `verify-ca`: the chain must lead to a trusted CA; the name in the certificate is not
/// compared with the host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The verifier checks the chain before the name: a name error means a good chain.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without `sslrootcert`: any certificate is taken (the handshake's
/// signatures are still checked, so the connection is encrypted to whoever holds the key).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(url: &str) -> TlsMode {
        let (url, params) = split_url(url).unwrap();
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        connector(&mut config, &params).unwrap().1
    }

    #[test]
    fn tls_parameters_leave_the_url() {
        let (url, p) = split_url(
            "postgres://u:p%40ss@db.example/eas?sslmode=verify-ca&application_name=x%20y&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u:p%40ss@db.example/eas?application_name=x+y"
        );
        assert_eq!(p.mode, Some(TlsMode::VerifyCa));
        assert_eq!(p.root_cert.as_deref(), Some("/etc/ca.pem"));
        let (url, p) = split_url("postgres://db/eas?sslmode=disable").unwrap();
        assert_eq!(url, "postgres://db/eas");
        assert_eq!(p.mode, Some(TlsMode::Disable));
        assert!(split_url("postgres://u:secret@db/eas?sslmode=allow").is_err());
        let err = split_url("postgres://u:secret@db/eas?sslkey=/k").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn default_mode_is_verify_full_off_the_host() {
        assert_eq!(mode_of("postgres://u@db.example/eas"), TlsMode::VerifyFull);
        assert_eq!(
            mode_of("postgres://u@10.0.0.5:5432/eas"),
            TlsMode::VerifyFull
        );
        assert_eq!(mode_of("postgres://u@127.0.0.1:55432/eas"), TlsMode::Prefer);
        assert_eq!(mode_of("postgres://u@localhost/eas"), TlsMode::Prefer);
        assert_eq!(mode_of("postgres://u@[::1]/eas"), TlsMode::Prefer);
        assert_eq!(
            mode_of("postgres://u@%2Frun%2Fpostgresql/eas"),
            TlsMode::Prefer
        );
        assert_eq!(
            mode_of("postgres://u@db.example/eas?sslmode=disable"),
            TlsMode::Disable
        );
        assert_eq!(
            mode_of("postgres://u@127.0.0.1/eas?sslmode=verify-full"),
            TlsMode::VerifyFull
        );
    }

    #[test]
    fn missing_root_file_is_a_config_error() {
        let (url, params) =
            split_url("postgres://u@db/eas?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
                .unwrap();
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        let err = connector(&mut config, &params).map(|_| ()).unwrap_err();
        assert!(matches!(err, StoreError::Config(_)), "{err}");
    }
}
