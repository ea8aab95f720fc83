//! The folder hierarchy: NAMESPACE (RFC 2342), LIST with SPECIAL-USE (RFC 6154) and STATUS,
//! as one LIST-STATUS (RFC 5819) when the server has it, else pipelined STATUS commands.
//! Folder identities survive renames where the server allows (X-GUID, MAILBOXID RFC 8474).

use std::collections::HashMap;

use super::command::{classify, Command, Completed, Phase};
use super::parse::{
    parse_list, parse_namespace, parse_status, ListEntry, Namespaces, Status, StatusEntry,
};
use super::ImapSession;
use crate::backend::{utf7, BackendError, MailFolder, SpecialUse};

impl ImapSession {
    /// The namespaces (RFC 2342), fetched once; empty classes without NAMESPACE.
    pub async fn namespaces(&mut self) -> Result<&Namespaces, BackendError> {
        if self.namespaces.is_none() {
            let ns = if self.has_capability("NAMESPACE") {
                let c = self.conn.run_ok(&Command::new("NAMESPACE")).await?;
                let parsed = c.data("NAMESPACE").next().and_then(parse_namespace);
                parsed.ok_or_else(|| {
                    BackendError::Protocol("NAMESPACE: malformed reply".to_string())
                })?
            } else {
                Namespaces::default()
            };
            self.namespaces = Some(ns);
        }
        Ok(self.namespaces.get_or_insert_with(Namespaces::default))
    }

    fn status_items(&self) -> Vec<&'static str> {
        let mut items = vec!["UIDVALIDITY"];
        if self.xguid != Some(false) {
            items.push("X-GUID");
        }
        if self.has_capability("OBJECTID") {
            items.push("MAILBOXID");
        }
        items
    }

    /// LIST "" "*" with STATUS data for each selectable mailbox, in the fewest
    /// round trips the server allows.
    pub(super) async fn list_with_status(
        &mut self,
    ) -> Result<(Vec<ListEntry>, HashMap<String, StatusEntry>), BackendError> {
        let special = self.has_capability("SPECIAL-USE");
        if self.has_capability("LIST-STATUS") {
            // One round trip: LIST ... RETURN (SPECIAL-USE STATUS (...)).
            // A BAD most likely means X-GUID is unknown: retry without it once.
            for _ in 0..2 {
                let items = self.status_items();
                let ret = if special {
                    format!(" RETURN (SPECIAL-USE STATUS ({}))", items.join(" "))
                } else {
                    format!(" RETURN (STATUS ({}))", items.join(" "))
                };
                let cmd = Command::new("LIST").raw(" \"\" \"*\"").raw(&ret);
                let c = self.conn.run(&cmd).await?;
                match c.done.status {
                    Status::Ok => {
                        if items.contains(&"X-GUID") {
                            self.xguid = Some(true);
                        }
                        return Ok(collect_list(&c));
                    }
                    Status::Bad if items.contains(&"X-GUID") => self.xguid = Some(false),
                    Status::Bad => break,
                    _ => return Err(classify(&c.done, Phase::Command, "LIST")),
                }
            }
        }
        let mut cmd = Command::new("LIST").raw(" \"\" \"*\"");
        if special {
            cmd = cmd.raw(" RETURN (SPECIAL-USE)");
        }
        let listed = self.conn.run_ok(&cmd).await?;
        let (entries, _) = collect_list(&listed);
        let mut statuses = HashMap::new();
        let selectable: Vec<&ListEntry> = entries.iter().filter(|e| is_selectable(e)).collect();
        for _ in 0..2 {
            let items = self.status_items();
            let cmds: Vec<Command> = selectable
                .iter()
                .map(|e| {
                    Command::new("STATUS")
                        .astring(&e.name)
                        .raw(&format!(" ({})", items.join(" ")))
                })
                .collect();
            let results = self.conn.pipeline(&cmds).await?;
            let all_bad =
                !results.is_empty() && results.iter().all(|r| r.done.status == Status::Bad);
            if all_bad && items.contains(&"X-GUID") {
                self.xguid = Some(false);
                continue;
            }
            if items.contains(&"X-GUID") && results.iter().any(|r| r.done.status == Status::Ok) {
                self.xguid = Some(true);
            }
            for r in &results {
                for s in r.data("STATUS").filter_map(parse_status) {
                    statuses.insert(status_key(&s.mailbox), s);
                }
            }
            break;
        }
        Ok((entries, statuses))
    }
}

