//! The front door against slow and hostile clients: connections that send nothing or trickle
//! their headers, idle keep-alive connections, floods from one address, and a busy state store.
//! Real gateway (HTTPS) in front of the dev mail stack; short deadlines in the test configs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use eas_gateway::wbxml::tags::{folder_hierarchy as f, ping as p};
use eas_gateway::wbxml::Element;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

fn tls_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    gw: &TestGateway,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(gw.host()).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tls_connector().connect(name, tcp).await
}

/// Reads until the peer closes (EOF or reset) or `by`; true when it closed.
async fn closed_by<R: AsyncRead + Unpin>(r: &mut R, by: Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(by, r.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// A client of the gateway whose connections come from `ip` (another loopback address).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

fn folder_sync_body() -> Element {
    Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, "0")
}

/// The `max_connections` = 64 of this test against 1,000 silent connections and 100 that trickle
/// their request headers a byte at a time: a phone arriving during the flood is served within the
/// deadline + 2 s, and every silent or trickling connection is closed by its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_trickling_connections_do_not_lock_out_a_phone() {
    const DEADLINE: Duration = Duration::from_secs(3);
    const MARGIN: Duration = Duration::from_secs(2);
    let gw = start_gateway_with(GatewayOptions {
        // The per-address cap is the subject of another test: here the deadlines must do it.
        server: "max_connections = 64\nmax_connections_per_ip = 100000\n\
                 handshake_timeout_secs = 3\nheader_timeout_secs = 3",
        ..Default::default()
    })
    .await;
    let (user, pw) = new_user("flood");

    let flood_start = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..1000 {
        silent.push(TcpStream::connect(gw.host()).await.expect("connect"));
    }
    let mut tricklers = Vec::new();
    for _ in 0..100 {
        let mut tls = tokio::time::timeout(DEADLINE, tls_connect(&gw))
            .await
            .expect("TLS handshake of a trickler in time")
            .expect("TLS handshake of a trickler");
        let opened = Instant::now();
        tricklers.push(tokio::spawn(async move {
            let head = b"POST /Microsoft-Server-ActiveSync?Cmd=FolderSync&User=x&DeviceId=x&DeviceType=x HTTP/1.1\r\nHost: localhost\r\nX-Padding: ";
            let mut bytes = head.iter().copied().chain(std::iter::repeat(b'a'));
            loop {
                let byte = [bytes.next().unwrap()];
                if tls.write_all(&byte).await.is_err() || tls.flush().await.is_err() {
                    return opened.elapsed();
                }
                // A read would show the close too; a write fails on the first byte after it.
                let mut probe = [0u8; 64];
                match tokio::time::timeout(Duration::from_millis(200), tls.read(&mut probe)).await
                {
                    Err(_) => continue,
                    Ok(_) => return opened.elapsed(),
                }
            }
        }));
    }

    // A phone arrives during the flood.
    let mut dev = TestDevice::new(&gw, &user, &pw, "14.1");
    let phone = tokio::time::timeout_at(flood_start + DEADLINE + MARGIN, async {
        dev.provision().await;
        dev.folder_sync("0").await
    })
    .await;
    assert!(
        phone.is_ok(),
        "the phone was not served within the deadline + 2 s of the flood"
    );

    // Every silent connection was closed by the handshake deadline.
    let by = flood_start + DEADLINE + MARGIN;
    let closed = futures::future::join_all(silent.iter_mut().map(|s| closed_by(s, by))).await;
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(
        open, 0,
        "{open} silent connections still open after the deadline"
    );
    // Every trickler was closed by the header deadline (counted from its connection).
    for t in tricklers {
        let lived = tokio::time::timeout(DEADLINE + MARGIN * 2, t)
            .await
            .expect("a trickling connection was never closed")
            .unwrap();
        assert!(
            lived <= DEADLINE + MARGIN,
            "a trickling connection lived {lived:?}"
        );
    }
}

