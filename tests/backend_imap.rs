//! Integration tests of the IMAP/SMTP backend against the dev mail stack
//! (`deploy/dev/mailstack.sh start`; see deploy/dev/README.md).
//!
//! Each test creates its own user (a per-user passwd-file in
//! `$EAS_DEV_USERS_DIR`, visible to Dovecot at once). When the stack is not
//! running the tests fail and say how to start it.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use eas_gateway::backend::{
    probe_imap, probe_smtp, BackendError, Credentials, ImapBackend, ImapSettings, MailBackend,
    MailFolder, MailSession, Secret, Security, SmtpSettings, SpecialUse,
};

const START_HINT: &str =
    "the dev mail stack is not running: run `sudo deploy/dev/mailstack.sh start` (see deploy/dev/README.md)";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn imap_addr() -> (String, u16) {
    let addr = env_or("EAS_DEV_IMAP", "127.0.0.1:143");
    let (host, port) = addr.rsplit_once(':').expect("EAS_DEV_IMAP is host:port");
    (host.to_string(), port.parse().expect("EAS_DEV_IMAP port"))
}

fn users_dir() -> PathBuf {
    PathBuf::from(env_or(
        "EAS_DEV_USERS_DIR",
        "/var/lib/eas-gateway-dev/dovecot/users.d",
    ))
}

fn require_stack() {
    let (host, port) = imap_addr();
    let reachable = std::net::TcpStream::connect_timeout(
        &format!("{host}:{port}").parse().expect("IMAP address"),
        Duration::from_secs(2),
    )
    .is_ok();
    assert!(reachable, "IMAP {host}:{port} unreachable; {START_HINT}");
    assert!(
        users_dir().is_dir(),
        "{} missing; {START_HINT}",
        users_dir().display()
    );
}

fn settings() -> ImapSettings {
    let (host, port) = imap_addr();
    ImapSettings {
        host,
        port,
        security: Security::None,
        timeout: Duration::from_secs(10),
        logins: Default::default(),
    }
}

/// Create a fresh user and return its credentials.
fn new_user(test: &str) -> Credentials {
    require_stack();
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let login = format!(
        "be-{test}-{}-{}-{nanos}@example.test",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
    .to_lowercase()
    .replace('_', "-");
    let password = format!("pw-{nanos}-{test}");
    let dir = users_dir();
    let tmp = dir.join(format!(".{login}.tmp"));
    std::fs::write(&tmp, format!("{login}:{{PLAIN}}{password}::::::\n"))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}; {START_HINT}", tmp.display()));
    std::fs::rename(&tmp, dir.join(&login)).expect("rename user file");
    Credentials {
        login,
        password: Secret::new(password),
    }
}

async fn login(creds: &Credentials) -> <ImapBackend as MailBackend>::Session {
    ImapBackend::new(settings())
        .login(creds, None)
        .await
        .unwrap_or_else(|e| panic!("login {}: {e}; {START_HINT}", creds.login))
}

/// A second, independent IMAP connection (async-imap) for changes behind the
/// backend's back.
async fn raw_session(creds: &Credentials) -> async_imap::Session<tokio::net::TcpStream> {
    let (host, port) = imap_addr();
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .expect("connect");
    let mut client = async_imap::Client::new(tcp);
    client
        .read_response()
        .await
        .expect("greeting")
        .expect("greeting io");
    client
        .login(&creds.login, creds.password.expose())
        .await
        .map_err(|(e, _)| e)
        .expect("raw login")
}

fn find<'a>(folders: &'a [MailFolder], name: &str) -> &'a MailFolder {
    folders
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no folder {name:?} in {folders:#?}"))
}

#[tokio::test]
async fn login_ok_with_post_login_capabilities_and_originating_ip() {
    let creds = new_user("login-ok");
    let ip: IpAddr = "192.0.2.77".parse().unwrap();
    let started = Instant::now();
    let session = ImapBackend::new(settings())
        .login(&creds, Some(ip))
        .await
        .unwrap_or_else(|e| panic!("login: {e}; {START_HINT}"));
    let elapsed = started.elapsed();
    eprintln!("login took {elapsed:?}");
    let caps = session.capabilities();
    for cap in ["CONDSTORE", "QRESYNC", "SPECIAL-USE", "MOVE", "LIST-STATUS"] {
        assert!(caps.iter().any(|c| c == cap), "{cap} missing from {caps:?}");
    }
    session.logout().await;

    // Dovecot (login_trusted_networks = 127.0.0.0/8) takes the address from ID.
    let log = env_or(
        "EAS_DEV_DOVECOT_LOG",
        "/var/lib/eas-gateway-dev/log/dovecot.log",
    );
    if let Ok(text) = std::fs::read_to_string(&log) {
        let line = text
            .lines()
            .rev()
            .find(|l| l.contains("Login: user=<") && l.contains(&creds.login));
        let line = line.unwrap_or_else(|| panic!("no login line for {} in {log}", creds.login));
        assert!(line.contains("rip=192.0.2.77"), "{line}");
    }
}

#[tokio::test]
async fn wrong_password_is_auth_failed() {
    let mut creds = new_user("wrong-pw");
    creds.password = Secret::new("definitely-not-the-password");
    let err = ImapBackend::new(settings())
        .login(&creds, None)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err, BackendError::AuthFailed);

    let unknown = Credentials {
        login: format!("nobody-{}@example.test", std::process::id()),
        password: Secret::new("x"),
    };
    let err = ImapBackend::new(settings())
        .login(&unknown, None)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err, BackendError::AuthFailed);
}

