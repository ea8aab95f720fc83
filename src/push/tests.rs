//! The hub with an in-memory mail server (short real-time deadlines).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::*;
use crate::backend::imap_idle::{NotifyMode, StatusValues, WatchEvent};
use crate::backend::{BackendError, Secret};
use watcher::BoxFuture;

/// mailbox -> (uidvalidity, uidnext, messages, highestmodseq)
#[derive(Default)]
struct FakeServer {
    boxes: Mutex<HashMap<String, (u32, u32, u32, u64)>>,
    changed: Notify,
    down: std::sync::atomic::AtomicBool,
    logins: std::sync::atomic::AtomicUsize,
    /// NOTIFY with INBOX selected: INBOX changes come as `Selected`, not as STATUS.
    selected_inbox: std::sync::atomic::AtomicBool,
}

impl FakeServer {
    fn set(&self, name: &str, v: (u32, u32, u32, u64)) {
        self.boxes.lock().unwrap().insert(name.into(), v);
        self.changed.notify_waiters();
    }

    fn events(&self, names: Option<&[String]>) -> Vec<WatchEvent> {
        let boxes = self.boxes.lock().unwrap();
        let names: Vec<String> = match names {
            Some(n) => n.to_vec(),
            None => boxes.keys().cloned().collect(),
        };
        names
            .into_iter()
            .map(|n| match boxes.get(&n) {
                Some(&(uv, next, msgs, modseq)) => WatchEvent::Status {
                    mailbox: n,
                    values: StatusValues {
                        uid_validity: Some(uv),
                        uid_next: Some(next),
                        messages: Some(msgs),
                        highest_modseq: Some(modseq),
                    },
                },
                None => WatchEvent::Listed {
                    mailbox: n,
                    gone: true,
                    old_name: None,
                },
            })
            .collect()
    }
}

struct FakeConnector(Arc<FakeServer>);
struct FakeConn(Arc<FakeServer>);

impl Connector for FakeConnector {
    fn connect<'a>(
        &'a self,
        _creds: &'a Credentials,
    ) -> BoxFuture<'a, Result<Box<dyn WatchConn>, BackendError>> {
        Box::pin(async move {
            self.0.logins.fetch_add(1, Ordering::SeqCst);
            if self.0.down.load(Ordering::SeqCst) {
                return Err(BackendError::Unavailable("down".into()));
            }
            Ok(Box::new(FakeConn(self.0.clone())) as Box<dyn WatchConn>)
        })
    }
}

impl WatchConn for FakeConn {
    fn arm(&mut self, want_notify: bool) -> BoxFuture<'_, Result<NotifyMode, BackendError>> {
        Box::pin(async move {
            Ok(if !want_notify {
                NotifyMode::None
            } else if self.0.selected_inbox.load(Ordering::SeqCst) {
                NotifyMode::SelectedInbox
            } else {
                NotifyMode::Personal
            })
        })
    }
    fn states<'a>(
        &'a mut self,
        mailboxes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<WatchEvent>, BackendError>> {
        Box::pin(async move { Ok(self.0.events(Some(mailboxes))) })
    }
    fn idle_start(&mut self) -> BoxFuture<'_, Result<Vec<WatchEvent>, BackendError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn idle_readable(&mut self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.0.changed.notified().await;
            Ok(())
        })
    }
    fn idle_read(&mut self) -> BoxFuture<'_, Result<Vec<WatchEvent>, BackendError>> {
        Box::pin(async move {
            let mut events = self.0.events(None);
            if self.0.selected_inbox.load(Ordering::SeqCst) {
                for e in events.iter_mut() {
                    if matches!(e, WatchEvent::Status { mailbox, .. } if mailbox == "INBOX") {
                        *e = WatchEvent::Selected;
                    }
                }
            }
            Ok(events)
        })
    }
    fn idle_done(&mut self) -> BoxFuture<'_, Result<Vec<WatchEvent>, BackendError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