/// STATUS replies are matched to LIST entries by raw name; INBOX is case-insensitive.
fn status_key(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        name.to_string()
    }
}

fn collect_list(c: &Completed) -> (Vec<ListEntry>, HashMap<String, StatusEntry>) {
    let entries = c.data("LIST").filter_map(parse_list).collect();
    let statuses = c
        .data("STATUS")
        .filter_map(parse_status)
        .map(|s| (status_key(&s.mailbox), s))
        .collect();
    (entries, statuses)
}

fn is_selectable(e: &ListEntry) -> bool {
    !(e.has_attribute("\\Noselect") || e.has_attribute("\\NonExistent"))
}

fn special_use_from_attributes(e: &ListEntry) -> Option<SpecialUse> {
    e.attributes.iter().find_map(|a| {
        let a = a.to_ascii_lowercase();
        Some(match a.as_str() {
            "\\drafts" => SpecialUse::Drafts,
            "\\sent" => SpecialUse::Sent,
            "\\trash" => SpecialUse::Trash,
            "\\junk" => SpecialUse::Junk,
            "\\archive" => SpecialUse::Archive,
            "\\all" => SpecialUse::All,
            "\\flagged" => SpecialUse::Flagged,
            _ => return None,
        })
    })
}

/// Common names for roles, in order of preference (compared case-insensitively
/// with the decoded leaf of a top-level mailbox).
const NAME_HEURISTICS: &[(SpecialUse, &[&str])] = &[
    (SpecialUse::Drafts, &["Drafts", "Draft"]),
    (
        SpecialUse::Sent,
        &["Sent", "Sent Items", "Sent Messages", "Sent Mail"],
    ),
    (
        SpecialUse::Trash,
        &["Trash", "Deleted Items", "Deleted Messages"],
    ),
    (
        SpecialUse::Junk,
        &["Junk", "Spam", "Junk E-mail", "Junk Email"],
    ),
    (SpecialUse::Archive, &["Archive", "Archives"]),
];

/// Build folders from LIST/STATUS data. Mailboxes under other users' or
/// shared namespace prefixes are left out.
pub fn build_folders(
    entries: &[ListEntry],
    statuses: &HashMap<String, StatusEntry>,
    namespaces: &Namespaces,
) -> Vec<MailFolder> {
    let mut folders: Vec<MailFolder> = entries
        .iter()
        .filter(|e| !in_foreign_namespace(&e.name, namespaces))
        .map(|e| folder_of(e, statuses))
        .collect();
    // Deterministic order (servers' LIST order varies): INBOX first, then by
    // raw name, which puts every parent before its children.
    folders.sort_by(|a, b| {
        let a_inbox = a.special_use == Some(SpecialUse::Inbox);
        let b_inbox = b.special_use == Some(SpecialUse::Inbox);
        b_inbox.cmp(&a_inbox).then_with(|| a.name.cmp(&b.name))
    });
    assign_roles_by_name(&mut folders, namespaces);
    folders
}

/// Whether `name` is under another user's or a shared namespace prefix (or is the prefix
/// itself without its delimiter).
fn in_foreign_namespace(name: &str, namespaces: &Namespaces) -> bool {
    namespaces
        .other_users
        .iter()
        .chain(&namespaces.shared)
        .map(|n| n.prefix.as_str())
        .filter(|p| !p.is_empty())
        .any(|p| {
            name.starts_with(p)
                || p.strip_suffix(|c: char| !c.is_alphanumeric())
                    .is_some_and(|stem| name == stem)
        })
}

