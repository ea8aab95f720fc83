//! Faults during an initial sync: the gateway process killed with SIGKILL (between pages and in
//! the middle of one), and the IMAP connection cut in the middle of a page. Either way the phone
//! ends with every mail exactly once and nothing marked read.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use eas_gateway::wbxml;
use eas_gateway::wbxml::tags::email;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAILS: usize = 1000;

/// Seeds `MAILS` small mails into INBOX in one IMAP session.
async fn seed_inbox(user: &str, pw: &str) {
    let mails: Vec<(String, Option<String>)> = (0..MAILS)
        .map(|i| (mail(&format!("fault {i:04}"), "body"), None))
        .collect();
    seed(user, pw, "INBOX", &mails).await;
}

async fn sigkill(child: &mut tokio::process::Child) {
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
}

/// Sends one Sync page request (WindowSize 100) of the provisioned device.
async fn post_sync(dev: &TestDevice, cid: &str, key: &str) -> reqwest::Result<reqwest::Response> {
    let url = format!("{}?{}", dev.base, dev.query("Sync"));
    dev.client
        .post(&url)
        .header("Authorization", dev.auth())
        .header("MS-ASProtocolVersion", dev.version)
        .header("X-MS-PolicyKey", dev.policy_key.unwrap().to_string())
        .header("Content-Type", "application/vnd.ms-sync.wbxml")
        .body(wbxml::encode(&sync_request(cid, key, 100, None)))
        .send()
        .await
}

/// A Sync page request that may fail (the gateway may die under it).
async fn try_sync(dev: &TestDevice, cid: &str, key: &str) -> Option<SyncResult> {
    let resp = post_sync(dev, cid, key).await.ok()?;
    if resp.status() != 200 {
        return None;
    }
    let raw = resp.bytes().await.ok()?;
    let body = if raw.is_empty() {
        None
    } else {
        Some(wbxml::decode(raw.clone(), &Default::default()).expect("a complete answer is WBXML"))
    };
    Some(sync_result(&Reply {
        status: 200,
        headers: Default::default(),
        body,
        raw: raw.to_vec(),
    }))
}

/// What the phone holds: ServerId -> subject. Panics on a duplicate Add.
#[derive(Default)]
struct Phone {
    items: Vec<(String, String)>,
}

impl Phone {
    fn apply(&mut self, r: &SyncResult) {
        assert_eq!(r.status.as_deref(), Some("1"), "{r:?}");
        assert!(r.deletes.is_empty() && r.soft_deletes.is_empty());
        for (sid, data) in &r.adds {
            self.items.push((
                sid.clone(),
                data.text_of(email::SUBJECT).unwrap_or("").to_string(),
            ));
        }
    }

    fn check_complete(&self) {
        let ids: HashSet<&String> = self.items.iter().map(|(s, _)| s).collect();
        assert_eq!(self.items.len(), MAILS, "every mail once, no duplicates");
        assert_eq!(ids.len(), MAILS);
        let subjects: HashSet<&str> = self.items.iter().map(|(_, s)| s.as_str()).collect();
        let expected: Vec<String> = (0..MAILS).map(|i| format!("fault {i:04}")).collect();
        let expected: HashSet<&str> = expected.iter().map(String::as_str).collect();
        assert_eq!(subjects, expected);
    }
}

async fn assert_nothing_read(user: &str, pw: &str) {
    let t = imap(user, pw, &["SELECT INBOX", "SEARCH SEEN"]).await;
    assert!(t.contains("* SEARCH\r\n"), "nothing was marked read: {t}");
}

