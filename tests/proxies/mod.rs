//! The reverse-proxy configurations of `deploy/`, templated for a test (certificate paths,
//! ports, the gateway's address), and private nginx / HAProxy instances running them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn deploy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A self-signed certificate for localhost, 127.0.0.1 and the example names, as PEM files:
/// the chain, the key, and both in one file (HAProxy).
pub struct Certs {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub both: PathBuf,
}

pub fn certs(dir: &Path) -> Certs {
    let c = rcgen::generate_simple_self_signed(vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "mail.example.org".into(),
        "autodiscover.example.org".into(),
    ])
    .unwrap();
    let (cert, key) = (c.cert.pem(), c.key_pair.serialize_pem());
    let paths = Certs {
        cert: dir.join("proxy-cert.pem"),
        key: dir.join("proxy-key.pem"),
        both: dir.join("proxy-both.pem"),
    };
    std::fs::write(&paths.cert, &cert).unwrap();
    std::fs::write(&paths.key, &key).unwrap();
    std::fs::write(&paths.both, format!("{cert}{key}")).unwrap();
    paths
}

/// `text` with `from` replaced; the deploy file must hold `from` (else the test would check
/// something else than the file).
pub fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the deploy config has no `{from}`");
    text.replace(from, to)
}

/// Where a templated proxy listens and where it sends requests.
#[derive(Clone, Copy)]
pub struct Ports {
    pub https: u16,
    pub http: u16,
    /// The gateway's plain-HTTP port.
    pub upstream: u16,
}

