//! What a running front door takes from a new configuration (SIGHUP), without dropping a
//! connection or a waiting request.
//!
//! Reloaded: the TLS certificate and key (the files are read again, also from new paths; new
//! handshakes get the new certificate, open connections keep theirs), `server.trusted_proxies`
//! and `server.doctor`. Everything else is read once at start: a change to it is named in the
//! log as needing a restart, and the running value stays.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock, RwLock};

use super::handler::Server;
use super::tls::CertStore;
use crate::backend::MailBackend;
use crate::config::Config;
use crate::state::StateStore;

/// The settings that may change while the gateway runs.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// `server.trusted_proxies`.
    pub trusted_proxies: Vec<IpAddr>,
    /// `server.doctor`.
    pub doctor: bool,
}

impl LiveSettings {
    fn of(config: &Config) -> LiveSettings {
        LiveSettings {
            trusted_proxies: config.server.trusted_proxies.clone(),
            doctor: config.server.doctor,
        }
    }
}

/// The live settings and the certificate store of the phone-facing listener.
#[derive(Debug)]
pub struct Live {
    settings: RwLock<Arc<LiveSettings>>,
    certs: OnceLock<Arc<CertStore>>,
}

impl Live {
    pub(super) fn new(config: &Config) -> Live {
        Live {
            settings: RwLock::new(Arc::new(LiveSettings::of(config))),
            certs: OnceLock::new(),
        }
    }

    /// The settings now.
    pub fn settings(&self) -> Arc<LiveSettings> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set_certs(&self, certs: Arc<CertStore>) {
        let _ = self.certs.set(certs);
    }
}

/// What a reload did.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// What now holds the new values.
    pub applied: Vec<&'static str>,
    /// Changed in the file but read only at start: the running values stay until a restart.
    pub need_restart: Vec<&'static str>,
    /// What could not be applied (the old value stays), with the reason.
    pub failed: Vec<String>,
}

impl<B: MailBackend, S: StateStore> Server<B, S> {
    /// Applies what can change while running from `new` (a configuration read again from its
    /// file), and names what cannot.
    pub fn reload(&self, new: &Config) -> Reloaded {
        let running = &self.gateway.config;
        let mut out = Reloaded::default();
        match (self.live.certs.get(), &new.server.tls) {
            (Some(store), Some((cert, key))) => match store.reload(cert, key) {
                Ok(()) => out.applied.push("server.tls_cert/tls_key (new handshakes)"),
                Err(e) => out.failed.push(format!("server.tls_cert/tls_key: {e:#}")),
            },
            (None, None) => {}
            // Turning TLS on or off changes what the listener speaks.
            _ => out
                .need_restart
                .push("server.tls_cert/tls_key (TLS on or off)"),
        }
        *self
            .live
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(LiveSettings::of(new));
        out.applied.push("server.trusted_proxies");
        out.applied.push("server.doctor");

        let mut a = running.server.clone();
        let mut b = new.server.clone();
        for s in [&mut a, &mut b] {
            s.tls = None;
            s.trusted_proxies.clear();
            s.doctor = false;
        }
        let differs =
            |x: &dyn std::fmt::Debug, y: &dyn std::fmt::Debug| format!("{x:?}") != format!("{y:?}");
        for (name, changed) in [
            ("server (other keys)", differs(&a, &b)),
            ("imap", differs(&running.imap, &new.imap)),
            (
                "smtp",
                differs(&running.smtp, &new.smtp)
                    || running.smtp_claim_lease != new.smtp_claim_lease,
            ),
            ("state", running.state_url != new.state_url),
            ("identity", differs(&running.identity, &new.identity)),
            ("auth", differs(&running.auth, &new.auth)),
            ("policy", running.policy != new.policy),
            ("push", running.push != new.push),
            ("devices", differs(&running.devices, &new.devices)),
            ("access", differs(&running.access, &new.access)),
            ("admin", differs(&running.admin, &new.admin)),
        ] {
            if changed {
                out.need_restart.push(name);
            }
        }
        out
    }
}
