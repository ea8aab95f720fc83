//! The real binary on SIGTERM: a waiting Ping is answered at once (Status 1) and the process
//! exits cleanly, so phones reconnect to another node without a resync.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use eas_gateway::wbxml::tags::ping as p;
use eas_gateway::wbxml::Element;

#[tokio::test]
async fn sigterm_answers_a_waiting_ping_and_exits() {
    let (user, pw) = new_user("sigterm");
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[imap]\nhost = \"127.0.0.1\"\nport = 143\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = 587\n[state]\nurl = \"sqlite://{}\"\n\
             [identity]\ndomain = \"{DOMAIN}\"\n",
            dir.path().join("state.db").display()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eas-gateway"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the gateway binary");
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the gateway did not start listening");

    let mut dev = TestDevice {
        client: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}/Microsoft-Server-ActiveSync"),
        user: user.clone(),
        password: pw.clone(),
        device_id: "SIGTERM0001".into(),
        device_type: "TestPhone".into(),
        version: "14.1",
        policy_key: None,
    };
    dev.provision().await;
    let inbox = folder_id(&dev, "Inbox").await;
    let key0 = sync_result(&dev.post("Sync", &sync_request(&inbox, "0", 10, None)).await);
    let key = key0.key.unwrap();
    let _ = sync_result(
        &dev.post("Sync", &sync_request(&inbox, &key, 10, None))
            .await,
    );
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
