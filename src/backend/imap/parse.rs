//! A total parser of IMAP server responses (RFC 3501 sections 7 and 9), no I/O: one whole
//! response (line plus literals) in, a [`Response`] with an item tree out; typed readers for
//! LIST, STATUS and NAMESPACE. Never panics, never copies input into its errors, bounds
//! nesting, and accepts the usual server deviations.

use std::collections::HashMap;
use std::fmt;

/// Deepest parenthesised-list nesting accepted (BODYSTRUCTURE of real messages stays far below).
const MAX_DEPTH: usize = 64;

/// A parse failure: where and what, never the input itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset into the response.
    pub pos: usize,
    /// What was expected or went wrong.
    pub what: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed IMAP response at byte {}: {}",
            self.pos, self.what
        )
    }
}

impl std::error::Error for ParseError {}

/// One value in the data part of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An atom, number or `NIL` (use [`Item::is_nil`]), or a flag such as `\Seen`.
    /// Fetch items with a section (`BODY[HEADER.FIELDS (A B)]`) are one atom.
    Atom(String),
    /// A quoted string or a literal, unescaped.
    Str(Vec<u8>),
    /// A parenthesised list.
    List(Vec<Item>),
    /// A `BODYSTRUCTURE` value kept as its bytes: most fetches never look into it, and
    /// parsing its dozens of atoms and strings is most of the cost of a FETCH line.
    /// [`Item::parsed`] gives the list.
    Unparsed(Vec<u8>),
}

impl Item {
    /// The atom text, if this is an atom.
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Item::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// True for the atom `NIL` (any case).
    pub fn is_nil(&self) -> bool {
        matches!(self, Item::Atom(a) if a.eq_ignore_ascii_case("NIL"))
    }

    /// An astring (atom, quoted string or literal) as text; invalid UTF-8 is replaced.
    pub fn as_astring(&self) -> Option<String> {
        match self {
            Item::Atom(a) => Some(a.clone()),
            Item::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            Item::List(_) | Item::Unparsed(_) => None,
        }
    }

    /// An nstring: `Some(None)` for NIL, `Some(Some(bytes))` for a string, `None` otherwise.
    pub fn as_nstring(&self) -> Option<Option<&[u8]>> {
        match self {
            Item::Str(s) => Some(Some(s)),
            a if a.is_nil() => Some(None),
            _ => None,
        }
    }

    /// The elements, if this is a list.
    pub fn as_list(&self) -> Option<&[Item]> {
        match self {
            Item::List(l) => Some(l),
            _ => None,
        }
    }

    /// The elements, if this is a list, for taking values out of it.
    pub fn as_list_mut(&mut self) -> Option<&mut [Item]> {
        match self {
            Item::List(l) => Some(l),
            _ => None,
        }
    }

    /// The item with an [`Item::Unparsed`] value parsed; `None` when its bytes do not parse.
    pub fn parsed(&self) -> Option<std::borrow::Cow<'_, Item>> {
        match self {
            Item::Unparsed(raw) => {
                let mut p = Parser { buf: raw, pos: 0 };
                p.item(0).ok().map(std::borrow::Cow::Owned)
            }
            other => Some(std::borrow::Cow::Borrowed(other)),
        }
    }

    /// A number (atom of decimal digits).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Item::Atom(a) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) => {
                a.parse().ok()
            }
            _ => None,
        }
    }
}

/// The status word of a status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    PreAuth,
    Bye,
}

/// A response code: `[NAME args]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// Upper-cased code name, e.g. `AUTHENTICATIONFAILED`, `CAPABILITY`.
    pub name: String,
    /// Everything after the name up to the closing bracket, if anything.
    pub args: Option<String>,
}

/// A status response (tagged or untagged): status word, optional code, human text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusResp {
    pub status: Status,
    pub code: Option<Code>,
    pub text: String,
}

impl StatusResp {
    /// True when the response code has this (upper-case) name.
    pub fn has_code(&self, name: &str) -> bool {
        self.code.as_ref().is_some_and(|c| c.name == name)
    }

