//! Autodiscover (MS-ASCMD 2.2.1.1 and the JSON form of Outlook for iOS/Android) against the real
//! gateway and the real Dovecot login: what phones send, what they must get back, and what
//! nobody else may get.

mod common;

use common::*;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

const REQUEST_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006";
const MOBILESYNC_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006";
const RESPONSE_NS: &str = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";
const OUTLOOK_REQUEST_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006";
const OUTLOOK_RESPONSE_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";

/// `https://127.0.0.1:port`, the gateway's origin.
fn origin(gw: &TestGateway) -> String {
    gw.base
        .trim_end_matches("/Microsoft-Server-ActiveSync")
        .to_string()
}

/// The request iOS Mail (and Gmail/Samsung on Android) send.
fn mobilesync_request(address: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <Autodiscover xmlns=\"{REQUEST_NS}\">\n\
         <Request>\n\
         <EMailAddress>{address}</EMailAddress>\n\
         <AcceptableResponseSchema>{MOBILESYNC_NS}</AcceptableResponseSchema>\n\
         </Request>\n\
         </Autodiscover>\n"
    )
}

/// The request Outlook for Windows/Mac sends.
fn outlook_request(address: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"{OUTLOOK_REQUEST_NS}\">\
         <Request><EMailAddress>{address}</EMailAddress>\
         <AcceptableResponseSchema>{OUTLOOK_RESPONSE_NS}</AcceptableResponseSchema>\
         </Request></Autodiscover>"
    )
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn post_xml(url: &str, auth: Option<&str>, body: impl Into<reqwest::Body>) -> Answer {
    let mut req = client()
        .post(url)
        .header("Content-Type", "text/xml")
        .header("User-Agent", "iOS/18.2 (22C152) dataaccessd/1.0")
        .body(body);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    answer(req.send().await.expect("autodiscover request")).await
}

async fn get(url: &str, auth: Option<&str>) -> Answer {
    let mut req = client().get(url);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    answer(req.send().await.expect("GET")).await
}

async fn answer(r: reqwest::Response) -> Answer {
    Answer {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap_or_default(),
    }
}

