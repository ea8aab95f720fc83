//! The vocabulary every command speaks, below all of them: the [`Gateway`] a command runs
//! against, the request's [`Context`] and [`Body`], what it answers ([`Outcome`]) and why it
//! could not ([`CommandError`]).
//!
//! - A new long-lived service or cache goes into [`Gateway`] (a command's own caches go into
//!   one struct owned by that command, like [`crate::commands::sync::SyncCaches`]).
//! - A new way of answering goes into [`Outcome`] / [`Refusal`]; the HTTP status for it is
//!   chosen in `src/http/response.rs`, never here.
//! - A new failure class goes into [`CommandError`], with its cause as `#[source]`.

mod error;
mod gateway;
mod locks;
mod outcome;
mod request;

pub use error::{CommandError, ErrorClass};
pub use gateway::{collection_key, device_key, Gateway};
pub use locks::CollectionLocks;
pub use outcome::{Media, Outcome, Refusal};
pub use request::{Body, Context, User};
