//! Command-line subcommands.

pub mod devices;
pub mod doctor;
pub mod wbxml;
