//! Large attachments against the real dev Dovecot: ItemOperations (inline and multipart, whole
//! and by byte range) and GetAttachment answer exactly the bytes of the IMAP part, read part by
//! part, and leave the mail unread.

mod common;

use base64::Engine;
use common::*;
use eas_gateway::eas::item_operations::multipart;
use eas_gateway::eas::query::{encode_base64, RequestLine};
use eas_gateway::eas::ProtocolVersion;
use eas_gateway::wbxml::tags::{airsyncbase as b, item_operations as io};
use eas_gateway::wbxml::{self, Element, Limits};

/// Size of the large attachment: over 40 chunks of IMAP fetches.
const BIG: usize = 40 * 1024 * 1024 + 12_345;

const BODY_TEXT: &str = "Body text of the large mail, marker 51c2.";

/// Deterministic bytes that do not compress (xorshift).
fn big_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(BIG + 8);
    while out.len() < BIG {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(BIG);
    out
}

fn wrapped_base64(data: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(b64.len() + b64.len() / 38);
    for line in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push_str("\r\n");
    }
    out
}

/// Nested structure: alternative text/html body, an inline image (attachment 0), the large
/// file (attachment 1), a quoted-printable text file (attachment 2), an attached mail
/// (attachment 3).
fn big_mail(big: &[u8]) -> String {
    let png: Vec<u8> = (0..300u32).map(|i| (i * 13 % 256) as u8).collect();
    format!(
        "From: Sender <sender@example.org>\r\nTo: someone@example.test\r\nSubject: Large\r\n\
         Message-ID: <big-{:016x}@example.org>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{BODY_TEXT}\r\n\
         --alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>{BODY_TEXT}</p>\r\n\
         --alt--\r\n\
         --outer\r\nContent-Type: image/png; name=\"i.png\"\r\nContent-ID: <img1>\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\
         --outer\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\n\
         Content-Disposition: attachment; filename=\"big.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\
         --outer\r\nContent-Type: text/plain; charset=iso-8859-1; name=\"notes.txt\"\r\n\
         Content-Disposition: attachment; filename=\"notes.txt\"\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\nM=FCller =3D 1\r\nsecond line=\r\n joined\r\n\
         --outer\r\nContent-Type: message/rfc822\r\n\r\n\
         From: a@example.org\r\nSubject: Inner\r\n\r\nInner body\r\n\
         --outer--\r\n",
        rand::random::<u64>(),
        wrapped_base64(&png),
        wrapped_base64(big),
    )
}

fn last_uid(transcript: &str) -> u32 {
    transcript
        .lines()
        .find(|l| l.starts_with("* SEARCH"))
        .and_then(|l| {
            l.split_whitespace()
                .skip(2)
                .filter_map(|u| u.parse().ok())
                .max()
        })
        .expect("a UID")
}

async fn seen(user: &str, pw: &str, uid: u32) -> bool {
    let t = imap(
        user,
        pw,
        &["SELECT INBOX", &format!("UID FETCH {uid} (FLAGS)")],
    )
    .await;
    t.lines()
        .find(|l| l.contains("FETCH ("))
        .unwrap_or_else(|| panic!("{t}"))
        .contains("\\Seen")
}

fn request(ops: Vec<Element>) -> Element {
    let mut root = Element::new(io::ITEM_OPERATIONS);
    for op in ops {
        root.push(op);
    }
    root
}

