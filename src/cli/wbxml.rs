//! `codepages` and `wbxml decode|encode` subcommands.

use std::io::{Read, Write};

use anyhow::Context as _;

use crate::wbxml::{self, codepage, xml, Limits};

/// Prints one line per tag: `PAGE TOKEN TAG` (page in decimal, token as
/// `0xNN`), all pages in order.
pub fn print_codepages(out: &mut impl Write) -> std::io::Result<()> {
    for page in codepage::pages() {
        for tag in page.tags() {
            writeln!(
                out,
                "{} 0x{:02X} {}",
                tag.page,
                tag.token,
                tag.name().unwrap_or("")
            )?;
        }
    }
    Ok(())
}

fn read_input(path: &str) -> anyhow::Result<Vec<u8>> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("reading {path}"))
    }
}

/// WBXML bytes -> XML text.
pub fn decode_to_xml(input: Vec<u8>) -> anyhow::Result<String> {
    let root = wbxml::decode(input.into(), &Limits::default()).context("decoding WBXML")?;
    Ok(xml::to_xml(&root))
}

/// XML text (this crate's form or libwbxml's) -> WBXML bytes.
pub fn encode_from_xml(input: &[u8]) -> anyhow::Result<Vec<u8>> {
    let text = std::str::from_utf8(input).context("XML input is not UTF-8")?;
    let root = xml::from_xml(text).context("parsing XML")?;
    wbxml::try_encode(&root).context("encoding WBXML")
}

/// `wbxml decode [FILE]`: reads WBXML from FILE (`-` = stdin) and prints XML.
pub fn decode_command(path: &str) -> anyhow::Result<()> {
    let xml = decode_to_xml(read_input(path)?)?;
    let mut out = std::io::stdout().lock();
    out.write_all(xml.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `wbxml encode [FILE]`: reads XML from FILE (`-` = stdin) and writes WBXML
/// to stdout.
pub fn encode_command(path: &str) -> anyhow::Result<()> {
    let bytes = encode_from_xml(&read_input(path)?)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(())
}