/// One LIST entry as a folder, its identity from its STATUS data.
fn folder_of(e: &ListEntry, statuses: &HashMap<String, StatusEntry>) -> MailFolder {
    let is_inbox = e.name.eq_ignore_ascii_case("INBOX");
    let (parent, leaf) = match e.delimiter.and_then(|d| e.name.rsplit_once(d)) {
        Some((p, l)) if !p.is_empty() => (Some(p.to_string()), l),
        Some((_, l)) => (None, l),
        None => (None, e.name.as_str()),
    };
    let selectable = is_selectable(e);
    let identity = if !selectable {
        format!("name:{}", e.name)
    } else {
        match statuses.get(&status_key(&e.name)) {
            Some(s) => identity_from_status(&e.name, s),
            None => format!("name:{}", e.name),
        }
    };
    MailFolder {
        name: e.name.clone(),
        display_name: utf7::decode_lossy(leaf),
        parent,
        delimiter: e.delimiter,
        special_use: if is_inbox {
            Some(SpecialUse::Inbox)
        } else {
            special_use_from_attributes(e)
        },
        selectable,
        identity,
    }
}

/// Gives each role no folder has by its attributes to the first top-level folder with one
/// of its common names ([`NAME_HEURISTICS`]).
fn assign_roles_by_name(folders: &mut [MailFolder], namespaces: &Namespaces) {
    // Personal prefixes like "INBOX." put top-level folders under INBOX.
    let personal_parents: Vec<String> = namespaces
        .personal
        .iter()
        .filter_map(|n| {
            let d = n.delimiter?;
            n.prefix.strip_suffix(d).map(str::to_string)
        })
        .filter(|p| !p.is_empty())
        .collect();
    for (role, names) in NAME_HEURISTICS {
        if folders.iter().any(|f| f.special_use == Some(*role)) {
            continue;
        }
        let pick = names.iter().find_map(|n| {
            folders.iter().position(|f| {
                let top = match &f.parent {
                    None => true,
                    Some(p) => personal_parents.iter().any(|pp| pp == p),
                };
                top && f.selectable
                    && f.special_use.is_none()
                    && f.display_name.eq_ignore_ascii_case(n)
            })
        });
        if let Some(i) = pick {
            if let Some(f) = folders.get_mut(i) {
                f.special_use = Some(*role);
            }
        }
    }
}