#[tokio::test]
async fn sigkill_between_and_during_pages_loses_and_duplicates_nothing() {
    let (user, pw) = new_user("sigkill");
    seed_inbox(&user, &pw).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start_binary(dir.path(), port).await;
    let mut dev = TestDevice::plain_http(port, &user, &pw, "14.1");
    dev.provision().await;
    let inbox = folder_id(&dev, "Inbox").await;
    let mut key = try_sync(&dev, &inbox, "0").await.unwrap().key.unwrap();
    let mut phone = Phone::default();

    // Two pages, then SIGKILL between pages.
    for _ in 0..2 {
        let r = try_sync(&dev, &inbox, &key).await.unwrap();
        phone.apply(&r);
        key = r.key.unwrap();
    }
    sigkill(&mut child).await;
    child = start_binary(dir.path(), port).await;

    // Now SIGKILL while pages are in flight, at several points of a request. Whatever answer
    // the phone did get moves it on; a lost one makes it repeat its key, as a phone does.
    for delay_ms in [0u64, 5, 15, 25, 35, 45, 55, 70, 90] {
        let (dev2, inbox2, key2) = (dev.clone(), inbox.clone(), key.clone());
        let request = tokio::spawn(async move { try_sync(&dev2, &inbox2, &key2).await });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        sigkill(&mut child).await;
        match request.await.unwrap() {
            Some(r) => {
                phone.apply(&r);
                key = r.key.unwrap();
            }
            None => eprintln!("killed after {delay_ms} ms: the answer was lost"),
        }
        child = start_binary(dir.path(), port).await;
    }

    // The rest of the sync on the restarted gateway.
    loop {
        let r = try_sync(&dev, &inbox, &key)
            .await
            .expect("the restarted gateway answers");
        if r.empty {
            break;
        }
        phone.apply(&r);
        key = r.key.unwrap();
        if !r.more {
            break;
        }
    }
    phone.check_complete();
    assert_nothing_read(&user, &pw).await;
    drop(child);
}

/// A TCP relay in front of Dovecot that can cut every connection the moment the gateway sends
/// a command containing `trigger`, i.e. in the middle of a Sync page.
struct CuttingProxy {
    port: u16,
    armed: Arc<AtomicBool>,
    cuts: Arc<std::sync::atomic::AtomicUsize>,
}

impl CuttingProxy {
    async fn start(trigger: &'static [u8]) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (a, c) = (armed.clone(), cuts.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (armed, cuts) = (a.clone(), c.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(IMAP).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        if armed.load(Ordering::SeqCst)
                            && chunk.windows(trigger.len()).any(|w| w == trigger)
                        {
                            // Cut: one drop, then the relay works again.
                            armed.store(false, Ordering::SeqCst);
                            cuts.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if sw.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                    down.abort();
                });
            }
        });
        CuttingProxy { port, armed, cuts }
    }
}

#[tokio::test]
async fn an_imap_connection_cut_mid_page_answers_503_and_the_next_sync_recovers() {
    let (user, pw) = new_user("imapcut");
    seed_inbox(&user, &pw).await;
    let proxy = CuttingProxy::start(b"FETCH").await;
    let gw = start_gateway_with(GatewayOptions {
        imap_port: Some(proxy.port),
        ..Default::default()
    })
    .await;
    let dev = device_of(&gw, &user, &pw, "14.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let mut key = try_sync(&dev, &inbox, "0").await.unwrap().key.unwrap();
    let mut phone = Phone::default();
    let mut failures = 0;
    let mut page = 0;
    loop {
        page += 1;
        // Every third page loses its IMAP connection in the middle of fetching mail.
        if page % 3 == 0 {
            proxy.armed.store(true, Ordering::SeqCst);
        }
        let resp = post_sync(&dev, &inbox, &key)
            .await
            .expect("the gateway answers");
        let reply = read_reply(resp).await;
        if reply.status != 200 {
            assert_eq!(
                reply.status, 503,
                "a cut IMAP connection is a temporary failure"
            );
            assert!(reply.headers.contains_key("retry-after"));
            failures += 1;
            assert!(failures < 20, "the gateway does not recover");
            continue;
        }
        let r = sync_result(&reply);
        if r.empty {
            break;
        }
        phone.apply(&r);
        key = r.key.unwrap();
        if !r.more {
            break;
        }
    }
    assert!(
        proxy.cuts.load(Ordering::SeqCst) >= 3,
        "connections were cut"
    );
    eprintln!("{failures} pages answered 503 after a cut");
    phone.check_complete();
    assert_nothing_read(&user, &pw).await;
}