/// Every element of an XML answer: (path of local names, namespace, its text).
fn elements(xml: &str) -> Vec<(String, String, String)> {
    let mut reader = NsReader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut out: Vec<(String, String, String)> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    loop {
        let (ns, ev) = reader
            .read_resolved_event()
            .unwrap_or_else(|e| panic!("the answer is not XML ({e}):\n{xml}"));
        let ns = match ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            _ => String::new(),
        };
        match ev {
            Event::Start(e) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                out.push((path.join("/"), ns, String::new()));
                open.push(out.len() - 1);
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                out.push((format!("{}/{name}", path.join("/")), ns, String::new()));
            }
            Event::End(_) => {
                path.pop();
                open.pop();
            }
            Event::Text(t) => {
                if let Some(&i) = open.last() {
                    out[i].2.push_str(t.unescape().unwrap().trim());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

fn text_at(xml: &str, path: &str) -> Option<String> {
    elements(xml)
        .into_iter()
        .find(|(p, _, _)| p == path)
        .map(|(_, _, t)| t)
}

fn ns_at(xml: &str, path: &str) -> Option<String> {
    elements(xml)
        .into_iter()
        .find(|(p, _, _)| p == path)
        .map(|(_, n, _)| n)
}

/// Asserts a MobileSync settings answer for `address` pointing at `url`.
fn assert_settings(a: &Answer, address: &str, url: &str) {
    assert_eq!(a.status, 200, "{}", a.body);
    let ct = a.headers["content-type"].to_str().unwrap();
    assert!(ct.starts_with("text/xml"), "{ct}");
    let b = &a.body;
    assert_eq!(
        ns_at(b, "Autodiscover").as_deref(),
        Some(RESPONSE_NS),
        "{b}"
    );
    assert_eq!(
        ns_at(b, "Autodiscover/Response").as_deref(),
        Some(MOBILESYNC_NS),
        "{b}"
    );
    assert_eq!(
        text_at(b, "Autodiscover/Response/Culture").as_deref(),
        Some("en:us")
    );
    assert_eq!(
        text_at(b, "Autodiscover/Response/User/EMailAddress").as_deref(),
        Some(address),
        "{b}"
    );
    assert!(
        text_at(b, "Autodiscover/Response/User/DisplayName").is_some_and(|d| !d.is_empty()),
        "{b}"
    );
    let server = "Autodiscover/Response/Action/Settings/Server";
    assert_eq!(
        text_at(b, &format!("{server}/Type")).as_deref(),
        Some("MobileSync"),
        "{b}"
    );
    assert_eq!(
        text_at(b, &format!("{server}/Url")).as_deref(),
        Some(url),
        "{b}"
    );
    assert_eq!(
        text_at(b, &format!("{server}/Name")).as_deref(),
        Some(url),
        "{b}"
    );
    assert!(!b.contains("<Error"), "{b}");
}

/// Asserts the framework error of MS-ASCMD 4.2 with `code`.
fn assert_error_code(a: &Answer, code: &str) {
    assert_eq!(a.status, 200, "{}", a.body);
    let b = &a.body;
    assert_eq!(
        ns_at(b, "Autodiscover").as_deref(),
        Some(RESPONSE_NS),
        "{b}"
    );
    assert_eq!(
        text_at(b, "Autodiscover/Response/Error/ErrorCode").as_deref(),
        Some(code),
        "{b}"
    );
    assert!(
        text_at(b, "Autodiscover/Response/Error/Message").is_some_and(|m| !m.is_empty()),
        "{b}"
    );
    assert!(!b.contains("Microsoft-Server-ActiveSync"), "{b}");
}

#[tokio::test]
async fn ios_mobilesync_request_gets_the_eas_url_that_then_works() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("adios");
    let url = format!("{}/autodiscover/autodiscover.xml", origin(&gw));

    // iOS asks without credentials first.
    let a = post_xml(&url, None, mobilesync_request(&user)).await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic "));

    let a = post_xml(&url, Some(&basic(&user, &pw)), mobilesync_request(&user)).await;
    // Without public_url: https:// plus the Host the phone asked.
    let eas_url = format!("{}/Microsoft-Server-ActiveSync", origin(&gw));
    assert_settings(&a, &user, &eas_url);

    // The answer is where EAS is served: OPTIONS with the same credentials.
    let r = client()
        .request(reqwest::Method::OPTIONS, &eas_url)
        .header("Authorization", basic(&user, &pw))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("ms-asprotocolversions"));

    // Path case varies between phones; a login without the domain is the same user.
    let local = user.split('@').next().unwrap();
    for path in [
        "/Autodiscover/Autodiscover.xml",
        "/AutoDiscover/AutoDiscover.xml",
        "/AUTODISCOVER/AUTODISCOVER.XML",
    ] {
        let url = format!("{}{path}", origin(&gw));
        let a = post_xml(&url, Some(&basic(local, &pw)), mobilesync_request(&user)).await;
        assert_settings(&a, &user, &eas_url);
    }
}

#[tokio::test]
async fn public_url_is_what_phones_are_told() {
    let (gw, _server) = start_gateway_server(GatewayOptions::default(), |c| {
        c.server.public_url = Some("https://mail.example.test".into());
    })
    .await;
    let (user, pw) = new_user("adpub");
    let url = format!("{}/autodiscover/autodiscover.xml", origin(&gw));
    let a = post_xml(&url, Some(&basic(&user, &pw)), mobilesync_request(&user)).await;
    assert_settings(
        &a,
        &user,
        "https://mail.example.test/Microsoft-Server-ActiveSync",
    );
    let a = get(
        &format!(
            "{}/autodiscover/autodiscover.json/v1.0/{user}?Protocol=ActiveSync",
            origin(&gw)
        ),
        None,
    )
    .await;
    assert_eq!(
        a.body,
        r#"{"Protocol":"ActiveSync","Url":"https://mail.example.test/Microsoft-Server-ActiveSync"}"#
    );
}

#[tokio::test]
async fn outlook_schema_request_gets_the_documented_error() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("adol");
    let url = format!("{}/autodiscover/autodiscover.xml", origin(&gw));
    let a = post_xml(&url, None, outlook_request(&user)).await;
    assert_eq!(a.status, 401);
    let a = post_xml(&url, Some(&basic(&user, &pw)), outlook_request(&user)).await;
    // 601: no provider for the requested response schema (MS-ASCMD 2.2.3.64).
    assert_error_code(&a, "601");
}

