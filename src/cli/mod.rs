//! Command-line subcommands.

pub mod devices;
pub mod wbxml;