impl Ports {
    pub fn free(upstream: u16) -> Ports {
        Ports {
            https: free_port(),
            http: free_port(),
            upstream,
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `deploy/nginx/eas-gateway.conf` on `ports` with `certs`, `tweaks` (from, to) applied after,
/// inside a minimal nginx.conf whose files all live in `dir`; returns the nginx.conf.
pub fn nginx_config(dir: &Path, certs: &Certs, ports: Ports, tweaks: &[(&str, &str)]) -> PathBuf {
    let mut t = deploy("nginx/eas-gateway.conf");
    t = replace(
        &t,
        "listen 443 ssl;",
        &format!("listen 127.0.0.1:{} ssl;", ports.https),
    );
    t = replace(&t, "listen [::]:443 ssl;", "");
    t = replace(
        &t,
        "listen 80;",
        &format!("listen 127.0.0.1:{};", ports.http),
    );
    t = replace(&t, "listen [::]:80;", "");
    t = replace(
        &t,
        "127.0.0.1:8080",
        &format!("127.0.0.1:{}", ports.upstream),
    );
    t = replace(
        &t,
        "/etc/ssl/certs/mail.example.org.pem",
        &certs.cert.display().to_string(),
    );
    t = replace(
        &t,
        "/etc/ssl/private/mail.example.org.key",
        &certs.key.display().to_string(),
    );
    for (from, to) in tweaks {
        t = replace(&t, from, to);
    }
    std::fs::write(dir.join("eas-gateway.conf"), t).unwrap();
    let d = dir.display();
    let main = format!(
        "{user}daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n  include {d}/eas-gateway.conf;\n}}\n",
        // As root, the workers would run as nobody and could not use the temporary files here.
        user = if is_root() { "user root;\n" } else { "" },
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, main).unwrap();
    path
}

/// `deploy/haproxy/haproxy.cfg` on `ports` with `certs`.
pub fn haproxy_config(dir: &Path, certs: &Certs, ports: Ports) -> PathBuf {
    let mut t = deploy("haproxy/haproxy.cfg");
    t = replace(
        &t,
        "bind :443 ssl crt /etc/haproxy/certs/mail.example.org.pem",
        &format!(
            "bind 127.0.0.1:{} ssl crt {}",
            ports.https,
            certs.both.display()
        ),
    );
    t = replace(
        &t,
        "bind :80\n",
        &format!("bind 127.0.0.1:{}\n", ports.http),
    );
    t = replace(
        &t,
        "127.0.0.1:8080",
        &format!("127.0.0.1:{}", ports.upstream),
    );
    // No syslog socket in a test.
    t = replace(&t, "    log /dev/log local0\n", "");
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, t).unwrap();
    path
}

/// `deploy/caddy/Caddyfile` on `ports` with `certs`, `tweaks` (from, to) applied after, run
/// privately: no admin endpoint, listening on 127.0.0.1 only, the HTTP-to-HTTPS redirects on
/// `ports.http`, its storage in `dir` (start it with [`start_caddy`], which also points `HOME`
/// and the XDG directories there). Returns the Caddyfile.
pub fn caddy_config(dir: &Path, certs: &Certs, ports: Ports, tweaks: &[(&str, &str)]) -> PathBuf {
    let mut t = deploy("caddy/Caddyfile");
    t = replace(
        &t,
        "/etc/ssl/certs/mail.example.org.pem",
        &certs.cert.display().to_string(),
    );
    t = replace(
        &t,
        "/etc/ssl/private/mail.example.org.key",
        &certs.key.display().to_string(),
    );
    t = replace(
        &t,
        "mail.example.org, autodiscover.example.org {",
        &format!(
            "mail.example.org:{p}, autodiscover.example.org:{p} {{",
            p = ports.https
        ),
    );
    t = replace(
        &t,
        "127.0.0.1:8080",
        &format!("127.0.0.1:{}", ports.upstream),
    );
    // The global options block: nothing shared with other Caddy instances or the system.
    t = replace(
        &t,
        "\n{\n",
        &format!(
            "\n{{\n\tadmin off\n\tdefault_bind 127.0.0.1\n\thttp_port {}\n\t\
             storage file_system {}\n\tgrace_period 2s\n",
            ports.http,
            dir.join("caddy-data").display()
        ),
    );
    for (from, to) in tweaks {
        t = replace(&t, from, to);
    }
    let path = dir.join("Caddyfile");
    std::fs::write(&path, t).unwrap();
    path
}

/// The environment Caddy runs with: its home and XDG directories in `dir`.
pub fn caddy_env(dir: &Path) -> [(&'static str, &Path); 3] {
    [
        ("HOME", dir),
        ("XDG_DATA_HOME", dir),
        ("XDG_CONFIG_HOME", dir),
    ]
}

/// Runs a config check; panics with its output unless it succeeds.
pub fn check(program: &str, args: &[&str], env: &[(&str, &Path)]) {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{program} is not installed ({e}): deploy/dev/test.sh installs it")
    });
    assert!(
        out.status.success(),
        "{program} {args:?} refused the config:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A proxy process of this test; stopped (SIGTERM to its own id, then waited for) when dropped.
pub struct Proxy {
    child: Child,
    pub ports: Ports,
    pub dir: PathBuf,
    /// The host name in [`Proxy::url`]: `127.0.0.1`, or a name of the config's sites (the
    /// clients resolve it to 127.0.0.1).
    pub host: &'static str,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// `https://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.host, self.ports.https)
    }

    /// The proxy's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

async fn started(child: Child, ports: Ports, dir: &Path, what: &str) -> Proxy {
    started_as(child, ports, dir, what, "127.0.0.1").await
}

/// Waits until the proxy listens on `ports.https`; `host` is the name its clients use.
async fn started_as(
    mut child: Child,
    ports: Ports,
    dir: &Path,
    what: &str,
    host: &'static str,
) -> Proxy {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", ports.https))
            .await
            .is_ok()
        {
            return Proxy {
                child,
                ports,
                dir: dir.to_path_buf(),
                host,
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited at start ({status}): {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not start listening");
}

/// nginx in the foreground with `conf` (see [`nginx_config`]).
pub async fn start_nginx(dir: &Path, conf: &Path, ports: Ports) -> Proxy {
    let child = Command::new("nginx")
        .arg("-c")
        .arg(conf)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx is installed (deploy/dev/test.sh installs it)");
    started(child, ports, dir, "nginx").await
}

/// HAProxy in the foreground with `conf` (see [`haproxy_config`]).
pub async fn start_haproxy(dir: &Path, conf: &Path, ports: Ports) -> Proxy {
    let log = std::fs::File::create(dir.join("error.log")).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("haproxy is installed (deploy/dev/test.sh installs it)");
    started(child, ports, dir, "haproxy").await
}

/// Caddy in the foreground with `conf` (see [`caddy_config`]); its clients use the site name
/// `mail.example.org` (the site matches on it, and the certificate is chosen by it).
pub async fn start_caddy(dir: &Path, conf: &Path, ports: Ports) -> Proxy {
    let log = std::fs::File::create(dir.join("error.log")).unwrap();
    let mut cmd = Command::new("caddy");
    cmd.arg("run")
        .arg("--adapter")
        .arg("caddyfile")
        .arg("--config")
        .arg(conf);
    for (k, v) in caddy_env(dir) {
        cmd.env(k, v);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("caddy is installed (deploy/dev/test.sh installs it)");
    started_as(child, ports, dir, "caddy", "mail.example.org").await
}
