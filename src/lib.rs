//! eas-gateway: an Exchange ActiveSync gateway in front of an ordinary IMAP/SMTP mail server.
//!
//! Data flows one way:
//!
//! ```text
//! http (hyper, TLS, auth, query forms)
//!   -> wbxml (bytes -> element tree; no EAS knowledge beyond the code pages)
//!   -> eas (typed requests/responses, statuses, versions; no I/O)
//!   -> commands (one module per EAS command; behaviour)
//!   -> backend (IMAP/SMTP) and state (devices, folder maps, sync keys)
//!   -> eas -> wbxml -> http
//! ```
//!
//! | module | job |
//! |---|---|
//! | [`wbxml`] | sans-io WBXML codec and the 26 EAS code pages |
//! | [`eas`] | the protocol model: query forms, versions, statuses, request/response types |
//! | [`http`] | the HTTPS front door: routing, auth, limits, logging |
//! | [`commands`] | what the gateway does for each EAS command |
//! | [`backend`] | the mail server: IMAP and SMTP |
//! | [`state`] | persistent device and sync state |
//! | [`config`] | the TOML configuration |
//! | [`cluster`] | several nodes on one state store: node id, sync leases, events |
//! | [`cli`] | command-line tools (WBXML decode/encode, code pages) |
//! | [`admin`] | the admin listener: health checks and `/metrics` |
//! | [`metrics`] | the Prometheus metrics registry |
#![forbid(unsafe_code)]
// Panics outside tests: none. Where an index is provably in range, the smallest item carries an
// `allow` with the reason.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod admin;
pub mod backend;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod compose;
pub mod config;
pub mod eas;
pub mod http;
pub mod metrics;
pub mod mime;
pub mod push;
pub mod state;
pub mod uidset;
pub mod wbxml;