#[tokio::test]
async fn refused_connection_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut s = settings();
    s.host = "127.0.0.1".into();
    s.port = port;
    let creds = Credentials {
        login: "a@example.test".into(),
        password: Secret::new("x"),
    };
    let err = ImapBackend::new(s)
        .login(&creds, None)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn fresh_user_has_special_use_folders() {
    let creds = new_user("special-use");
    let mut session = login(&creds).await;
    let started = Instant::now();
    let folders = session.list_folders().await.expect("list_folders");
    eprintln!("first list_folders took {:?}", started.elapsed());
    let started = Instant::now();
    let again = session.list_folders().await.expect("list_folders");
    eprintln!("second list_folders took {:?}", started.elapsed());
    session.logout().await;
    assert_eq!(folders, again);

    for (name, role) in [
        ("INBOX", SpecialUse::Inbox),
        ("Drafts", SpecialUse::Drafts),
        ("Sent", SpecialUse::Sent),
        ("Trash", SpecialUse::Trash),
        ("Junk", SpecialUse::Junk),
        ("Archive", SpecialUse::Archive),
    ] {
        let f = find(&folders, name);
        assert_eq!(f.special_use, Some(role), "{f:?}");
        assert!(f.selectable);
        assert_eq!(f.parent, None);
        assert_eq!(f.delimiter, Some('/'));
        assert_eq!(f.display_name, name);
        assert!(f.identity.starts_with("guid:"), "{f:?}");
    }
    let mut ids: Vec<&str> = folders.iter().map(|f| f.identity.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), folders.len(), "identities must be unique");
}

#[tokio::test]
async fn utf7_names_nesting_and_rename_keep_identity() {
    let creds = new_user("utf7");
    let mut raw = raw_session(&creds).await;
    for name in [
        "Entw&APw-rfe",
        "Entw&APw-rfe/&ZeVnLIqe-",
        "Projekte",
        "Projekte/2024/Q1",
        "Tom &- Jerry",
    ] {
        raw.create(name)
            .await
            .unwrap_or_else(|e| panic!("CREATE {name}: {e}"));
    }

    let mut session = login(&creds).await;
    let folders = session.list_folders().await.expect("list_folders");

    let e = find(&folders, "Entw&APw-rfe");
    assert_eq!(e.display_name, "Entwürfe");
    assert_eq!(e.parent, None);
    assert_eq!(e.special_use, None);
    let j = find(&folders, "Entw&APw-rfe/&ZeVnLIqe-");
    assert_eq!(j.display_name, "日本語");
    assert_eq!(j.parent.as_deref(), Some("Entw&APw-rfe"));
    assert_eq!(find(&folders, "Tom &- Jerry").display_name, "Tom & Jerry");
    let q1 = find(&folders, "Projekte/2024/Q1");
    assert_eq!(q1.display_name, "Q1");
    assert_eq!(q1.parent.as_deref(), Some("Projekte/2024"));
    assert_eq!(
        find(&folders, "Projekte/2024").parent.as_deref(),
        Some("Projekte")
    );

    // Rename a folder with a child: identities follow the mailboxes.
    let before_parent = e.identity.clone();
    let before_child = j.identity.clone();
    assert!(before_parent.starts_with("guid:"));
    raw.rename("Entw&APw-rfe", "Vorlagen")
        .await
        .expect("RENAME");
    let folders = session.list_folders().await.expect("list_folders");
    assert!(folders.iter().all(|f| f.name != "Entw&APw-rfe"));
    let v = find(&folders, "Vorlagen");
    assert_eq!(v.identity, before_parent);
    let child = find(&folders, "Vorlagen/&ZeVnLIqe-");
    assert_eq!(child.identity, before_child);
    assert_eq!(child.parent.as_deref(), Some("Vorlagen"));

    session.logout().await;
    raw.logout().await.ok();
}

#[tokio::test]
async fn probe_shows_condstore_only_after_login() {
    let creds = new_user("probe");
    let probe = probe_imap(&settings(), Some(&creds))
        .await
        .unwrap_or_else(|e| panic!("probe: {e}; {START_HINT}"));
    assert!(
        probe.pre_login.iter().any(|c| c == "IMAP4REV1"),
        "{probe:?}"
    );
    assert!(
        probe.pre_login.iter().all(|c| c != "CONDSTORE"),
        "{probe:?}"
    );
    let post = probe.post_login.expect("post-login capabilities");
    assert!(post.iter().any(|c| c == "CONDSTORE"), "{post:?}");

    let anonymous = probe_imap(&settings(), None).await.expect("probe");
    assert_eq!(anonymous.pre_login, probe.pre_login);
    assert_eq!(anonymous.post_login, None);

    let mut bad = creds.clone();
    bad.password = Secret::new("wrong");
    assert_eq!(
        probe_imap(&settings(), Some(&bad)).await.unwrap_err(),
        BackendError::AuthFailed
    );
}

#[tokio::test]
async fn smtp_probe_lists_submission_extensions() {
    require_stack();
    let addr = env_or("EAS_DEV_SUBMISSION", "127.0.0.1:587");
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let ext = probe_smtp(&SmtpSettings {
        host: host.to_string(),
        port: port.parse().expect("port"),
        security: Security::None,
        timeout: Duration::from_secs(10),
    })
    .await
    .unwrap_or_else(|e| panic!("probe_smtp: {e}; {START_HINT}"));
    assert!(
        ext.iter()
            .any(|e| e.to_ascii_uppercase().starts_with("AUTH")),
        "{ext:?}"
    );
    assert!(
        ext.iter()
            .any(|e| e.to_ascii_uppercase().starts_with("SIZE")),
        "{ext:?}"
    );
}
