//! WBXML codec for Exchange ActiveSync (MS-ASWBXML), sans-io.
//!
//! - [`decode`] / [`encode`]: whole documents <-> [`Element`] trees.
//! - [`Reader`]: pull reader producing [`Event`]s, with [`Limits`].
//! - [`Writer`]: incremental writer over an internal buffer that the caller
//!   drains, for streaming large bodies; [`async_writer`] adapts it to
//!   `tokio::io::AsyncWrite`.
//! - [`tags`]: a constant for every tag; [`Tag`] lookups by name.
//! - [`xml`]: the XML form used by the CLI and debug output.
//!
//! Code page tables are generated at build time from `wbxml-codepages/`.

pub mod async_writer;
pub mod codepage;
mod error;
mod fragment;
pub mod libwbxml;
mod reader;
pub mod sink;
pub mod tags;
mod tree;
mod writer;
pub mod xml;

pub use codepage::Tag;
pub use error::{DecodeError, DecodeErrorKind, WriteError};
pub use fragment::Fragment;
pub use reader::{Event, Limits, Reader};
pub use sink::{ElementSink, Filter, TreeBuilder};
pub use tree::{decode, encode, encode_bytes, try_encode, Element, Node};
pub use writer::{Writer, HEADER};
pub use xml::XmlError;

#[cfg(test)]
mod tests;
