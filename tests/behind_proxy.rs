//! The gateway behind real nginx, real HAProxy and real Caddy running the configs of `deploy/`
//! (templated onto free ports): a phone provisions, lists folders, syncs a delivered mail and
//! waits in a Ping that a new mail wakes, all through the proxy; the gateway sees the phone's
//! address, not the proxy's, and not one the phone made up; Autodiscover is routed in any letter
//! case and redirected from plain HTTP; a request held longer than the proxies' default timeouts
//! is not cut; a streamed answer (of unknown and of declared length) is neither buffered nor
//! compressed; a body over the gateway's or the proxy's size limit is answered 413.

mod common;
mod proxies;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::*;
use eas_gateway::wbxml::tags::ping as p;
use eas_gateway::wbxml::Element;
use proxies::*;

/// The phone's own address: another loopback address than the proxy's 127.0.0.1.
const PHONE_IP: &str = "127.0.0.2";
/// A second phone's, for the held request (the doctor runs one probe per address at a time).
const OTHER_PHONE_IP: &str = "127.0.0.3";

/// How long the held request waits: longer than nginx's default `proxy_read_timeout` (60 s)
/// and Caddy's `read_header` timeout here (30 s), within the gateway's cap (`max_heartbeat_secs`
/// + 60 s).
const HOLD_SECS: u64 = 65;

/// A gateway serving plain HTTP to a proxy on 127.0.0.1, with short heartbeats and the doctor
/// endpoint open.
async fn gateway() -> (TestGateway, TestServer, u16) {
    gateway_with(GatewayOptions::default()).await
}

async fn gateway_with(opts: GatewayOptions) -> (TestGateway, TestServer, u16) {
    require_stack();
    let (gw, server) = start_gateway_server(opts, |c| {
        c.server.tls = None;
        c.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.server.doctor = true;
        c.push.min_heartbeat_secs = 2;
        c.push.max_heartbeat_secs = 120;
        c.push.watcher_grace = Duration::from_secs(2);
    })
    .await;
    let port: u16 = gw.host().rsplit(':').next().unwrap().parse().unwrap();
    (gw, server, port)
}

/// An HTTPS client from [`PHONE_IP`] that accepts the test certificate.
fn phone_client() -> reqwest::Client {
    client_from(PHONE_IP)
}

/// An HTTPS client from `ip` that accepts the test certificate and finds the example names of
/// the configs on 127.0.0.1.
fn client_from(ip: &str) -> reqwest::Client {
    let local: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .local_address(ip.parse::<IpAddr>().unwrap())
        .resolve("mail.example.org", local)
        .resolve("autodiscover.example.org", local)
        .build()
        .unwrap()
}

/// A device of a fresh user that talks to the gateway through `proxy`.
async fn phone_via(gw: &TestGateway, proxy: &Proxy, prefix: &str) -> (TestDevice, String, String) {
    let (user, pw) = new_user(prefix);
    let mut dev = TestDevice::new(gw, &user, &pw, "16.1");
    dev.client = phone_client();
    dev.base = format!("{}/Microsoft-Server-ActiveSync", proxy.url());
    (dev, user, pw)
}

/// Delivers a mail through Postfix ([`deliver_smtp`]).
async fn deliver(to: &str, subject: &str) {
    deliver_smtp(to, subject, "through the proxy").await;
}

fn subject_of(data: &Element) -> Option<&str> {
    data.text_of(eas_gateway::wbxml::tags::email::SUBJECT)
}

