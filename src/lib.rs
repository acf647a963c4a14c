//! PIN credentials through their whole life, as Italian public administrations issue them.
//!
//! This crate gathers the workspace: [`core`] is the pure lifecycle (re-exported from
//! `pin-core`). Storage adapters and the `pin` command-line tool live in their own crates.
#![forbid(unsafe_code)]

pub use pin_core as core;

#[doc(hidden)]
pub mod fuzz;
