//! Ping (MS-ASCMD 2.2.1.13): the typed request and response of the push command.

use crate::wbxml::tags::ping as p;
use crate::wbxml::Element;

use super::ParseError;

/// Ping status values (MS-ASCMD 2.2.3.177.12).
pub mod status {
    /// The heartbeat interval expired with no change.
    pub const EXPIRED: u32 = 1;
    /// Changes in the listed folders.
    pub const CHANGES: u32 = 2;
    /// The request lacks parameters and none are cached for the device.
    pub const MISSING_PARAMETERS: u32 = 3;
    /// Syntax error in the request.
    pub const SYNTAX_ERROR: u32 = 4;
    /// HeartbeatInterval out of range; the answer names the allowed bound.
    pub const HEARTBEAT_OUT_OF_RANGE: u32 = 5;
    /// Too many folders; the answer names MaxFolders.
    pub const TOO_MANY_FOLDERS: u32 = 6;
    /// The folder hierarchy must be synced again.
    pub const FOLDER_SYNC_REQUIRED: u32 = 7;
    pub const SERVER_ERROR: u32 = 8;
}

/// One folder to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingFolder {
    pub id: String,
    /// `Email`, `Calendar`, `Contacts`, `Tasks`, `Notes` (as sent).
    pub class: String,
}

/// A Ping request; both parts are optional (the device's last values are used for a missing
/// part, and an empty body reuses both).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PingRequest {
    pub heartbeat_interval: Option<u32>,
    /// `None` when the request has no Folders element.
    pub folders: Option<Vec<PingFolder>>,
}

impl PingRequest {
    pub fn from_element(root: &Element) -> Result<PingRequest, ParseError> {
        let err = |reason: &str| ParseError::new("Ping", reason);
        if root.tag != p::PING {
            return Err(err("root element is not Ping"));
        }
        let heartbeat_interval = match root.first(p::HEARTBEAT_INTERVAL) {
            None => None,
            // A number out of u32 (a negative one too) is out of range, not a syntax error:
            // it is answered with the bound (Status 5).
            Some(e) => Some(
                e.text()
                    .map(str::trim)
                    .and_then(|t| t.parse::<i128>().ok())
                    .map(|n| n.clamp(0, i128::from(u32::MAX)) as u32)
                    .ok_or_else(|| err("HeartbeatInterval is not a number"))?,
            ),
        };
        let folders = match root.first(p::FOLDERS) {
            None => None,
            Some(fs) => {
                let mut out = Vec::new();
                for f in fs.all(p::FOLDER) {
                    let id = f
                        .text_of(p::ID)
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| err("Folder without Id"))?;
                    let class = f
                        .text_of(p::CLASS)
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| err("Folder without Class"))?;
                    out.push(PingFolder {
                        id: id.to_string(),
                        class: class.to_string(),
                    });
                }
                if out.is_empty() {
                    return Err(err("Folders without Folder"));
                }
                Some(out)
            }
        };
        // A Ping document with neither part is malformed (Status 4, Interop MSASCMD_S11_TC02);
        // reusing the last Ping's parameters is asked for with no body at all.
        if heartbeat_interval.is_none() && folders.is_none() {
            return Err(err("Ping without HeartbeatInterval and Folders"));
        }
        Ok(PingRequest {
            heartbeat_interval,
            folders,
        })
    }
}

/// A Ping response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingResponse {
    pub status: u32,
    /// Changed folder ids (Status 2).
    pub folders: Vec<String>,
    /// The allowed bound (Status 5).
    pub heartbeat_interval: Option<u32>,
    /// The allowed number of folders (Status 6).
    pub max_folders: Option<u32>,
}

impl PingResponse {
    pub fn status(status: u32) -> PingResponse {
        PingResponse {
            status,
            folders: Vec::new(),
            heartbeat_interval: None,
            max_folders: None,
        }
    }

    pub fn changes(folders: Vec<String>) -> PingResponse {
        PingResponse {
            folders,
            ..PingResponse::status(status::CHANGES)
        }
    }