/// Provision, FolderSync, a Sync of a delivered mail, and a Ping woken by a second one.
async fn sync_and_push(gw: &TestGateway, server: &TestServer, proxy: &Proxy, what: &str) {
    let (mut dev, user, pw) = phone_via(gw, proxy, what).await;
    dev.provision().await;
    let inbox = folder_id(&dev, "Inbox").await;
    let first = unique("first");
    deliver(&user, &first).await;
    assert_eq!(
        uids_with_subject(&user, &pw, "INBOX", &first, 1, Duration::from_secs(20))
            .await
            .len(),
        1,
        "delivered"
    );
    let (adds, key) = full_sync(&dev, &inbox, 50).await;
    assert_eq!(adds.len(), 1, "{what}: {adds:?}");
    assert_eq!(subject_of(&adds[0].1), Some(first.as_str()), "{what}");

    // A Ping waits (up to 100 s) until a new mail arrives.
    let before = server.gateway.push.stats().waiters;
    let ping = Element::new(p::PING)
        .text_child(p::HEARTBEAT_INTERVAL, "100")
        .child(
            Element::new(p::FOLDERS).child(
                Element::new(p::FOLDER)
                    .text_child(p::ID, inbox.as_str())
                    .text_child(p::CLASS, "Email"),
            ),
        );
    let waiting = {
        let dev = dev.clone();
        tokio::spawn(async move { dev.post("Ping", &ping).await })
    };
    let started = Instant::now();
    while server.gateway.push.stats().waiters <= before {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: the Ping never reached the gateway: {}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = unique("second");
    let sent = Instant::now();
    deliver(&user, &second).await;
    let reply = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the Ping answers when the mail arrives")
        .unwrap();
    assert_eq!(reply.status, 200, "{what}: {}", proxy.log());
    let body = reply.body.expect("Ping body");
    assert_eq!(body.text_of(p::STATUS), Some("2"), "{what}: {body:?}");
    println!(
        "{what}: Ping answered {} ms after the mail was sent",
        sent.elapsed().as_millis()
    );
    let r = sync(&dev, &inbox, &key, 50).await;
    assert_eq!(r.adds.len(), 1, "{what}: {r:?}");
    assert_eq!(subject_of(&r.adds[0].1), Some(second.as_str()));
}

/// The client address the gateway reports on its doctor endpoint, asked through `proxy` from
/// [`PHONE_IP`] with two `X-Forwarded-For` lines the phone made up.
async fn address_seen(proxy: &Proxy) -> String {
    let text = phone_client()
        .get(format!(
            "{}/Microsoft-Server-ActiveSync/doctor",
            proxy.url()
        ))
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Forwarded-For", "198.51.100.1, 203.0.113.10")
        .send()
        .await
        .expect("doctor request")
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("client: "))
        .unwrap_or_else(|| panic!("no client line in {text:?}"))
        .to_string()
}

/// Autodiscover in another letter case, on the proxy's name and on autodiscover.example.org,
/// reaches the gateway (its 401 names its realm); an unknown path does not.
async fn autodiscover_routed(proxy: &Proxy) {
    for base in [
        proxy.url(),
        format!("https://autodiscover.example.org:{}", proxy.ports.https),
    ] {
        autodiscover_routed_at(&base, proxy).await;
    }
}

/// A phone that found nothing over HTTPS asks `http://autodiscover.example.org/...` and is
/// sent to the HTTPS address (it sends no password over plain HTTP).
async fn autodiscover_redirected(proxy: &Proxy) {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("autodiscover.example.org", "127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap()
        .post(format!(
            "http://autodiscover.example.org:{}/autodiscover/autodiscover.xml",
            proxy.ports.http
        ))
        .body("<Autodiscover/>")
        .send()
        .await
        .unwrap_or_else(|e| panic!("plain HTTP: {e}: {}", proxy.log()));
    assert!(r.status().is_redirection(), "{:?}", r.status());
    let to = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        to.starts_with("https://autodiscover.example.org")
            && to.ends_with("/autodiscover/autodiscover.xml"),
        "{to}"
    );
}

async fn autodiscover_routed_at(base: &str, proxy: &Proxy) {
    let r = phone_client()
        .post(format!("{base}/AutoDiscover/AutoDiscover.xml"))
        .header("Content-Type", "text/xml")
        .body("<Autodiscover/>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "{base}: {}", proxy.log());
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"eas-gateway\"")
    );
    let r = phone_client()
        .get(format!("{base}/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.headers().get("MS-Server-ActiveSync").is_none(),
        "not the gateway's 404"
    );
}

/// A request the gateway holds [`HOLD_SECS`] (as a Ping waits), from [`OTHER_PHONE_IP`]; the
/// answer is checked by [`check_held`].
fn hold(proxy: &Proxy) -> tokio::task::JoinHandle<(u16, String)> {
    let url = format!(
        "{}/Microsoft-Server-ActiveSync/doctor?hold={HOLD_SECS}",
        proxy.url()
    );
    tokio::spawn(async move {
        let r = client_from(OTHER_PHONE_IP)
            .get(url)
            .send()
            .await
            .expect("held request");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    })
}

