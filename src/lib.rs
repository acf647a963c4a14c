//! PIN credentials through their whole life, as Italian public administrations issue them.
//!
//! This crate gathers the workspace: [`core`] is the pure lifecycle (re-exported from
//! `pin-core`), [`async_driver`] its async driver (`pin-async`) and [`webhook`] the SMS
//! gateway notifier (`pin-webhook`). Storage adapters and
//! the `pin` command-line tool live in their own crates.
#![forbid(unsafe_code)]

/// The async driver (re-exported from `pin-async`): `PinService` on a bounded pool.
pub use pin_async as async_driver;
pub use pin_core as core;
pub use pin_webhook as webhook;

#[doc(hidden)]
pub mod fuzz;
