//! (Included by tests/cluster.rs with `#[path]`, not by `common/mod.rs`.)
//!
//! Several gateway processes on one PostgreSQL database behind a real nginx: the parts of
//! tests/cluster.rs. PostgreSQL comes from `EAS_TEST_PG_URL` (`deploy/dev/postgres.sh url`);
//! every test gets a database of its own, dropped afterwards.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::common::{free_port, TestDevice, DOMAIN};

/// The PostgreSQL server the tests use.
pub fn pg_server_url() -> String {
    match std::env::var("EAS_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "EAS_TEST_PG_URL is not set. Start PostgreSQL with `deploy/dev/postgres.sh start` \
             and export EAS_TEST_PG_URL=\"$(deploy/dev/postgres.sh url)\""
        ),
    }
}

/// `server` with the database name replaced by `db`.
fn url_for(server: &str, db: &str) -> String {
    let scheme_end = server.find("://").map_or(0, |i| i + 3);
    let host_end = server[scheme_end..]
        .find('/')
        .map_or(server.len(), |i| scheme_end + i);
    format!("{}/{db}", &server[..host_end])
}

async fn admin(server: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to EAS_TEST_PG_URL ({e})"));
    tokio::spawn(conn);
    client
}

/// A database of its own, dropped with this value.
pub struct PgDb {
    pub url: String,
    server: String,
    name: String,
}

impl PgDb {
    pub async fn fresh() -> PgDb {
        let server = pg_server_url();
        let name = format!("eas_cluster_{:016x}", rand::random::<u64>());
        admin(&server)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        PgDb {
            url: url_for(&server, &name),
            server,
            name,
        }
    }

    /// A client of this database.
    pub async fn client(&self) -> tokio_postgres::Client {
        admin(&self.url).await
    }

    /// The owners of the sync leases not expired.
    pub async fn live_lease_owners(&self) -> Vec<String> {
        let c = self.client().await;
        let rows = c
            .query(
                "SELECT owner FROM sync_leases WHERE expires_at > clock_timestamp()",
                &[],
            )
            .await
            .unwrap_or_default();
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let _ = admin(&server)
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

/// One gateway process (the real binary) serving plain HTTP.
pub struct Node {
    pub name: String,
    pub port: u16,
    pub child: tokio::process::Child,
    pub log: PathBuf,
}

/// What a node's configuration adds to the defaults.
#[derive(Clone, Copy)]
pub struct NodeOptions {
    pub lease_ttl_secs: u64,
    pub lease_wait_secs: u64,
    /// The gateway binary (the tests' debug build unless given).
    pub binary: Option<&'static str>,
    /// `EAS_LOG` of the process.
    pub log_filter: &'static str,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            lease_ttl_secs: 60,
            lease_wait_secs: 20,
            binary: None,
            log_filter: "info",
        }
    }
}

impl Node {
    /// Starts node `name` on a free port with its config and log in `dir`, on the database
    /// `db_url`; returns once it accepts connections.
    pub async fn start(dir: &Path, name: &str, db_url: &str, opts: NodeOptions) -> Node {
        let port = free_port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\ntrusted_proxies = [\"127.0.0.1\"]\n\
                 [imap]\nhost = \"127.0.0.1\"\nport = 143\nsecurity = \"none\"\n\
                 [smtp]\nhost = \"127.0.0.1\"\nport = 587\nsecurity = \"none\"\n\
                 [state]\nurl = \"{db_url}\"\n[identity]\ndomain = \"{DOMAIN}\"\n\
                 [push]\nmin_heartbeat_secs = 30\n\
                 [cluster]\nnode_id = \"{name}\"\nlease_ttl_secs = {}\nlease_wait_secs = {}\n",
                opts.lease_ttl_secs, opts.lease_wait_secs
            ),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let binary = opts.binary.unwrap_or(env!("CARGO_BIN_EXE_eas-gateway"));
        let child = tokio::process::Command::new(binary)
            .args(["serve", "--config"])
            .arg(&config)
            .env("EAS_LOG", opts.log_filter)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the gateway binary");
        let node = Node {
            name: name.to_string(),
            port,
            child,
            log,
        };
        for _ in 0..300 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "node {name} did not start listening:\n{}",
            std::fs::read_to_string(&node.log).unwrap_or_default()
        );
    }

    /// SIGKILL: the process ends at once, with no chance to clean up.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
    }

    /// `http://127.0.0.1:PORT/Microsoft-Server-ActiveSync`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}/Microsoft-Server-ActiveSync", self.port)
    }
}

/// A private nginx (one process, no daemon) with TLS in front of `upstreams`, round-robin,
/// with the location settings of deploy/nginx/eas-gateway.conf. Its access log records
/// which upstream served each request (`$upstream_addr $status $request_uri`).
pub struct Nginx {
    pub port: u16,
    pub child: tokio::process::Child,
    pub access_log: PathBuf,
    pub dir: PathBuf,
}

impl Nginx {
    pub async fn start(dir: &Path, upstreams: &[u16]) -> Nginx {
        let dir = dir.join("nginx");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p};\n"))
            .collect();
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format upstreams '$upstream_addr $status $request_uri';
    access_log {d}/access.log upstreams;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    upstream eas_gateway {{
{servers}        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        location /Microsoft-Server-ActiveSync {{
            proxy_pass http://eas_gateway;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_buffering off;
            proxy_request_buffering off;
            gzip off;
            client_max_body_size 64m;
        }}
        location / {{
            return 404;
        }}
    }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = tokio::process::Command::new(nginx_binary())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start nginx (apt-get install nginx)");
        let nginx = Nginx {
            port,
            child,
            access_log: dir.join("access.log"),
            dir,
        };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return nginx;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "nginx did not start:\n{}\n{}",
            std::fs::read_to_string(nginx.dir.join("stderr.log")).unwrap_or_default(),
            std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default()
        );
    }

    /// `https://127.0.0.1:PORT/Microsoft-Server-ActiveSync`.
    pub fn base(&self) -> String {
        format!(
            "https://127.0.0.1:{}/Microsoft-Server-ActiveSync",
            self.port
        )
    }

    /// (upstream address, HTTP status, request URI) of every request logged so far.
    pub fn served(&self) -> Vec<(String, u16, String)> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.splitn(3, ' ');
                Some((
                    w.next()?.to_string(),
                    w.next()?.parse().ok()?,
                    w.next()?.to_string(),
                ))
            })
            .collect()
    }
}

fn nginx_binary() -> String {
    std::env::var("EAS_TEST_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into())
}

/// A device of `user` talking to `base` (nginx or a node) with `client`; the device id is
/// random.
pub fn device_at(
    client: reqwest::Client,
    base: String,
    user: &str,
    password: &str,
    device_id: &str,
) -> TestDevice {
    TestDevice {
        client,
        base,
        user: user.to_string(),
        password: password.to_string(),
        device_id: device_id.to_string(),
        device_type: "TestPhone".into(),
        version: "16.1",
        policy_key: None,
    }
}

/// The same device (id, policy key) pointed at another address.
pub fn same_device_at(dev: &TestDevice, base: String) -> TestDevice {
    let mut d = dev.clone();
    d.base = base;
    d.client = reqwest::Client::new();
    d
}