    /// Capabilities from a `[CAPABILITY ...]` response code.
    pub fn capabilities(&self) -> Option<Vec<String>> {
        match &self.code {
            Some(c) if c.name == "CAPABILITY" => {
                Some(split_capabilities(c.args.as_deref().unwrap_or("")))
            }
            _ => None,
        }
    }
}

/// One server response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `tag OK|NO|BAD [code] text`
    Tagged { tag: String, resp: StatusResp },
    /// `* OK|NO|BAD|PREAUTH|BYE [code] text`
    Status(StatusResp),
    /// `* [number] NAME items...`, e.g. `* LIST (...) "/" INBOX`, `* 3 EXISTS`,
    /// `* 1 FETCH (...)`. `name` is upper-cased.
    Data {
        number: Option<u32>,
        name: String,
        items: Vec<Item>,
    },
    /// `+ text` (continuation request)
    Continue(String),
}

/// Parse one complete response (see the module docs).
pub fn parse_response(input: &[u8]) -> Result<Response, ParseError> {
    let mut p = Parser { buf: input, pos: 0 };
    let r = p.response()?;
    p.expect_eol()?;
    Ok(r)
}

/// Split a capability list ("IMAP4rev1 IDLE AUTH=PLAIN") into upper-cased names.
pub fn split_capabilities(s: &str) -> Vec<String> {
    s.split_ascii_whitespace()
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, what: &'static str) -> Result<T, ParseError> {
        Err(ParseError {
            pos: self.pos,
            what,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn at_eol(&self) -> bool {
        matches!(self.peek(), None | Some(b'\r') | Some(b'\n'))
    }

    fn expect_eol(&mut self) -> Result<(), ParseError> {
        // Trailing spaces before CRLF are a common server sloppiness.
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        match self.buf.get(self.pos..) {
            None | Some(b"") | Some(b"\r\n") | Some(b"\n") => Ok(()),
            _ => self.err("unexpected data at end of response"),
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sp(&mut self) -> Result<(), ParseError> {
        if self.eat(b' ') {
            Ok(())
        } else {
            self.err("expected space")
        }
    }

    /// Bytes up to (not including) SP / CR / LF.
    fn word(&mut self) -> &'a [u8] {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b == b' ' || b == b'\r' || b == b'\n' {
                break;
            }
            self.pos += 1;
        }
        self.buf.get(start..self.pos).unwrap_or_default()
    }

    fn rest_of_line(&mut self) -> String {
        let start = self.pos;
        while !self.at_eol() {
            self.pos += 1;
        }
        let raw = self.buf.get(start..self.pos).unwrap_or_default();
        String::from_utf8_lossy(raw).trim().to_string()
    }

    fn response(&mut self) -> Result<Response, ParseError> {
        match self.peek() {
            Some(b'+') => {
                self.pos += 1;
                self.eat(b' ');
                Ok(Response::Continue(self.rest_of_line()))
            }
            Some(b'*') => {
                self.pos += 1;
                self.expect_sp()?;
                self.untagged()
            }
            Some(_) => {
                let tag = self.word();
                if tag.is_empty() {
                    return self.err("empty tag");
                }
                let tag = String::from_utf8_lossy(tag).into_owned();
                self.expect_sp()?;
                let word = self.word().to_ascii_uppercase();
                let status = match word.as_slice() {
                    b"OK" => Status::Ok,
                    b"NO" => Status::No,
                    b"BAD" => Status::Bad,
                    _ => return self.err("tagged response without OK/NO/BAD"),
                };
                let resp = self.resp_text(status)?;
                Ok(Response::Tagged { tag, resp })
            }
            None => self.err("empty response"),
        }
    }

    fn untagged(&mut self) -> Result<Response, ParseError> {
        let first_start = self.pos;
        let first = self.word();
        if first.is_empty() {
            return self.err("empty untagged response");
        }
        let upper = first.to_ascii_uppercase();
        let status = match upper.as_slice() {
            b"OK" => Some(Status::Ok),
            b"NO" => Some(Status::No),
            b"BAD" => Some(Status::Bad),
            b"PREAUTH" => Some(Status::PreAuth),
            b"BYE" => Some(Status::Bye),
            _ => None,
        };
        if let Some(status) = status {
            return Ok(Response::Status(self.resp_text(status)?));
        }
        let (number, name) = if first.iter().all(u8::is_ascii_digit) {
            let n = std::str::from_utf8(first)
                .ok()
                .and_then(|s| s.parse::<u32>().ok());
            let Some(n) = n else {
                self.pos = first_start;
                return self.err("number out of range");
            };
            self.expect_sp()?;
            let name = self.word();
            if name.is_empty() {
                return self.err("missing response name after number");
            }
            (Some(n), name.to_ascii_uppercase())
        } else {
            (None, upper)
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        let items = if name == "CAPABILITY" || name == "ENABLED" {
            // Plain atom lists; capability names may contain characters
            // (e.g. `]`) that the generic item syntax would trip over.
            let mut items = Vec::new();
            while self.eat(b' ') {
                let w = self.word();
                if !w.is_empty() {
                    items.push(Item::Atom(String::from_utf8_lossy(w).into_owned()));
                }
            }
            items
        } else {
            self.items_to_eol()?
        };
        Ok(Response::Data {
            number,
            name,
            items,
        })
    }

    fn resp_text(&mut self, status: Status) -> Result<StatusResp, ParseError> {
        if self.at_eol() {
            return Ok(StatusResp {
                status,
                code: None,
                text: String::new(),
            });
        }
        self.expect_sp()?;
        let code = if self.peek() == Some(b'[') {
            Some(self.code()?)
        } else {
            None
        };
        self.eat(b' ');
        let text = self.rest_of_line();
        Ok(StatusResp { status, code, text })
    }

    fn code(&mut self) -> Result<Code, ParseError> {
        // at '['
        self.pos += 1;
        let start = self.pos;
        let mut in_quote = false;
        let mut escaped = false;
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => return self.err("unterminated response code"),
                Some(b'"') if !escaped => in_quote = !in_quote,
                Some(b'\\') if in_quote && !escaped => {
                    escaped = true;
                    self.pos += 1;
                    continue;
                }
                Some(b']') if !in_quote => break,
                _ => {}
            }
            escaped = false;
            self.pos += 1;
        }
        let inner = self.buf.get(start..self.pos).unwrap_or_default();
        self.pos += 1; // ']'
        let inner = String::from_utf8_lossy(inner);
        let inner = inner.trim();
        let (name, args) = match inner.split_once(' ') {
            Some((n, a)) => (n, Some(a.trim().to_string())),
            None => (inner, None),
        };
        if name.is_empty() {
            return self.err("empty response code");
        }
        Ok(Code {
            name: name.to_ascii_uppercase(),
            args,
        })
    }

    fn items_to_eol(&mut self) -> Result<Vec<Item>, ParseError> {
        let mut items = Vec::new();
        loop {
            while self.eat(b' ') {}
            if self.at_eol() {
                return Ok(items);
            }
            items.push(self.item(0)?);
        }
    }

    fn item(&mut self, depth: usize) -> Result<Item, ParseError> {
        match self.peek() {
            Some(b'(') => {
                if depth >= MAX_DEPTH {
                    return self.err("lists nested too deeply");
                }
                self.pos += 1;
                // A FETCH response's list holds a dozen items or so: room for them at once.
                let mut list: Vec<Item> = Vec::with_capacity(if depth == 0 { 16 } else { 0 });
                loop {
                    while self.eat(b' ') {}
                    match self.peek() {
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(Item::List(list));
                        }
                        None | Some(b'\r') | Some(b'\n') => {
                            return self.err("unterminated list");
                        }
                        Some(b'(')
                            if matches!(list.last(), Some(Item::Atom(a))
                                if a.eq_ignore_ascii_case("BODYSTRUCTURE")) =>
                        {
                            let start = self.pos;
                            self.skip_item(depth + 1)?;
                            let raw = self.buf.get(start..self.pos).unwrap_or_default();
                            list.push(Item::Unparsed(raw.to_vec()));
                        }
                        _ => list.push(self.item(depth + 1)?),
                    }
                }
            }
            Some(b'"') => self.quoted().map(Item::Str),
            Some(b'{') => self.literal().map(Item::Str),
            Some(b'~') if self.buf.get(self.pos + 1) == Some(&b'{') => {
                self.pos += 1;
                self.literal().map(Item::Str)
            }
            Some(b')') => self.err("unexpected ')'"),
            None => self.err("unexpected end of response"),
            Some(_) => self.atom().map(Item::Atom),
        }
    }

    /// Moves past one item as [`Parser::item`] would read it, keeping nothing.
    fn skip_item(&mut self, depth: usize) -> Result<(), ParseError> {
        match self.peek() {
            Some(b'(') => {
                if depth >= MAX_DEPTH {
                    return self.err("lists nested too deeply");
                }
                self.pos += 1;
                loop {
                    while self.eat(b' ') {}
                    match self.peek() {
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        None | Some(b'\r') | Some(b'\n') => {
                            return self.err("unterminated list");
                        }
                        _ => self.skip_item(depth + 1)?,
                    }
                }
            }
            Some(b'"') => {
                self.pos += 1;
                loop {
                    match self.peek() {
                        None | Some(b'\r') | Some(b'\n') => {
                            return self.err("unterminated quoted string")
                        }
                        Some(b'"') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        Some(b'\\') => {
                            self.pos += 1;
                            if !matches!(self.peek(), Some(b'"' | b'\\')) {
                                return self.err("bad escape in quoted string");
                            }
                            self.pos += 1;
                        }
                        Some(_) => self.pos += 1,
                    }
                }
            }
            Some(b'{') => self.literal_span().map(drop),
            Some(b'~') if self.buf.get(self.pos + 1) == Some(&b'{') => {
                self.pos += 1;
                self.literal_span().map(drop)
            }
            Some(b')') => self.err("unexpected ')'"),
            None => self.err("unexpected end of response"),
            Some(_) => self.atom_span().map(drop),
        }
    }

    fn quoted(&mut self) -> Result<Vec<u8>, ParseError> {
        // at '"'
        self.pos += 1;
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        // Most strings have no escapes: copy them at once.
        if let Some(i) = memchr::memchr3(b'"', b'\\', b'\n', rest) {
            if rest.get(i) == Some(&b'"') && !rest.get(..i).unwrap_or_default().contains(&b'\r') {
                let out = rest.get(..i).unwrap_or_default().to_vec();
                self.pos += i + 1;
                return Ok(out);
            }
        }
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => return self.err("unterminated quoted string"),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return self.err("bad escape in quoted string"),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn literal(&mut self) -> Result<Vec<u8>, ParseError> {
        self.literal_span().map(<[u8]>::to_vec)
    }

    /// The bytes of the literal at `{`, moving past them.
    fn literal_span(&mut self) -> Result<&'a [u8], ParseError> {
        // at '{'
        self.pos += 1;
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = self.buf.get(start..self.pos).unwrap_or_default();
        let len = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse::<usize>().ok());
        let Some(len) = len else {
            return self.err("bad literal length");
        };
        self.eat(b'+');
        if !self.eat(b'}') {
            return self.err("expected '}' after literal length");
        }
        self.eat(b'\r');
        if !self.eat(b'\n') {
            return self.err("expected CRLF after literal length");
        }
        let end = self.pos.checked_add(len);
        let buf = self.buf;
        match end.and_then(|end| buf.get(self.pos..end)) {
            Some(data) => {
                self.pos += len;
                Ok(data)
            }
            None => self.err("literal longer than the response"),
        }
    }

    fn atom(&mut self) -> Result<String, ParseError> {
        let raw = self.atom_span()?;
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    /// The bytes of the atom here, moving past them.
    fn atom_span(&mut self) -> Result<&'a [u8], ParseError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'(' | b')' | b'"' | b'\r' | b'\n' => break,
                b'[' => {
                    // A fetch item with a section: BODY[...], BODY.PEEK[...], BINARY[...]
                    // may contain spaces and parentheses up to the closing bracket.
                    let prefix = self.buf.get(start..self.pos).unwrap_or_default();
                    let prefix = prefix.to_ascii_uppercase();
                    let sectioned = matches!(
                        prefix.as_slice(),
                        b"BODY" | b"BODY.PEEK" | b"BINARY" | b"BINARY.PEEK" | b"BINARY.SIZE"
                    );
                    if sectioned {
                        let rest = self.buf.get(self.pos..).unwrap_or_default();
                        let close = rest
                            .iter()
                            .take_while(|&&c| c != b'\r' && c != b'\n')
                            .position(|&c| c == b']');
                        match close {
                            Some(off) => self.pos += off + 1,
                            None => return self.err("unterminated section"),
                        }
                        // a partial suffix like <0> is part of the atom and handled below
                    } else {
                        self.pos += 1;
                    }
                }
                _ => self.pos += 1,
            }
        }
        let buf = self.buf;
        let raw = buf.get(start..self.pos).unwrap_or_default();
        if raw.is_empty() {
            return self.err("expected an atom");
        }
        Ok(raw)
    }
}

