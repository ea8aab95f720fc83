//! The gateway behind real nginx and real HAProxy running the configs of `deploy/` (templated
//! onto free ports): a phone provisions, lists folders, syncs a delivered mail and waits in a
//! Ping that a new mail wakes, all through the proxy; the gateway sees the phone's address, not
//! the proxy's, and not one the phone made up; Autodiscover is routed in any letter case.

mod common;
mod proxies;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;
use eas_gateway::wbxml::tags::ping as p;
use eas_gateway::wbxml::Element;
use proxies::*;

/// The phone's own address: another loopback address than the proxy's 127.0.0.1.
const PHONE_IP: &str = "127.0.0.2";

/// A gateway serving plain HTTP to a proxy on 127.0.0.1, with short heartbeats and the doctor
/// endpoint open.
async fn gateway() -> (TestGateway, TestServer, u16) {
    require_stack();
    let (gw, server) = start_gateway_server(GatewayOptions::default(), |c| {
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
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .local_address(PHONE_IP.parse::<IpAddr>().unwrap())
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
/// [`PHONE_IP`] with an `X-Forwarded-For` the phone made up.
async fn address_seen(proxy: &Proxy) -> String {
    let text = phone_client()
        .get(format!(
            "{}/Microsoft-Server-ActiveSync/doctor",
            proxy.url()
        ))
        .header("X-Forwarded-For", "203.0.113.9")
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

/// Autodiscover in another letter case reaches the gateway (its 401 names its realm); an
/// unknown path does not.
async fn autodiscover_routed(proxy: &Proxy) {
    let r = phone_client()
        .post(format!("{}/AutoDiscover/AutoDiscover.xml", proxy.url()))
        .header("Content-Type", "text/xml")
        .body("<Autodiscover/>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"eas-gateway\"")
    );
    let r = phone_client()
        .get(format!("{}/elsewhere", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.headers().get("MS-Server-ActiveSync").is_none(),
        "not the gateway's 404"
    );
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
    autodiscover_routed(&proxy).await;
    sync_and_push(&gw, &server, &proxy, "nginx").await;
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
    autodiscover_routed(&proxy).await;
    sync_and_push(&gw, &server, &proxy, "haproxy").await;
}
