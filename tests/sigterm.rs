//! The real binary on SIGTERM: a waiting Ping is answered at once (Status 1) and the process
//! exits cleanly, so phones reconnect to another node without a resync.

mod common;

use std::time::Duration;

use common::*;
use eas_gateway::wbxml::tags::ping as p;
use eas_gateway::wbxml::Element;

#[tokio::test]
async fn sigterm_answers_a_waiting_ping_and_exits() {
    let (user, pw) = new_user("sigterm");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start_binary(dir.path(), port).await;
    let mut dev = TestDevice::plain_http(port, &user, &pw, "14.1");
    dev.provision().await;
    let inbox = folder_id(&dev, "Inbox").await;
    let key = sync(&dev, &inbox, "0", 10).await.key.unwrap();
    sync(&dev, &inbox, &key, 10).await;
    let ping = Element::new(p::PING)
        .text_child(p::HEARTBEAT_INTERVAL, "900")
        .child(
            Element::new(p::FOLDERS).child(
                Element::new(p::FOLDER)
                    .text_child(p::ID, inbox.clone())
                    .text_child(p::CLASS, "Email"),
            ),
        );
    let waiting = tokio::spawn(async move { dev.post("Ping", &ping).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!waiting.is_finished(), "the Ping waits for changes");

    let pid = child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    // A guard against hanging forever, far below the 900 s heartbeat.
    let reply = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the Ping is answered on SIGTERM")
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.unwrap().text_of(p::STATUS), Some("1"));
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the process exits")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