// ---------------------------------------------------------------------------
// Typed readers for the untagged data this backend uses.

/// One `* LIST` (or `* LSUB`) response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Name attributes as sent, e.g. `\HasNoChildren`, `\Drafts`.
    pub attributes: Vec<String>,
    /// Hierarchy delimiter; `None` for a flat namespace (NIL).
    pub delimiter: Option<char>,
    /// Raw mailbox name (modified UTF-7 unless UTF8=ACCEPT was enabled).
    pub name: String,
}

impl ListEntry {
    /// True when the entry carries this attribute (case-insensitive, with backslash).
    pub fn has_attribute(&self, attr: &str) -> bool {
        self.attributes.iter().any(|a| a.eq_ignore_ascii_case(attr))
    }
}

/// Read the items of a `* LIST` response: `(attrs) delimiter name [extended-data]`.
pub fn parse_list(items: &[Item]) -> Option<ListEntry> {
    let attrs = items.first()?.as_list()?;
    let attributes = attrs
        .iter()
        .map(|a| a.as_astring())
        .collect::<Option<Vec<_>>>()?;
    let delimiter = match items.get(1)?.as_nstring()? {
        None => None,
        Some(d) => {
            let d = std::str::from_utf8(d).ok()?;
            let mut chars = d.chars();
            let c = chars.next()?;
            if chars.next().is_some() {
                return None;
            }
            Some(c)
        }
    };
    // A mailbox named NIL arrives as an atom and means the name "NIL".
    let name = items.get(2)?.as_astring()?;
    Some(ListEntry {
        attributes,
        delimiter,
        name,
    })
}

