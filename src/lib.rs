//! PIN credentials through their whole life, as Italian public administrations issue them.
//!
//! This crate gathers the workspace: [`core`] is the pure lifecycle (re-exported from
//! `pin-core`), [`webhook`] the SMS gateway notifier (`pin-webhook`). Storage adapters and
//! the `pin` command-line tool live in their own crates.
#![forbid(unsafe_code)]

pub use pin_core as core;
pub use pin_webhook as webhook;

#[doc(hidden)]
pub mod fuzz;
