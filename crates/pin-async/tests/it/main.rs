//! pin-async's integration tests: one binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr,
    missing_docs,
    unreachable_pub
)]

mod cancel;
mod common;
mod executors;
mod lockout;
mod postgres;
mod responsive;