/// One `* STATUS` response: mailbox name and upper-cased item -> value.
/// Numbers and atoms (X-GUID) are kept as text; a parenthesised value
/// (`MAILBOXID (id)`) is reduced to its single element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    pub mailbox: String,
    pub values: HashMap<String, String>,
}

/// Read the items of a `* STATUS` response: `mailbox (NAME value ...)`.
pub fn parse_status(items: &[Item]) -> Option<StatusEntry> {
    let mailbox = items.first()?.as_astring()?;
    let list = items.get(1)?.as_list()?;
    let mut values = HashMap::new();
    for pair in list.chunks(2) {
        let [key, value] = pair else {
            return None;
        };
        let key = key.as_atom()?.to_ascii_uppercase();
        let value = match value {
            Item::List(inner) => match inner.as_slice() {
                [one] => one.as_astring()?,
                _ => return None,
            },
            other => other.as_astring()?,
        };
        values.insert(key, value);
    }
    Some(StatusEntry { mailbox, values })
}

/// One namespace description: prefix and delimiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub prefix: String,
    pub delimiter: Option<char>,
}

/// The three namespace classes of RFC 2342.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    pub personal: Vec<Namespace>,
    pub other_users: Vec<Namespace>,
    pub shared: Vec<Namespace>,
}

