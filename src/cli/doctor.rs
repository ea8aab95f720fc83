//! `eas-gateway doctor --url https://mail.example.org`: checks the path phones take through the
//! reverse proxy to the gateway, with the gateway's `/Microsoft-Server-ActiveSync/doctor`
//! endpoint (see `http::doctor`).
//!
//! Three probes, one after the other: what client address the gateway sees; a streamed answer
//! (does every byte arrive when the gateway writes it, or only at the end: buffered; does the
//! proxy add `Content-Encoding`: compressed); and a request held like a Ping (does the proxy
//! cut it before the gateway answers, and after how long). The report names each problem and
//! what to change; the exit status is non-zero when there is one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What `doctor` is asked to do.
pub struct Options {
    /// `https://mail.example.org` (a trailing `/Microsoft-Server-ActiveSync` is fine).
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Seconds to hold the request (default: the gateway's longest heartbeat plus 60 s).
    pub hold: Option<u64>,
    /// Seconds of the streamed answer.
    pub stream: u64,
    /// Extra trust anchors (PEM), e.g. a self-signed certificate.
    pub ca_file: Option<PathBuf>,
}

/// The findings.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub problems: usize,
}

impl Report {
    fn ok(&mut self, line: String) {
        self.lines.push(line);
    }
    fn problem(&mut self, line: String) {
        self.problems += 1;
        self.lines.push(line);
    }
}

struct Target {
    tls: bool,
    host: String,
    port: u16,
    /// The path up to and including `/Microsoft-Server-ActiveSync/doctor`.
    path: String,
}

fn target(url: &str) -> anyhow::Result<Target> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        bail!("--url must start with https:// (or http://)");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h, p),
            Err(_) => (authority, if tls { 443 } else { 80 }),
        },
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("--url has no host name");
    }
    let mut path = path.trim_end_matches('/').to_string();
    const EAS: &str = "/microsoft-server-activesync";
    if path.to_ascii_lowercase().ends_with(EAS) {
        path.truncate(path.len() - EAS.len());
    }
    Ok(Target {
        tls,
        host: host.to_string(),
        port,
        path: format!("{path}/Microsoft-Server-ActiveSync/doctor"),
    })
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One HTTP/1.1 exchange, timed.
#[derive(Debug, Default)]
struct Exchange {
    /// None: the connection ended (or failed) before a status line.
    status: Option<u16>,
    headers: Vec<(String, String)>,
    /// The body as sent (chunked framing removed when complete), possibly compressed.
    body: Vec<u8>,
    /// When the first body byte arrived, from the request's sending.
    first_body_byte: Option<Duration>,
    /// When the response ended (or the connection did).
    ended: Duration,
    /// The response was complete (by its length or its last chunk).
    complete: bool,
    /// How the connection failed, if it did.
    error: Option<String>,
}

impl Exchange {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Client {
    target: Target,
    tls: Option<tokio_rustls::TlsConnector>,
    authorization: Option<String>,
}

impl Client {
    async fn connect(&self) -> anyhow::Result<Box<dyn Io>> {
        let tcp = TcpStream::connect((self.target.host.as_str(), self.target.port))
            .await
            .with_context(|| format!("connecting to {}:{}", self.target.host, self.target.port))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some(connector) => {
                let name = ServerName::try_from(self.target.host.clone())
                    .map_err(|_| anyhow!("`{}` is not a host name", self.target.host))?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake")?;
                Ok(Box::new(tls))
            }
            None => Ok(Box::new(tcp)),
        }
    }