fn hub() -> (Hub, Arc<FakeServer>) {
    let server = Arc::new(FakeServer::default());
    server.set("INBOX", (7, 2, 1, 10));
    let cfg = PushConfig {
        watcher_grace: Duration::from_secs(1),
        ..PushConfig::default()
    };
    (
        Hub::with_connector(cfg, Arc::new(FakeConnector(server.clone()))),
        server,
    )
}

fn request(device: &str, modseq: u64, millis_: u64) -> WaitRequest {
    WaitRequest {
        user: "alice@example.test".into(),
        device_id: device.into(),
        credentials: Credentials {
            login: "alice@example.test".into(),
            password: Secret::new("pw"),
        },
        folders: vec![
            Watched {
                collection_id: "5".into(),
                mailbox: "INBOX".into(),
                baseline: Some(Baseline {
                    uid_validity: 7,
                    highest_modseq: modseq,
                    more_available: false,
                }),
            },
            Watched {
                collection_id: "6".into(),
                mailbox: "Never".into(),
                baseline: None,
            },
        ],
        hierarchy: crate::push::Hierarchy::Ignore,
        deadline: Instant::now() + Duration::from_millis(millis_),
    }
}

#[tokio::test]
async fn unchanged_folder_waits_for_the_heartbeat() {
    let (hub, _server) = hub();
    let t = Instant::now();
    assert_eq!(
        hub.wait_for_changes(request("A", 10, 300)).await,
        WaitResult::Timeout
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_differing_baseline_answers_at_once_and_a_change_wakes() {
    let (hub, server) = hub();
    assert_eq!(
        hub.wait_for_changes(request("A", 9, 5000)).await,
        WaitResult::Changed(vec!["5".into()])
    );
    let h = hub.clone();
    let waiting = tokio::spawn(async move { h.wait_for_changes(request("A", 10, 5000)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.set("INBOX", (7, 3, 2, 11));
    assert_eq!(
        waiting.await.unwrap(),
        WaitResult::Changed(vec!["5".into()])
    );
    // One watcher served both waits.
    assert_eq!(server.logins.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_change_of_the_selected_inbox_is_read_with_status_and_wakes() {
    let (hub, server) = hub();
    server.selected_inbox.store(true, Ordering::SeqCst);
    let h = hub.clone();
    let waiting = tokio::spawn(async move { h.wait_for_changes(request("A", 10, 5000)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Only `Selected` arrives for INBOX: the watcher must read its STATUS to see the change.
    server.set("INBOX", (7, 3, 2, 11));
    assert_eq!(
        waiting.await.unwrap(),
        WaitResult::Changed(vec!["5".into()])
    );
}

#[tokio::test]
async fn a_new_request_of_the_device_or_shutdown_ends_the_wait() {
    let (hub, _server) = hub();
    let h = hub.clone();
    let first = tokio::spawn(async move { h.wait_for_changes(request("A", 10, 10_000)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let h = hub.clone();
    let other = tokio::spawn(async move { h.wait_for_changes(request("B", 10, 10_000)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    hub.device_request("alice@example.test", "A");
    assert_eq!(first.await.unwrap(), WaitResult::Superseded);
    assert_eq!(hub.stats().waiters, 1);
    hub.shutdown();
    assert_eq!(other.await.unwrap(), WaitResult::Shutdown);
    assert_eq!(
        hub.wait_for_changes(request("A", 10, 10_000)).await,
        WaitResult::Shutdown
    );
}

#[tokio::test]
async fn an_unreachable_server_never_outlasts_the_heartbeat() {
    let (hub, server) = hub();
    server.down.store(true, Ordering::SeqCst);
    let t = Instant::now();
    assert_eq!(
        hub.wait_for_changes(request("A", 10, 1600)).await,
        WaitResult::Timeout
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(
        server.logins.load(Ordering::SeqCst) > 1,
        "reconnects with backoff"
    );
    // The watcher stops after its grace period once nobody waits.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(hub.stats().watchers, 0);
}

#[tokio::test]
async fn a_vanished_mailbox_is_folder_gone_and_more_available_is_at_once() {
    let (hub, server) = hub();
    server.boxes.lock().unwrap().clear();
    assert_eq!(
        hub.wait_for_changes(request("A", 10, 5000)).await,
        WaitResult::FolderGone(vec!["5".into()])
    );
    let mut r = request("A", 10, 5000);
    if let Some(b) = r.folders[0].baseline.as_mut() {
        b.more_available = true;
    }
    assert_eq!(
        hub.wait_for_changes(r).await,
        WaitResult::Changed(vec!["5".into()])
    );
}

#[tokio::test]
async fn a_watcher_behind_the_baseline_is_no_change() {
    // The device's view already holds modseq 11 (its own change); the server says 10.
    let (hub, server) = hub();
    assert_eq!(
        hub.wait_for_changes(request("A", 11, 300)).await,
        WaitResult::Timeout
    );
    let h = hub.clone();
    let waiting = tokio::spawn(async move { h.wait_for_changes(request("A", 11, 5000)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Its own change arrives: still nothing new. A later one wakes it.
    server.set("INBOX", (7, 2, 1, 11));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    server.set("INBOX", (7, 3, 2, 12));
    assert_eq!(
        waiting.await.unwrap(),
        WaitResult::Changed(vec!["5".into()])
    );
}

#[tokio::test]
async fn own_changes_carry_only_that_devices_baseline() {
    let (hub, server) = hub();
    let st = |modseq| crate::backend::MailboxState {
        uid_validity: 7,
        uid_next: 2,
        messages: 1,
        highest_modseq: modseq,
    };
    // Device A appended twice to INBOX (10 -> 11 -> 12), nobody else changed it.
    hub.own_change("alice@example.test", "A", "INBOX", st(10), st(11));
    hub.own_change("alice@example.test", "A", "inbox", st(11), st(12));
    server.set("INBOX", (7, 4, 3, 12));
    assert_eq!(
        hub.wait_for_changes(request("A", 10, 300)).await,
        WaitResult::Timeout
    );
    assert_eq!(
        hub.wait_for_changes(request("B", 10, 300)).await,
        WaitResult::Changed(vec!["5".into()])
    );
    // A mark that does not follow on from the baseline is not used.
    assert_eq!(
        hub.wait_for_changes(request("A", 9, 300)).await,
        WaitResult::Changed(vec!["5".into()])
    );
}

#[tokio::test]
async fn a_lasting_outage_ends_the_wait_as_unavailable() {
    let server = Arc::new(FakeServer::default());
    server.set("INBOX", (7, 2, 1, 10));
    server.down.store(true, Ordering::SeqCst);
    let cfg = PushConfig {
        watcher_grace: Duration::from_secs(1),
        outage_grace: Duration::from_millis(400),
        ..PushConfig::default()
    };
    let hub = Hub::with_connector(cfg, Arc::new(FakeConnector(server.clone())));
    let t = Instant::now();
    assert_eq!(
        hub.wait_for_changes(request("A", 10, 5000)).await,
        WaitResult::Unavailable
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn verdicts() {
    let b = Baseline {
        uid_validity: 7,
        highest_modseq: 10,
        more_available: false,
    };
    let s = MailboxInfo {
        uid_validity: 7,
        uid_next: 3,
        messages: 2,
        highest_modseq: 10,
        gone: false,
        complete: true,
    };
    assert_eq!(verdict(&b, None, Some(s)), Verdict::Same);
    assert_eq!(verdict(&b, None, None), Verdict::Unknown);
    let partial = MailboxInfo {
        complete: false,
        ..s
    };
    assert_eq!(verdict(&b, None, Some(partial)), Verdict::Unknown);
    let newer = MailboxInfo {
        highest_modseq: 11,
        complete: false,
        ..s
    };
    assert_eq!(verdict(&b, None, Some(newer)), Verdict::Changed);
    let other_uv = MailboxInfo {
        uid_validity: 8,
        ..s
    };
    assert_eq!(verdict(&b, None, Some(other_uv)), Verdict::Changed);
    // A watcher that has not heard of the device's own change yet.
    let older = MailboxInfo {
        highest_modseq: 9,
        ..s
    };
    assert_eq!(verdict(&b, None, Some(older)), Verdict::Unknown);
    // Without mod-sequences: compared with the state when the wait began.
    let b0 = Baseline {
        highest_modseq: 0,
        ..b
    };
    let s0 = MailboxInfo {
        highest_modseq: 0,
        ..s
    };
    assert_eq!(verdict(&b0, Some(&s0), Some(s0)), Verdict::Same);
    let s1 = MailboxInfo { uid_next: 4, ..s0 };
    assert_eq!(verdict(&b0, Some(&s0), Some(s1)), Verdict::Changed);
}

/// Polls until the hub holds `n` waiters.
async fn until_waiters(hub: &Hub, n: usize) {
    for _ in 0..500 {
        if hub.stats().waiters == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} waiters, not {n}", hub.stats().waiters);
}

#[tokio::test]
async fn a_late_remote_supersede_leaves_the_newer_wait_alone() {
    let (hub, _server) = hub();
    let user = "alice@example.test";
    // A request here whose own event came back: a supersede from another node ends its wait.
    let first_token = hub.local_request(user, "A");
    hub.own_supersede_heard(user, "A", first_token);
    let h = hub.clone();
    let first = tokio::spawn(async move { h.wait_for_changes(request("A", 10, 10_000)).await });
    until_waiters(&hub, 1).await;

    // The device's next request, here: it ends the first wait; its own event is on its way.
    let second_token = hub.local_request(user, "A");
    assert_eq!(first.await.unwrap(), WaitResult::Superseded);
    let h = hub.clone();
    let second = tokio::spawn(async move { h.wait_for_changes(request("A", 10, 10_000)).await });
    until_waiters(&hub, 1).await;

    // A supersede from another node heard now was published before the second request's
    // event (events come in commit order): the late one of an older request.
    assert!(!hub.remote_supersede(user, "A"));
    // The first request's event, also late, changes nothing.
    hub.own_supersede_heard(user, "A", first_token);
    assert!(!hub.remote_supersede(user, "A"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!second.is_finished());
    assert_eq!(hub.stats().waiters, 1);

    // The second request's own event comes back: a supersede heard after it is newer.
    hub.own_supersede_heard(user, "A", second_token);
    assert!(hub.remote_supersede(user, "A"));
    assert_eq!(second.await.unwrap(), WaitResult::Superseded);
    // Other devices were never held back.
    assert!(hub.remote_supersede(user, "B"));
}

#[tokio::test]
async fn an_own_event_that_never_comes_back_holds_remote_supersedes_only_briefly() {
    let (hub, _server) = hub();
    let user = "alice@example.test";
    hub.local_request(user, "A");
    assert!(!hub.remote_supersede(user, "A"));
    let key = device_key(user, "A");
    let later = Instant::now() + remote::OWN_EVENT_GRACE;
    assert!(hub
        .inner
        .remote
        .blocks_at(&key, later - Duration::from_millis(1)));
    assert!(!hub.inner.remote.blocks_at(&key, later));
    // Expired and dropped.
    assert!(hub.remote_supersede(user, "A"));

    // Missed events: the order is unknown, remote supersedes count at once.
    hub.local_request(user, "A");
    assert!(!hub.remote_supersede(user, "A"));
    hub.remote_order_lost();
    assert!(hub.remote_supersede(user, "A"));
}