/// Posts ItemOperations and returns the HTTP status, the headers and the raw body.
async fn post(
    dev: &TestDevice,
    url: &str,
    body: &Element,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = dev
        .client
        .post(url)
        .header("Authorization", dev.auth())
        .header("Content-Type", "application/vnd.ms-sync.wbxml")
        .body(wbxml::encode(body));
    if let Some(k) = dev.policy_key {
        req = req.header("X-MS-PolicyKey", k.to_string());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let raw = resp.bytes().await.expect("whole body").to_vec();
    (status, headers, raw)
}

fn decode(raw: &[u8]) -> Element {
    let limits = Limits {
        max_body_bytes: 256 << 20,
        max_string_bytes: 128 << 20,
        ..Limits::default()
    };
    wbxml::decode(raw.to_vec().into(), &limits).expect("WBXML")
}

#[tokio::test]
async fn large_attachment_inline_ranges_and_multipart() {
    let gw = start_gateway().await;
    let (dev, user, pw) = provisioned(&gw, "bigatt", "16.1").await;
    let big = big_bytes();
    let raw = big_mail(&big);
    append(&user, &pw, "INBOX", &raw, None).await;
    let uid = last_uid(&imap(&user, &pw, &["SELECT INBOX", "UID SEARCH ALL"]).await);
    let inbox = folder_id(&dev, "Inbox").await;
    let reference = |i: usize| format!("{inbox}:{uid}:{i}");
    let url = format!("{}?{}", dev.base, dev.query("ItemOperations"));
    let v = [("MS-ASProtocolVersion", "16.1")];

    // Every attachment equals what the whole-mail conversion gives for it.
    let mut expected = Vec::new();
    for i in 0..4 {
        let att = eas_gateway::mime::attachment(raw.as_bytes(), i).expect("attachment");
        expected.push(att);
    }
    assert!(eas_gateway::mime::attachment(raw.as_bytes(), 4).is_none());
    assert_eq!(expected[1].data, big);

    // Inline, whole: the large one and the small ones in one request.
    let ops = (0..4).map(|i| fetch_file(&reference(i), None)).collect();
    let (status, headers, body) = post(&dev, &url, &request(ops), &v).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/vnd.ms-sync.wbxml"
    );
    let resp = decode(&body);
    let r = io_results(&resp);
    assert_eq!(r.len(), 4);
    for (i, f) in r.iter().enumerate() {
        assert_eq!(f.text_of(io::STATUS), Some("1"), "attachment {i}");
        let props = f.first(io::PROPERTIES).unwrap();
        assert_eq!(
            props.text_of(b::CONTENT_TYPE),
            Some(expected[i].content_type.as_str())
        );
        assert_eq!(
            props.text_of(io::TOTAL),
            Some(expected[i].data.len().to_string().as_str())
        );
        assert!(io_data(f) == expected[i].data, "bytes of attachment {i}");
    }
    drop(resp);

    // Ranges across IMAP chunk boundaries, and one cut at the end.
    let len = big.len();
    let ranges = [
        (0usize, 1_048_575usize),
        (1_048_570, 3_145_727),
        (len - 10, len + 100),
        (5, 5),
    ];
    let ops = ranges
        .iter()
        .map(|(f, l)| fetch_file(&reference(1), Some(&format!("{f}-{l}"))))
        .chain([fetch_file(
            &reference(1),
            Some(&format!("{len}-{}", len + 1)),
        )])
        .collect();
    let (_, _, body) = post(&dev, &url, &request(ops), &v).await;
    let resp = decode(&body);
    let r = io_results(&resp);
    for (i, (f, l)) in ranges.iter().enumerate() {
        let last = (*l).min(len - 1);
        assert_eq!(r[i].text_of(io::STATUS), Some("1"));
        let props = r[i].first(io::PROPERTIES).unwrap();
        assert_eq!(
            props.text_of(io::RANGE),
            Some(format!("{f}-{last}").as_str())
        );
        assert_eq!(props.text_of(io::TOTAL), Some(len.to_string().as_str()));
        assert!(io_data(r[i]) == big[*f..=last], "range {f}-{l}");
    }
    assert_eq!(r[4].text_of(io::STATUS), Some("8"), "range past the end");

    // Multipart (MS-ASAcceptMultiPart: T): the mail's body, the large file and a range.
    let ops = vec![
        fetch_mail(&inbox, &format!("{inbox}:{uid}")),
        fetch_file(&reference(1), None),
        fetch_file(&reference(3), None),
        fetch_file(&reference(1), Some("100-199")),
    ];
    let headers = [
        ("MS-ASProtocolVersion", "16.1"),
        ("MS-ASAcceptMultiPart", "T"),
    ];
    let (status, h, body) = post(&dev, &url, &request(ops), &headers).await;
    assert_eq!(status, 200);
    assert_eq!(h.get("content-type").unwrap(), multipart::CONTENT_TYPE);
    assert_eq!(
        h.get("content-length").unwrap().to_str().unwrap(),
        body.len().to_string()
    );
    check_multipart(&body, &big, &expected[3].data);

    // The same through the base64 query form's AcceptMultiPart option.
    let line = RequestLine {
        device_id: dev.device_id.clone(),
        device_type: dev.device_type.clone(),
        user: Some(user.clone()),
        policy_key: dev.policy_key,
        accept_multipart: true,
        ..RequestLine::default()
    };
    let b64_url = format!(
        "{}?{}",
        dev.base,
        encode_base64(&line, ProtocolVersion::V16_1, 19)
    );
    let ops = vec![
        fetch_mail(&inbox, &format!("{inbox}:{uid}")),
        fetch_file(&reference(1), None),
        fetch_file(&reference(3), None),
        fetch_file(&reference(1), Some("100-199")),
    ];
    let (status, h, body) = post(&dev, &b64_url, &request(ops), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(h.get("content-type").unwrap(), multipart::CONTENT_TYPE);
    check_multipart(&body, &big, &expected[3].data);

    assert!(!seen(&user, &pw, uid).await, "reading marked the mail read");
}

/// Checks the MultiPartResponse layout byte by byte (MS-ASCMD 2.2.1.10.1.1) and the parts.
fn check_multipart(body: &[u8], big: &[u8], attached_mail: &[u8]) {
    let int = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().unwrap()) as usize;
    let count = int(0);
    assert_eq!(
        count, 5,
        "WBXML, mail body, large file, attached mail, range"
    );
    // Parts follow the metadata back to back, in order.
    let mut expect_offset = 4 + 8 * count;
    for i in 0..count {
        assert_eq!(int(4 + 8 * i), expect_offset, "offset of part {i}");
        expect_offset += int(8 + 8 * i);
    }
    assert_eq!(expect_offset, body.len());
    let parts = multipart::split(body).expect("parts");
    let resp = decode(parts[0]);
    let r = io_results(&resp);
    // Part indexes replace Data: the mail body in airsyncbase:Body, attachments in Properties.
    let props = r[0].first(io::PROPERTIES).unwrap();
    let body_el = props.first(b::BODY).expect("Body");
    assert!(body_el.first(b::DATA).is_none());
    let p = |s: Option<&str>| s.expect("Part").parse::<usize>().unwrap();
    let body_part = p(body_el.text_of(io::PART));
    assert!(String::from_utf8_lossy(parts[body_part]).contains(BODY_TEXT));
    for (fetch, want) in [(r[1], big), (r[2], attached_mail), (r[3], &big[100..200])] {
        let props = fetch.first(io::PROPERTIES).unwrap();
        assert!(props.first(io::DATA).is_none());
        let n = p(props.text_of(io::PART));
        assert!(parts[n] == want, "part {n}");
    }
    assert_eq!(
        r[3].first(io::PROPERTIES).unwrap().text_of(io::RANGE),
        Some("100-199")
    );
}

#[tokio::test]
async fn get_attachment_streams_the_large_part() {
    let gw = start_gateway().await;
    let (dev, user, pw) = provisioned(&gw, "bigget", "12.1").await;
    let big = big_bytes();
    append(&user, &pw, "INBOX", &big_mail(&big), None).await;
    let uid = last_uid(&imap(&user, &pw, &["SELECT INBOX", "UID SEARCH ALL"]).await);
    let inbox = folder_id(&dev, "Inbox").await;
    let resp = dev.get_attachment(&format!("{inbox}:{uid}:1")).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/octet-stream"
    );
    assert_eq!(
        resp.headers()
            .get("content-length")
            .unwrap()
            .to_str()
            .unwrap(),
        big.len().to_string()
    );
    let got = resp.bytes().await.expect("whole body");
    assert!(got[..] == big[..], "GetAttachment bytes");

    // An index the mail does not have.
    let missing = dev.get_attachment(&format!("{inbox}:{uid}:9")).await;
    assert_eq!(missing.status().as_u16(), 404);
    assert!(
        !seen(&user, &pw, uid).await,
        "GetAttachment marked the mail read"
    );
}