    /// GET the doctor path with `query`; `limit` bounds the whole exchange. Only the stream
    /// probe offers compression (`Accept-Encoding`, as phones do): the other answers are read.
    async fn get(&self, query: &str, limit: Duration) -> anyhow::Result<Exchange> {
        let mut io = self.connect().await?;
        let mut req = format!(
            "GET {}{}{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: eas-gateway-doctor/{}\r\n\
             {}Connection: close\r\n",
            self.target.path,
            if query.is_empty() { "" } else { "?" },
            query,
            self.host_header(),
            env!("CARGO_PKG_VERSION"),
            if query.starts_with("stream=") {
                "Accept-Encoding: gzip, deflate\r\n"
            } else {
                ""
            },
        );
        if let Some(a) = &self.authorization {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        io.write_all(req.as_bytes()).await?;
        io.flush().await?;
        let sent = Instant::now();
        let mut ex = Exchange::default();
        let _ = tokio::time::timeout(limit, read_response(&mut io, sent, &mut ex)).await;
        ex.ended = sent.elapsed();
        Ok(ex)
    }

    fn host_header(&self) -> String {
        let t = &self.target;
        let host = if t.host.contains(':') {
            format!("[{}]", t.host)
        } else {
            t.host.clone()
        };
        if (t.tls && t.port == 443) || (!t.tls && t.port == 80) {
            host
        } else {
            format!("{host}:{}", t.port)
        }
    }
}

/// Reads a response into `ex` until the connection ends; the body's arrival is timed.
async fn read_response(io: &mut Box<dyn Io>, sent: Instant, ex: &mut Exchange) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut head_len = None;
    loop {
        let n = match io.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                ex.error = Some(e.to_string());
                break;
            }
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        match head_len {
            None => {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    head_len = Some(i + 4);
                    parse_head(buf.get(..i).unwrap_or_default(), ex);
                    if buf.len() > i + 4 {
                        ex.first_body_byte = Some(sent.elapsed());
                    }
                }
            }
            Some(_) => {
                if ex.first_body_byte.is_none() {
                    ex.first_body_byte = Some(sent.elapsed());
                }
            }
        }
        if let Some(h) = head_len {
            if let Some((body, done)) = decode_body(ex, buf.get(h..).unwrap_or_default()) {
                if done {
                    ex.body = body;
                    ex.complete = true;
                    return;
                }
            }
        }
    }
    if let Some(h) = head_len {
        let rest = buf.get(h..).unwrap_or_default();
        match decode_body(ex, rest) {
            Some((body, done)) => {
                ex.body = body;
                ex.complete = done;
            }
            None => ex.body = rest.to_vec(),
        }
    }
}