/// Read the items of a `* NAMESPACE` response.
pub fn parse_namespace(items: &[Item]) -> Option<Namespaces> {
    fn class(item: &Item) -> Option<Vec<Namespace>> {
        if item.is_nil() {
            return Some(Vec::new());
        }
        item.as_list()?
            .iter()
            .map(|ns| {
                let ns = ns.as_list()?;
                let prefix = ns.first()?.as_astring()?;
                let delimiter = match ns.get(1)?.as_nstring()? {
                    None => None,
                    Some(d) => std::str::from_utf8(d).ok()?.chars().next(),
                };
                Some(Namespace { prefix, delimiter })
            })
            .collect()
    }
    Some(Namespaces {
        personal: class(items.first()?)?,
        other_users: class(items.get(1)?)?,
        shared: class(items.get(2)?)?,
    })
}

/// If a response line (ending in CRLF or LF) announces a literal (`{n}` or `{n+}`
/// right before the line end), its length.
pub fn trailing_literal_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let line = line.strip_suffix(b"+").unwrap_or(line);
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = line.get(open + 1..)?;
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Response {
        parse_response(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn data_items(s: &str) -> Vec<Item> {
        match parse(s) {
            Response::Data { items, .. } => items,
            other => panic!("not data: {other:?}"),
        }
    }

    #[test]
    fn greeting_with_capability_code() {
        let r = parse("* OK [CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ AUTH=PLAIN] Dovecot (Debian) ready.\r\n");
        let Response::Status(s) = r else {
            panic!("not a status")
        };
        assert_eq!(s.status, Status::Ok);
        assert_eq!(
            s.capabilities().unwrap(),
            vec!["IMAP4REV1", "SASL-IR", "ID", "LITERAL+", "AUTH=PLAIN"]
        );
        assert_eq!(s.text, "Dovecot (Debian) ready.");
    }

    #[test]
    fn tagged_no_with_code() {
        let r = parse("a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
        assert_eq!(
            r,
            Response::Tagged {
                tag: "a1".into(),
                resp: StatusResp {
                    status: Status::No,
                    code: Some(Code {
                        name: "AUTHENTICATIONFAILED".into(),
                        args: None
                    }),
                    text: "Authentication failed.".into()
                }
            }
        );
    }

    #[test]
    fn status_variants_and_leniency() {
        let Response::Tagged { resp, .. } = parse("A7 ok\r\n") else {
            panic!()
        };
        assert_eq!(resp.status, Status::Ok);
        assert_eq!(resp.text, "");
        let Response::Status(s) = parse("* BYE Logging out\n") else {
            panic!()
        };
        assert_eq!(s.status, Status::Bye);
        let Response::Status(s) = parse("* PREAUTH [code with args] hi\r\n") else {
            panic!()
        };
        assert_eq!(s.status, Status::PreAuth);
        assert_eq!(s.code.unwrap().args.as_deref(), Some("with args"));
        let Response::Tagged { resp, .. } =
            parse("a2 NO [UNAVAILABLE] Temporary \"failure\" ]\r\n")
        else {
            panic!()
        };
        assert!(resp.has_code("UNAVAILABLE"));
        assert_eq!(resp.text, "Temporary \"failure\" ]");
    }

    #[test]
    fn continuation() {
        assert_eq!(
            parse("+ go ahead\r\n"),
            Response::Continue("go ahead".into())
        );
        assert_eq!(parse("+\r\n"), Response::Continue(String::new()));
    }

    #[test]
    fn list_responses() {
        let e = parse_list(&data_items(
            "* LIST (\\HasNoChildren \\Drafts) \"/\" Drafts\r\n",
        ))
        .unwrap();
        assert_eq!(e.attributes, vec!["\\HasNoChildren", "\\Drafts"]);
        assert_eq!(e.delimiter, Some('/'));
        assert_eq!(e.name, "Drafts");
        assert!(e.has_attribute("\\drafts"));

        let e = parse_list(&data_items("* LIST () NIL \"a \\\"b\\\\\"\r\n")).unwrap();
        assert_eq!(e.delimiter, None);
        assert_eq!(e.name, "a \"b\\");

        let e = parse_list(&data_items("* LIST () \".\" {5}\r\nab cd\r\n")).unwrap();
        assert_eq!(e.name, "ab cd");

        // LIST-EXTENDED data after the name
        let e = parse_list(&data_items(
            "* LIST (\\Subscribed) \"/\" \"New\" (\"OLDNAME\" (\"Old\"))\r\n",
        ))
        .unwrap();
        assert_eq!(e.name, "New");
        // a mailbox literally named NIL
        assert_eq!(
            parse_list(&data_items("* LIST () \"/\" NIL\r\n"))
                .unwrap()
                .name,
            "NIL"
        );
        // malformed
        assert!(parse_list(&data_items("* LIST \"/\" Drafts\r\n")).is_none());
        assert!(parse_list(&data_items("* LIST () \"//\" x\r\n")).is_none());
    }

    #[test]
    fn status_responses() {
        let s = parse_status(&data_items(
            "* STATUS Entw&APw-rfe (UIDVALIDITY 1795734958 X-GUID 641bdf1aaebd086b3029000083ecc375)\r\n",
        ))
        .unwrap();
        assert_eq!(s.mailbox, "Entw&APw-rfe");
        assert_eq!(s.values["UIDVALIDITY"], "1795734958");
        assert_eq!(s.values["X-GUID"], "641bdf1aaebd086b3029000083ecc375");

        let s = parse_status(&data_items(
            "* STATUS \"Sent Items\" (MESSAGES 2 MAILBOXID (F2212ea87-6097-4256))\r\n",
        ))
        .unwrap();
        assert_eq!(s.mailbox, "Sent Items");
        assert_eq!(s.values["MAILBOXID"], "F2212ea87-6097-4256");
        assert!(parse_status(&data_items("* STATUS x (MESSAGES)\r\n")).is_none());
    }

    #[test]
    fn namespace_response() {
        let ns = parse_namespace(&data_items(
            "* NAMESPACE ((\"\" \"/\")) ((\"user/\" \"/\")) ((\"shared/\" \"/\" \"X-EXT\" (\"a\")))\r\n",
        ))
        .unwrap();
        assert_eq!(ns.personal[0].prefix, "");
        assert_eq!(ns.personal[0].delimiter, Some('/'));
        assert_eq!(ns.other_users[0].prefix, "user/");
        assert_eq!(ns.shared[0].prefix, "shared/");
        let ns =
            parse_namespace(&data_items("* NAMESPACE ((\"INBOX.\" \".\")) NIL NIL\r\n")).unwrap();
        assert!(ns.other_users.is_empty() && ns.shared.is_empty());
        assert_eq!(ns.personal[0].prefix, "INBOX.");
    }

    #[test]
    fn capability_and_numbered_data() {
        let r = parse("* CAPABILITY IMAP4rev1 CONDSTORE X-WEIRD]THING\r\n");
        let Response::Data { name, items, .. } = r else {
            panic!()
        };
        assert_eq!(name, "CAPABILITY");
        assert_eq!(items.len(), 3);
        assert_eq!(
            parse("* 23 EXISTS\r\n"),
            Response::Data {
                number: Some(23),
                name: "EXISTS".into(),
                items: vec![]
            }
        );
        let items = data_items(
            "* 1 FETCH (UID 7 BODY[HEADER.FIELDS (FROM TO)] {4}\r\nab\r\n FLAGS (\\Seen))\r\n",
        );
        let l = items[0].as_list().unwrap();
        assert_eq!(l[0].as_atom(), Some("UID"));
        assert_eq!(l[1].as_u64(), Some(7));
        assert_eq!(l[2].as_atom(), Some("BODY[HEADER.FIELDS (FROM TO)]"));
        assert_eq!(l[3], Item::Str(b"ab\r\n".to_vec()));
        assert_eq!(l[5].as_list().unwrap()[0].as_atom(), Some("\\Seen"));
        // atoms with '[' that are not fetch sections stay plain
        let items = data_items("* LIST () \"/\" a[b\r\n");
        assert_eq!(items[2].as_atom(), Some("a[b"));
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let cases: &[&[u8]] = &[
            b"",
            b"\r\n",
            b"*",
            b"* ",
            b"a1",
            b"a1 MAYBE\r\n",
            b"* LIST (\\a \"/\" x\r\n",
            b"* LIST () \"unterminated\r\n",
            b"* LIST () \"/\" {10}\r\nshort\r\n",
            b"* LIST () \"/\" {99999999999999999999999}\r\n",
            b"* LIST () \"/\" {abc}\r\n",
            b"* X \"bad \\escape\"\r\n",
            b"* 99999999999 EXISTS\r\n",
            b"* 5\r\n",
            b"a1 OK [UNTERMINATED\r\n",
            b"a1 OK []\r\n",
            b"* FETCH BODY[abc\r\n",
            b"* X )\r\n",
            b"* X a b\r\nextra",
        ];
        for c in cases {
            assert!(
                parse_response(c).is_err(),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        let deep = format!("* X {}{}\r\n", "(".repeat(200), ")".repeat(200));
        assert!(parse_response(deep.as_bytes()).is_err());
        let ok_deep = format!("* X {}{}\r\n", "(".repeat(30), ")".repeat(30));
        assert!(parse_response(ok_deep.as_bytes()).is_ok());
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A cheap deterministic fuzz: all prefixes and byte mutations of real responses.
        let samples: &[&[u8]] = &[
            b"* LIST (\\HasNoChildren \\Drafts) \"/\" Drafts\r\n",
            b"* STATUS \"a b\" (UIDVALIDITY 1 X-GUID ab MAILBOXID (x))\r\n",
            b"* 1 FETCH (BODY[1] {3}\r\nabc UID 4)\r\n",
            b"a1 NO [AUTHENTICATIONFAILED] x\r\n",
            b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n",
        ];
        let specials = b"\"(){}[]\\ \r\n*+~0";
        for s in samples {
            for cut in 0..=s.len() {
                let _ = parse_response(&s[..cut]);
            }
            for i in 0..s.len() {
                for &b in specials {
                    let mut m = s.to_vec();
                    m[i] = b;
                    let _ = parse_response(&m);
                }
            }
        }
    }

    /// A BODYSTRUCTURE is kept as its bytes and parses, on demand, into the list the
    /// parser gives for the same text elsewhere; the items after it are read as usual.
    #[test]
    fn bodystructure_is_kept_unparsed_until_asked() {
        let structure = "((\"text\" \"plain\" (\"charset\" \"utf-8\" \"name\" {7}\r\nq\"(x).t) NIL \
                         \"a \\\"b\\\"\" \"7bit\" 12 1 NIL NIL NIL NIL)(\"text\" \"html\" NIL NIL NIL \
                         \"base64\" 40 1 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"b\") NIL NIL NIL)";
        let line = format!("* 3 FETCH (UID 9 BODYSTRUCTURE {structure} RFC822.SIZE 52)\r\n");
        let items = data_items(&line);
        let Some(Item::List(fetch)) = items.last() else {
            panic!("no fetch list: {items:?}")
        };
        let Some(Item::Unparsed(raw)) = fetch.get(3) else {
            panic!("BODYSTRUCTURE parsed eagerly: {fetch:?}")
        };
        assert_eq!(raw.as_slice(), structure.as_bytes());
        assert_eq!(fetch.get(5).and_then(Item::as_u64), Some(52));
        let listed = data_items(&format!("* 3 FETCH (UID 9 X {structure})\r\n"));
        let Some(Item::List(plain)) = listed.last() else {
            panic!("no list")
        };
        let parsed = fetch.get(3).and_then(Item::parsed).expect("parses");
        assert_eq!(Some(parsed.as_ref()), plain.get(3));
        // Unbalanced or cut structures are errors, as for any list.
        for bad in [
            "* 3 FETCH (BODYSTRUCTURE (\"text\" \"pla)\r\n",
            "* 3 FETCH (BODYSTRUCTURE ((x)\r\n",
        ] {
            assert!(parse_response(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn literal_announcements() {
        assert_eq!(trailing_literal_len(b"* LIST () \"/\" {12}\r\n"), Some(12));
        assert_eq!(trailing_literal_len(b"* X {0}\n"), Some(0));
        assert_eq!(trailing_literal_len(b"* X {3+}\r\n"), Some(3));
        assert_eq!(trailing_literal_len(b"* X {}\r\n"), None);
        assert_eq!(trailing_literal_len(b"* X {1a}\r\n"), None);
        assert_eq!(trailing_literal_len(b"* X \"{3}\"\r\n"), None);
        assert_eq!(trailing_literal_len(b"* X {3}"), None);
        assert_eq!(
            trailing_literal_len(b"* X {99999999999999999999999}\r\n"),
            None
        );
    }
}
