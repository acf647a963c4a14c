//! Integration tests of pin-sqlite: one test binary, one module per concern.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::expect_used
)]

mod bad_files;
mod busy;
mod common;
mod concurrency;
mod conformance;
mod crash;
mod import;
mod keyed_audit;
mod observe;
mod rows;
mod secrets;
