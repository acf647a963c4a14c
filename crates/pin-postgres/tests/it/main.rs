//! Integration tests of pin-postgres against a real server: one test binary, one module per
//! concern. Each test starts its own throw-away cluster on 127.0.0.1 (see
//! `pin_postgres::cluster`) and stops it when done; when no PostgreSQL server binaries are
//! installed the tests say so loudly and pass without running (CI installs them, see
//! `.ci/run`).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::print_stdout
)]

mod common;
mod concurrency;
mod conformance;
mod errors;
mod keyed_audit;
mod observe;
mod pool;
mod restart;
mod rows;
mod runtime;
mod tls;