async fn check_held(held: tokio::task::JoinHandle<(u16, String)>, proxy: &Proxy, what: &str) {
    let (status, text) = held.await.unwrap();
    assert_eq!(
        (status, text.as_str()),
        (200, format!("held {HOLD_SECS}\n").as_str()),
        "{what} cut a request held {HOLD_SECS} s: {}",
        proxy.log()
    );
}

/// The gateway's stream probe (a KiB at once, then a line a second for 4 s), of unknown and of
/// declared length, reaches the phone as it is written and uncompressed although the phone
/// accepts gzip: its first bytes arrive seconds before its end (a buffering proxy delivers all
/// at the end).
async fn streams_unbuffered(proxy: &Proxy, what: &str) {
    for sized in [false, true] {
        let url = format!(
            "{}/Microsoft-Server-ActiveSync/doctor?stream=4{}",
            proxy.url(),
            if sized { "&sized=1" } else { "" }
        );
        let mut r = phone_client()
            .get(url)
            .header("Accept-Encoding", "gzip, deflate")
            .send()
            .await
            .expect("stream probe");
        assert_eq!(r.status(), 200, "{what}: {}", proxy.log());
        assert!(
            r.headers().get("content-encoding").is_none(),
            "{what} compressed the stream: {:?}",
            r.headers()
        );
        if sized {
            assert!(r.content_length().is_some(), "{what}: {:?}", r.headers());
        }
        let mut body = Vec::new();
        let mut first = None;
        while let Some(chunk) = r.chunk().await.expect("stream body") {
            first.get_or_insert_with(Instant::now);
            body.extend_from_slice(&chunk);
        }
        let spread = first.expect("a body").elapsed();
        assert!(body.ends_with(b"4\nend\n"), "{what}: {body:?}");
        println!("{what}: stream (sized: {sized}) spread over {spread:?}");
        assert!(
            spread >= Duration::from_secs(2),
            "{what} buffered a streamed answer (sized: {sized}): its first bytes came {spread:?} \
             before its end"
        );
    }
}

/// The default `[server] max_body_bytes`, which each config allows (the test gateway's is
/// 1 MiB: a proxy may allow more than the gateway).
const MAX_BODY: usize = 64 << 20;

/// A logged-in phone's Provision with a body of `mib` MiB, declared (`Content-Length`) or
/// `chunked` (the size shows only while it arrives), sent through `proxy`; the answer's status
/// line. Over the gateway's limit (1 MiB here) or the proxy's (64 MiB), the phone must learn
/// that the body is too large (413, from the proxy or the gateway), not that the server failed
/// (502) or a dropped connection.
async fn oversized_body_status(
    proxy: &Proxy,
    (user, pw): &(String, String),
    mib: usize,
    chunked: bool,
) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy.ports.https))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("mail.example.org").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    let head = format!(
        "POST /Microsoft-Server-ActiveSync?Cmd=Provision&User={user}&DeviceId=BigBody&\
         DeviceType=TestDevice HTTP/1.1\r\nHost: mail.example.org:{}\r\n\
         Authorization: Basic {auth}\r\nMS-ASProtocolVersion: 14.1\r\n\
         Content-Type: application/vnd.ms-sync.wbxml\r\n{}\r\n",
        proxy.ports.https,
        if chunked {
            "Transfer-Encoding: chunked\r\n".to_string()
        } else {
            format!("Content-Length: {}\r\n", mib << 20)
        }
    );
    // The proxy may answer before it has read the whole body and stop reading: write on the
    // side.
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..mib {
            if chunked {
                wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
            }
            wr.write_all(&chunk).await?;
            if chunked {
                wr.write_all(b"\r\n").await?;
            }
        }
        if chunked {
            wr.write_all(b"0\r\n\r\n").await?;
        }
        wr.flush().await?;
        Ok::<_, std::io::Error>(wr)
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(120), async {
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    assert!(
        read.is_ok(),
        "no answer to the oversized body: {}",
        proxy.log()
    );
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or("").to_string()
}