#[tokio::test]
async fn json_form_of_outlook_mobile_in_both_shapes() {
    let gw = start_gateway().await;
    let (user, _pw) = new_user("adjson");
    let o = origin(&gw);
    let want = format!(r#"{{"Protocol":"ActiveSync","Url":"{o}/Microsoft-Server-ActiveSync"}}"#);
    let escaped = user.replace('@', "%40");
    for url in [
        format!("{o}/autodiscover/autodiscover.json/v1.0/{user}?Protocol=ActiveSync"),
        format!("{o}/autodiscover/autodiscover.json/v1.0/{escaped}?Protocol=activesync"),
        format!("{o}/Autodiscover/Autodiscover.json?Email={escaped}&Protocol=ActiveSync&RedirectCount=1"),
    ] {
        // Outlook's cloud service asks without credentials; the answer names no user.
        let a = get(&url, None).await;
        assert_eq!(a.status, 200, "{url}: {}", a.body);
        assert!(a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        assert_eq!(a.body, want, "{url}");
    }
    let a = get(
        &format!("{o}/autodiscover/autodiscover.json/v1.0/{user}?Protocol=AutodiscoverV1"),
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body,
        format!(r#"{{"Protocol":"AutodiscoverV1","Url":"{o}/Autodiscover/Autodiscover.xml"}}"#)
    );
    // Another protocol: Exchange's 400 with InvalidProtocol.
    for (q, shown) in [("Protocol=Ews", "Ews"), ("Protocol=Rest", "Rest"), ("", "")] {
        let a = get(
            &format!("{o}/autodiscover/autodiscover.json/v1.0/{user}?{q}"),
            None,
        )
        .await;
        assert_eq!(a.status, 400, "{q}: {}", a.body);
        assert!(
            a.body.starts_with(&format!(
                r#"{{"ErrorCode":"InvalidProtocol","ErrorMessage":"The given protocol value '{shown}' is invalid."#
            )),
            "{q}: {}",
            a.body
        );
    }
    // A protocol value is never echoed unescaped.
    let a = get(
        &format!("{o}/autodiscover/autodiscover.json/v1.0/{user}?Protocol=%22%7D%3Cx%3E%5C"),
        None,
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains(r#"'\"}<x>\\'"#), "{}", a.body);
    let r = client()
        .post(format!(
            "{o}/autodiscover/autodiscover.json/v1.0/{user}?Protocol=ActiveSync"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn wrong_password_is_401_and_throttled_with_eas_logins() {
    let opts = GatewayOptions {
        auth: "max_failures_per_user = 3\nmax_failures_per_ip = 100",
        ..Default::default()
    };
    let gw = start_gateway_with(opts).await;
    let (user, pw) = new_user("adpw");
    let url = format!("{}/autodiscover/autodiscover.xml", origin(&gw));
    for _ in 0..3 {
        let a = post_xml(
            &url,
            Some(&basic(&user, "wrong")),
            mobilesync_request(&user),
        )
        .await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(a.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic "));
        assert!(!a.body.contains("MobileSync"));
    }
    // The same counters as EAS logins: even the right password now waits.
    let a = post_xml(&url, Some(&basic(&user, &pw)), mobilesync_request(&user)).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(a.headers.contains_key("retry-after"));
    let r = client()
        .request(reqwest::Method::OPTIONS, &gw.base)
        .header("Authorization", basic(&user, &pw))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn another_users_address_gets_an_error_not_their_settings() {
    let (alice, alice_pw) = new_user("adalice");
    let (bob, _) = new_user("adbob");
    let alias = format!("a.{}", alice);
    let alias_for_config = alias.clone();
    let alice_for_config = alice.clone();
    let (gw, _server) = start_gateway_server(GatewayOptions::default(), move |c| {
        c.identity
            .aliases
            .insert(alice_for_config, vec![alias_for_config]);
    })
    .await;
    let url = format!("{}/autodiscover/autodiscover.xml", origin(&gw));
    let a = post_xml(
        &url,
        Some(&basic(&alice, &alice_pw)),
        mobilesync_request(&bob),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let b = &a.body;
    // MS-ASCMD 4.2.2: Action/Error with Status 2, and nothing of bob's.
    assert_eq!(
        ns_at(b, "Autodiscover/Response").as_deref(),
        Some(MOBILESYNC_NS),
        "{b}"
    );
    assert_eq!(
        text_at(b, "Autodiscover/Response/Action/Error/Status").as_deref(),
        Some("2"),
        "{b}"
    );
    assert!(!b.contains(&bob), "{b}");
    assert!(!b.contains("Settings"), "{b}");
    assert!(!b.contains("Microsoft-Server-ActiveSync"), "{b}");

    // Her own address in another case, and her alias, are hers.
    let eas_url = format!("{}/Microsoft-Server-ActiveSync", origin(&gw));
    let a = post_xml(
        &url,
        Some(&basic(&alice, &alice_pw)),
        mobilesync_request(&alice.to_uppercase()),
    )
    .await;
    assert_settings(&a, &alice, &eas_url);
    let a = post_xml(
        &url,
        Some(&basic(&alice, &alice_pw)),
        mobilesync_request(&alias),
    )
    .await;
    assert_settings(&a, &alias, &eas_url);
}

#[tokio::test]
async fn malformed_requests_get_error_600_and_the_gateway_keeps_answering() {
    let gw = start_gateway_with(GatewayOptions {
        max_body_bytes: Some(64 * 1024),
        ..Default::default()
    })
    .await;
    let (user, pw) = new_user("admal");
    let auth = basic(&user, &pw);
    let url = format!("{}/autodiscover/autodiscover.xml", origin(&gw));
    let good = mobilesync_request(&user);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("not XML", b"hello, server".to_vec()),
        ("cut short", good.as_bytes()[..good.len() / 2].to_vec()),
        (
            "external entity",
            format!(
                "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\
                 <Autodiscover xmlns=\"{REQUEST_NS}\"><Request><EMailAddress>&x;</EMailAddress>\
                 <AcceptableResponseSchema>{MOBILESYNC_NS}</AcceptableResponseSchema>\
                 </Request></Autodiscover>"
            )
            .into_bytes(),
        ),
        (
            "undefined entity",
            good.replace(&user, "&nothing;").into_bytes(),
        ),
        (
            "wrong root",
            good.replace("<Autodiscover ", "<Discover ")
                .replace("</Autodiscover>", "</Discover>")
                .into_bytes(),
        ),
        (
            "no address",
            good.replace(&format!("<EMailAddress>{user}</EMailAddress>"), "")
                .into_bytes(),
        ),
        (
            "no schema",
            good.replace(
                &format!("<AcceptableResponseSchema>{MOBILESYNC_NS}</AcceptableResponseSchema>"),
                "",
            )
            .into_bytes(),
        ),
        (
            "two requests",
            good.replace(
                "</Request>",
                &format!(
                    "</Request><Request><EMailAddress>{user}</EMailAddress>\
                     <AcceptableResponseSchema>{MOBILESYNC_NS}</AcceptableResponseSchema></Request>"
                ),
            )
            .into_bytes(),
        ),
        (
            "mismatched tags",
            good.replace("</Request>", "</Requests>").into_bytes(),
        ),
        ("not UTF-8", {
            let mut b = good.clone().into_bytes();
            let i = b.iter().position(|&c| c == b'@').unwrap();
            b[i] = 0xFF;
            b
        }),
        ("deep nesting", "<a>".repeat(20_000).into_bytes()),
    ];
    for (what, body) in bodies {
        let a = post_xml(&url, Some(&auth), body).await;
        assert_error_code(&a, "600");
        assert!(!a.body.contains("root:"), "{what}: {}", a.body);
    }
    // Larger than an autodiscover request can be: refused before parsing.
    let big = format!("{}<!--{}-->", good, "x".repeat(128 * 1024));
    let a = post_xml(&url, Some(&auth), big).await;
    assert_eq!(a.status, 413);
    // A GET probe: authenticated like a POST, answered with the invalid-request error.
    let a = get(&url, None).await;
    assert_eq!(a.status, 401);
    let a = get(&url, Some(&auth)).await;
    assert_error_code(&a, "600");
    // And the gateway still answers a good request.
    let a = post_xml(&url, Some(&auth), good.clone()).await;
    assert_settings(
        &a,
        &user,
        &format!("{}/Microsoft-Server-ActiveSync", origin(&gw)),
    );
}
