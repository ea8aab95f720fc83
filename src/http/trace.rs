//! The wire trace of one device, on demand (`eas-gateway devices trace USER DEVICE on`).
//!
//! The flag lives on the device record that every request reads anyway (`touch_device`), so a
//! device nobody traces costs nothing more. A traced device's requests and responses are
//! decoded from WBXML to XML and appended to one file per device under `devices.trace_dir`.
//! Credentials are never written: the `Authorization` header is not part of a trace at all,
//! and every password element (Settings `Password` and `DevicePassword`, Search and
//! ItemOperations `Password`) is replaced by `[redacted]`. Unless the trace was turned on with
//! `--bodies`, mail content is redacted too: AirSyncBase `Body`, `Data` and `Preview`,
//! ItemOperations `Data` (attachments, whole messages), ComposeMail `Mime`, pictures, and the
//! MIME body of a 12.x SendMail/SmartReply/SmartForward; a redacted element keeps its size.
//! Other binary responses (GetAttachment, multipart ItemOperations) are noted by type only.
//!
//! A file that would grow past `devices.trace_max_bytes` is moved to `<file>.1` (replacing
//! an older one) and begun anew, so a device's trace takes at most twice that on disk.
//! Files and the directory are created readable by the gateway's user only.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use bytes::Bytes;
use hyper::header::CONTENT_TYPE;
use hyper::Response;

use super::response::Body;
use crate::config::DevicesConfig;
use crate::eas::{Command, ProtocolVersion};
use crate::state::Device;
use crate::wbxml::{self, xml, Element, Limits, Node};

/// Elements that hold credentials: always redacted.
const SECRET: &[&str] = &["Password", "DevicePassword"];
/// Elements that hold mail content: redacted unless bodies are traced.
const CONTENT: &[&str] = &["Body", "Data", "Preview", "Mime", "Picture", "BodyPart"];

/// Serialises the writes (and rotations) of all trace files of this process.
static WRITE: Mutex<()> = Mutex::new(());

/// One traced request, its request part already rendered.
pub(super) struct Trace {
    path: PathBuf,
    max_bytes: u64,
    bodies: bool,
    text: String,
}

impl Trace {
    /// Starts the trace of a request when its device is traced.
    pub(super) fn begin(
        config: &DevicesConfig,
        device: &Device,
        command: Command,
        version: ProtocolVersion,
        content_type: Option<&str>,
        body: &Bytes,
    ) -> Option<Trace> {
        let bodies = match device.trace.as_str() {
            "on" => false,
            "bodies" => true,
            _ => return None,
        };
        let mut text = format!(
            "=== {} request {} user={} device={} type={} version={} ({} bytes{})\n",
            jiff::Timestamp::now(),
            command.name(),
            device.user,
            device.device_id,
            device.device_type,
            version.as_str(),
            body.len(),
            content_type.map(|c| format!(", {c}")).unwrap_or_default(),
        );
        text.push_str(&render(content_type, body, bodies));
        Some(Trace {
            path: file_of(config, device),
            max_bytes: config.trace_max_bytes,
            bodies,
            text,
        })
    }

    /// Adds the response (`wbxml`: its encoded body, when it is WBXML) and writes the entry,
    /// on a blocking thread of its own.
    pub(super) fn finish(mut self, resp: &Response<Body>, wbxml: Option<&Bytes>) {
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.text.push_str(&format!(
            "=== {} response {}{}\n",
            jiff::Timestamp::now(),
            resp.status().as_u16(),
            content_type
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
        ));
        match wbxml {
            Some(bytes) => self.text.push_str(&render(
                Some("application/vnd.ms-sync.wbxml"),
                bytes,
                self.bodies,
            )),
            None if content_type.is_some() => self.text.push_str("[content not shown]\n"),
            None => {}
        }
        self.text.push('\n');
        tokio::task::spawn_blocking(move || {
            if let Err(e) = self.write() {
                tracing::warn!(error = %e, path = %self.path.display(), "trace not written");
            }
        });
    }

    fn write(&self) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let _guard = WRITE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = self.path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if len > 0 && len + self.text.len() as u64 > self.max_bytes {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            std::fs::rename(&self.path, rotated)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?
            .write_all(self.text.as_bytes())
    }
}

/// The trace file of a device: `<trace_dir>/<user>_<device id>.trace`, with every character
/// other than letters, digits, `@`, `.`, `-` and `_` replaced by `_`.
pub fn file_of(config: &DevicesConfig, device: &Device) -> PathBuf {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    config.trace_dir.join(format!(
        "{}_{}.trace",
        clean(&device.user),
        clean(&device.device_id)
    ))
}

/// A request or response body as trace text.
fn render(content_type: Option<&str>, body: &Bytes, bodies: bool) -> String {
    if body.is_empty() {
        return String::new();
    }
    let media = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match media.as_str() {
        "application/vnd.ms-sync.wbxml" | "application/vnd.ms-sync" => {
            match wbxml::decode(body.clone(), &Limits::default()) {
                Ok(mut root) => {
                    redact(&mut root, bodies);
                    let mut s = xml::to_xml(&root);
                    if !s.ends_with('\n') {
                        s.push('\n');
                    }
                    s
                }
                Err(e) => format!("[WBXML that does not decode: {e}]\n"),
            }
        }
        "message/rfc822" if bodies => {
            let mut s = String::from_utf8_lossy(body).into_owned();
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s
        }
        "message/rfc822" => format!("[MIME message redacted: {} bytes]\n", body.len()),
        _ => format!("[{} bytes not shown]\n", body.len()),
    }
}

/// Replaces the text and binary content of secret (always) and content (unless `bodies`)
/// elements by a note of its size.
fn redact(el: &mut Element, bodies: bool) {
    let name = el.tag.name().unwrap_or("");
    let secret = SECRET.contains(&name);
    let hide = secret || (!bodies && CONTENT.contains(&name));
    for child in &mut el.children {
        match child {
            Node::Element(e) => redact(e, bodies),
            Node::Text(_) | Node::Opaque(_) | Node::Encoded(_) if hide => {
                *child = Node::Text(if secret {
                    "[redacted]".to_string()
                } else {
                    format!("[redacted: {} bytes]", node_len(child))
                });
            }
            _ => {}
        }
    }
}

fn node_len(node: &Node) -> usize {
    match node {
        Node::Text(t) => t.len(),
        Node::Opaque(b) => b.len(),
        Node::Encoded(_) | Node::Element(_) => 0,
    }
}
