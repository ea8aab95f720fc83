//! Command-line subcommands.

pub mod wbxml;