/// An idle keep-alive connection is closed after `idle_timeout_secs` (not after the shorter
/// header deadline), while a Ping that waits longer than both is answered in full.
#[tokio::test]
async fn idle_connections_close_but_a_waiting_ping_is_not_cut() {
    let gw = start_gateway_with(GatewayOptions {
        server: "header_timeout_secs = 2\nidle_timeout_secs = 4",
        push: "min_heartbeat_secs = 1",
        ..Default::default()
    })
    .await;
    let (dev, _, _) = provisioned(&gw, "idle", "14.1").await;
    let inbox = folder_id(&dev, "Inbox").await;

    // A Ping of 8 s outlives the header (2 s) and idle (4 s) deadlines.
    let ping = Element::new(p::PING)
        .text_child(p::HEARTBEAT_INTERVAL, "8")
        .child(
            Element::new(p::FOLDERS).child(
                Element::new(p::FOLDER)
                    .text_child(p::ID, inbox)
                    .text_child(p::CLASS, "Email"),
            ),
        );
    let started = Instant::now();
    let r = dev.post("Ping", &ping).await;
    assert_eq!(r.status, 200, "the Ping was answered");
    let status = r.body.as_ref().and_then(|b| b.text_of(p::STATUS));
    assert_eq!(status, Some("1"), "the heartbeat ran out without changes");
    assert!(started.elapsed() >= Duration::from_secs(7));

    // One request on a raw connection, then silence.
    let mut tls = tls_connect(&gw).await.unwrap();
    let req = format!(
        "OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\r\n",
        dev.auth()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let idle_from = Instant::now();
    assert!(
        !closed_by(&mut tls, idle_from + Duration::from_secs(3)).await,
        "closed before idle_timeout_secs (by the header deadline?)"
    );
    assert!(
        closed_by(&mut tls, idle_from + Duration::from_secs(4 + 2)).await,
        "an idle keep-alive connection stayed open past idle_timeout_secs"
    );
}

/// One address opening 1,000 connections gets `max_connections_per_ip` of them; the rest are
/// closed at once (long before any deadline), and phones from other addresses are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_is_capped_and_others_are_served() {
    let gw = start_gateway_with(GatewayOptions {
        server: "max_connections_per_ip = 20",
        ..Default::default()
    })
    .await;
    let (user, pw) = new_user("perip");
    let mut flood = Vec::new();
    for _ in 0..1000 {
        // From 127.0.0.1 (the phone below comes from 127.0.0.2).
        let s = TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        flood.push(
            s.connect(gw.host().parse().unwrap())
                .await
                .expect("connect"),
        );
    }
    // The handshake deadline is 10 s: whatever is closed within 1 s was refused by the cap.
    let by = Instant::now() + Duration::from_secs(1);
    let closed = futures::future::join_all(flood.iter_mut().map(|s| closed_by(s, by))).await;
    let refused = closed.iter().filter(|c| **c).count();
    assert_eq!(
        refused, 980,
        "all but max_connections_per_ip closed at once"
    );

    let mut dev = TestDevice::new(&gw, &user, &pw, "14.1");
    dev.client = client_from("127.0.0.2");
    tokio::time::timeout(Duration::from_secs(10), async {
        dev.provision().await;
        dev.folder_sync("0").await
    })
    .await
    .expect("a phone from another address is served during the flood");

    // Once the flood ends, its address is served again.
    drop(flood);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut same = TestDevice::new(&gw, &user, &pw, "14.1");
    same.client = client_from("127.0.0.1");
    same.provision().await;
}

/// A request whose body stops arriving is answered 408 once it has stalled for
/// `header_timeout_secs`, instead of holding its connection and handler for ever.
#[tokio::test]
async fn a_stalled_request_body_is_given_up() {
    let gw = start_gateway_with(GatewayOptions {
        server: "header_timeout_secs = 2",
        ..Default::default()
    })
    .await;
    let (user, pw) = new_user("stall");
    let dev = TestDevice::new(&gw, &user, &pw, "14.1");
    let mut tls = tls_connect(&gw).await.unwrap();
    let head = format!(
        "POST /Microsoft-Server-ActiveSync?{} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\
         MS-ASProtocolVersion: 14.1\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n\
         Content-Length: 100\r\n\r\n",
        dev.query("FolderSync"),
        dev.auth()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&[3, 1, 106, 0]).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2 + 3), async {
        let mut buf = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled body");
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// A state store locked by another writer past its busy timeout answers 503 with Retry-After
/// (the phone retries), not 500; once the lock is gone the same request succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_state_store_answers_503_with_retry_after() {
    let gw = start_gateway().await;
    let (dev, _, _) = provisioned(&gw, "busy", "14.1").await;
    let db = gw.dir.path().join("state.db");
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let r = dev.post("FolderSync", &folder_sync_body()).await;
    assert_eq!(r.status, 503, "a busy state store is a temporary condition");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let r = dev.post("FolderSync", &folder_sync_body()).await;
    assert_eq!(r.status, 200, "served again once the store is free");
}