fn identity_from_status(name: &str, s: &StatusEntry) -> String {
    let valid = |v: &String| !v.is_empty() && !v.eq_ignore_ascii_case("NIL");
    if let Some(g) = s.values.get("X-GUID").filter(|v| valid(v)) {
        format!("guid:{g}")
    } else if let Some(m) = s.values.get("MAILBOXID").filter(|v| valid(v)) {
        format!("mailboxid:{m}")
    } else if let Some(uv) = s.values.get("UIDVALIDITY") {
        format!("uv:{uv}:{name}")
    } else {
        format!("name:{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::mock::{creds, mock, settings, Handler, GREETING};
    use super::*;
    use crate::backend::imap::parse::Namespace;
    use crate::backend::imap::ImapBackend;
    use crate::backend::{MailBackend, MailSession};

    fn entry(attrs: &[&str], name: &str) -> ListEntry {
        ListEntry {
            attributes: attrs.iter().map(|s| s.to_string()).collect(),
            delimiter: Some('/'),
            name: name.into(),
        }
    }

    fn status(name: &str, pairs: &[(&str, &str)]) -> (String, StatusEntry) {
        (
            status_key(name),
            StatusEntry {
                mailbox: name.into(),
                values: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        )
    }

    #[test]
    fn folders_from_list_data() {
        let entries = vec![
            entry(&[], "INBOX"),
            entry(&["\\HasChildren"], "Entw&APw-rfe"),
            entry(&[], "Entw&APw-rfe/&ZeVnLIqe-"),
            entry(&["\\Drafts"], "Drafts"),
            entry(&["\\Noselect", "\\HasChildren"], "Projects"),
            entry(&[], "Projects/2024"),
            entry(&[], "Sent Items"),
            entry(&[], "Spam"),
            entry(&[], "Junk"),
            entry(&["\\All"], "All Mail"),
            entry(&["\\Noselect"], "shared"),
            entry(&[], "shared/team"),
            entry(&[], "Other/Trash"),
        ];
        let statuses: HashMap<_, _> = [
            status("inbox", &[("UIDVALIDITY", "1"), ("X-GUID", "aa")]),
            status("Entw&APw-rfe", &[("UIDVALIDITY", "2")]),
            status("Drafts", &[("UIDVALIDITY", "3"), ("MAILBOXID", "M3")]),
            status("Sent Items", &[("UIDVALIDITY", "4"), ("X-GUID", "NIL")]),
        ]
        .into_iter()
        .collect();
        let ns = Namespaces {
            personal: vec![Namespace {
                prefix: String::new(),
                delimiter: Some('/'),
            }],
            other_users: vec![],
            shared: vec![Namespace {
                prefix: "shared/".into(),
                delimiter: Some('/'),
            }],
        };
        let f = build_folders(&entries, &statuses, &ns);
        let by = |n: &str| {
            f.iter()
                .find(|x| x.name == n)
                .unwrap_or_else(|| panic!("{n}"))
        };
        assert!(f.iter().all(|x| !x.name.starts_with("shared")));
        assert_eq!(f.len(), 11);

        let inbox = by("INBOX");
        assert_eq!(inbox.special_use, Some(SpecialUse::Inbox));
        assert_eq!(inbox.identity, "guid:aa");
        assert_eq!(inbox.parent, None);

        let e = by("Entw&APw-rfe");
        assert_eq!(e.display_name, "Entwürfe");
        assert_eq!(e.identity, "uv:2:Entw&APw-rfe");
        let j = by("Entw&APw-rfe/&ZeVnLIqe-");
        assert_eq!(j.display_name, "日本語");
        assert_eq!(j.parent.as_deref(), Some("Entw&APw-rfe"));
        assert_eq!(j.identity, "name:Entw&APw-rfe/&ZeVnLIqe-");

        assert_eq!(by("Drafts").special_use, Some(SpecialUse::Drafts));
        assert_eq!(by("Drafts").identity, "mailboxid:M3");
        let p = by("Projects");
        assert!(!p.selectable);
        assert_eq!(p.identity, "name:Projects");
        assert_eq!(by("Projects/2024").parent.as_deref(), Some("Projects"));
        // heuristics fill the roles nobody flagged; "Junk" beats "Spam"
        assert_eq!(by("Sent Items").special_use, Some(SpecialUse::Sent));
        assert_eq!(by("Sent Items").identity, "uv:4:Sent Items");
        assert_eq!(by("Junk").special_use, Some(SpecialUse::Junk));
        assert_eq!(by("Spam").special_use, None);
        // only top-level names count
        assert_eq!(by("Other/Trash").special_use, None);
        assert_eq!(by("All Mail").special_use, Some(SpecialUse::All));
    }

    #[test]
    fn flags_win_over_names_and_personal_prefix_counts_as_top() {
        let entries = vec![
            ListEntry {
                attributes: vec![],
                delimiter: Some('.'),
                name: "INBOX".into(),
            },
            ListEntry {
                attributes: vec![],
                delimiter: Some('.'),
                name: "INBOX.Sent".into(),
            },
            ListEntry {
                attributes: vec!["\\Sent".into()],
                delimiter: Some('.'),
                name: "INBOX.Gesendet".into(),
            },
            ListEntry {
                attributes: vec![],
                delimiter: Some('.'),
                name: "INBOX.Trash".into(),
            },
        ];
        let ns = Namespaces {
            personal: vec![Namespace {
                prefix: "INBOX.".into(),
                delimiter: Some('.'),
            }],
            ..Namespaces::default()
        };
        let f = build_folders(&entries, &HashMap::new(), &ns);
        let names: Vec<&str> = f.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            ["INBOX", "INBOX.Gesendet", "INBOX.Sent", "INBOX.Trash"]
        );
        assert_eq!(f[1].special_use, Some(SpecialUse::Sent));
        assert_eq!(f[2].special_use, None);
        assert_eq!(f[3].special_use, Some(SpecialUse::Trash));
        assert_eq!(f[3].parent.as_deref(), Some("INBOX"));
    }

    fn list_server(list_status: bool) -> Handler {
        Box::new(move |tag, cmd| {
            if cmd.starts_with("LOGIN") {
                let caps = if list_status {
                    "IMAP4rev1 NAMESPACE SPECIAL-USE LIST-STATUS"
                } else {
                    "IMAP4rev1 SPECIAL-USE"
                };
                format!("{tag} OK [CAPABILITY {caps}] ok\r\n")
            } else if cmd.starts_with("NAMESPACE") {
                format!("* NAMESPACE ((\"\" \"/\")) NIL ((\"Public/\" \"/\"))\r\n{tag} OK\r\n")
            } else if cmd.starts_with("LIST") && cmd.contains("X-GUID") {
                format!("{tag} BAD Invalid status item X-GUID\r\n")
            } else if cmd.starts_with("LIST") {
                let mut r = String::new();
                r.push_str("* LIST (\\Drafts) \"/\" Drafts\r\n");
                if cmd.contains("STATUS") {
                    r.push_str("* STATUS Drafts (UIDVALIDITY 11)\r\n");
                }
                r.push_str("* LIST () \"/\" {6}\r\nA \"b\"c\r\n");
                if cmd.contains("STATUS") {
                    r.push_str("* STATUS {6}\r\nA \"b\"c (UIDVALIDITY 12)\r\n");
                }
                r.push_str("* LIST (\\Noselect) \"/\" Public/x\r\n");
                r.push_str("* LIST () \"/\" INBOX\r\n");
                if cmd.contains("STATUS") {
                    r.push_str("* STATUS INBOX (UIDVALIDITY 10)\r\n");
                }
                r.push_str(&format!("{tag} OK List completed\r\n"));
                r
            } else if let Some(args) = cmd.strip_prefix("STATUS ") {
                if args.contains("X-GUID") {
                    return format!("{tag} BAD Invalid status item\r\n");
                }
                if args.starts_with("\"Drafts\"") {
                    format!("* STATUS Drafts (UIDVALIDITY 21)\r\n{tag} OK\r\n")
                } else if args.starts_with("\"INBOX\"") {
                    format!("* STATUS INBOX (UIDVALIDITY 20)\r\n{tag} OK\r\n")
                } else {
                    format!("{tag} NO [NONEXISTENT] gone\r\n")
                }
            } else {
                format!("* BYE\r\n{tag} OK\r\n")
            }
        })
    }

    #[tokio::test]
    async fn list_status_falls_back_without_xguid() {
        let (port, t) = mock(GREETING, list_server(true)).await;
        let mut s = ImapBackend::new(settings(port))
            .login(&creds("pw"), None)
            .await
            .unwrap();
        let f = s.list_folders().await.unwrap();
        let ids: Vec<_> = f
            .iter()
            .map(|x| (x.name.as_str(), x.identity.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("INBOX", "uv:10:INBOX"),
                ("A \"b\"c", "uv:12:A \"b\"c"),
                ("Drafts", "uv:11:Drafts"),
            ]
        );
        // the second listing goes straight to the variant that works
        s.list_folders().await.unwrap();
        s.logout().await;
        let lists: Vec<String> = t
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.contains(" LIST "))
            .cloned()
            .collect();
        assert_eq!(lists.len(), 3);
        assert!(lists[0].ends_with("RETURN (SPECIAL-USE STATUS (UIDVALIDITY X-GUID))"));
        assert!(lists[1].ends_with("RETURN (SPECIAL-USE STATUS (UIDVALIDITY))"));
        assert!(lists[2].ends_with("RETURN (SPECIAL-USE STATUS (UIDVALIDITY))"));
    }

    #[tokio::test]
    async fn status_per_folder_without_list_status() {
        let (port, t) = mock(GREETING, list_server(false)).await;
        let mut s = ImapBackend::new(settings(port))
            .login(&creds("pw"), None)
            .await
            .unwrap();
        let f = s.list_folders().await.unwrap();
        s.logout().await;
        let ids: Vec<_> = f
            .iter()
            .map(|x| (x.name.as_str(), x.identity.as_str()))
            .collect();
        // no NAMESPACE capability: nothing is filtered
        assert_eq!(
            ids,
            [
                ("INBOX", "uv:20:INBOX"),
                ("A \"b\"c", "name:A \"b\"c"),
                ("Drafts", "uv:21:Drafts"),
                ("Public/x", "name:Public/x"),
            ]
        );
        let t = t.lock().unwrap().clone();
        assert!(t
            .iter()
            .any(|c| c.ends_with("LIST \"\" \"*\" RETURN (SPECIAL-USE)")));
        let statuses = t.iter().filter(|c| c.contains(" STATUS ")).count();
        // three selectable folders, tried with and without X-GUID
        assert_eq!(statuses, 6);
    }
}