    pub fn to_element(&self) -> Element {
        let mut root = Element::new(p::PING).text_child(p::STATUS, self.status.to_string());
        if !self.folders.is_empty() {
            let mut fs = Element::new(p::FOLDERS);
            for id in &self.folders {
                fs.push(Element::with_text(p::FOLDER, id.clone()));
            }
            root.push(fs);
        }
        if let Some(h) = self.heartbeat_interval {
            root.push(Element::with_text(p::HEARTBEAT_INTERVAL, h.to_string()));
        }
        if let Some(m) = self.max_folders {
            root.push(Element::with_text(p::MAX_FOLDERS, m.to_string()));
        }
        root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(id: &str, class: &str) -> Element {
        Element::new(p::FOLDER)
            .text_child(p::ID, id)
            .text_child(p::CLASS, class)
    }

    #[test]
    fn parses_interval_and_folders() {
        let e = Element::new(p::PING)
            .text_child(p::HEARTBEAT_INTERVAL, " 480 ")
            .child(
                Element::new(p::FOLDERS)
                    .child(folder("5", "Email"))
                    .child(folder("7", "Email")),
            );
        let r = PingRequest::from_element(&e).unwrap();
        assert_eq!(r.heartbeat_interval, Some(480));
        let f = r.folders.unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].id, "7");
        assert_eq!(f[1].class, "Email");
    }

    #[test]
    fn one_part_may_be_missing() {
        let e = Element::new(p::PING).text_child(p::HEARTBEAT_INTERVAL, "60");
        assert_eq!(
            PingRequest::from_element(&e).unwrap().heartbeat_interval,
            Some(60)
        );
    }

    #[test]
    fn negative_heartbeat_is_out_of_range_not_malformed() {
        for (sent, got) in [("-5", 0), ("-99999999999", 0), ("99999999999", u32::MAX)] {
            let e = Element::new(p::PING).text_child(p::HEARTBEAT_INTERVAL, sent);
            assert_eq!(
                PingRequest::from_element(&e).unwrap().heartbeat_interval,
                Some(got)
            );
        }
    }

    #[test]
    fn malformed_requests_are_errors() {
        let bad = [
            Element::new(p::FOLDERS),
            Element::new(p::PING),
            Element::new(p::PING).text_child(p::HEARTBEAT_INTERVAL, "soon"),
            Element::new(p::PING).child(Element::new(p::FOLDERS)),
            Element::new(p::PING).child(
                Element::new(p::FOLDERS).child(Element::new(p::FOLDER).text_child(p::ID, "1")),
            ),
            Element::new(p::PING).child(
                Element::new(p::FOLDERS)
                    .child(Element::new(p::FOLDER).text_child(p::CLASS, "Email")),
            ),
        ];
        for e in &bad {
            assert!(PingRequest::from_element(e).is_err(), "{e:?}");
        }
    }

    #[test]
    fn responses_carry_what_the_status_needs() {
        let e = PingResponse::changes(vec!["5".into(), "9".into()]).to_element();
        assert_eq!(e.text_of(p::STATUS), Some("2"));
        let ids: Vec<_> = e
            .first(p::FOLDERS)
            .unwrap()
            .all(p::FOLDER)
            .filter_map(|f| f.text())
            .collect();
        assert_eq!(ids, ["5", "9"]);

        let mut r = PingResponse::status(status::HEARTBEAT_OUT_OF_RANGE);
        r.heartbeat_interval = Some(60);
        let e = r.to_element();
        assert_eq!(e.text_of(p::HEARTBEAT_INTERVAL), Some("60"));
        assert!(e.first(p::FOLDERS).is_none());

        let mut r = PingResponse::status(status::TOO_MANY_FOLDERS);
        r.max_folders = Some(300);
        assert_eq!(r.to_element().text_of(p::MAX_FOLDERS), Some("300"));
        assert_eq!(
            PingResponse::status(status::EXPIRED)
                .to_element()
                .elements()
                .count(),
            1
        );
    }
}