fn parse_head(head: &[u8], ex: &mut Exchange) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    ex.status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok());
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            ex.headers
                .push((n.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// The body so far and whether it is complete, by Content-Length or chunked framing; `None`
/// when it is delimited by the connection's end.
fn decode_body(ex: &Exchange, raw: &[u8]) -> Option<(Vec<u8>, bool)> {
    if ex
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        let mut out = Vec::new();
        let mut rest = raw;
        loop {
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                return Some((out, false));
            };
            let Some((line, after)) = rest.split_at_checked(eol) else {
                return Some((out, false));
            };
            let size = std::str::from_utf8(line)
                .ok()
                .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
            let Some(size) = size else {
                return Some((out, false));
            };
            rest = after.get(2..).unwrap_or_default();
            if size == 0 {
                return Some((out, true));
            }
            match (
                rest.get(..size),
                size.checked_add(2).and_then(|e| rest.get(e..)),
            ) {
                (Some(data), Some(next)) => {
                    out.extend_from_slice(data);
                    rest = next;
                }
                _ => {
                    out.extend_from_slice(rest.get(..size).unwrap_or(rest));
                    return Some((out, false));
                }
            }
        }
    }
    let len: usize = ex.header("content-length")?.parse().ok()?;
    Some((raw.get(..len).unwrap_or(raw).to_vec(), raw.len() >= len))
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

fn tls_connector(ca_file: Option<&PathBuf>) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(f) = ca_file {
        let data = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        for cert in CertificateDer::pem_slice_iter(&data) {
            let cert = cert.map_err(|e| anyhow!("bad PEM in {}: {e}", f.display()))?;
            roots
                .add(cert)
                .map_err(|e| anyhow!("unusable certificate in {}: {e}", f.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Runs the probes and returns the report.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let target = target(&opts.url)?;
    let tls = if target.tls {
        Some(tls_connector(opts.ca_file.as_ref())?)
    } else {
        None
    };
    let authorization = match (&opts.user, &opts.password) {
        (Some(u), Some(p)) => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )),
        _ => None,
    };
    let client = Client {
        target,
        tls,
        authorization,
    };
    let mut report = Report::default();
    report.ok(format!(
        "eas-gateway doctor: {}://{}{}",
        if client.target.tls { "https" } else { "http" },
        client.host_header(),
        client.target.path
    ));

    // 1. What the gateway sees.
    let info = client.get("", Duration::from_secs(30)).await?;
    match info.status {
        Some(200) if info.text().starts_with("eas-gateway doctor") => {}
        Some(401) => bail!(
            "the gateway wants a login for its doctor endpoint: pass --user and --password-file, \
             or set `[server] doctor = true` (and reload it with SIGHUP)"
        ),
        Some(404) => bail!(
            "{} answered 404: the proxy does not pass /Microsoft-Server-ActiveSync/doctor to the \
             gateway, or the gateway is older than this doctor",
            client.host_header()
        ),
        Some(s) => bail!(
            "the doctor endpoint answered HTTP {s}: {}",
            info.text().trim()
        ),
        None => bail!(
            "no answer from the doctor endpoint{}",
            info.error.map(|e| format!(" ({e})")).unwrap_or_default()
        ),
    }
    let text = info.text();
    let client_ip = field(&text, "client").unwrap_or("?");
    let forwarded = field(&text, "forwarded").unwrap_or("?");
    let max_heartbeat: u64 = field(&text, "max_heartbeat_secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3540);
    let max_hold: u64 = field(&text, "max_hold_secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(max_heartbeat);
    let max_stream: u64 = field(&text, "max_stream_secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let line =
        format!("client address: the gateway sees {client_ip} (X-Forwarded-For: {forwarded})");
    if forwarded.starts_with("ignored") {
        report.problem(format!(
            "{line}\n  FORWARDING: add the proxy's address to [server] trusted_proxies, else every \
             phone counts as the proxy's address (login throttle, logs)"
        ));
    } else if forwarded == "none" {
        report.ok(format!(
            "{line}\n  (no X-Forwarded-For reached the gateway: fine without a proxy; behind one, \
             make it send the client's address)"
        ));
    } else {
        report.ok(line);
    }

    // 2. A streamed answer, with its length declared as a streamed attachment's is (some
    // proxies pass chunked answers on at once but hold those with a length to the end).
    let secs = opts.stream.clamp(2, max_stream);
    let ex = get_slot(&client, &format!("stream={secs}&sized=1"), secs + 30).await?;
    let encoding = ex
        .header("content-encoding")
        .filter(|e| !e.eq_ignore_ascii_case("identity"))
        .map(str::to_string);
    match (ex.status, ex.first_body_byte) {
        (Some(200), Some(first)) => {
            // The first line is written at once, the last `secs` seconds later: arriving after
            // half of that means it waited for (most of) the rest.
            if first.as_secs_f64() > secs as f64 / 2.0 {
                report.problem(format!(
                    "streaming ({secs} s): BUFFERED: the bytes the gateway wrote at once arrived \
                     after {:.1} s, with the rest. Turn off response buffering on \
                     /Microsoft-Server-ActiveSync (nginx: proxy_buffering off; Caddy: \
                     flush_interval -1)",
                    first.as_secs_f64()
                ));
            } else {
                report.ok(format!(
                    "streaming ({secs} s): ok, the first bytes arrived after {:.1} s",
                    first.as_secs_f64()
                ));
            }
            if !ex.complete && encoding.is_none() && !ex.text().contains("end\n") {
                report.problem(format!(
                    "streaming ({secs} s): CUT: the answer ended after {:.1} s, before the gateway \
                     finished it{}",
                    ex.ended.as_secs_f64(),
                    ex.error
                        .as_ref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ));
            }
        }
        (Some(s), _) if s != 200 => report.problem(format!(
            "streaming ({secs} s): the proxy answered HTTP {s} after {:.1} s",
            ex.ended.as_secs_f64()
        )),
        _ => report.problem(format!(
            "streaming ({secs} s): CUT: no answer; the connection ended after {:.1} s{}",
            ex.ended.as_secs_f64(),
            ex.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )),
    }
    match encoding {
        Some(e) => report.problem(format!(
            "compression: COMPRESSED: the proxy added Content-Encoding: {e}. Phones expect EAS \
             answers as the gateway sends them: turn compression off on \
             /Microsoft-Server-ActiveSync (nginx: gzip off; Caddy: no encode)"
        )),
        None => report.ok("compression: none".into()),
    }

    // 3. A request held like a Ping.
    let hold = opts.hold.unwrap_or(max_hold).min(max_hold);
    if hold > 60 {
        eprintln!("holding one request for {hold} s, as a Ping would wait (--hold to shorten)...");
    }
    let ex = get_slot(&client, &format!("hold={hold}"), hold + 120).await?;
    let held = ex.status == Some(200)
        && ex.complete
        && (ex.text().starts_with(&format!("held {hold}"))
            || ex.header("content-encoding").is_some());
    if held {
        report.ok(format!(
            "hold {hold} s: ok, answered after {:.1} s",
            ex.ended.as_secs_f64()
        ));
        let verdict = if hold >= max_heartbeat {
            format!(
                "largest heartbeat that survives: at least {hold} s (the gateway allows up to \
                 {max_heartbeat} s)"
            )
        } else {
            format!(
                "largest heartbeat that survives: at least {hold} s (untested above; the gateway \
                 allows up to {max_heartbeat} s: run with --hold {max_heartbeat} to check it)"
            )
        };
        report.ok(verdict);
    } else {
        let cut = ex.ended.as_secs_f64();
        let how = match (ex.status, &ex.error) {
            (Some(s), _) if s != 200 => format!("the proxy answered HTTP {s}"),
            (_, Some(e)) => format!("the connection failed: {e}"),
            _ => "the connection was closed".to_string(),
        };
        report.problem(format!("hold {hold} s: CUT after {cut:.1} s ({how})"));
        let below = cut.floor() as u64;
        // A tenth under the cut, for the time the phone's request takes to get there.
        let suggested = below.saturating_sub(below / 10 + 1);
        let fix = format!(
            "Raise the proxy's read timeout on /Microsoft-Server-ActiveSync above {max_heartbeat} s \
             (nginx: proxy_read_timeout {}s; HAProxy: timeout server and timeout client; Caddy: \
             response_header_timeout)",
            max_heartbeat + 60
        );
        if suggested >= 60 {
            report.problem(format!(
                "largest heartbeat that survives: below {below} s. {fix}, or tell phones less: \
                 [push] max_heartbeat_secs = {suggested}"
            ));
        } else {
            report.problem(format!(
                "largest heartbeat that survives: below {below} s. {fix}: heartbeats under a \
                 minute wake phones too often"
            ));
        }
    }
    Ok(report)
}

/// A probe; when the gateway still runs this address's previous probe (429), tries again for
/// a while.
async fn get_slot(client: &Client, query: &str, limit_secs: u64) -> anyhow::Result<Exchange> {
    let mut tries = 0;
    loop {
        let ex = client.get(query, Duration::from_secs(limit_secs)).await?;
        if ex.status != Some(429) || tries >= 15 {
            return Ok(ex);
        }
        tries += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = target("https://mail.example.org").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("mail.example.org", 443));
        assert_eq!(t.path, "/Microsoft-Server-ActiveSync/doctor");
        let t = target("https://127.0.0.1:8443/Microsoft-Server-ActiveSync/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8443));
        assert_eq!(t.path, "/Microsoft-Server-ActiveSync/doctor");
        let t = target("http://[::1]:8080/eas").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("::1", 8080, false));
        assert_eq!(t.path, "/eas/Microsoft-Server-ActiveSync/doctor");
        assert!(target("mail.example.org").is_err());
    }

    #[test]
    fn chunked_bodies() {
        let ex = Exchange {
            headers: vec![("Transfer-Encoding".into(), "chunked".into())],
            ..Default::default()
        };
        assert_eq!(
            decode_body(&ex, b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
            Some((b"abcde".to_vec(), true))
        );
        assert_eq!(decode_body(&ex, b"3\r\nab"), Some((b"ab".to_vec(), false)));
    }
}