/// Everything but the address check, through `proxy`.
async fn through(gw: &TestGateway, server: &TestServer, proxy: &Proxy, what: &str) {
    let held = hold(proxy);
    autodiscover_routed(proxy).await;
    autodiscover_redirected(proxy).await;
    streams_unbuffered(proxy, what).await;
    sync_and_push(gw, server, proxy, what).await;
    // Over the gateway's limit only; over the proxy's too.
    let phone = new_user("bigbody");
    for (mib, chunked) in [
        (8, false),
        (8, true),
        ((MAX_BODY >> 20) + 1, false),
        ((MAX_BODY >> 20) + 1, true),
    ] {
        let status = oversized_body_status(proxy, &phone, mib, chunked).await;
        assert!(
            status.starts_with("HTTP/1.1 413"),
            "{what} answered a body of {mib} MiB (chunked: {chunked}) with `{status}`: {}",
            proxy.log()
        );
    }
    check_held(held, proxy, what).await;
}

#[tokio::test]
async fn a_phone_syncs_and_is_pushed_to_through_nginx() {
    let (gw, server, upstream) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let ports = Ports::free(upstream);
    let conf = nginx_config(dir.path(), &c, ports, &[]);
    let proxy = start_nginx(dir.path(), &conf, ports).await;
    assert_eq!(address_seen(&proxy).await, PHONE_IP, "{}", proxy.log());
    through(&gw, &server, &proxy, "nginx").await;
}

#[tokio::test]
async fn a_phone_syncs_and_is_pushed_to_through_haproxy() {
    let (gw, server, upstream) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let ports = Ports::free(upstream);
    let conf = haproxy_config(dir.path(), &c, ports);
    let proxy = start_haproxy(dir.path(), &conf, ports).await;
    // HAProxy adds its own X-Forwarded-For line after the phone's: the gateway must take the
    // last one.
    assert_eq!(address_seen(&proxy).await, PHONE_IP, "{}", proxy.log());
    through(&gw, &server, &proxy, "haproxy").await;
}

#[tokio::test]
async fn a_phone_syncs_and_is_pushed_to_through_caddy() {
    let (gw, server, upstream) = gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let ports = Ports::free(upstream);
    let conf = caddy_config(dir.path(), &c, ports, &[]);
    let proxy = start_caddy(dir.path(), &conf, ports).await;
    // Caddy replaces the X-Forwarded-For of a client it does not trust with the client's
    // address.
    assert_eq!(address_seen(&proxy).await, PHONE_IP, "{}", proxy.log());
    through(&gw, &server, &proxy, "caddy").await;
}

/// With the gateway's default `max_body_bytes`, which the configs allow exactly, a body one MiB
/// over it, declared or chunked, is answered 413 through each proxy.
#[tokio::test]
async fn a_body_over_the_default_limit_gets_413_through_each_proxy() {
    let (_gw, _server, upstream) = gateway_with(GatewayOptions {
        max_body_bytes: Some(MAX_BODY),
        ..Default::default()
    })
    .await;
    let phone = new_user("bigdefault");
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    for what in ["nginx", "haproxy", "caddy"] {
        let sub = dir.path().join(what);
        std::fs::create_dir(&sub).unwrap();
        let ports = Ports::free(upstream);
        let proxy = match what {
            "nginx" => {
                let conf = nginx_config(&sub, &c, ports, &[]);
                start_nginx(&sub, &conf, ports).await
            }
            "haproxy" => {
                let conf = haproxy_config(&sub, &c, ports);
                start_haproxy(&sub, &conf, ports).await
            }
            _ => {
                let conf = caddy_config(&sub, &c, ports, &[]);
                start_caddy(&sub, &conf, ports).await
            }
        };
        for chunked in [false, true] {
            let mib = (MAX_BODY >> 20) + 1;
            let status = oversized_body_status(&proxy, &phone, mib, chunked).await;
            assert!(
                status.starts_with("HTTP/1.1 413"),
                "{what} answered a body of {mib} MiB (chunked: {chunked}) with `{status}`: {}",
                proxy.log()
            );
        }
    }
}
